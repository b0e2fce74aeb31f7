"""The vocabulary of a run: every message an actor sends or receives.

Commands go from the coordinator to a task actor and are imperative
(`StartPhase`, `CancelPhase`); events go from a task actor to the coordinator
and are in the past tense (`PhaseSucceeded`, ...). Messages carry task
indices, never task objects; the one live object an event may carry is the
exception a phase function raised. Messages have no behaviour.

Commands hold no per-task data, so one instance per phase or reason is
built here and reused: starting a phase allocates no command.
"""

from __future__ import annotations

import enum

from msgspec import Struct

from sdax.declarations import PhaseId


class CancelReason(enum.Enum):
    """Why sdax cancelled a phase; cancellation is data, not a bare signal."""

    SIBLING_FAILED = "a pre_execute of another task failed"
    FATAL_ERROR = "a task raised a BaseException such as KeyboardInterrupt"
    CALLER_CANCELLED = "the task awaiting the run was cancelled"
    DEADLINE = "the run's deadline expired"
    CLEANUP_BUDGET = "the run's cleanup budget expired"


# Commands: coordinator -> task actor.


class StartPhase(Struct, frozen=True, kw_only=True):
    """Run the task's function for `phase` now, all attempts within `within` seconds if set."""

    phase: PhaseId
    within: float | None = None


class CancelPhase(Struct, frozen=True, kw_only=True):
    """Cancel the phase function that is running, if any."""

    reason: CancelReason


# Events: task actor -> coordinator. Exactly one of these ends every started phase.
#
# Events that hold only numbers and enum members cannot be part of a
# reference cycle, so they are kept out of the cyclic GC (gc=False): one is
# made per phase, and thousands can be waiting in a batch, where the
# collector would otherwise count and traverse them all.


class PhaseSucceeded(Struct, frozen=True, kw_only=True, gc=False):
    """The phase function returned (after any retries)."""

    task: int
    phase: PhaseId
    at: float = 0.0  # perf_counter() when it ended; stamped only when the run is observed
    attempts: int = 1  # attempts begun, counting the last


class PhaseFailed(Struct, frozen=True, kw_only=True):
    """The phase function failed for good; `error` is what it raised, annotated.

    `error` is an `Exception` for an ordinary failure, or the `BaseException`
    (KeyboardInterrupt, SystemExit, ...) that must end the run after cleanup.
    """

    task: int
    phase: PhaseId
    error: BaseException
    at: float = 0.0
    attempts: int = 1


class PhaseCancelled(Struct, frozen=True, kw_only=True, gc=False):
    """The phase function stopped because the coordinator cancelled it.

    `attempts` is 0 when the phase's task was cancelled before the function
    was entered: it ran nothing, so it acquired nothing.
    """

    task: int
    phase: PhaseId
    reason: CancelReason
    at: float = 0.0
    attempts: int = 1


class PhaseRetrying(Struct, frozen=True, kw_only=True):
    """Attempt `attempt` (1-based) failed with `error`; the next starts after `delay` s."""

    task: int
    phase: PhaseId
    attempt: int
    error: BaseException
    delay: float


class SlotsGranted(Struct, frozen=True, kw_only=True):
    """Every limit the task's `phase` declared has been granted: it may start.

    Sent by the admission of the run (on behalf of whichever run gave the
    units back), not by the task actor.
    """

    task: int
    phase: PhaseId


# Timer events: loop -> coordinator.


class DeadlineExpired(Struct, frozen=True, kw_only=True):
    """The run's deadline (`timeout=`) has passed."""


class CleanupBudgetExpired(Struct, frozen=True, kw_only=True):
    """The run's cleanup budget (`cleanup_budget=`) has passed since POST began."""


Command = StartPhase | CancelPhase
Event = (
    PhaseSucceeded
    | PhaseFailed
    | PhaseCancelled
    | PhaseRetrying
    | SlotsGranted
    | DeadlineExpired
    | CleanupBudgetExpired
)

START = {phase: StartPhase(phase=phase) for phase in PhaseId}
CANCEL = {reason: CancelPhase(reason=reason) for reason in CancelReason}
