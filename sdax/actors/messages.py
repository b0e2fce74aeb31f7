"""The messages of a run: what lands in a coordinator's mailbox.

Events come from a run's task actors (how each started phase ended), from
the admission of limits, and from the loop's timers; they are in the past
tense (`PhaseSucceeded`, ...). They carry task indices, never task objects;
the one live object an event may carry is the exception a phase function
raised. Messages have no behaviour. (The coordinator's commands to its task
actors are method calls, `start` and `cancel`: nothing queues them.)
"""

from __future__ import annotations

from msgspec import Struct

from sdax.vocabulary import CancelReason, PhaseId

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


Event = (
    PhaseSucceeded
    | PhaseFailed
    | PhaseCancelled
    | PhaseRetrying
    | SlotsGranted
    | DeadlineExpired
    | CleanupBudgetExpired
)
