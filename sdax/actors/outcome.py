"""What a run has come to, and so what it raises: the one place that decides.

The coordinator records what happens (`failed`, `caller_cancelled`,
`deadline_passed`) and closes the outcome once cleanup is over. Callers ask,
without side effects, `raises()`: by precedence, the caller's cancellation
(carrying the run's result as its `__context__`), a KeyboardInterrupt-style
error a task raised, RunTimeoutError for the deadline, SdaxExecutionError
for the failures; None if the run succeeded. The order is the one of
`asyncio.TaskGroup.__aexit__`: a cancellation of the awaiting task wins,
then an error that must stop the program, then the group of failures.

A phase-by-phase caller (`AsyncPhaseRunner`) instead takes each
interruption as it happens (`hand_over`) and asks `raises_on_exit` what
leaving its block raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from sdax.errors import RunTimeoutError, SdaxExecutionError, TaskFailure, count_noun
from sdax.vocabulary import PhaseId


class Outcome:
    """The record of one run's failures and interruptions."""

    __slots__ = (
        "failures",
        "_fatal",
        "_cancelled",
        "_deadline",
        "_unraised",
        "_closed",
        "_result",
    )

    def __init__(self) -> None:
        self.failures: list[TaskFailure] = []  # ordinary failures, in the order they happened
        self._fatal: BaseException | None = None  # the first KeyboardInterrupt-style error
        self._cancelled: asyncio.CancelledError | None = None  # the caller's first cancellation
        self._deadline: float | None = None  # the deadline's seconds, once it stopped the run
        # The cancellation or fatal error a phase-by-phase caller has not been given yet.
        self._unraised: BaseException | None = None
        self._closed = False
        self._result: BaseException | None = None  # the deadline or failures: fixed by close()

    # -- recording ----------------------------------------------------------------

    def failed(self, key: Hashable, phase: PhaseId, error: BaseException) -> bool:
        """Record what a phase raised; True if it is fatal (not an `Exception`)."""
        if isinstance(error, Exception):
            self.failures.append(TaskFailure(key, phase.value, error))
            return False
        if self._fatal is None:
            self._fatal = error
        if self._unraised is None:  # a cancellation not yet handed over comes first
            self._unraised = error
        return True

    def caller_cancelled(self, cancel: asyncio.CancelledError) -> None:
        """The awaiting task was cancelled: the first cancellation is the one the run raises."""
        if self._cancelled is None:
            self._cancelled = cancel
        self._unraised = cancel

    def deadline_passed(self, timeout: float) -> None:
        """The run's deadline of `timeout` seconds stopped it while it was going forward."""
        self._deadline = timeout

    def close(self) -> None:
        """Cleanup is over: fix what the run raises, and chain its result to a cancellation."""
        if self._closed:
            return
        self._closed = True
        result = self._result = self._deadline_or_failures()
        if self._cancelled is not None and result is not None:
            # The failures stay reachable; the cancellation is what propagates.
            self._cancelled.__context__ = result

    # -- asking --------------------------------------------------------------------

    def raises(self) -> BaseException | None:
        """What the closed run raises, or None; the same object every time."""
        if not self._closed:
            raise RuntimeError("the run is not over: what it raises is not known yet")
        if self._cancelled is not None:
            return self._cancelled
        return self._fatal if self._fatal is not None else self._result

    def hand_over(self) -> BaseException | None:
        """The cancellation or fatal error that arrived since the last hand-over, once."""
        error, self._unraised = self._unraised, None
        return error

    def raises_on_exit(self, in_flight: BaseException | None) -> BaseException | None:
        """What leaving a phase-by-phase run raises, with `in_flight` propagating (or None).

        An interruption not yet handed over replaces an ordinary exception,
        never a cancellation or another interruption; with nothing in flight
        the run's deadline or failures are raised.
        """
        unraised = self.hand_over()
        if unraised is not None and (in_flight is None or isinstance(in_flight, Exception)):
            return unraised
        if in_flight is not None:
            return None
        return self._result if self._closed else self._deadline_or_failures()

    def failures_so_far(self) -> SdaxExecutionError | None:
        """The failures recorded so far, as the group the run would raise, or None."""
        if not self.failures:
            return None
        failed_tasks = {failure.key for failure in self.failures}
        return SdaxExecutionError(
            f"{count_noun(len(failed_tasks), 'task')} failed",
            [failure.error for failure in self.failures],
            self.failures,
        )

    def _deadline_or_failures(self) -> BaseException | None:
        group = self.failures_so_far()
        return group if self._deadline is None else RunTimeoutError(self._deadline, group)
