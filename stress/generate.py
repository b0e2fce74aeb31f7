"""Random processors (shapes) and random fault plans, from seeds only.

Every function takes a `random.Random` and draws nothing from anywhere else,
so the same seed always gives the same shape and plan (`seed_for` derives
independent seeds from the master seed, by name).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Hashable, Iterable
from typing import Any

from sdax import AsyncDagTaskProcessor, AsyncTask, AsyncTaskProcessor, Limit, join
from stress.declare import limits_of, phase_function
from stress.model import PHASES, POST, PRE, LimitSpec, Node, Policy, Shape

# Phase sets a task may declare, with weights.
_PHASE_SETS: list[tuple[tuple[str, ...], int]] = [
    (PHASES, 30),
    ((PRE, POST), 20),
    ((PRE,), 8),
    (("execute",), 10),
    ((POST,), 10),
    ((PRE, "execute"), 10),
    (("execute", POST), 12),
]
_DAG_STYLES = ("random", "chain", "tree", "layered", "wide", "dense")


def seed_for(master: int, *parts: object) -> int:
    """A 63-bit seed derived from `master` and `parts`, stable across processes."""
    text = ":".join(map(str, (master, *parts))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


def weighted(rng: random.Random, choices: list[tuple[Any, int]]) -> Any:
    values, weights = zip(*choices, strict=True)
    return rng.choices(values, weights)[0]


def random_policy(rng: random.Random) -> Policy:
    kind = weighted(rng, [("func", 60), ("group", 18), ("sync", 10), ("thread", 12)])
    timeout = None
    if kind != "sync":  # task_sync_func takes no timeout
        timeout = weighted(rng, [(None, 45), (0.001, 25), (0.0, 10), (30.0, 20)])
    retries = weighted(rng, [(0, 55), (1, 20), (2, 15), (3, 10)])
    # Tiny delays: runs must be fast, yet a backoff sleep must really happen.
    delay = rng.choice((0.0, 0.0, 0.0005))
    retry_on = weighted(rng, [("default", 80), ("all", 10), ("narrow", 10)])
    executor = rng.choice(("default", "given")) if kind == "thread" else "default"
    factor = rng.choice((1.0, 2.0))
    return Policy(kind, timeout, retries, delay, factor, retry_on, executor=executor)


def _key(style: str, index: int) -> Hashable:
    if style == "int":
        return index
    if style == "tuple":
        return ("t", index)
    return f"t{index:02d}"


def random_shape(rng: random.Random, max_tasks: int = 30, min_tasks: int = 1) -> Shape:
    """A random graph of `min_tasks..max_tasks` tasks, DAG- or level-built."""
    count = rng.randint(min_tasks, max_tasks)
    style = weighted(rng, [("str", 70), ("int", 15), ("tuple", 15)])
    keys = [_key(style, i) for i in range(count)]
    shape = _level_shape(rng, keys) if rng.random() < 0.25 else _dag_shape(rng, keys)
    if rng.random() < 0.2:  # queue pres and executes for a few run-wide slots
        shape = dataclasses.replace(shape, max_concurrency=rng.randint(1, 4))
    if rng.random() < 0.3:  # named limits, per run or shared by the runs of a batch
        shape = _with_limits(rng, shape)
    return shape


def _with_limits(rng: random.Random, shape: Shape) -> Shape:
    specs = tuple(
        LimitSpec(f"L{index}", rng.randint(1, 3), shared=rng.random() < 0.5)
        for index in range(rng.randint(1, 3))
    )
    nodes = []
    for node in shape.nodes:
        policies = {
            phase: _limited(rng, policy, specs) if phase != POST and rng.random() < 0.5 else policy
            for phase, policy in node.policies.items()
        }
        nodes.append(dataclasses.replace(node, policies=policies))
    return dataclasses.replace(shape, nodes=tuple(nodes), limits=specs)


def _limited(rng: random.Random, policy: Policy, specs: tuple[LimitSpec, ...]) -> Policy:
    """`policy` using some of `specs`, in any order, now and then naming one twice."""
    chosen = rng.sample(range(len(specs)), k=rng.randint(1, len(specs)))
    uses: list[tuple[int, int]] = []
    for index in chosen:
        units = rng.randint(1, specs[index].capacity)
        if units > 1 and rng.random() < 0.3:  # [limit.units(a), limit.units(b)]: sdax adds them
            split = rng.randint(1, units - 1)
            uses += [(index, split), (index, units - split)]
        else:
            uses.append((index, units))
    rng.shuffle(uses)
    return dataclasses.replace(policy, limits=tuple(uses))


def _policies(rng: random.Random, allow_join: bool) -> dict[str, Policy]:
    if allow_join and rng.random() < 0.1:
        return {}  # a join node: no phase at all
    phases = weighted(rng, _PHASE_SETS)
    return {phase: random_policy(rng) for phase in phases}


def _dag_deps(rng: random.Random, style: str, index: int) -> list[int]:
    if index == 0:
        return []
    if style == "chain":
        return [index - 1]
    if style == "tree":
        return [rng.randrange(index)]
    if style == "layered":  # mostly the previous "layer" of about four nodes
        low = max(0, (index // 4 - 1) * 4)
        return [i for i in range(low, index) if i < index // 4 * 4 and rng.random() < 0.6]
    if style == "wide":  # a few roots, everything else fans in to them
        return rng.sample(range(min(index, 3)), k=min(index, rng.randint(0, 2)))
    density = 0.5 if style == "dense" else rng.choice((0.1, 0.2, 0.3))
    return [i for i in range(index) if rng.random() < density]


def _dag_shape(rng: random.Random, keys: list[Hashable]) -> Shape:
    style = rng.choice(_DAG_STYLES)
    nodes = [
        Node(key, tuple(keys[i] for i in _dag_deps(rng, style, index)), _policies(rng, True))
        for index, key in enumerate(keys)
    ]
    order = [node.key for node in nodes]
    rng.shuffle(order)  # the builder must not care in which order tasks are added
    return Shape(tuple(nodes), "dag", tuple(order))


def _level_shape(rng: random.Random, keys: list[Hashable]) -> Shape:
    """Tasks on random (possibly negative, gapped) levels, with the model's own barriers."""
    levels = sorted(rng.sample(range(-5, 40), k=rng.randint(1, min(len(keys), 8))))
    by_level: dict[int, list[Hashable]] = {level: [] for level in levels}
    for index, key in enumerate(keys):  # every level gets a task, the rest at random
        by_level[levels[index] if index < len(levels) else rng.choice(levels)].append(key)
    nodes: list[Node] = []
    below: tuple[Hashable, ...] = ()
    for position, level in enumerate(levels):
        tasks = by_level[level]
        nodes.extend(Node(key, below, _policies(rng, False), level) for key in tasks)
        if position < len(levels) - 1:
            barrier = ("<barrier>", level)  # never a user key: those are str, int or ("t", i)
            nodes.append(Node(barrier, tuple(tasks), {}))
            below = (barrier,)
    order = [node.key for node in nodes if node.level is not None]
    rng.shuffle(order)
    return Shape(tuple(nodes), "levels", tuple(order))


