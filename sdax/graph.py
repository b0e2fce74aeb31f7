"""Validation of a declared task graph and its compilation to integer arrays.

Pure and synchronous: no asyncio here. Everything a run needs that does not
depend on what happens during the run is computed once, here, in
O(tasks + edges) with no recursion, and shared read-only by every run.
A run copies two integer lists and indexes tuples; it never re-derives.

Scheduling uses indegree counts on the graph itself rather than expanded
"effective dependency" sets: a node without the phase being scheduled passes
the moment its own dependencies do. That gives exactly the wave semantics
(a pre starts when its effective pre-dependencies have succeeded) without
the quadratic blow-up of expanding sets through join nodes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NoReturn

from msgspec import Struct

from sdax.declarations import AsyncTask, TaskFunction
from sdax.errors import DependencyCycleError
from sdax.limits import Limit, LimitUse
from sdax.vocabulary import PhaseId


class TaskNode(Struct, frozen=True, kw_only=True):
    """One task as a run sees it: its position and its phase functions.

    A Struct rather than a frozen dataclass: a large build makes one per task,
    and a frozen dataclass's __init__ costs about 15 times as much.
    """

    index: int
    key: Hashable
    task: AsyncTask[Any]
    # Read-only, and shared by the tasks declared with the same phase functions.
    functions: dict[PhaseId, TaskFunction[Any]]
    # Phases whose function needs no attempt machinery (no timeout, retry or task group).
    plain: frozenset[PhaseId]
    # What a pre_execute or execute must hold to start, in acquisition order.
    limits: Mapping[PhaseId, tuple[LimitUse, ...]]


@dataclass(frozen=True, slots=True)
class TaskGraph:
    """A validated, acyclic task graph, compiled for the coordinator.

    Node indices follow declaration order. `dependencies[i]` are the nodes
    that `i` depends on, `dependents[i]` the nodes that depend on `i`.
    """

    nodes: tuple[TaskNode, ...]
    keys: tuple[Hashable, ...]
    index: dict[Hashable, int]
    dependencies: tuple[tuple[int, ...], ...]
    dependents: tuple[tuple[int, ...], ...]
    topological_order: tuple[int, ...]
    # The phase a node passes through by running (PRE) or owes (POST), per node.
    has_pre: tuple[bool, ...]
    has_post: tuple[bool, ...]
    executes: tuple[int, ...]
    any_pre: bool
    any_post: bool
    any_limits: bool
    # Initial counters a run copies: unfinished dependencies (PRE) and dependents (POST).
    dependency_counts: tuple[int, ...]
    dependent_counts: tuple[int, ...]
    # Where each flow starts: nodes with no dependencies, and with no dependents.
    roots: tuple[int, ...]
    tips: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.nodes)

    def phase_plan(self) -> tuple[tuple[Hashable, tuple[PhaseId, ...]], ...]:
        """Every task with the phases it declares, in order (what observers hear first)."""
        return tuple((node.key, tuple(node.functions)) for node in self.nodes)


Declaration = tuple[AsyncTask[Any], tuple[Hashable, ...]]

# Module constants: enum attribute access is slow, and these run once per task.
PRE, EXECUTE, POST = PhaseId.PRE_EXEC, PhaseId.EXECUTE, PhaseId.POST_EXEC


def compile_graph(
    declarations: Sequence[Declaration], max_concurrency: int | None = None
) -> TaskGraph:
    """Validate `declarations` (task, dependency keys) and compile them.

    Raises ValueError naming both tasks for a dependency that was never
    declared, DependencyCycleError (a ValueError) showing the cycle, and
    ValueError for two distinct limits with one name.
    """
    run_cap = _run_cap(max_concurrency)
    index: dict[Hashable, int] = {}
    for position, (task, _) in enumerate(declarations):
        if task.name in index:
            raise ValueError(f"duplicate task name {task.name!r}")
        index[task.name] = position

    lookup = index.__getitem__
    try:
        dependencies = tuple([tuple(map(lookup, keys)) for _, keys in declarations])
    except KeyError:
        _raise_missing_dependency(declarations, index)
    dependents_lists: list[list[int]] = [[] for _ in declarations]
    for node, deps in enumerate(dependencies):
        for dep in deps:
            dependents_lists[dep].append(node)
    dependents = tuple(tuple(lst) for lst in dependents_lists)
    order = _topological_order(declarations, dependencies, dependents)

    nodes = _task_nodes(declarations, run_cap)
    _check_limit_names(nodes)
    has_pre = tuple(PRE in node.functions for node in nodes)
    has_post = tuple(POST in node.functions for node in nodes)
    return TaskGraph(
        nodes=nodes,
        keys=tuple(node.key for node in nodes),
        index=index,
        dependencies=dependencies,
        dependents=dependents,
        topological_order=order,
        has_pre=has_pre,
        has_post=has_post,
        executes=tuple(node.index for node in nodes if EXECUTE in node.functions),
        any_pre=any(has_pre),
        any_post=any(has_post),
        any_limits=any(node.limits for node in nodes),
        dependency_counts=tuple(len(deps) for deps in dependencies),
        dependent_counts=tuple(len(deps) for deps in dependents),
        roots=tuple(i for i, deps in enumerate(dependencies) if not deps),
        tips=tuple(i for i, deps in enumerate(dependents) if not deps),
    )


def _task_nodes(declarations: Sequence[Declaration], run_cap: Limit | None) -> tuple[TaskNode, ...]:
    # What a node derives from its phase functions is worked out once per
    # distinct combination: large graphs reuse a handful of functions.
    derived: dict[tuple[int, int, int], _PhaseFacts] = {}
    nodes = []
    for position, (task, _) in enumerate(declarations):
        pre, execute, post = task.pre_execute, task.execute, task.post_execute
        combination = (id(pre), id(execute), id(post))
        facts = derived.get(combination)
        if facts is None:
            facts = derived[combination] = _phase_facts(pre, execute, post, run_cap)
        functions, plain, limits = facts
        nodes.append(
            TaskNode(
                index=position,
                key=task.name,
                task=task,
                functions=functions,
                plain=plain,
                limits=limits,
            )
        )
    return tuple(nodes)


# What a task's phase functions determine: the functions by phase, the plain
# phases, and the limits each phase takes.
_PhaseFacts = tuple[
    dict[PhaseId, TaskFunction[Any]], frozenset[PhaseId], Mapping[PhaseId, tuple[LimitUse, ...]]
]


def _phase_facts(
    pre: TaskFunction[Any] | None,
    execute: TaskFunction[Any] | None,
    post: TaskFunction[Any] | None,
    run_cap: Limit | None,
) -> _PhaseFacts:
    """The functions by phase, the plain phases and the limits of a task with these functions."""
    functions: dict[PhaseId, TaskFunction[Any]] = {}
    plain: list[PhaseId] = []
    limits: dict[PhaseId, tuple[LimitUse, ...]] = {}
    for phase, function in ((PRE, pre), (EXECUTE, execute), (POST, post)):
        if function is None:
            continue
        functions[phase] = function
        if function.is_plain:
            plain.append(phase)
        if phase is not POST and (function.limits or run_cap is not None):
            limits[phase] = _acquisition_order(function, run_cap)
    return functions, _PHASE_SETS.setdefault(tuple(plain), frozenset(plain)), limits or _NO_LIMITS


_PHASE_SETS: dict[tuple[PhaseId, ...], frozenset[PhaseId]] = {}
_NO_LIMITS: Mapping[PhaseId, tuple[LimitUse, ...]] = MappingProxyType({})


def _run_cap(max_concurrency: int | None) -> Limit | None:
    if max_concurrency is None:
        return None
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise TypeError(f"max_concurrency must be an int or None, got {max_concurrency!r}")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    return Limit("max_concurrency", max_concurrency)


def _acquisition_order(function: TaskFunction[Any], run_cap: Limit | None) -> tuple[LimitUse, ...]:
    uses = function.limits + ((LimitUse(run_cap, 1),) if run_cap is not None else ())
    # One global order for every request rules out circular waits between them.
    return tuple(sorted(uses, key=lambda use: (use.limit.name, id(use.limit))))


def _check_limit_names(nodes: Sequence[TaskNode]) -> None:
    seen: dict[str, tuple[Limit, Hashable]] = {}
    for node in nodes:
        for uses in node.limits.values():
            for use in uses:
                first = seen.setdefault(use.limit.name, (use.limit, node.key))
                if first[0] is not use.limit:
                    raise ValueError(
                        f"two different limits are named {use.limit.name!r} (used by tasks "
                        f"{first[1]!r} and {node.key!r}); share one Limit object or rename one"
                    )


def _raise_missing_dependency(
    declarations: Sequence[Declaration], index: dict[Hashable, int]
) -> NoReturn:
    """Raise for the first dependency that names no declared task, naming both tasks."""
    name, key = next(
        (task.name, key) for task, keys in declarations for key in keys if key not in index
    )
    hint = ""
    if isinstance(key, str):
        import difflib  # only on this error path: it adds ~0.4 MB to every process that imports it

        close = difflib.get_close_matches(key, [k for k in index if isinstance(k, str)], n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    # 0.7.2's phrase first ("depends on non-existent task"): code matches on it.
    raise ValueError(
        f"Task {name!r} depends on non-existent task {key!r}: it was never added{hint}"
    )


def _topological_order(
    declarations: Sequence[Declaration],
    dependencies: tuple[tuple[int, ...], ...],
    dependents: tuple[tuple[int, ...], ...],
) -> tuple[int, ...]:
    """Kahn's algorithm; ties keep declaration order. Raises on a cycle."""
    waiting = [len(deps) for deps in dependencies]
    ready = deque(i for i, count in enumerate(waiting) if count == 0)
    order: list[int] = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for dependent in dependents[node]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    if len(order) < len(declarations):
        cycle = _find_cycle(dependencies, waiting)
        raise DependencyCycleError([declarations[i][0].name for i in cycle])
    return tuple(order)


