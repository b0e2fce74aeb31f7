"""Introspection of a task graph: the plan of a run, as data.

A *wave* groups tasks the way sdax 0.7.2 grouped them, so code that reads
waves sees the same plan:

- PRE: tasks with the same effective dependencies (the nearest tasks with a
  `pre_execute` they depend on, looking through tasks without one) share a
  wave. A new group takes the lowest free wave number above the waves it
  depends on, in topological order.
- POST: tasks at the same distance from the last cleanups share a wave: a
  task's wave is one more than the highest wave of its nearest dependents
  with a `post_execute` (0 if it has none), and a wave depends on the union
  of its tasks' nearest post dependents.

Runs do not use waves: the coordinator counts edges, so a post starts as soon
as its own dependents are cleaned up, possibly before the rest of its wave is
due. Waves are computed here only when someone asks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from types import GenericAlias, MappingProxyType
from typing import Any, Generic, TypeVar

from msgspec import Struct

from sdax._generic import K, KeyDefault
from sdax.declarations import AsyncTask
from sdax.errors import count_noun
from sdax.graph import Declared, TaskGraph, compile_graph

Ctx = TypeVar("Ctx")


# 0.7.2's analysis classes were generic in the key type; code that writes
# `ExecutionWave[str]` at run time keeps working. To type checkers they are
# not generic: keys are `Hashable`.
_subscriptable: Any = classmethod(GenericAlias)


class ExecutionWave(Struct, frozen=True):
    """Tasks of one phase grouped in the plan, with the tasks the group waits for."""

    wave_num: int
    tasks: tuple[Hashable, ...]
    depends_on_tasks: tuple[Hashable, ...] = ()

    __class_getitem__ = _subscriptable


class ExecutionGraph(Struct, frozen=True):
    """The waves of one phase, by wave number; each depends only on earlier ones."""

    waves: tuple[ExecutionWave, ...]

    __class_getitem__ = _subscriptable

    def wave_containing(self, key: Hashable) -> ExecutionWave | None:
        return next((wave for wave in self.waves if key in wave.tasks), None)


class TaskAnalysis:
    """The plan of a task graph: tasks, dependencies, waves, counts and lookups.

    Every attribute sdax 0.7.2 offered is here with the meaning it had there.
    Task-name tuples are sorted by key when the keys can be compared with one
    another, and otherwise kept in declaration order.
    """

    __class_getitem__ = _subscriptable

    __slots__ = (
        "tasks",
        "dependencies",
        "pre_execute_graph",
        "post_execute_graph",
        "total_tasks",
        "tasks_with_pre_execute",
        "tasks_with_execute",
        "tasks_with_post_execute",
        "nodes",
        "pre_task_names",
        "execute_task_names",
        "post_task_names",
        "post_only_task_names",
        "topological_order",
        "max_pre_wave_num",
        "max_post_wave_num",
        "pre_root_wave_id",
        "post_root_wave_id",
        "wave_index_by_task",
        "task_to_consumer_waves",
        "wave_dep_count",
        "post_wave_index_by_task",
        "post_task_to_consumer_waves",
        "post_wave_dep_count",
    )

    tasks: Mapping[Hashable, AsyncTask[Any]]
    """Every task by key, in declaration order."""
    dependencies: Mapping[Hashable, tuple[Hashable, ...]]
    """The declared direct dependencies of every task (repeats removed)."""
    pre_execute_graph: ExecutionGraph
    post_execute_graph: ExecutionGraph
    pre_task_names: tuple[Hashable, ...]
    """Tasks with a `pre_execute`."""
    execute_task_names: tuple[Hashable, ...]
    """Tasks with an `execute`."""
    post_task_names: tuple[Hashable, ...]
    """Tasks with a `post_execute`."""
    post_only_task_names: tuple[Hashable, ...]
    """Tasks with a `post_execute` and no `pre_execute`: cleanups that run when
    everything they depend on got through PRE."""
    topological_order: tuple[Hashable, ...]
    """Every task after all of its dependencies; ties keep declaration order."""
    max_pre_wave_num: int
    """Despite the name (kept from 0.7.2), the number of PRE waves."""
    max_post_wave_num: int
    """Despite the name (kept from 0.7.2), the number of POST waves."""
    pre_root_wave_id: int | None
    """The PRE wave that depends on nothing (there is at most one), or None."""
    post_root_wave_id: int | None
    """The POST wave that depends on nothing (there is at most one), or None."""
    wave_index_by_task: Mapping[Hashable, int]
    """The PRE wave number of each task with a `pre_execute`."""
    task_to_consumer_waves: Mapping[Hashable, tuple[int, ...]]
    """For each task some PRE wave depends on, those waves' numbers. 0.7.2 released
    waves from this; here it only describes the plan (runs count edges)."""
    wave_dep_count: tuple[int, ...]
    """How many tasks each PRE wave depends on, by wave number."""
    post_wave_index_by_task: Mapping[Hashable, int]
    """The POST wave number of each task with a `post_execute`."""
    post_task_to_consumer_waves: Mapping[Hashable, tuple[int, ...]]
    """For each task some POST wave depends on, those waves' numbers (a description
    of the plan, as `task_to_consumer_waves` is)."""
    post_wave_dep_count: tuple[int, ...]
    """How many tasks each POST wave depends on, by wave number."""

    def __init__(self, graph: TaskGraph) -> None:
        keys = graph.keys
        rank = _key_rank(keys, [bool(node.functions) for node in graph.nodes])

        def names(indices: Iterable[int]) -> tuple[Any, ...]:
            return tuple(keys[i] for i in sorted(indices, key=rank))

        self.tasks = MappingProxyType({node.key: node.task for node in graph.nodes})
        self.dependencies = MappingProxyType(
            {keys[i]: tuple(keys[d] for d in deps) for i, deps in enumerate(graph.dependencies)}
        )
        self.pre_execute_graph = _pre_waves(graph, names)
        self.post_execute_graph = _post_waves(graph, names)
        self.total_tasks = len(graph)
        self.tasks_with_pre_execute = sum(graph.has_pre)
        self.tasks_with_execute = len(graph.executes)
        self.tasks_with_post_execute = sum(graph.has_post)
        self.nodes = sum(1 for node in graph.nodes if not node.functions)
        every = range(len(graph))
        self.pre_task_names = names(i for i in every if graph.has_pre[i])
        self.execute_task_names = names(graph.executes)
        self.post_task_names = names(i for i in every if graph.has_post[i])
        self.post_only_task_names = names(
            i for i in every if graph.has_post[i] and not graph.has_pre[i]
        )
        self.topological_order = tuple(keys[i] for i in graph.topological_order)
        pre, post = self.pre_execute_graph.waves, self.post_execute_graph.waves
        self.max_pre_wave_num = len(pre)
        self.max_post_wave_num = len(post)
        self.pre_root_wave_id = _root(pre)
        self.post_root_wave_id = _root(post)
        self.wave_index_by_task = _index_by_task(pre)
        self.task_to_consumer_waves = _consumer_waves(pre)
        self.wave_dep_count = tuple(len(wave.depends_on_tasks) for wave in pre)
        self.post_wave_index_by_task = _index_by_task(post)
        self.post_task_to_consumer_waves = _consumer_waves(post)
        self.post_wave_dep_count = tuple(len(wave.depends_on_tasks) for wave in post)

    def pre_wave_containing(self, key: Hashable) -> ExecutionWave | None:
        """The PRE wave of task `key`, or None if it has no `pre_execute`."""
        wave_num = self.wave_index_by_task.get(key)
        return None if wave_num is None else self.pre_execute_graph.waves[wave_num]

    def post_wave_containing(self, key: Hashable) -> ExecutionWave | None:
        """The POST wave of task `key`, or None if it has no `post_execute`."""
        wave_num = self.post_wave_index_by_task.get(key)
        return None if wave_num is None else self.post_execute_graph.waves[wave_num]

    def __repr__(self) -> str:
        return (
            f"<TaskAnalysis {count_noun(self.total_tasks, 'task')}, "
            f"{count_noun(self.max_pre_wave_num, 'pre wave')}, "
            f"{count_noun(self.max_post_wave_num, 'post wave')}>"
        )


class TaskAnalyzer(KeyDefault, Generic[Ctx, K]):
    """Collects tasks and dependencies and analyses them, without building a processor.

    Generic in the context type and the key type, in 0.7.2's order, so
    `TaskAnalyzer[Ctx, str]()` works as it did there (and `TaskAnalyzer[Ctx]()`,
    key Hashable); the parameters only inform type checkers.
    """

    __slots__ = ("_declared",)

    def __init__(self) -> None:
        self._declared = Declared()

    @classmethod
    def _sharing(cls, declared: Declared) -> TaskAnalyzer[Ctx, K]:
        """An analyzer over a builder's own declarations: tasks added to either reach both."""
        analyzer = cls()
        analyzer._declared = declared
        return analyzer

    @property
    def tasks(self) -> Mapping[Hashable, AsyncTask[Any]]:
        """The tasks added so far, by key (a snapshot)."""
        return MappingProxyType({task.name: task for task, _ in self._declared.declarations})

    @property
    def dependencies(self) -> Mapping[Hashable, tuple[Hashable, ...]]:
        """The dependencies declared so far, by task key (a snapshot)."""
        return MappingProxyType({task.name: deps for task, deps in self._declared.declarations})

    def add_task(
        self, task: AsyncTask[Any], depends_on: Iterable[Hashable] = ()
    ) -> TaskAnalyzer[Ctx, K]:
        """Add `task`, to start after the tasks named in `depends_on`."""
        self._declared.add(task, depends_on)
        return self

    def analyze(self) -> TaskAnalysis:
        """Validate the graph (missing dependencies, cycles) and return its plan."""
        return TaskAnalysis(compile_graph(self._declared.declarations))


