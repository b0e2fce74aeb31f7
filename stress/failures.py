"""What the run raised, checked against what the log says it must raise.

Priority (SPEC §4): the caller's cancellation (CancelledError, or
TimeoutError from an enclosing asyncio.timeout), then a fatal
BaseException a task raised (unchanged), then SdaxExecutionError holding
exactly the failures, else success. The failures are matched by identity
where we created the exception, and by type, note and cause otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable

from sdax import PhaseCancelledError, SdaxExecutionError, flatten_exceptions
from stress.faults import FATAL, Ev
from stress.outcomes import FAIL, FAILURES, NOT_AWAITABLE, PCANCEL, TIMEOUT, Outcome

Possible = dict[tuple[Hashable, str], set[Outcome]]


def expected_raise(
    log: Iterable[Ev], direct_cancels: int, timeout_expired: bool, raised: BaseException | None
) -> str | None:
    """None if `raised` is what the run must raise first; else what is wrong.

    Returns "check-failures" when failures decide (SdaxExecutionError or success).
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
    if raised is None or isinstance(raised, SdaxExecutionError):
        return "check-failures"
    return f"unexpected exception from the run: {raised!r}"


def check_failures(raised: SdaxExecutionError | None, possible: Possible) -> list[str]:
    """Match the reported failures to the possible outcomes; narrow `possible` to the match."""
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
    if outcome.kind == TIMEOUT:
        return type(leaf) is TimeoutError
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
