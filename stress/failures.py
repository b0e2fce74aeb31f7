"""What the run raised, checked against what the log says it must raise.

Priority (SPEC §4, process_tasks): the caller's cancellation
(CancelledError, or TimeoutError from an enclosing asyncio.timeout), then a
fatal BaseException a task raised (unchanged), then RunTimeoutError if the
run's deadline stopped it going forward (its `.failures` holding exactly
the failures, or None), then SdaxExecutionError holding exactly the
failures, else success. The failures are matched by identity where we
created the exception, and by type, note and cause otherwise.

The deadline. Our twin of sdax's timer fires no later than sdax's (DEADLINE
in the log at #m), and a plain phase (func, sync) puts its end in sdax's
mailbox in the step of its last event. So a run times out only after #m
and before cleanup began; and not if a plain pre had surely failed before
#m (sdax heard of it first, and stopped going forward). With a deadline
of 0 both timers fire back to back, so sdax hears the deadline before
anything logged after #m ends: if forward work ran on after #m and no pre
failure can have reached sdax first, the run must time out. With a
deadline above 0, other callbacks may run between the two timers: there,
whether the run times out is a race.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable, Mapping, Sequence

from sdax import (
    CleanupAbandonedError,
    PhaseCancelledError,
    RunTimeoutError,
    SdaxExecutionError,
    flatten_exceptions,
)
from sdax.testing.checks import failure_group
from stress.faults import DEADLINE, FATAL, START, Ev
from stress.model import FORWARD, POST, PRE, RunOptions
from stress.outcomes import (
    ABANDONED,
    CUTOFF,
    FAIL,
    FAILURES,
    NOT_AWAITABLE,
    PCANCEL,
    TIMEOUT,
    Outcome,
    PhaseLog,
)

Possible = dict[tuple[Hashable, str], set[Outcome]]
NO_OPTIONS = RunOptions()


def expected_raise(
    log: Sequence[Ev],
    direct_cancels: int,
    timeout_expired: bool,
    raised: BaseException | None,
    options: RunOptions = NO_OPTIONS,
) -> str | None:
    """None if `raised` is what the run must raise first; else what is wrong.

    Returns "check-failures" when failures decide (RunTimeoutError,
    SdaxExecutionError or success).
    """
    if direct_cancels:
        ok = isinstance(raised, asyncio.CancelledError)
        return None if ok else f"the run was cancelled but raised {raised!r}"
    if timeout_expired:
        ok = type(raised) is TimeoutError
        return (
            None if ok else f"the enclosing asyncio.timeout expired but the run raised {raised!r}"
        )
    fatals = [ev.obj for ev in log if ev.kind == FATAL]
    if fatals:
        ok = any(raised is fatal for fatal in fatals)
        return None if ok else f"a task raised {fatals[0]!r}; the run raised {raised!r} instead"
    if isinstance(raised, RunTimeoutError):
        return _deadline_problem(log, raised, options) or "check-failures"
    if raised is None or isinstance(raised, SdaxExecutionError):
        return "check-failures"
    return f"unexpected exception from the run: {raised!r}"


def _deadline_problem(log: Sequence[Ev], raised: RunTimeoutError, options: RunOptions) -> str:
    marks = [ev.seq for ev in log if ev.kind == DEADLINE]
    posts = [ev.seq for ev in log if ev.kind == START and ev.phase == POST]
    if options.timeout is None or raised.timeout != options.timeout:
        return f"RunTimeoutError({raised.timeout}) from a run with timeout={options.timeout}"
    if not marks:
        return "RunTimeoutError, yet the deadline had not expired when the run returned"
    if posts and posts[0] < marks[0]:
        return f"RunTimeoutError, yet cleanup began (#{posts[0]}) before the deadline (#{marks[0]})"
    if raised.failures is not None and not isinstance(raised.failures, SdaxExecutionError):
        return f"RunTimeoutError.failures is {raised.failures!r}"
    return ""


def deadline_since(log: Sequence[Ev], raised: BaseException | None) -> float:
    """From when the deadline may have stopped forward work: never if the run
    ended by success or SdaxExecutionError (the deadline stopped nothing);
    else (RunTimeoutError, or what takes priority over it) since its twin fired."""
    if raised is None or isinstance(raised, SdaxExecutionError):
        return math.inf
    return next((ev.seq for ev in log if ev.kind == DEADLINE), math.inf)


def as_the_run_raised(raised: BaseException | None) -> BaseException | None:
    """What the run itself raised: an enclosing asyncio.timeout (the stress runner's
    "timeout" cancel mode) raises TimeoutError from the run's CancelledError."""
    if type(raised) is TimeoutError and isinstance(raised.__cause__, asyncio.CancelledError):
        return raised.__cause__
    return raised


def failures_of(raised: BaseException | None) -> SdaxExecutionError | None:
    """The SdaxExecutionError holding a run's failures (also inside a RunTimeoutError,
    or a cancelled run's CancelledError); sdax.testing reads them the same way."""
    return failure_group(as_the_run_raised(raised))


def skipped_cleanup(where: tuple[Hashable, str], leaves: Sequence[BaseException]) -> bool:
    """Is this the report of a cleanup the budget skipped before it began?"""
    return (
        where[1] == POST
        and len(leaves) == 1
        and isinstance(leaves[0], CleanupAbandonedError)
        and not leaves[0].started
    )


