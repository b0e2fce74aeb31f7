"""Builders, processors and the phase runner: the public face of declaring and running.

A builder checks each task as it is added and the whole graph in `build()`;
the processor it returns is immutable, and later changes to the builder
never reach it. A processor holds only its compiled graph, and every run
gets a fresh coordinator (sdax.actors.coordinator) that owns all of that
run's state: concurrent runs share nothing mutable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable, Sequence
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar, Unpack, overload

from sdax._generic import K, KeyDefault
from sdax.actors.coordinator import Coordinator
from sdax.analysis import TaskAnalysis, TaskAnalyzer
from sdax.declarations import AsyncTask
from sdax.diagrams import to_dot, to_mermaid
from sdax.errors import RunTimeoutError, SdaxExecutionError, count_noun
from sdax.graph import Declared, TaskGraph, compile_graph, level_declarations
from sdax.inflight import RunsInFlight
from sdax.observers import RunObserver
from sdax.report import ReportRecorder, RunReport
from sdax.run_options import (
    DEFAULT_OPTIONS,
    RunKeywords,
    check_seconds,
    checked_observers,
    run_options,
)
from sdax.vocabulary import PhaseId

T = TypeVar("T")


class AsyncTaskProcessor(KeyDefault, Generic[T, K]):
    """An immutable, reusable plan that runs contexts through a task graph.

    Get one from a builder: `AsyncTaskProcessor.builder()` declares by level,
    `AsyncDagTaskProcessor.builder()` (or `graph_builder()`) by dependency.
    Any number of runs may use one processor at once, each with its own
    context, on one event loop or on several in different threads.
    Generic in the context and, as in 0.7.2, the key type:
    `AsyncDagTaskProcessor[Ctx]` is `AsyncDagTaskProcessor[Ctx, Hashable]`.
    """

    __slots__ = ("_graph", "_analysis", "_observers", "_plain_options", "_runs")

    def __init__(self, graph: TaskGraph, observers: Sequence[RunObserver] = ()) -> None:
        self._graph = graph
        self._analysis: TaskAnalysis | None = None
        self._observers = checked_observers(observers, "build(observers=...)")
        self._plain_options = (
            RunKeywords(observers=self._observers) if observers else DEFAULT_OPTIONS
        )
        self._runs = RunsInFlight()  # its only mutable part: counts, never a run's state

    @classmethod
    def builder(cls) -> AsyncDagLevelAdapterBuilder[T]:
        """A builder that declares tasks by level (the "elevator" model)."""
        return AsyncDagLevelAdapterBuilder()

    @classmethod
    def elevator_builder(cls) -> AsyncDagLevelAdapterBuilder[T]:
        """Same as `AsyncTaskProcessor.builder()`."""
        return AsyncDagLevelAdapterBuilder()

    @classmethod
    def graph_builder(cls) -> AsyncDagTaskProcessorBuilder[T, K]:
        """A builder that declares tasks with explicit dependencies."""
        return AsyncDagTaskProcessorBuilder()

    @property
    def in_flight(self) -> int:
        """This processor's runs on the running loop that have started and not finished.

        A run counts from its start to the end of its cleanup (for `open()`,
        from entering the block to leaving it).
        """
        return self._runs.count(asyncio.get_running_loop())

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until `in_flight` is 0; True if it got there within `timeout` seconds.

        Starts nothing and cancels nothing: stop taking new work first (a
        server stops accepting, a worker stops polling), then drain, then
        close what the runs used.
        """
        if timeout is not None:
            check_seconds("timeout", timeout)
        return await self._runs.drain(timeout)

    @property
    def analysis(self) -> TaskAnalysis:
        """The plan: waves, dependencies and counts (computed on first use)."""
        if self._analysis is None:
            self._analysis = TaskAnalysis(self._graph)
        return self._analysis

    @overload
    async def process_tasks(
        self, ctx: T, *, report: Literal[False] = False, **options: Unpack[RunKeywords]
    ) -> None: ...

    @overload
    async def process_tasks(
        self, ctx: T, *, report: Literal[True], **options: Unpack[RunKeywords]
    ) -> RunReport: ...

    async def process_tasks(
        self, ctx: T, *, report: bool = False, **options: Unpack[RunKeywords]
    ) -> RunReport | None:
        """Run `ctx` through every phase; raise after cleanup if anything went wrong.

        Raises, by priority: the caller's CancelledError (after cleanup, never
        swallowed); a KeyboardInterrupt-style BaseException a task raised,
        unchanged; RunTimeoutError if `timeout` seconds passed before PRE and
        EXECUTE were done (running work is cancelled, cleanup runs); else
        SdaxExecutionError with every failure.

        Cleanup is shielded: once the run is cancelled or reaches POST, no
        cancellation of the caller stops a post_execute or keeps one from
        starting. The options are those of `RunKeywords`. With `report=True`
        the run returns a RunReport, and an SdaxExecutionError or
        RunTimeoutError it raises carries it as `.report`.
        """
        if not options and not report:  # the common call: the same options for every such run
            recorder, checked = None, self._plain_options
        else:
            recorder = ReportRecorder() if report else None
            checked = self._run_options(options, recorder, "process_tasks")
        coordinator = Coordinator(self._graph, ctx, checked)
        loop = asyncio.get_running_loop()
        self._runs.began(loop)
        try:
            await coordinator.run()
        except (SdaxExecutionError, RunTimeoutError) as error:
            if recorder is not None:
                error.report = recorder.report
            raise
        finally:
            self._runs.ended(loop)
        return None if recorder is None else recorder.report

    def open(
        self, ctx: T, *, report: bool = False, **options: Unpack[RunKeywords]
    ) -> AsyncPhaseRunner[T, K]:
        """An async context manager that runs `ctx` one phase at a time.

        Options as for `process_tasks`. `timeout` counts from the first
        `run_next()`, time between phases included. With `report=True`,
        `runner.report()` shows the run so far.
        """
        recorder = ReportRecorder() if report else None
        checked = self._run_options(options, recorder, "open")
        return AsyncPhaseRunner(self._graph, ctx, checked, recorder, self._runs, self)

    def _run_options(
        self, options: RunKeywords, recorder: ReportRecorder | None, where: str
    ) -> RunKeywords:
        last = () if recorder is None else (recorder,)
        return run_options(options, where, first=self._observers, last=last)

    def to_mermaid(self) -> str:
        """The plan as a Mermaid flowchart: tasks, their phases, dependencies, waves."""
        return to_mermaid(self._graph, self.analysis)

    def to_dot(self) -> str:
        """The plan as a Graphviz DOT digraph (same content as `to_mermaid`)."""
        return to_dot(self._graph, self.analysis)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {count_noun(len(self._graph), 'task')}>"