Names = Callable[[Iterable[int]], tuple[Any, ...]]


def _key_rank(keys: Sequence[Hashable], ranked: Sequence[bool]) -> Callable[[int], int]:
    """The position of each node in sorted-key order, if the `ranked` nodes' keys compare.

    Only tasks with a phase are ranked (join nodes, such as the level adapter's
    barriers, never appear in a list of names); without an order among the keys,
    declaration order.
    """
    members = [i for i, flag in enumerate(ranked) if flag]
    try:
        in_order = sorted(members, key=keys.__getitem__)  # type: ignore[arg-type]
    except TypeError:
        return int
    position = dict(zip(in_order, range(len(in_order)), strict=True))
    return lambda node: position.get(node, node)


def _nearest(
    member: Sequence[bool], upstream: Sequence[Sequence[int]], order: Sequence[int]
) -> list[frozenset[int]]:
    """For every node, the nearest `member` nodes upstream of it (looking through others).

    `order` visits every node after all of its `upstream` nodes. A node that
    only looks through one non-member shares that node's set object rather
    than copying it: so a join in front of a wide level costs its width once,
    not once per task behind it.
    """
    nearest: list[frozenset[int]] = [frozenset()] * len(member)
    for node in order:
        ups = upstream[node]
        if len(ups) == 1 and not member[ups[0]]:
            nearest[node] = nearest[ups[0]]
            continue
        found: set[int] = set()
        for up in ups:
            if member[up]:
                found.add(up)
            else:
                found.update(nearest[up])
        nearest[node] = frozenset(found)
    return nearest


