"""Introspection of a task graph: the waves a run releases, as data.

A *wave* is a set of tasks with the same effective dependencies: for PRE,
the nearest tasks with a `pre_execute` they depend on (looking through tasks
without one); for POST, the nearest tasks with a `post_execute` that depend
on them. Runs do not need waves (the coordinator counts edges instead), so
they are computed here only when someone asks.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from msgspec import Struct

from sdax.declarations import AsyncTask
from sdax.errors import count_noun
from sdax.graph import TaskGraph, compile_graph, normalise_dependencies


class ExecutionWave(Struct, frozen=True):
    """Tasks released together once every task in `depends_on_tasks` is done."""

    wave_num: int
    tasks: tuple[Hashable, ...]
    depends_on_tasks: tuple[Hashable, ...]


class ExecutionGraph(Struct, frozen=True):
    """The waves of one phase, in an order where each wave depends only on earlier ones."""

    waves: tuple[ExecutionWave, ...]

    def wave_containing(self, key: Hashable) -> ExecutionWave | None:
        return next((wave for wave in self.waves if key in wave.tasks), None)


class TaskAnalysis:
    """The plan of a task graph: tasks, dependencies, waves and counts."""

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
        "_pre_wave_of",
        "_post_wave_of",
    )

    def __init__(self, graph: TaskGraph) -> None:
        keys = graph.keys
        self.tasks: Mapping[Hashable, AsyncTask[Any]] = MappingProxyType(
            {node.key: node.task for node in graph.nodes}
        )
        self.dependencies: Mapping[Hashable, tuple[Hashable, ...]] = MappingProxyType(
            {keys[i]: tuple(keys[d] for d in deps) for i, deps in enumerate(graph.dependencies)}
        )
        self.pre_execute_graph = _waves(
            keys, graph.has_pre, graph.dependencies, graph.topological_order
        )
        self.post_execute_graph = _waves(
            keys, graph.has_post, graph.dependents, graph.topological_order[::-1]
        )
        self.total_tasks = len(graph)
        self.tasks_with_pre_execute = sum(graph.has_pre)
        self.tasks_with_execute = len(graph.executes)
        self.tasks_with_post_execute = sum(graph.has_post)
        self.nodes = sum(1 for node in graph.nodes if not node.functions)
        self._pre_wave_of = _index_waves(self.pre_execute_graph)
        self._post_wave_of = _index_waves(self.post_execute_graph)

    def pre_wave_containing(self, key: Hashable) -> ExecutionWave | None:
        """The PRE wave of task `key`, or None if it has no `pre_execute`."""
        return self._pre_wave_of.get(key)

    def post_wave_containing(self, key: Hashable) -> ExecutionWave | None:
        """The POST wave of task `key`, or None if it has no `post_execute`."""
        return self._post_wave_of.get(key)

    def __repr__(self) -> str:
        return (
            f"<TaskAnalysis {count_noun(self.total_tasks, 'task')}, "
            f"{count_noun(len(self.pre_execute_graph.waves), 'pre wave')}, "
            f"{count_noun(len(self.post_execute_graph.waves), 'post wave')}>"
        )


K = TypeVar("K", bound=Hashable)
Ctx = TypeVar("Ctx")


class TaskAnalyzer(Generic[K, Ctx]):
    """Collects tasks and dependencies and analyses them, without building a processor.

    Generic in the key type and the context type, so `TaskAnalyzer[str, Ctx]()`
    works as it did in sdax 0.7.2; the parameters only inform type checkers.
    """

    def __init__(self) -> None:
        self._declarations: list[tuple[AsyncTask[Any], tuple[Hashable, ...]]] = []

    def add_task(
        self, task: AsyncTask[Any], depends_on: Iterable[Hashable] = ()
    ) -> TaskAnalyzer[K, Ctx]:
        self._declarations.append((task, normalise_dependencies(task.name, depends_on)))
        return self

    def analyze(self) -> TaskAnalysis:
        return TaskAnalysis(compile_graph(self._declarations))


def _waves(
    keys: tuple[Hashable, ...],
    member: tuple[bool, ...],
    upstream: tuple[tuple[int, ...], ...],
    order: Sequence[int],
) -> ExecutionGraph:
    """Group `member` nodes by their nearest member nodes upstream.

    `order` visits every node after all of its `upstream` nodes. A node that
    only looks through one non-member shares that node's set object rather
    than copying it, and a wave's depth is computed once per distinct set:
    so a join in front of a wide level costs its width once, not once per
    task behind it.
    """
    empty: frozenset[int] = frozenset()
    nearest: list[frozenset[int]] = [empty] * len(keys)
    depth = [0] * len(keys)
    groups: dict[frozenset[int], list[int]] = {}
    group_depth: dict[frozenset[int], int] = {}
    for node in order:
        ups = upstream[node]
        if len(ups) == 1 and not member[ups[0]]:
            nearest[node] = nearest[ups[0]]
        else:
            found: set[int] = set()
            for up in ups:
                if member[up]:
                    found.add(up)
                else:
                    found.update(nearest[up])
            nearest[node] = frozenset(found)
        if member[node]:
            deps = nearest[node]
            if deps not in group_depth:
                group_depth[deps] = 1 + max((depth[up] for up in deps), default=-1)
                groups[deps] = []
            depth[node] = group_depth[deps]
            groups[deps].append(node)
    position = {node: i for i, node in enumerate(order)}
    ranked = sorted(groups.items(), key=lambda item: (depth[item[1][0]], position[item[1][0]]))
    return ExecutionGraph(
        waves=tuple(
            ExecutionWave(
                wave_num,
                tuple(keys[node] for node in sorted(members)),
                tuple(keys[node] for node in sorted(deps)),
            )
            for wave_num, (deps, members) in enumerate(ranked)
        )
    )


def _index_waves(graph: ExecutionGraph) -> dict[Hashable, ExecutionWave]:
    return {key: wave for wave in graph.waves for key in wave.tasks}