def build_processor(shape: Shape) -> AsyncTaskProcessor[Any]:
    """Build the processor `shape` describes, through the builder it names."""
    tasks: dict[Hashable, AsyncTask[Any]] = {}
    limits: list[Limit] = limits_of(shape)
    for node in shape.nodes:
        if not node.policies:
            tasks[node.key] = join(node.key)
            continue
        functions = {
            phase: phase_function(node.key, phase, policy, limits)
            for phase, policy in node.policies.items()
        }
        tasks[node.key] = AsyncTask(node.key, **functions)
    if shape.builder == "levels":
        levels = AsyncTaskProcessor[Any].builder()
        for key in shape.declaration_order:
            level = shape.by_key[key].level
            assert level is not None
            levels.add_task(tasks[key], level)
        return levels.build(max_concurrency=shape.max_concurrency)
    graph = AsyncDagTaskProcessor[Any].builder()
    for position, key in enumerate(shape.declaration_order):
        graph.add_task(tasks[key], depends_on=_as_iterable(shape.by_key[key].deps, position))
    return graph.build(max_concurrency=shape.max_concurrency)


def _as_iterable(deps: tuple[Hashable, ...], position: int) -> Iterable[Hashable]:
    """`deps` as any iterable, now and then naming one twice (sdax must not count it twice)."""
    style = position % 5
    if style == 0 and deps:
        return [*deps, deps[0]]
    if style == 1:
        return iter(deps)
    if style == 2:
        return set(deps)
    return deps
