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
from sdax.actors.outcome import Outcome
from sdax.declarations import PhaseId
from sdax.graph import TaskGraph
from sdax.observers import (
    Observers,
    PhaseFinished,
    PhaseOutcome,
    PhaseRetried,
    PhaseStarted,
    RunFinished,
    RunObserver,
    RunStarted,
)

_run_ids = itertools.count(1)


class RunWatch:
    """Turns one run's events into observer notifications."""

    __slots__ = ("_observers", "_graph", "_run_id")

    def __init__(self, observers: Sequence[RunObserver], graph: TaskGraph) -> None:
        self._observers = Observers(observers)
        self._graph = graph
        self._run_id = next(_run_ids)

    def run_started(self) -> None:
        plan = self._graph.phase_plan()
        self._observers.notify(RunStarted(run_id=self._run_id, at=time.perf_counter(), tasks=plan))

    def phases_started(self, phase: PhaseId, nodes: Sequence[int]) -> None:
        at, keys = time.perf_counter(), self._graph.keys
        for node in nodes:
            started = PhaseStarted(run_id=self._run_id, task=keys[node], phase=phase, at=at)
            self._observers.notify(started)

    def phase_retried(self, event: PhaseRetrying) -> None:
        retried = PhaseRetried(
            run_id=self._run_id, task=self._graph.keys[event.task], phase=event.phase,
            attempt=event.attempt, error=event.error, delay=event.delay, at=time.perf_counter(),
        )  # fmt: skip
        self._observers.notify(retried)

    def phase_ended(self, event: PhaseSucceeded | PhaseFailed | PhaseCancelled) -> None:
        error, reason, outcome = None, None, PhaseOutcome.OK
        if isinstance(event, PhaseFailed):
            error = event.error
            timed_out = isinstance(error, TimeoutError)
            outcome = PhaseOutcome.TIMED_OUT if timed_out else PhaseOutcome.FAILED
        elif isinstance(event, PhaseCancelled):
            outcome, reason = PhaseOutcome.CANCELLED, event.reason.value
        finished = PhaseFinished(
            run_id=self._run_id, task=self._graph.keys[event.task], phase=event.phase,
            outcome=outcome, attempts=event.attempts,
            at=event.at, error=error, cancel_reason=reason,
        )  # fmt: skip
        self._observers.notify(finished)

    def run_finished(self, outcome: Outcome) -> None:
        finished = RunFinished(
            run_id=self._run_id, outcome=outcome.kind(), at=time.perf_counter(),
            error=outcome.error(),
        )  # fmt: skip
        self._observers.notify(finished)
