"""The built-in invariants every monte-carlo run is checked against, and what they read.

Each check takes a finished `CheckedRun` and returns violation messages
(an empty list: the run kept the promise). They read the run's log (what
the wrapped phase functions did, in order), the events its observers heard,
and what `process_tasks` raised; never the user's context.

- `cleanup_once`: a task whose pre_execute function was entered gets its
  post_execute exactly once (or a CleanupAbandonedError for it); one whose
  pre_execute was never entered gets none; a task without a pre_execute at
  most one.
- `cleanup_order`: a post_execute starts only after the post_execute of
  every task that depends on it, directly or not, has ended.
- `nothing_after_cancel`: once the caller's cancellation was requested, no
  pre_execute or execute function starts (only cleanup), in particular none
  after sdax reported a phase stopped for the caller; and the run ends
  in CancelledError (sdax never swallows it).
- `failures_reported`: every injected raise is retried or among the run's
  failures (SdaxExecutionError, RunTimeoutError.failures, or those of the
  CancelledError's `__context__`), or (task group phases only) its attempt
  was cancelled by sdax while its children were still running; one among
  the failures is also its phase's error in the RunReport; an attempt that
  hung is never the one reported ok.
- `abandoned_reported`: every post_execute the cleanup budget cut short or
  skipped is a CleanupAbandonedError among the failures.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

from sdax.errors import (
    CleanupAbandonedError,
    RunTimeoutError,
    SdaxExecutionError,
    flatten_exceptions,
    run_outcome,
)
from sdax.graph import TaskGraph
from sdax.observers import (
    Notification,
    PhaseFinished,
    PhaseOutcome,
    PhaseRetried,
    PhaseStarted,
)
from sdax.report import RunReport
from sdax.testing.faults import EXECUTE, HANG, POST, PRE, Fault, RunLog
from sdax.vocabulary import CancelReason, PhaseId, RunOutcome


@dataclasses.dataclass
class CheckedRun:
    """One finished run, as invariants see it.

    `error` is what `process_tasks` raised (None if it returned); `outcome`
    is how the run ended, read from it (`sdax.errors.run_outcome`). `report`
    is the run's RunReport (None only if the run was cancelled before it
    started a phase), `events` what its observers heard, `faults` what was
    injected, `cancelled` whether the caller's cancellation was requested
    while the run was going.
    """

    seed: int
    ctx: Any
    error: BaseException | None
    report: RunReport | None
    events: list[Notification]
    faults: tuple[Fault, ...]
    cancelled: bool
    log: RunLog

    @property
    def outcome(self) -> RunOutcome:
        return run_outcome(self.error)

    def failures(self) -> list[BaseException]:
        """Every failure the run reported, as the exception objects raised."""
        group = failure_group(self.error)
        return [] if group is None else list(group.leaf_exceptions())


def failure_group(error: BaseException | None) -> SdaxExecutionError | None:
    """Where the run's failures are, whichever way it ended."""
    if isinstance(error, SdaxExecutionError):
        return error
    if isinstance(error, RunTimeoutError):
        return error.failures
    if isinstance(error, asyncio.CancelledError):
        # The caller's cancellation carries whatever the run would have raised.
        context = error.__context__
        if isinstance(context, SdaxExecutionError | RunTimeoutError):
            return failure_group(context)
    return None


_FOR_THE_CALLER = CancelReason.CALLER_CANCELLED

Check = Callable[[CheckedRun, TaskGraph], list[str]]


def cleanup_once(run: CheckedRun, graph: TaskGraph) -> list[str]:
    entered = {key for what, key, phase, _ in run.log.entries if what == "enter" and phase is PRE}
    starts: dict[Hashable, int] = {}
    skipped: set[Hashable] = set()
    for event in run.events:
        if isinstance(event, PhaseStarted) and event.phase is POST:
            starts[event.task] = starts.get(event.task, 0) + 1
        elif (
            isinstance(event, PhaseFinished)
            and event.phase is POST
            and event.outcome is PhaseOutcome.ABANDONED
            and event.attempts == 0
        ):
            skipped.add(event.task)
    problems = []
    for node in graph.nodes:
        if POST not in node.functions:
            continue
        ran = starts.get(node.key, 0) + (node.key in skipped)
        if PRE not in node.functions:
            if ran > 1:
                problems.append(f"post_execute of {node.key!r} started {ran} times")
        elif node.key in entered and ran != 1:
            problems.append(
                f"pre_execute of {node.key!r} was entered, but its post_execute started "
                f"{ran} times (owed exactly once)"
            )
        elif node.key not in entered and ran:
            problems.append(
                f"post_execute of {node.key!r} started though its pre_execute was never entered"
            )
    return problems