def check_failures(
    raised: SdaxExecutionError | None, possible: Possible, skippable: bool = False
) -> list[str]:
    """Match the reported failures to the possible outcomes; narrow `possible` to the match.

    `skippable`: the cleanup budget may have run out, so a post that never ran
    may be reported as skipped (whether it was owed is stress.abandoned's to judge).
    """
    problems: list[str] = []
    reported = _reported(raised, problems) if raised is not None else {}
    for where, outcomes in possible.items():
        leaves = reported.pop(where, None)
        if leaves is None:
            keep = {o for o in outcomes if o.kind not in FAILURES}
            if not keep:
                problems.append(f"{where[0]!r} {where[1]} failed ({outcomes}) but was not reported")
        else:
            keep = {o for o in outcomes if o.kind in FAILURES and _matches(o, leaves, where)}
            if not keep:
                problems.append(
                    f"{where[0]!r} {where[1]} reported as {_show(leaves)}; possible: {outcomes}"
                )
        if keep:
            possible[where] = keep
    for where, leaves in reported.items():
        if not (skippable and skipped_cleanup(where, leaves)):
            problems.append(f"{where[0]!r} {where[1]} never ran but is reported: {_show(leaves)}")
    return problems


def _reported(
    error: SdaxExecutionError, problems: list[str]
) -> dict[tuple[Hashable, str], list[BaseException]]:
    reported: dict[tuple[Hashable, str], list[BaseException]] = {}
    for failure in error.failures:
        where = (failure.key, failure.phase)
        if where in reported:
            problems.append(f"{where[0]!r} {where[1]} reported twice")
        leaves = flatten_exceptions(failure.error)
        reported[where] = leaves
        note = f"task {failure.key!r} {failure.phase}"
        for leaf in leaves:
            if not any(note in text for text in getattr(leaf, "__notes__", ())):
                problems.append(f"{leaf!r} carries no note naming {note}")
    ours = {id(leaf) for leaves in reported.values() for leaf in leaves}
    if {id(leaf) for leaf in error.leaf_exceptions()} != ours:
        problems.append("leaf_exceptions() differ from the leaves of .failures")
    if any(isinstance(leaf, asyncio.CancelledError) for leaf in error.leaf_exceptions()):
        problems.append("a CancelledError is reported as a failure")
    tasks = len({key for key, _ in reported})
    if not error.message.startswith(f"{tasks} task"):
        problems.append(f"message {error.message!r} does not say {tasks} task(s) failed")
    return reported


def _matches(outcome: Outcome, leaves: list[BaseException], where: tuple[Hashable, str]) -> bool:
    if outcome.kind == FAIL:
        expected = sorted(map(id, outcome.errors))
        return sorted(map(id, leaves)) == expected
    if len(leaves) != 1:
        return False
    leaf = leaves[0]
    if outcome.kind in (TIMEOUT, CUTOFF):
        notes = " ".join(getattr(leaf, "__notes__", ()))
        return type(leaf) is TimeoutError and (outcome.kind == CUTOFF) == (
            "cleanup_timeout" in notes
        )
    if outcome.kind == ABANDONED:
        return isinstance(leaf, CleanupAbandonedError) and leaf.started
    if outcome.kind == PCANCEL:
        return isinstance(leaf, PhaseCancelledError) and leaf.__cause__ is outcome.errors[0]
    if outcome.kind == NOT_AWAITABLE:
        text = str(leaf)
        return isinstance(leaf, TypeError) and all(
            part in text for part in (repr(where[0]), where[1], "int", "task_sync_func")
        )
    return False


def _show(leaves: list[BaseException]) -> str:
    return "[" + ", ".join(f"{type(leaf).__name__}({leaf})" for leaf in leaves) + "]"


def deadline_problems(
    log: Sequence[Ev],
    raised: BaseException | None,
    options: RunOptions,
    phases: Mapping[tuple[Hashable, str], PhaseLog],
    possible: Possible,
    plain: Callable[[Hashable, str], bool],
) -> list[str]:
    """Whether the run had to time out, or could not (see the module docstring)."""
    mark = next((ev.seq for ev in log if ev.kind == DEADLINE), None)
    timed_out = isinstance(raised, RunTimeoutError)
    if mark is None or not (timed_out or raised is None or isinstance(raised, SdaxExecutionError)):
        return []
    failing = [
        (plog, all(o.kind in FAILURES for o in possible[where]) and plain(*where))
        for where, plog in phases.items()
        if where[1] == PRE and any(o.kind in FAILURES for o in possible[where])
    ]
    if timed_out:
        sure = [plog for plog, surely in failing if surely and plog.end < mark]
        if sure:
            where = f"{sure[0].key!r} pre_execute failed at #{sure[0].end}"
            return [f"RunTimeoutError, though {where}, before the deadline (#{mark})"]
        return []
    later = [plog for (_, phase), plog in phases.items() if phase in FORWARD and plog.end > mark]
    if options.timeout == 0 and later and all(plog.end > mark for plog, _ in failing):
        running = f"{later[0].key!r} {later[0].phase} ran until #{later[0].end}"
        return [f"the deadline expired (#{mark}) while {running}, yet the run did not time out"]
    return []
