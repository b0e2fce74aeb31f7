"""Allowed but notable things a run did, counted in the summary.

They are not violations. Some are corners SPEC allows (a cleanup for a pre
that never ran a line); the others show that the newer features were
really exercised (threads that outlived the run, limits that filled up,
cleanups cut off, runs that timed out with failures as well).
"""

from __future__ import annotations

from collections.abc import Hashable

from sdax import RunTimeoutError, flatten_exceptions
from stress import capacity
from stress.abandoned import cleanup_notes, failures_known, reported_abandoned
from stress.failures import failures_of
from stress.faults import AFTER, BEGIN, END, FINISH, START, Ev
from stress.invariants import RunRecord
from stress.model import POST, PRE, Shape
from stress.outcomes import fold


def observations(shape: Shape, record: RunRecord) -> list[str]:
    log = record.log
    started = {(ev.key, ev.phase) for ev in log if ev.kind == START and not ev.part}
    notes = [
        # sdax owes cleanup once it has started a pre's task, even if that task is
        # cancelled before its first step (SPEC: "was started, whatever became of it").
        "post ran for a pre cancelled before its first step"
        for node in shape.nodes
        if PRE in node.policies and (node.key, POST) in started and (node.key, PRE) not in started
    ]
    begun = {(ev.key, ev.phase) for ev in log if ev.kind == BEGIN}
    if begun - started:
        notes.append("observer: a phase sdax started was cancelled before its first step")
    if queued_pres(shape, log, started):
        notes.append("a pre released but never started (queued for a limit?) when the run stopped")
    notes += _thread_notes(log) + _limit_notes(shape, log) + _error_notes(record)
    fatal_report = None if failures_known(record.raised) else record.recorded
    if fatal_report is not None and reported_abandoned(shape, fatal_report):
        notes.append("abandoned cleanup of a fatal run checked through its RunReport")
    return notes + cleanup_notes(log, fold(log, []), failures_of(record.raised))


def queued_pres(shape: Shape, log: list[Ev], started: set[tuple[Hashable, str]]) -> list[Hashable]:
    """Pres with limits that never started though every effective pre-dependency succeeded."""
    succeeded = {(ev.key, ev.phase) for ev in log if ev.kind == END and not ev.part}
    return [
        node.key
        for node in shape.nodes
        if PRE in node.policies
        and shape.policy(node.key, PRE).limits
        and (node.key, PRE) not in started
        and all((dep, PRE) in succeeded for dep in shape.effective_pre_deps[node.key])
    ]


def _thread_notes(log: list[Ev]) -> list[str]:
    finish = next((ev.seq for ev in log if ev.kind == FINISH), len(log))
    after = [ev.seq for ev in log if ev.kind == AFTER]
    notes = ["a thread ended after sdax stopped waiting for it"] if after else []
    if any(seq > finish for seq in after):
        notes.append("a thread ended after the run returned")
    return notes


def _limit_notes(shape: Shape, log: list[Ev]) -> list[str]:
    for index, held in capacity.holdings(shape, log).items():
        per_run = index != capacity.MAX_CONCURRENCY and not shape.limits[index].shared
        if per_run and capacity.peak(held) == shape.limits[index].capacity:
            return ["a per-run limit was full"]
    return []


def _error_notes(record: RunRecord) -> list[str]:
    notes = []
    failures = failures_of(record.raised)
    leaves = flatten_exceptions(failures) if failures is not None else []
    if any("cleanup_timeout" in " ".join(getattr(leaf, "__notes__", ())) for leaf in leaves):
        notes.append("a post was cut off by cleanup_timeout")
    if isinstance(record.raised, RunTimeoutError) and record.raised.failures is not None:
        notes.append("the run timed out, with failures as well")
    return notes
