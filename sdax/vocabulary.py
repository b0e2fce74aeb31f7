"""The words every layer of sdax shares: phases, why sdax cancels, how things end.

This module imports nothing of sdax, so declarations, the runtime, observers,
reports, `sdax.testing` and users' own tools all read these values from the
same place. Each value is stable data: the string of a member is what JSON
reports, logs and span attributes carry, and it never changes meaning.
"""

from __future__ import annotations

import enum


class PhaseId(enum.Enum):
    """The three phases of a run, in the order they run."""

    PRE_EXEC = "pre_execute"
    EXECUTE = "execute"
    POST_EXEC = "post_execute"

    # Members are singletons compared by identity, so the identity hash is
    # consistent; Enum's own __hash__ is Python code and phases are dict keys
    # on the hot path.
    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.value


class CancelReason(enum.StrEnum):
    """Why sdax cancelled a phase: a stable code, with `description` for people.

    Observers hear it in `PhaseFinished.cancel_reason` and reports keep it in
    `PhaseReport.cancel_reason`; the code is what JSON carries.
    """

    SIBLING_FAILED = "sibling_failed"
    FATAL_ERROR = "fatal_error"
    CALLER_CANCELLED = "caller_cancelled"
    DEADLINE = "deadline"
    CLEANUP_BUDGET = "cleanup_budget"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    CancelReason.SIBLING_FAILED: "a pre_execute of another task failed",
    CancelReason.FATAL_ERROR: "a task raised a BaseException such as KeyboardInterrupt",
    CancelReason.CALLER_CANCELLED: "the task awaiting the run was cancelled",
    CancelReason.DEADLINE: "the run's deadline expired",
    CancelReason.CLEANUP_BUDGET: "the run's cleanup budget expired",
}


class PhaseOutcome(enum.StrEnum):
    """How one phase of one task ended."""

    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"  # failed with a TimeoutError (its own timeout or cleanup_timeout)
    CANCELLED = "cancelled"  # stopped by sdax, for a CancelReason
    ABANDONED = "abandoned"  # a cleanup the run's cleanup budget cut short or skipped
    SKIPPED = "skipped"  # never started (reports only)


class RunOutcome(enum.StrEnum):
    """How a run ended, which is also what it raised (see `sdax.errors.run_outcome`)."""

    OK = "ok"  # returned
    FAILED = "failed"  # SdaxExecutionError
    TIMED_OUT = "timed_out"  # RunTimeoutError: the run's deadline
    CANCELLED = "cancelled"  # the caller's CancelledError
    INTERRUPTED = "interrupted"  # a task's KeyboardInterrupt, SystemExit, ...
