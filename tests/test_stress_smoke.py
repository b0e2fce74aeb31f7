"""The stress runner (`python -m stress`), quickly: a few hundred checked runs on the
current loop, and proof that its checker reports broken runs (it is no use if it
cannot fail).

The broken runs are real runs of a small hand-written processor whose records
are then altered the way a buggy sdax would have produced them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Hashable

import pytest

from sdax import AsyncTaskProcessor, SdaxExecutionError, TaskFailure
from stress import RunRecord, StressConfig, check_run, run_stress
from stress.faults import START, Ev, InjectedError
from stress.generate import build_processor
from stress.model import EXEC, POST, PRE, Act, Attempt, Node, PhasePlan, Policy, RunPlan, Shape
from stress.report import format_violations
from stress.runner import run_plans

FUNC = Policy("func")

# a -> b -> c: `a` and `b` have all three phases, `c` only cleans up (a post-only chain).
SHAPE = Shape(
    nodes=(
        Node("a", (), {PRE: FUNC, EXEC: FUNC, POST: FUNC}),
        Node("b", ("a",), {PRE: FUNC, EXEC: FUNC, POST: FUNC}),
        Node("c", ("b",), {POST: FUNC}),
    ),
    builder="dag",
    declaration_order=("c", "a", "b"),
)


def plan(faults: dict[tuple[Hashable, str], str] | None = None) -> RunPlan:
    """Every phase returns at once, except `faults`: (task, phase) -> an Act op."""
    faults = faults or {}
    phases = {
        where: PhasePlan(faults.get(where, "none"), (Attempt(Act(faults.get(where, "ok"))),))
        for where in SHAPE.phase_keys()
    }
    return RunPlan(seed=1, phases=phases)


async def run_one(run_plan: RunPlan) -> RunRecord:
    processor: AsyncTaskProcessor[object] = build_processor(SHAPE)
    (result,) = await run_plans(processor, SHAPE, [(0, run_plan)])
    assert result.violations == [], result.violations
    assert result.record is not None
    return result.record


async def test_two_hundred_runs_have_no_violation(release_order_seed: int) -> None:
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # for the replay command
    config = StressConfig(runs=200, seed=release_order_seed, concurrency=4, loop_name=loop)
    summary = await run_stress(config)
    shown = "\n".join(format_violations(config, run, full=True) for run in summary.failed_runs)
    assert summary.violation_counts == {}, shown
    assert summary.runs == 200
    # The faults really happen: runs end in every ordinary way.
    assert {"ok", "failed", "cancelled"} <= set(summary.outcomes)


def renumbered(record: RunRecord, events: list[Ev]) -> RunRecord:
    """`record` with `events` as its log (sequence numbers and written data made consistent)."""
    log = [ev._replace(seq=seq) for seq, ev in enumerate(events)]
    data = {
        (ev.key, ev.phase, ev.attempt): ev.seq for ev in log if ev.kind == START and not ev.part
    }
    return dataclasses.replace(record, log=log, data=data)


def without(record: RunRecord, key: Hashable, phase: str) -> RunRecord:
    return renumbered(record, [ev for ev in record.log if (ev.key, ev.phase) != (key, phase)])


def moved_first(record: RunRecord, key: Hashable, phase: str) -> RunRecord:
    """The events of (key, phase) moved to the front of the log."""
    chosen = [ev for ev in record.log if (ev.key, ev.phase) == (key, phase)]
    return renumbered(record, chosen + [ev for ev in record.log if ev not in chosen])


def moved_after(
    record: RunRecord, key: Hashable, phase: str, after: tuple[Hashable, str]
) -> RunRecord:
    """The events of (key, phase) moved right after the last event of `after`."""
    chosen = [ev for ev in record.log if (ev.key, ev.phase) == (key, phase)]
    rest = [ev for ev in record.log if ev not in chosen]
    last = max(i for i, ev in enumerate(rest) if (ev.key, ev.phase) == after)
    return renumbered(record, rest[: last + 1] + chosen + rest[last + 1 :])


def execute_raised_silently(record: RunRecord) -> RunRecord:
    """`a`'s execute raised (as the log tells), yet the run reported nothing."""
    events = [
        ev._replace(kind="raise", obj=InjectedError("lost"))
        if ev[1:4] == ("end", "a", EXEC)
        else ev
        for ev in record.log
    ]
    return renumbered(record, events)


def started_after_cancel(record: RunRecord) -> RunRecord:
    events = [ev._replace(epoch=1) if ev[1:4] == (START, "b", PRE) else ev for ev in record.log]
    return renumbered(record, events)


def cleaned_twice(record: RunRecord) -> RunRecord:
    return renumbered(record, record.log + [ev for ev in record.log if ev[2:4] == ("c", POST)])


Alteration = Callable[[RunRecord], RunRecord]
BROKEN: dict[str, tuple[Alteration, str]] = {
    "a post that never ran": (lambda r: without(r, "a", POST), "post-eligibility"),
    "a post-only task cleaned up twice": (cleaned_twice, "log"),
    "a post before its dependent's": (lambda r: moved_first(r, "a", POST), "post-order"),
    "a pre before its dependency's": (lambda r: moved_first(r, "b", PRE), "pre-order"),
    "an execute during PRE": (lambda r: moved_first(r, "a", EXEC), "execute-gate"),
    "a post during EXECUTE": (lambda r: moved_after(r, "c", POST, ("a", PRE)), "post-order"),
    "a failure not reported": (execute_raised_silently, "failures-match"),
    "a caller cancellation swallowed": (
        lambda r: dataclasses.replace(r, direct_cancels=1),
        "run-outcome",
    ),
    "a forward phase after the cancel": (started_after_cancel, "cancel-stops-forward"),
    "the context changed": (
        lambda r: dataclasses.replace(r, extra_attributes=("spy",)),
        "hygiene",
    ),
}


@pytest.mark.parametrize("broken", BROKEN)
async def test_checker_reports_a_broken_run(broken: str) -> None:
    record = await run_one(plan())
    assert check_run(SHAPE, record) == []  # the real run is fine...
    alter, invariant = BROKEN[broken]
    violations = check_run(SHAPE, alter(record))  # ...the altered one is not
    assert invariant in {v.invariant for v in violations}, violations


async def test_checker_matches_failures_by_identity() -> None:
    record = await run_one(plan({("b", PRE): "raise"}))  # no execute; cleanup of b, then a
    assert [ev.key for ev in record.log if ev.phase == POST and ev.kind == START] == ["b", "a"]
    lost = dataclasses.replace(record, raised=None)  # as if sdax had lost the failure
    assert [v.invariant for v in check_run(SHAPE, lost)] == ["failures-match"]
    assert "'b' pre_execute failed" in check_run(SHAPE, lost)[0].detail
    # A look-alike (same type, message and note) is not the exception the task raised.
    assert isinstance(record.raised, SdaxExecutionError)
    (original,) = record.raised.leaf_exceptions()
    twin = InjectedError(*original.args)
    twin.add_note("sdax: raised by task 'b' pre_execute")
    forged = SdaxExecutionError("1 task failed", [twin], [TaskFailure("b", PRE, twin)])
    assert check_run(SHAPE, record) == []
    assert [v.invariant for v in check_run(SHAPE, dataclasses.replace(record, raised=forged))] == [
        "failures-match"
    ]
    swapped = dataclasses.replace(record, raised=RuntimeError("not the failure"))
    assert [v.invariant for v in check_run(SHAPE, swapped)] == ["run-outcome"]