class AsyncDagTaskProcessor(AsyncTaskProcessor[T, K]):
    """The processor every builder returns."""

    __slots__ = ()

    @classmethod
    def builder(cls) -> AsyncDagTaskProcessorBuilder[T, K]:  # type: ignore[override]
        # The same name builds by dependency here and by level on the base
        # class: both are the 0.7.2 API, so the override changes the return type.
        return AsyncDagTaskProcessorBuilder()


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
        return TaskAnalyzer._sharing(self._declared)

    def build(
        self, *, max_concurrency: int | None = None, observers: Sequence[RunObserver] = ()
    ) -> AsyncDagTaskProcessor[T, K]:
        """Validate the graph and return an immutable, reusable processor.

        `max_concurrency` caps how many pre_execute and execute functions of
        one run may run at once (cleanup is never held back); `observers`
        hear every run of the processor.
        """
        graph = compile_graph(self._declared.declarations, max_concurrency)
        return AsyncDagTaskProcessor(graph, observers)


class AsyncDagLevelAdapterBuilder(Generic[T]):
    """Declares tasks by level: each level starts after the nearest lower non-empty one.

    Builds the same graph processor (see `sdax.graph.level_declarations`).
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
        graph = compile_graph(level_declarations(self._levels), max_concurrency)
        return AsyncDagTaskProcessor(graph, observers)


class AsyncPhaseRunner(KeyDefault, Generic[T, K]):
    """Runs one context phase by phase, for callers that act between phases.

    Leaving the `async with` block finishes what consistency requires:
    nothing if no phase ran; cleanup without EXECUTE if only PRE ran;
    otherwise the remaining phases. A normal exit then raises
    SdaxExecutionError if anything failed; an exit by exception lets that
    exception propagate, unless the cleanup itself was cancelled or hit a
    KeyboardInterrupt-style error, which then propagates instead.
    """

    __slots__ = (
        "_graph",
        "_ctx",
        "_options",
        "_recorder",
        "_runs",
        "_loop",
        "_coordinator",
        "_closed",
        "_processor",
    )

    def __init__(
        self,
        graph: TaskGraph,
        ctx: T,
        options: RunKeywords,
        recorder: ReportRecorder | None,
        runs: RunsInFlight,
        processor: AsyncTaskProcessor[T, Any],
    ) -> None:
        self._graph = graph
        self._ctx = ctx
        self._options = options
        self._recorder = recorder
        self._runs = runs  # the processor's runs in flight, which this one joins on entry
        self._loop: asyncio.AbstractEventLoop | None = None  # set while it is counted
        self._coordinator: Coordinator | None = None
        self._closed = False
        self._processor = processor

    @property
    def ctx(self) -> T:
        """The context this runner runs (0.7.2's attribute)."""
        return self._ctx

    @property
    def processor(self) -> AsyncTaskProcessor[T, Any]:
        """The processor that opened this runner (0.7.2's attribute)."""
        return self._processor

    async def __aenter__(self) -> AsyncPhaseRunner[T, K]:
        self._run()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._finish()
        error = self._run().outcome.raises_on_exit(exc)
        if error is not None:
            raise error

    async def run_next(self) -> bool:
        """Run the next phase; True while another phase remains.

        A cancellation of the caller (or a KeyboardInterrupt-style error from
        a task) during the phase is raised here once the phase has stopped.
        """
        if self._closed:
            raise RuntimeError("run_next() on a closed phase runner")
        coordinator = self._run()
        if coordinator.next_phase is None:
            return False
        await coordinator.run_next_phase()
        interruption = coordinator.outcome.hand_over()
        if interruption is not None:
            raise interruption
        return coordinator.next_phase is not None

    def next_phase_id(self) -> PhaseId | None:
        """The phase `run_next()` would run, or None."""
        return None if self._closed else self._run().next_phase

    def last_phase_id(self) -> PhaseId | None:
        """The phase that ran last, or None."""
        return self._run().last_phase

    def has_failures(self) -> bool:
        return bool(self._run().outcome.failures)

    def failures(self) -> list[Exception]:
        """Every failure so far, as raised, in the order they happened."""
        return [failure.error for failure in self._run().outcome.failures]

    def raise_failures(self) -> None:
        """Raise SdaxExecutionError if anything has failed so far."""
        group = self._run().outcome.failures_so_far()
        if group is not None:
            raise group

    def report(self) -> RunReport | None:
        """The run so far, if opened with `report=True` (None before the first phase)."""
        if self._recorder is None:
            raise RuntimeError("open the runner with report=True to get a report")
        return self._recorder.report

    async def aclose(self) -> None:
        """Finish what consistency requires (see the class docstring) and close."""
        await self._finish()
        interruption = self._run().outcome.hand_over()
        if interruption is not None:
            raise interruption

    async def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        coordinator = self._run()
        try:
            if coordinator.next_phase is PhaseId.PRE_EXEC:
                coordinator.close_unstarted()
                return
            coordinator.skip_execute()
            while coordinator.next_phase is not None:
                await coordinator.run_next_phase()
        finally:
            if self._loop is not None:
                self._runs.ended(self._loop)
                self._loop = None

    def _run(self) -> Coordinator:
        # Created on entry, when an event loop is running; not in __init__.
        if self._coordinator is None:
            self._coordinator = Coordinator(self._graph, self._ctx, self._options)
            self._loop = asyncio.get_running_loop()
            self._runs.began(self._loop)
        return self._coordinator
