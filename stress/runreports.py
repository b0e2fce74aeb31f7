"""What sdax tells about a run (RunReport, observers), checked against the log.

- API: `report=True` returns a RunReport, or attaches it to the
  SdaxExecutionError or RunTimeoutError raised (`.report`); a
  ReportRecorder observer has one whatever the run raised; without either,
  nothing is returned or attached.
- The run's outcome and error match what it raised.
- Every declared phase is listed once. One that started (in our log) ended
  as one of its possible outcomes (stress.outcomes), with as many attempts
  as it logged and one retry record fewer; one that never started is
  "skipped", unless sdax started it and it was cancelled before its first
  step (a race: a cancel landing between the creation of its task and its
  first step): then it is "cancelled", with no attempt begun.
- A cancelled phase names a cause that really happened.
- Our observer's BEGIN events (sdax's phase_started) name each started
  phase exactly once; one begun that never logged a START was cancelled
  before its first step, which needs someone entitled to cancel it.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from typing import Any

from sdax import RunReport, RunTimeoutError, SdaxExecutionError
from sdax.errors import run_outcome
from sdax.report import PhaseReport
from sdax.vocabulary import CancelReason, RunOutcome
from stress.failures import as_the_run_raised
from stress.faults import BEGIN, Ev, InjectedFatal
from stress.model import EXEC, POST, PRE, Shape
from stress.outcomes import (
    ABANDONED,
    CANCEL_OUT,
    CUTOFF,
    FAIL,
    FATAL_OUT,
    NOT_AWAITABLE,
    OK,
    PCANCEL,
    TIMEOUT,
    Outcome,
    PhaseLog,
)

Where = tuple[Hashable, str]
Tri = bool | None

REPORTED = {
    OK: "ok",
    FAIL: "failed",
    PCANCEL: "failed",
    NOT_AWAITABLE: "failed",
    FATAL_OUT: "failed",
    TIMEOUT: "timed_out",
    CUTOFF: "timed_out",
    CANCEL_OUT: "cancelled",
    ABANDONED: "abandoned",
}
# Who may cancel each phase, as the reason sdax gives (stress.outcomes, entitlements).
REASONS = {
    PRE: {reason.value for reason in CancelReason},
    EXEC: {reason.value for reason in CancelReason} - {CancelReason.SIBLING_FAILED.value},
    # Cleanup is shielded: only cleanup_timeout or the budget stops a post, and either
    # makes it a failure (TimeoutError, CleanupAbandonedError), never "cancelled".
    POST: set(),
}


def label(key: Hashable) -> str:
    return key if isinstance(key, str) else repr(key)


def the_report(
    mode: str, raised: BaseException | None, returned: object, recorded: RunReport | None
) -> tuple[RunReport | None, list[str]]:
    """The report the run made available (by `mode`), and what is wrong with how it did."""
    attached = getattr(raised, "report", None)
    if mode == "none":
        ok = returned is None and attached is None
        return None, [] if ok else [f"no report asked, got {returned!r} / {attached!r}"]
    if mode == "recorder":
        ok = isinstance(recorded, RunReport) and returned is None and attached is None
        return recorded, [] if ok else ["the ReportRecorder has no report, or one leaked out"]
    if raised is None:
        ok = isinstance(returned, RunReport)
        return returned if ok else None, [] if ok else [f"report=True returned {returned!r}"]  # type: ignore[return-value]
    if isinstance(raised, (SdaxExecutionError, RunTimeoutError)):
        ok = isinstance(attached, RunReport)
        return attached if ok else None, [] if ok else [f"{raised!r} carries no report"]
    return None, []  # cancelled or interrupted: nothing to carry it


def outcome_kind(raised: BaseException | None) -> str:
    """How a run that raised `raised` ended, in sdax's RunOutcome words.

    `other:<type>` for what no run should raise (an interruption that was
    not injected, say): a report can never match it, so it is flagged.
    """
    raised = as_the_run_raised(raised)
    outcome = run_outcome(raised)
    if outcome is RunOutcome.INTERRUPTED and not isinstance(raised, InjectedFatal):
        return f"other:{type(raised).__name__}"
    return outcome.value


def run_problems(report: RunReport, raised: BaseException | None) -> list[str]:
    expected = outcome_kind(raised)
    problems = []
    if report.outcome != expected:
        problems.append(f"run outcome {report.outcome!r}, expected {expected!r}")
    if (report.error is None) != (expected == "ok"):
        problems.append(f"run error {report.error!r} for a run that ended {expected}")
    if report.start is None or report.end is None or report.end < report.start:
        problems.append(f"run times {report.start}..{report.end}")
    return problems


def entries(report: RunReport, problems: list[str]) -> dict[tuple[str, str], PhaseReport]:
    found: dict[tuple[str, str], PhaseReport] = {}
    for task in report.tasks:
        for entry in task.phases:
            if (task.task, entry.phase) in found:
                problems.append(f"{task.task} {entry.phase} listed twice")
            found[(task.task, entry.phase)] = entry
    return found


def phase_problems(
    entry: PhaseReport,
    plog: PhaseLog | None,
    possible: Collection[Outcome],
    unseen: Tri,
    reasons: Collection[str],
    skippable: bool = False,
) -> list[str]:
    """What is wrong with one phase's report; `unseen`: for a phase that left no trace,
    whether sdax started it (True, False, or None: either); `skippable`: a post the
    cleanup budget may have skipped (stress.abandoned checks those entries)."""
    problems = _cancel_reason(entry, reasons)
    if plog is not None:
        return problems + _started(entry, plog, {REPORTED[o.kind] for o in possible})
    if skippable and entry.outcome == "abandoned" and entry.attempts == 0:
        return problems
    if entry.outcome == "cancelled" and unseen is not False:
        # Cancelled before its first step: its function never ran, no attempt began.
        ok = entry.attempts == 0 and entry.start is not None and not entry.retries
        return problems + ([] if ok else [f"cancelled before its first step: {entry}"])
    skipped = entry.outcome == "skipped" and unseen is not True and entry.attempts == 0
    if not skipped or entry.start is not None or entry.error is not None or entry.retries:
        problems.append(f"never started, yet reported as {entry}")
    return problems


def _started(entry: PhaseReport, plog: PhaseLog, kinds: set[str]) -> list[str]:
    problems = []
    if entry.outcome not in kinds:
        problems.append(f"reported {entry.outcome!r}; possible: {sorted(kinds)}")
    if entry.attempts != len(plog.attempts):
        problems.append(f"reports {entry.attempts} attempts; {len(plog.attempts)} were made")
    # A retry is announced when its attempt fails; a cancellation or a
    # cleanup_timeout may then cut the backoff short, before the next attempt.
    cut_short = entry.outcome in ("cancelled", "timed_out", "abandoned")
    if len(entry.retries) not in (entry.attempts - 1, entry.attempts if cut_short else -1):
        problems.append(f"{len(entry.retries)} retries reported for {entry.attempts} attempts")
    if entry.start is None or entry.end is None or entry.end < entry.start:
        problems.append(f"times {entry.start}..{entry.end}")
    if (entry.error is None) != (entry.outcome in ("ok", "cancelled")):
        problems.append(f"error {entry.error!r} with outcome {entry.outcome!r}")
    elif entry.outcome == "timed_out" and entry.error and entry.error.type != "TimeoutError":
        problems.append(f"timed out with {entry.error.type}")
    return problems


def _cancel_reason(entry: PhaseReport, reasons: Collection[str]) -> list[str]:
    if (entry.cancel_reason is not None) != (entry.outcome == "cancelled"):
        return [f"cancel_reason {entry.cancel_reason!r} with outcome {entry.outcome!r}"]
    if entry.cancel_reason is not None and entry.cancel_reason not in reasons:
        return [f"cancelled because {entry.cancel_reason!r}, which never happened"]
    return []


def begun(log: list[Ev]) -> tuple[set[Where], list[str]]:
    """The phases our observer heard sdax start; phases it heard start twice."""
    found: set[Where] = set()
    problems = []
    for ev in log:
        if ev.kind == BEGIN:
            where = (ev.key, ev.phase)
            if where in found:
                problems.append(f"{where[0]!r} {where[1]} started twice (observer)")
            found.add(where)
    return found, problems


def observer_problems(
    shape: Shape, started: set[Where], phases: Mapping[Where, Any], cancellable: Mapping[str, bool]
) -> list[str]:
    """BEGIN events against the log: `cancellable[phase]`: may sdax have cancelled one?"""
    problems = []
    for key, phase in phases.keys() - started:
        problems.append(f"{key!r} {phase} ran, but observers never heard it start")
    for key, phase in started - phases.keys():
        if key not in shape.by_key or not shape.has(key, phase):
            problems.append(f"observers heard {key!r} {phase} start, which is not declared")
        elif not cancellable[phase]:
            problems.append(f"{key!r} {phase} started, never ran, and nobody cancelled it")
    return problems
