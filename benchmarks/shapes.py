"""Workload shapes for the benchmark worker: tasks as plain data, no sdax import.

A sibling module of scenarios.py, imported by it as `shapes` (the worker runs as
a script, so its own folder, never the project root, is on sys.path).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

PHASES = ("pre_execute", "execute", "post_execute")
PRE_POST = ("pre_execute", "post_execute")
Phase = Callable[["Ctx"], Coroutine[Any, Any, None]]


class Ctx:
    """The run context: counts phase calls, so every run is checked to be complete."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


async def work(ctx: Ctx) -> None:
    """A zero-work phase function."""
    ctx.count += 1


async def io(ctx: Ctx) -> None:
    """A phase function that yields to the loop once, like a fast I/O call."""
    await asyncio.sleep(0)
    ctx.count += 1


@dataclass(frozen=True, slots=True)
class Node:
    """One declared task: its phases and either a level or its dependencies."""

    name: str
    phases: tuple[str, ...]
    after: tuple[str, ...] = ()
    level: int | None = None


# Shapes ---------------------------------------------------------------------


def levels(n: int, count: int, phases: tuple[str, ...]) -> list[Node]:
    return [Node(f"t{i}", phases, level=i % count) for i in range(n)]


def chain(n: int, *, reverse: bool = False) -> list[Node]:
    nodes = [Node(f"c{i}", PRE_POST, (f"c{i - 1}",) if i else ()) for i in range(n)]
    return nodes[::-1] if reverse else nodes


def fan(width: int) -> list[Node]:
    middle = [Node(f"m{i}", PRE_POST, ("root",)) for i in range(width)]
    sink = Node("sink", PRE_POST, tuple(node.name for node in middle))
    return [Node("root", PRE_POST), *middle, sink]


def random_dag(n: int, seed: int = 2024, window: int = 50) -> list[Node]:
    """Each task: a random non-empty set of phases, 0-3 deps among the previous `window`."""
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        phases = tuple(p for p in PHASES if rng.random() < 0.6) or (rng.choice(PHASES),)
        earlier = range(max(0, i - window), i)
        picks = rng.sample(earlier, min(len(earlier), rng.randint(0, 3)))
        nodes.append(Node(f"r{i}", phases, tuple(f"r{j}" for j in sorted(picks))))
    return nodes


def requests_shape() -> list[Node]:
    """15 tasks in 3 levels, every phase present: 45 phase calls per run."""
    return levels(15, 3, PHASES)


def calls(nodes: Sequence[Node]) -> int:
    return sum(len(node.phases) for node in nodes)
