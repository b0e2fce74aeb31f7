"""What observers hear of one run, in their terms: keys, times and outcomes.

The coordinator speaks in node indices and messages; observers want task
keys, timestamps, attempt counts and outcomes. A RunWatch translates, and
exists only when someone observes the run, so an unobserved run pays nothing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from sdax.actors.messages import PhaseCancelled, PhaseFailed, PhaseRetrying, PhaseSucceeded
from sdax.errors import CleanupAbandonedError, run_outcome
from sdax.graph import TaskGraph
from sdax.observers import (
    Observers,
    PhaseFinished,
    PhaseRetried,
    PhaseStarted,
    RunFinished,
    RunObserver,
    RunStarted,
)
from sdax.vocabulary import PhaseId, PhaseOutcome

_run_ids = itertools.count(1)


class RunWatch:
    """Turns one run's events into observer notifications."""

    __slots__ = ("_observers", "_graph", "_run_id", "_tag", "_started_at")

    def __init__(self, observers: Sequence[RunObserver], graph: TaskGraph, tag: str | None) -> None:
        self._observers = Observers(observers)
        self._graph = graph
        self._run_id = next(_run_ids)
        self._tag = tag
        # When each task's running phase started: a task runs one phase at a time.
        self._started_at = [0.0] * len(graph)

    def run_started(self) -> None:
        plan = self._graph.phase_plan()
        started = RunStarted(run_id=self._run_id, at=time.perf_counter(), tasks=plan, tag=self._tag)
        self._observers.notify(started)

    def phases_started(self, phase: PhaseId, nodes: Sequence[int]) -> None:
        at, keys, started_at = time.perf_counter(), self._graph.keys, self._started_at
        for node in nodes:
            started_at[node] = at
            started = PhaseStarted(
                run_id=self._run_id, task=keys[node], phase=phase, at=at, tag=self._tag
            )
            self._observers.notify(started)

    def phase_retried(self, event: PhaseRetrying) -> None:
        retried = PhaseRetried(
            run_id=self._run_id, task=self._graph.keys[event.task], phase=event.phase,
            attempt=event.attempt, error=event.error, delay=event.delay, at=time.perf_counter(),
            tag=self._tag,
        )  # fmt: skip
        self._observers.notify(retried)

    def phase_ended(self, event: PhaseSucceeded | PhaseFailed | PhaseCancelled) -> None:
        error, reason, outcome = None, None, PhaseOutcome.OK
        if isinstance(event, PhaseFailed):
            error = event.error
            outcome = _failed_outcome(error)
        elif isinstance(event, PhaseCancelled):
            outcome, reason = PhaseOutcome.CANCELLED, event.reason
        finished = PhaseFinished(
            run_id=self._run_id, task=self._graph.keys[event.task], phase=event.phase,
            outcome=outcome, attempts=event.attempts, at=event.at,
            duration=event.at - self._started_at[event.task],
            error=error, cancel_reason=reason, tag=self._tag,
        )  # fmt: skip
        self._observers.notify(finished)

    def phase_abandoned(self, node: int, error: CleanupAbandonedError) -> None:
        """A cleanup the budget skipped before it started: it ends without having begun."""
        skipped = PhaseFinished(
            run_id=self._run_id, task=self._graph.keys[node], phase=PhaseId.POST_EXEC,
            outcome=PhaseOutcome.ABANDONED, attempts=0, at=time.perf_counter(),
            error=error, tag=self._tag,
        )  # fmt: skip
        self._observers.notify(skipped)

    def run_finished(self, raised: BaseException | None) -> None:
        """Cleanup is over; the run raises `raised` (None: it returns)."""
        finished = RunFinished(
            run_id=self._run_id, outcome=run_outcome(raised), at=time.perf_counter(),
            error=raised, tag=self._tag,
        )  # fmt: skip
        self._observers.notify(finished)


def _failed_outcome(error: BaseException) -> PhaseOutcome:
    if isinstance(error, CleanupAbandonedError):
        return PhaseOutcome.ABANDONED
    return PhaseOutcome.TIMED_OUT if isinstance(error, TimeoutError) else PhaseOutcome.FAILED
