"""Builders: the fluent way to declare a graph (or levels) and get a processor.

A builder checks each task as it is added and the whole graph in `build()`;
the processor it returns is immutable and later changes to the builder never
reach it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from msgspec import Struct

from sdax._generic import K, KeyDefault
from sdax.declarations import AsyncTask
from sdax.graph import Declaration, compile_graph, normalise_dependencies
from sdax.observers import RunObserver

if TYPE_CHECKING:
    from sdax.analysis import TaskAnalyzer
    from sdax.processor import AsyncDagTaskProcessor

T = TypeVar("T")


class LevelBarrier(Struct, frozen=True):
    """Key of the join node the level adapter puts above each non-empty level.

    A private type, so it can never collide with a user's key.
    """

    level: int

    def __repr__(self) -> str:
        return f"<level {self.level} barrier>"


LevelKey = Hashable
"""A key in a level-built graph: the user's task names plus `LevelBarrier` join nodes."""


class AsyncDagTaskProcessorBuilder(KeyDefault, Generic[T, K]):
    """Declares tasks and their dependencies, then builds a processor.

    Generic in the context and, as in 0.7.2, the key type (defaults to Hashable).
    """

    def __init__(self) -> None:
        self._declared = Declared()

    def add_task(self, task: AsyncTask[T, K], depends_on: Iterable[Hashable] = ()) -> Self:
        """Add `task`, to start after the tasks named in `depends_on`."""
        self._declared.add(task, depends_on)
        return self

    @property
    def taskAnalyzer(self) -> TaskAnalyzer[T, K]:
        """0.7.2's analyzer of this builder: shares its tasks (adding to either adds to both)."""
        from sdax.analysis import TaskAnalyzer

        return TaskAnalyzer._sharing(self._declared)

    def build(
        self, *, max_concurrency: int | None = None, observers: Sequence[RunObserver] = ()
    ) -> AsyncDagTaskProcessor[T, K]:
        """Validate the graph and return an immutable, reusable processor.

        `max_concurrency` caps how many pre_execute and execute functions of
        one run may run at once (cleanup is never held back); `observers`
        hear every run of the processor.
        """
        from sdax.processor import AsyncDagTaskProcessor

        graph = compile_graph(self._declared.declarations, max_concurrency)
        return AsyncDagTaskProcessor(graph, observers)


class AsyncDagLevelAdapterBuilder(Generic[T]):
    """Declares tasks by level: each level starts after the nearest lower non-empty one.

    Builds the same graph processor: a join node above each level makes every
    task of the next level depend on every task of this one.
    """

    def __init__(self) -> None:
        self._levels: dict[int, list[AsyncTask[T]]] = {}
        self._declared = Declared()  # its names only: dependencies come from the levels

    def add_task(self, task: AsyncTask[T], level: int) -> Self:
        self._declared.check_new(task)
        if isinstance(level, bool) or not isinstance(level, int):
            raise TypeError(f"task {task.name!r}: level must be an int, got {level!r}")
        self._declared.names.add(task.name)
        self._levels.setdefault(level, []).append(task)
        return self

    def build(
        self, *, max_concurrency: int | None = None, observers: Sequence[RunObserver] = ()
    ) -> AsyncDagTaskProcessor[T]:
        """Validate and return an immutable processor; options as for the DAG builder."""
        from sdax.processor import AsyncDagTaskProcessor

        declarations: list[Declaration] = []
        below: tuple[Hashable, ...] = ()
        for level in sorted(self._levels):
            tasks = self._levels[level]
            declarations.extend((task, below) for task in tasks)
            barrier = AsyncTask[Any](LevelBarrier(level))
            declarations.append((barrier, tuple(task.name for task in tasks)))
            below = (barrier.name,)
        if declarations:
            declarations.pop()  # nothing waits above the top level
        return AsyncDagTaskProcessor(compile_graph(declarations, max_concurrency), observers)


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