def cleanup_order(run: CheckedRun, graph: TaskGraph) -> list[str]:
    first_enter: dict[Hashable, int] = {}
    last_exit: dict[Hashable, int] = {}
    for seq, (what, key, phase, _) in enumerate(run.log.entries):
        if phase is POST:
            if what == "enter":
                first_enter.setdefault(key, seq)
            else:
                last_exit[key] = seq
    problems = []
    for node in graph.nodes:
        if node.key not in first_enter:
            continue
        for later in _dependents_of(graph, node.index):
            key = graph.keys[later]
            if (
                key in first_enter
                and not last_exit.get(key, len(run.log.entries)) < first_enter[node.key]
            ):
                problems.append(
                    f"post_execute of {node.key!r} started before the post_execute of "
                    f"{key!r}, which depends on it, had ended"
                )
    return problems


def _dependents_of(graph: TaskGraph, start: int) -> set[int]:
    """Every node that depends on `start`, directly or not."""
    seen: set[int] = set()
    stack = list(graph.dependents[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph.dependents[node])
    return seen


def nothing_after_cancel(run: CheckedRun, graph: TaskGraph) -> list[str]:
    problems = [
        f"{phase} of {key!r} (attempt {attempt}) started after the caller's cancellation"
        for key, phase, attempt in run.log.late
        if phase in (PRE, EXECUTE)
    ]
    # And once sdax said it stopped a phase for the caller, it starts no forward work.
    stopping = False
    for event in run.events:
        if isinstance(event, PhaseFinished) and event.cancel_reason == _FOR_THE_CALLER:
            stopping = True
        elif stopping and isinstance(event, PhaseStarted) and event.phase is not POST:
            problems.append(
                f"{event.phase} of {event.task!r} started after sdax stopped work "
                "for the caller's cancellation"
            )
    if run.cancelled and not isinstance(run.error, asyncio.CancelledError):
        problems.append(
            f"the caller was cancelled, but the run ended in {run.outcome} "
            "instead of CancelledError (the cancellation was swallowed)"
        )
    return problems


def failures_reported(run: CheckedRun, graph: TaskGraph) -> list[str]:
    reported = {id(error) for error in run.failures()}
    for event in run.events:
        if isinstance(event, PhaseRetried):  # a task group's attempt fails with a group
            reported.update(id(leaf) for leaf in flatten_exceptions(event.error))
    # A task group's attempt whose body raised still waits for its children; if sdax
    # cancels it meanwhile (caller, deadline, sibling failure), it ends cancelled.
    interrupted = {
        (e.task, e.phase, e.attempts)
        for e in run.events
        if isinstance(e, PhaseFinished) and e.outcome is PhaseOutcome.CANCELLED
    }
    problems = [
        f"injected {fault.kind} in {fault.task!r} {fault.phase} attempt {fault.attempt} "
        f"was not reported: {error}"
        for error, fault in run.log.raised
        if id(error) not in reported
        and not (
            _has_task_group(graph, fault)
            and (fault.task, fault.phase, fault.attempt) in interrupted
        )
    ]
    # A failure the run raised is in its report too, on its task's phase.
    failed = {id(error) for error in run.failures()}
    for error, fault in run.log.raised:
        if run.report is None or fault.phase is None or id(error) not in failed:
            continue
        if _has_task_group(graph, fault):
            continue  # a task group's phase reports the group its children's errors form
        entry = run.report.phase(fault.task, fault.phase)
        if entry.error is None or entry.error.message != str(error):
            problems.append(
                f"injected {fault.kind} in {fault.task!r} {fault.phase} attempt "
                f"{fault.attempt} was raised but is not the error in the run's report"
            )
    # A hung attempt can never be the one that made its phase ok.
    ok_attempt: dict[tuple[Hashable, PhaseId | None], int] = {
        (e.task, e.phase): e.attempts
        for e in run.events
        if isinstance(e, PhaseFinished) and e.outcome is PhaseOutcome.OK
    }
    for fault in run.faults:
        if fault.kind == HANG and ok_attempt.get((fault.task, fault.phase)) == fault.attempt:
            problems.append(
                f"{fault.phase} of {fault.task!r} hung in attempt {fault.attempt}, "
                "yet that attempt was reported ok"
            )
    return problems


def _has_task_group(graph: TaskGraph, fault: Fault) -> bool:
    node = graph.nodes[graph.index[fault.task]]
    function = None if fault.phase is None else node.functions.get(fault.phase)
    return function is not None and function.has_task_group_argument


def abandoned_reported(run: CheckedRun, graph: TaskGraph) -> list[str]:
    abandoned = {
        e.task
        for e in run.events
        if isinstance(e, PhaseFinished) and e.outcome is PhaseOutcome.ABANDONED
    }
    reported = {e.task for e in run.failures() if isinstance(e, CleanupAbandonedError)}
    return [
        f"cleanup of {key!r} was abandoned but no CleanupAbandonedError reports it"
        for key in abandoned - reported
    ]


BUILT_IN: tuple[tuple[str, Check], ...] = (
    ("cleanup_once", cleanup_once),
    ("cleanup_order", cleanup_order),
    ("nothing_after_cancel", nothing_after_cancel),
    ("failures_reported", failures_reported),
    ("abandoned_reported", abandoned_reported),
)