def _find_cycle(dependencies: tuple[tuple[int, ...], ...], waiting: list[int]) -> list[int]:
    """A cycle among the nodes Kahn's algorithm could not order, as a closed path.

    Every such node still waits on a dependency that is itself unordered, so
    following those dependencies must revisit a node.
    """
    start = next(i for i, count in enumerate(waiting) if count > 0)
    seen_at: dict[int, int] = {}
    path: list[int] = []
    node = start
    while node not in seen_at:
        seen_at[node] = len(path)
        path.append(node)
        node = next(dep for dep in dependencies[node] if waiting[dep] > 0)
    return [*path[seen_at[node] :], node]


class Declared:
    """The tasks declared so far with their dependencies, each checked as it is added.

    One per builder or `TaskAnalyzer` (a builder's `taskAnalyzer` shares its
    builder's), so every way of declaring a graph checks the same things.
    """

    __slots__ = ("declarations", "names")

    def __init__(self) -> None:
        self.declarations: list[Declaration] = []
        self.names: set[Hashable] = set()

    def check_new(self, task: object) -> None:
        """TypeError unless `task` is an AsyncTask; ValueError if its name is taken."""
        if not isinstance(task, AsyncTask):
            raise TypeError(
                f"add_task() takes an AsyncTask, got {type(task).__name__}: {task!r}; "
                "declare it with AsyncTask(name, ...) or task(name, ...)"
            )
        if task.name in self.names:
            raise ValueError(f"duplicate task name {task.name!r}: every task needs its own key")

    def add(self, task: AsyncTask[Any, Any], depends_on: Iterable[Hashable]) -> None:
        """Check `task` and `depends_on`, then record them (nothing is recorded on error)."""
        self.check_new(task)
        dependencies = normalise_dependencies(task.name, depends_on)
        self.names.add(task.name)
        self.declarations.append((task, dependencies))


