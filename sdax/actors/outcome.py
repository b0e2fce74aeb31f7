"""What a run has come to, and so what it raises.

The coordinator records here every failure, in the order it happened, and
whatever stopped the run early; `error()` then says what the run raises,
by priority: the caller's cancellation, a KeyboardInterrupt-style error a
task raised, the run's deadline, the failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from sdax.declarations import PhaseId
from sdax.errors import RunTimeoutError, SdaxExecutionError, TaskFailure, count_noun
from sdax.observers import RunOutcome


class Outcome:
    """The record of one run's failures and interruptions."""

    __slots__ = ("failures", "fatal", "cancelled", "timeout", "timed_out", "over", "_final")

    def __init__(self, timeout: float | None) -> None:
        self.failures: list[TaskFailure] = []  # ordinary failures, in the order they happened
        self.fatal: BaseException | None = None  # first KeyboardInterrupt-style error
        self.cancelled: asyncio.CancelledError | None = None  # first cancellation of the caller
        self.timeout = timeout
        self.timed_out = False  # the deadline stopped the run while it was going forward
        self._final: BaseException | None = None  # result(), fixed once the run is over
        self.over = False

    def failed(self, key: Hashable, phase: PhaseId, error: BaseException) -> bool:
        """Record what a phase raised; True if it is fatal (not an `Exception`)."""
        if isinstance(error, Exception):
            self.failures.append(TaskFailure(key, phase.value, error))
            return False
        if self.fatal is None:
            self.fatal = error
        return True

    def close(self) -> None:
        """The run is over: from now on result() and error() return the same objects."""
        self._final = self.result()
        self.over = True

    def result(self) -> BaseException | None:
        """RunTimeoutError if the deadline stopped the run, else the failures, if any."""
        if self.over:
            return self._final
        group = self._failure_group() if self.failures else None
        return RunTimeoutError(self.timeout, group) if self.timed_out else group

    def error(self) -> BaseException | None:
        """What the run raises once it is over, or None."""
        if self.cancelled is not None:
            result = self.result()
            if result is not None:
                # Keep the failures reachable; the cancellation is what propagates.
                self.cancelled.__context__ = result
            return self.cancelled
        return self.fatal or self.result()

    def kind(self) -> RunOutcome:
        if self.cancelled is not None:
            return RunOutcome.CANCELLED
        if self.fatal is not None:
            return RunOutcome.INTERRUPTED
        if self.timed_out:
            return RunOutcome.TIMED_OUT
        return RunOutcome.FAILED if self.failures else RunOutcome.OK

    def _failure_group(self) -> SdaxExecutionError:
        failed_tasks = {failure.key for failure in self.failures}
        return SdaxExecutionError(
            f"{count_noun(len(failed_tasks), 'task')} failed",
            [failure.error for failure in self.failures],
            self.failures,
        )
