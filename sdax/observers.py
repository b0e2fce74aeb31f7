"""Observers: hear what a run does, as it does it.

Give observers to a builder (`build(observers=[...])`, every run) or to one
run (`process_tasks(ctx, observers=[...])`). They are called synchronously
on the event loop by the run's coordinator, so keep them quick; an observer
that raises is logged (logger "sdax.observers") and the run goes on.

Timestamps are `time.perf_counter()` values: monotonic, comparable within
one process. Phase end times are taken by the task actor the moment the
phase function finished, not when the coordinator got round to it.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

from msgspec import Struct

from sdax.vocabulary import CancelReason, PhaseId

# Re-exported: observers read them in every PhaseFinished and RunFinished.
from sdax.vocabulary import PhaseOutcome as PhaseOutcome
from sdax.vocabulary import RunOutcome as RunOutcome

_log = logging.getLogger("sdax.observers")


# Every event carries the run's `tag`: what the caller passed as
# `process_tasks(ctx, tag=...)` (a request or job id, say), or None.


class RunStarted(Struct, frozen=True, kw_only=True):
    run_id: int
    at: float
    # Every task, with the phases it declares, in declaration order.
    tasks: tuple[tuple[Hashable, tuple[PhaseId, ...]], ...]
    tag: str | None = None


class PhaseStarted(Struct, frozen=True, kw_only=True):
    run_id: int
    task: Hashable
    phase: PhaseId
    at: float
    tag: str | None = None


class PhaseRetried(Struct, frozen=True, kw_only=True):
    """Attempt `attempt` (1-based) failed with `error`; the next one starts after `delay` s."""

    run_id: int
    task: Hashable
    phase: PhaseId
    attempt: int
    error: BaseException
    delay: float
    at: float
    tag: str | None = None


class PhaseFinished(Struct, frozen=True, kw_only=True):
    """A started phase ended; or, with outcome ABANDONED and 0 attempts, a cleanup was skipped.

    `duration` is seconds from the phase's start to its end (0.0 if it never started).
    """

    run_id: int
    task: Hashable
    phase: PhaseId
    outcome: PhaseOutcome
    attempts: int  # attempts begun; a retry cut short in its backoff never began
    at: float
    duration: float = 0.0
    error: BaseException | None = None
    cancel_reason: CancelReason | None = None  # why sdax cancelled it, for CANCELLED
    tag: str | None = None


class RunFinished(Struct, frozen=True, kw_only=True):
    run_id: int
    outcome: RunOutcome
    at: float
    error: BaseException | None = None  # what the run raises, if anything
    tag: str | None = None


class RunObserver:
    """Base class for observers: override the callbacks you need."""

    def run_started(self, event: RunStarted) -> None:
        """The run's first phase is about to start."""

    def phase_started(self, event: PhaseStarted) -> None:
        """A phase function started (after any limits were granted)."""

    def phase_retried(self, event: PhaseRetried) -> None:
        """An attempt failed and will be retried."""

    def phase_finished(self, event: PhaseFinished) -> None:
        """A started phase ended, whatever the outcome (or the budget skipped a cleanup)."""

    def run_finished(self, event: RunFinished) -> None:
        """Cleanup is over; the run returns or raises `event.error` next."""


class LoggingObserver(RunObserver):
    """Logs a run through the standard `logging` module.

    Starts and successes at DEBUG, retries and cancellations at INFO,
    failures at WARNING, the run's end at INFO (WARNING unless it succeeded).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("sdax.run")

    def run_started(self, event: RunStarted) -> None:
        self.logger.info("run %d started: %d tasks", event.run_id, len(event.tasks))

    def phase_started(self, event: PhaseStarted) -> None:
        self.logger.debug("run %d: %r %s started", event.run_id, event.task, event.phase)

    def phase_retried(self, event: PhaseRetried) -> None:
        self.logger.info(
            "run %d: %r %s attempt %d failed (%r); retrying in %.3f s",
            event.run_id, event.task, event.phase, event.attempt, event.error, event.delay,
        )  # fmt: skip

    def phase_finished(self, event: PhaseFinished) -> None:
        level = {
            PhaseOutcome.OK: logging.DEBUG,
            PhaseOutcome.CANCELLED: logging.INFO,
        }.get(event.outcome, logging.WARNING)
        reason = event.cancel_reason
        detail = repr(event.error) if event.error is not None else reason and reason.description
        self.logger.log(
            level, "run %d: %r %s %s after %d attempt(s)%s",
            event.run_id, event.task, event.phase, event.outcome.value, event.attempts,
            f": {detail}" if detail else "",
        )  # fmt: skip

    def run_finished(self, event: RunFinished) -> None:
        level = logging.INFO if event.outcome is RunOutcome.OK else logging.WARNING
        self.logger.log(level, "run %d finished: %s", event.run_id, event.outcome.value)


class Observers:
    """Fans each notification out to several observers, isolating their failures."""

    __slots__ = ("_observers",)

    def __init__(self, observers: Sequence[RunObserver]) -> None:
        self._observers = tuple(observers)

    def notify(self, event: Notification) -> None:
        callback_name = _CALLBACKS[type(event)]
        for observer in self._observers:
            try:
                getattr(observer, callback_name)(event)
            except Exception:
                # An observer must never break the run it watches.
                _log.exception("observer %r failed in %s; the run goes on", observer, callback_name)


Notification = RunStarted | PhaseStarted | PhaseRetried | PhaseFinished | RunFinished

_CALLBACKS: dict[type[Struct], str] = {
    RunStarted: "run_started",
    PhaseStarted: "phase_started",
    PhaseRetried: "phase_retried",
    PhaseFinished: "phase_finished",
    RunFinished: "run_finished",
}