class LevelBarrier(Struct, frozen=True):
    """Key of the join node put above each non-empty level of a level-built graph.

    A private type, so it can never collide with a user's key.
    """

    level: int

    def __repr__(self) -> str:
        return f"<level {self.level} barrier>"


LevelKey = Hashable
"""A key in a level-built graph: the user's task names plus `LevelBarrier` join nodes."""


def level_declarations(levels: Mapping[int, Sequence[AsyncTask[Any]]]) -> list[Declaration]:
    """Levels as a dependency graph: each level starts after the nearest lower non-empty one.

    A join node above each level makes every task of the next level depend on
    every task of this one: one edge per task instead of one per pair.
    """
    declarations: list[Declaration] = []
    below: tuple[Hashable, ...] = ()
    for level in sorted(levels):
        tasks = levels[level]
        declarations.extend((task, below) for task in tasks)
        barrier = AsyncTask[Any](LevelBarrier(level))
        declarations.append((barrier, tuple(task.name for task in tasks)))
        below = (barrier.name,)
    if declarations:
        declarations.pop()  # nothing waits above the top level
    return declarations


def normalise_dependencies(name: Hashable, depends_on: Iterable[Hashable]) -> tuple[Hashable, ...]:
    """Check a `depends_on` argument and return it as a tuple without repeats."""
    if isinstance(depends_on, (str, bytes)):
        raise TypeError(
            f"task {name!r}: depends_on must be a collection of keys, not a bare "
            f"{type(depends_on).__name__} (it would be read as its characters); "
            f"write depends_on=({depends_on!r},)"
        )
    if type(depends_on) is tuple:
        keys: tuple[Hashable, ...] = depends_on  # the usual case: no copy
    else:
        try:
            keys = tuple(depends_on)
        except TypeError:
            raise TypeError(
                f"task {name!r}: depends_on must be an iterable of task keys, got "
                f"{type(depends_on).__name__}"
            ) from None
    try:
        unique = dict.fromkeys(keys)
    except TypeError:
        culprit = next(key for key in keys if not _hashable(key))
        raise TypeError(
            f"task {name!r}: dependency {culprit!r} is not hashable ({type(culprit).__name__})"
        ) from None
    return keys if len(unique) == len(keys) else tuple(unique)


def _hashable(key: object) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True