def _pre_waves(graph: TaskGraph, names: Names) -> ExecutionGraph:
    """Group PRE tasks by effective dependencies, numbering groups as 0.7.2 did."""
    order = graph.topological_order
    nearest = _nearest(graph.has_pre, graph.dependencies, order)
    wave_of_group: dict[frozenset[int], int] = {}
    wave_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    free = _FreeNumbers()
    for node in order:
        if not graph.has_pre[node]:
            continue
        group = nearest[node]
        wave_num = wave_of_group.get(group)
        if wave_num is None:
            lowest = 1 + max((wave_of[dep] for dep in group), default=-1)
            wave_num = wave_of_group[group] = free.take(lowest)
            members[wave_num] = []
        wave_of[node] = wave_num
        members[wave_num].append(node)
    deps_of = {wave_num: group for group, wave_num in wave_of_group.items()}
    return ExecutionGraph(
        waves=tuple(
            ExecutionWave(wave_num, names(members[wave_num]), names(deps_of[wave_num]))
            for wave_num in sorted(members)
        )
    )


def _post_waves(graph: TaskGraph, names: Names) -> ExecutionGraph:
    """Group POST tasks by their distance from the last cleanups."""
    order = graph.topological_order[::-1]
    nearest = _nearest(graph.has_post, graph.dependents, order)
    height: dict[int, int] = {}
    members: list[list[int]] = []
    waits_for: list[set[int]] = []
    for node in order:
        if not graph.has_post[node]:
            continue
        dependents = nearest[node]
        wave_num = height[node] = 1 + max((height[dep] for dep in dependents), default=-1)
        if wave_num == len(members):
            members.append([])
            waits_for.append(set())
        members[wave_num].append(node)
        waits_for[wave_num].update(dependents)
    return ExecutionGraph(
        waves=tuple(
            ExecutionWave(wave_num, names(tasks), names(deps))
            for wave_num, (tasks, deps) in enumerate(zip(members, waits_for, strict=True))
        )
    )


class _FreeNumbers:
    """Hands out wave numbers: the lowest not yet taken at or above a floor.

    A "next free" forest with path halving, so a graph with many groups at
    one depth costs near-linear time rather than a scan per group.
    """

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[int, int] = {}  # a taken number -> a higher candidate

    def take(self, floor: int) -> int:
        number = floor
        while number in self._next:
            after = self._next[number]
            if after in self._next:
                self._next[number] = self._next[after]
            number = after
        self._next[number] = number + 1
        return number


def _root(waves: Sequence[ExecutionWave]) -> int | None:
    return next((wave.wave_num for wave in waves if not wave.depends_on_tasks), None)


def _index_by_task(waves: Sequence[ExecutionWave]) -> Mapping[Any, int]:
    return MappingProxyType({key: wave.wave_num for wave in waves for key in wave.tasks})


def _consumer_waves(waves: Sequence[ExecutionWave]) -> Mapping[Any, tuple[int, ...]]:
    consumers: dict[Any, list[int]] = {}
    for wave in waves:  # by wave number, so each list comes out sorted
        for key in wave.depends_on_tasks:
            consumers.setdefault(key, []).append(wave.wave_num)
    return MappingProxyType({key: tuple(nums) for key, nums in consumers.items()})
