"""Processors and the phase runner: the public face of a run.

Thin by design: a processor holds only its compiled graph, and every run
gets a fresh coordinator (sdax.actors.coordinator) that owns all of that
run's state. Concurrent runs share nothing mutable.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from sdax._generic import K, KeyDefault
from sdax.actors.coordinator import DEFAULT_OPTIONS, Coordinator, RunOptions
from sdax.analysis import TaskAnalysis
from sdax.declarations import PhaseId
from sdax.errors import RunTimeoutError, SdaxExecutionError, count_noun
from sdax.graph import TaskGraph
from sdax.inflight import RunsInFlight
from sdax.observers import RunObserver
from sdax.report import ReportRecorder, RunReport

if TYPE_CHECKING:
    from sdax.builders import AsyncDagLevelAdapterBuilder, AsyncDagTaskProcessorBuilder

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
        self._observers = tuple(_checked_observers(observers, "build(observers=...)"))
        self._plain_options = (
            RunOptions(observers=self._observers) if observers else DEFAULT_OPTIONS
        )
        self._runs = RunsInFlight()  # its only mutable part: counts, never a run's state

    @classmethod
    def builder(cls) -> AsyncDagLevelAdapterBuilder[T]:
        """A builder that declares tasks by level (the "elevator" model)."""
        from sdax.builders import AsyncDagLevelAdapterBuilder

        return AsyncDagLevelAdapterBuilder()

    @classmethod
    def elevator_builder(cls) -> AsyncDagLevelAdapterBuilder[T]:
        """Same as `AsyncTaskProcessor.builder()`."""
        from sdax.builders import AsyncDagLevelAdapterBuilder

        return AsyncDagLevelAdapterBuilder()

    @classmethod
    def graph_builder(cls) -> AsyncDagTaskProcessorBuilder[T, K]:
        """A builder that declares tasks with explicit dependencies."""
        from sdax.builders import AsyncDagTaskProcessorBuilder

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
            _check_seconds("timeout", timeout)
        return await self._runs.drain(timeout)

    @property
    def analysis(self) -> TaskAnalysis:
        """The plan: waves, dependencies and counts (computed on first use)."""
        if self._analysis is None:
            self._analysis = TaskAnalysis(self._graph)
        return self._analysis

    @overload
    async def process_tasks(
        self,
        ctx: T,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        cleanup_timeout: float | None = None,
        cleanup_budget: float | None = None,
        rng: random.Random | None = None,
        observers: Sequence[RunObserver] = (),
        tag: str | None = None,
        report: Literal[False] = False,
    ) -> None: ...

    @overload
    async def process_tasks(
        self,
        ctx: T,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        cleanup_timeout: float | None = None,
        cleanup_budget: float | None = None,
        rng: random.Random | None = None,
        observers: Sequence[RunObserver] = (),
        tag: str | None = None,
        report: Literal[True],
    ) -> RunReport: ...

    async def process_tasks(
        self,
        ctx: T,
        *,
        # Not asyncio.timeout around the call: a run deadline must stop forward
        # work and still run every cleanup before it raises.
        timeout: float | None = None,  # noqa: ASYNC109
        cleanup_timeout: float | None = None,
        cleanup_budget: float | None = None,
        rng: random.Random | None = None,
        observers: Sequence[RunObserver] = (),
        tag: str | None = None,
        report: bool = False,
    ) -> RunReport | None:
        """Run `ctx` through every phase; raise after cleanup if anything went wrong.

        Raises, by priority: the caller's CancelledError (after cleanup, never
        swallowed); a KeyboardInterrupt-style BaseException a task raised,
        unchanged; RunTimeoutError if `timeout` seconds passed before PRE and
        EXECUTE were done (running work is cancelled, cleanup runs); else
        SdaxExecutionError with every failure.

        Cleanup is shielded: once the run is cancelled or reaches POST, no
        cancellation of the caller stops a post_execute or keeps one from
        starting. `cleanup_timeout` bounds each post_execute (a post cut off
        is a failure; the others still run); `cleanup_budget` bounds the
        whole cleanup stage, and each post it cancels or skips is reported
        as a CleanupAbandonedError. `rng` draws retry jitter. `observers`
        hear this run (after the processor's own); every event they hear and
        the report carry `tag`. With `report=True` the run returns a
        RunReport, and an SdaxExecutionError or RunTimeoutError it raises
        carries it as `.report`.
        """
        if (
            timeout is None
            and cleanup_timeout is None
            and cleanup_budget is None
            and rng is None
            and tag is None
            and not observers
            and not report
        ):  # the common call: options that are the same for every such run
            recorder, options = None, self._plain_options
        else:
            recorder = ReportRecorder() if report else None
            options = self._run_options(
                timeout, cleanup_timeout, cleanup_budget, rng, observers, tag, recorder
            )
        coordinator = Coordinator(self._graph, ctx, options)
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
        self,
        ctx: T,
        *,
        timeout: float | None = None,
        cleanup_timeout: float | None = None,
        cleanup_budget: float | None = None,
        rng: random.Random | None = None,
        observers: Sequence[RunObserver] = (),
        tag: str | None = None,
        report: bool = False,
    ) -> AsyncPhaseRunner[T, K]:
        """An async context manager that runs `ctx` one phase at a time.

        Options as for `process_tasks`. `timeout` counts from the first
        `run_next()`, time between phases included. With `report=True`,
        `runner.report()` shows the run so far.
        """
        recorder = ReportRecorder() if report else None
        options = self._run_options(
            timeout, cleanup_timeout, cleanup_budget, rng, observers, tag, recorder
        )
        return AsyncPhaseRunner(self._graph, ctx, options, recorder, self._runs, self)

    def _run_options(
        self,
        timeout: float | None,
        cleanup_timeout: float | None,
        cleanup_budget: float | None,
        rng: random.Random | None,
        observers: Sequence[RunObserver],
        tag: str | None,
        recorder: ReportRecorder | None,
    ) -> RunOptions:
        """Check a run's options where they were passed, before anything runs."""
        for name, seconds in (
            ("timeout", timeout),
            ("cleanup_timeout", cleanup_timeout),
            ("cleanup_budget", cleanup_budget),
        ):
            if seconds is not None:
                _check_seconds(name, seconds)
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(
                f"rng must be a random.Random (e.g. random.Random(seed)) or None, got {rng!r}"
            )
        if tag is not None and not isinstance(tag, str):
            raise TypeError(f"tag must be a str or None, got {type(tag).__name__}: {tag!r}")
        if observers:
            observers = _checked_observers(observers, "observers=")
        watching = (*self._observers, *observers, *((recorder,) if recorder else ()))
        return RunOptions(
            timeout=timeout,
            cleanup_timeout=cleanup_timeout,
            cleanup_budget=cleanup_budget,
            rng=rng,
            observers=watching,
            tag=tag,
        )

    def to_mermaid(self) -> str:
        """The plan as a Mermaid flowchart: tasks, their phases, dependencies, waves."""
        from sdax.diagrams import to_mermaid

        return to_mermaid(self._graph, self.analysis)

    def to_dot(self) -> str:
        """The plan as a Graphviz DOT digraph (same content as `to_mermaid`)."""
        from sdax.diagrams import to_dot

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
        from sdax.builders import AsyncDagTaskProcessorBuilder

        return AsyncDagTaskProcessorBuilder()


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
        options: RunOptions,
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
        interruption = await self._finish()
        if interruption is not None and (exc is None or isinstance(exc, Exception)):
            raise interruption
        if exc is None:
            self._run().raise_result()

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
        interruption = await coordinator.run_next_phase()
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
        return bool(self._run().failures)

    def failures(self) -> list[Exception]:
        """Every failure so far, as raised, in the order they happened."""
        return self._run().failures

    def raise_failures(self) -> None:
        """Raise SdaxExecutionError if anything has failed so far."""
        self._run().raise_failures()

    def report(self) -> RunReport | None:
        """The run so far, if opened with `report=True` (None before the first phase)."""
        if self._recorder is None:
            raise RuntimeError("open the runner with report=True to get a report")
        return self._recorder.report

    async def aclose(self) -> None:
        """Finish what consistency requires (see the class docstring) and close."""
        interruption = await self._finish()
        if interruption is not None:
            raise interruption

    async def _finish(self) -> BaseException | None:
        if self._closed:
            return None
        self._closed = True
        coordinator = self._run()
        try:
            if coordinator.next_phase is PhaseId.PRE_EXEC:
                coordinator.close_unstarted()
                return None
            coordinator.skip_execute()
            interruption = None
            while coordinator.next_phase is not None:
                interruption = await coordinator.run_next_phase() or interruption
            return interruption
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


def _check_seconds(name: str, seconds: object) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds or None, got {type(seconds).__name__}: {seconds!r}"
        )
    if not seconds >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, got {seconds!r}")


def _checked_observers(observers: object, where: str) -> Sequence[RunObserver]:
    """`observers` if it is a list or tuple of RunObservers, else a TypeError saying why."""
    if isinstance(observers, RunObserver):
        raise TypeError(
            f"{where} takes a list of observers, not a single {type(observers).__name__}: "
            f"wrap it in a list, [{type(observers).__name__}(...)]"
        )
    if not isinstance(observers, (list, tuple)):
        raise TypeError(f"{where} takes a list or tuple of RunObservers, got {observers!r}")
    for observer in observers:
        if not isinstance(observer, RunObserver):
            raise TypeError(
                f"{where}: {observer!r} is not a RunObserver; subclass sdax.RunObserver "
                "and override the callbacks you need"
            )
    return observers
