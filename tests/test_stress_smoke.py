"""The stress runner (`python -m stress`), quickly: a few hundred checked runs on the
current loop, and proof that its checker reports broken runs (it is no use if it
cannot fail).

The broken runs are real runs of small hand-written processors whose records
are then altered the way a buggy sdax would have produced them (stress.alter):
at least one for each invariant, the newer features' (limits, the run's
deadline, cleanup_timeout, thread phases, reports and observers) included,
and the cleanup rules (the cleanup budget, caller cancels inside posts) and
the same-seed determinism check on the virtual-clock loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Hashable

import msgspec
import pytest

from sdax import (
    AsyncTaskProcessor,
    CleanupAbandonedError,
    RunReport,
    RunTimeoutError,
    SdaxExecutionError,
    TaskFailure,
)
from stress import RunRecord, StressConfig, check_run, determinism, run_stress
from stress.alter import events, moved_after, moved_first, renumbered, retyped, without
from stress.capacity import batch_problems
from stress.determinism import event_order, replay_alone, replay_twice
from stress.faults import AFTER, BEGIN, DEADLINE, END, FINISH, START, Ev, InjectedError
from stress.generate import build_processor
from stress.model import (
    EXEC,
    POST,
    PRE,
    Act,
    Attempt,
    LimitSpec,
    Node,
    PhasePlan,
    Policy,
    RunOptions,
    RunPlan,
    Shape,
)
from stress.notes import observations
from stress.report import format_violations
from stress.runner import run_plans
from stress.virtual import VirtualClockLoop

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


async def run_one(run_plan: RunPlan, shape: Shape = SHAPE) -> RunRecord:
    processor: AsyncTaskProcessor[object] = build_processor(shape)
    (result,) = await run_plans(processor, shape, [(0, run_plan)])
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
    # The faults really happen: runs end in every ordinary way, deadlines included...
    assert {"ok", "failed", "cancelled", "timed_out"} <= set(summary.outcomes)
    # ...and the newer features are all in play.
    options = {"deadline-short", "cleanup-timeout-short", "report-flag", "report-recorder"}
    assert options | {"thread-hang", "thread-raise"} <= set(summary.faults)
    assert "a per-run limit was full" in summary.notes
    # Cleanup is shielded and budgeted: caller cancels land inside posts, budgets run out.
    assert "cleanup-budget-short" in summary.faults
    assert {
        "a caller cancel landed inside a running post",
        "the cleanup budget cut a running post short",
        "the cleanup budget skipped a pending post",
    } <= set(summary.notes)


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


# -- the newer features: limits, deadline, cleanup_timeout, threads, reports ---------------

THREAD = Policy("thread", executor="given")
LIMITED = Policy("func", limits=((0, 1),))
# `x` and `y` execute under one limit of capacity 1; `y` cleans up in a thread, `z` pres in one.
FEATURES = Shape(
    nodes=(
        Node("x", (), {PRE: FUNC, EXEC: LIMITED, POST: FUNC}),
        Node("y", (), {EXEC: LIMITED, POST: Policy("thread")}),
        Node("z", ("x",), {PRE: THREAD, POST: FUNC}),
    ),
    builder="dag",
    declaration_order=("z", "y", "x"),
    limits=(LimitSpec("L0", 1),),
)


def plan_with(shape: Shape, acts: dict[tuple[Hashable, str], Act], **options: object) -> RunPlan:
    """Every phase returns at once, except `acts`; process_tasks gets `options`."""
    phases = {
        where: PhasePlan("planned", (Attempt(acts.get(where, Act("ok"))),))
        for where in shape.phase_keys()
    }
    return RunPlan(seed=1, phases=phases, options=RunOptions(**options))  # type: ignore[arg-type]


def overlapping(record: RunRecord) -> RunRecord:
    """`y`'s execute moved inside `x`'s, which holds the only unit of L0."""
    chosen = [ev for ev in record.log if ev[2:4] == ("y", EXEC)]
    rest = [ev for ev in record.log if ev not in chosen]
    at = rest.index(events(record, START, "x", EXEC)[0]) + 1
    log = rest[:at] + chosen + rest[at:]
    return renumbered(record, [ev._replace(tick=tick) for tick, ev in enumerate(log)])


def reported(record: RunRecord, change: Callable[[RunReport], None]) -> RunRecord:
    assert record.returned is not None
    report = msgspec.json.decode(msgspec.json.encode(record.returned), type=RunReport)
    change(report)
    return dataclasses.replace(record, returned=report)


def miscount(report: RunReport) -> None:
    report.phase("x", EXEC).attempts += 1


def skip(report: RunReport) -> None:
    report.phase("z", PRE).outcome = "skipped"


def late_thread(record: RunRecord) -> RunRecord:
    """The thread of `y`'s post ends after the run returned, though sdax waited for it."""
    chosen = events(record, END, "y", POST)
    return renumbered(record, [ev for ev in record.log if ev not in chosen] + chosen)


def never_begun(record: RunRecord) -> RunRecord:
    """`z`'s pre never started (say, queued for a limit), yet its post ran."""
    return renumbered(record, [ev for ev in record.log if ev[2:4] != ("z", PRE)])


FEATURE_BROKEN: dict[str, tuple[Alteration, str]] = {
    "two phases holding a limit of one": (overlapping, "limits"),
    "a report that miscounts attempts": (lambda r: reported(r, miscount), "told"),
    "a report that skips a phase that ran": (lambda r: reported(r, skip), "told"),
    "the observer not told of a start": (
        lambda r: renumbered(r, [ev for ev in r.log if ev[1:4] != (BEGIN, "x", PRE)]),
        "told",
    ),
    "cleanup for a pre never started": (never_begun, "post-eligibility"),
    "a thread sdax waited for ending after the run": (late_thread, "hygiene"),
    "a thread without the caller's context": (
        lambda r: dataclasses.replace(r, thread_problems=("no context",)),
        "threads",
    ),
}


@pytest.mark.parametrize("broken", FEATURE_BROKEN)
async def test_checker_reports_a_broken_run_of_the_newer_features(broken: str) -> None:
    record = await run_one(plan_with(FEATURES, {}, report="flag", observe=True), FEATURES)
    assert isinstance(record.returned, RunReport)
    assert len(events(record, BEGIN)) == 7  # every phase, and no more
    alter, invariant = FEATURE_BROKEN[broken]
    violations = check_run(FEATURES, alter(record))
    assert invariant in {v.invariant for v in violations}, violations


async def test_shared_limits_are_checked_across_the_batch() -> None:
    shared = dataclasses.replace(FEATURES, limits=(LimitSpec("L0", 1, shared=True),))
    processor: AsyncTaskProcessor[object] = build_processor(shared)
    plans = [(index, plan_with(shared, {})) for index in range(2)]
    results = await run_plans(processor, shared, plans)
    assert [r.violations for r in results] == [[], []]
    logs = [r.record.log for r in results if r.record is not None]
    assert batch_problems(shared, logs) == []
    # Two runs holding the one unit of a shared limit at the same time:
    ticks = [[ev._replace(tick=ev.seq) for ev in log] for log in logs]
    assert "shared limit L0" in batch_problems(shared, ticks)[0]


def deadline_plan() -> RunPlan:
    """`a`'s pre hangs with no trigger: only the deadline (0 s) can end the run."""
    return plan_with(SHAPE, {("a", PRE): Act("block")}, timeout=0.0, report="flag")


def ignored_deadline(record: RunRecord) -> RunRecord:
    ended = retyped(record, ("cancelled", "a", PRE), END)
    return dataclasses.replace(ended, raised=None, returned=None)


DEADLINE_BROKEN: dict[str, tuple[Alteration, str]] = {
    "a timeout before the deadline expired": (
        lambda r: renumbered(r, [ev for ev in r.log if ev.kind != DEADLINE]),
        "run-outcome",
    ),
    "a deadline ignored": (ignored_deadline, "deadline"),
    "a cleanup stopped by the deadline": (
        lambda r: retyped(r, (END, "a", POST), "cancelled"),
        "retries-and-outcomes",
    ),
}


@pytest.mark.parametrize("broken", DEADLINE_BROKEN)
async def test_checker_reports_a_broken_run_with_a_deadline(broken: str) -> None:
    record = await run_one(deadline_plan())
    assert isinstance(record.raised, RunTimeoutError)
    assert record.raised.failures is None
    assert record.raised.report is not None
    assert record.raised.report.phase("a", PRE).outcome == "cancelled"
    assert [ev.key for ev in events(record, START) if ev.phase == POST] == ["a"]
    alter, invariant = DEADLINE_BROKEN[broken]
    violations = check_run(SHAPE, alter(record))
    assert invariant in {v.invariant for v in violations}, violations


async def test_a_run_cannot_time_out_once_a_pre_failed_before_its_deadline() -> None:
    record = await run_one(plan_with(SHAPE, {("b", PRE): Act("raise")}, timeout=30.0))
    assert isinstance(record.raised, SdaxExecutionError)
    failed = events(record, "raise", "b", PRE)[0].seq + 1
    mark = Ev(0, DEADLINE, None, "", 0, 0)  # as if the deadline had expired right after that
    timed_out = renumbered(record, [*record.log[:failed], mark, *record.log[failed:]])
    timed_out.raised = RunTimeoutError(30.0, record.raised)
    assert [v.invariant for v in check_run(SHAPE, timed_out)] == ["deadline"]


async def test_checker_reports_a_broken_run_with_a_cleanup_cut_off() -> None:
    record = await run_one(plan_with(SHAPE, {("c", POST): Act("block")}, cleanup_timeout=0.0))
    assert isinstance(record.raised, SdaxExecutionError)
    (failure,) = record.raised.failures
    assert (failure.key, failure.phase, type(failure.error)) == ("c", POST, TimeoutError)
    assert "a post was cut off by cleanup_timeout" in observations(SHAPE, record)
    lost = dataclasses.replace(record, raised=None)
    assert "failures-match" in {v.invariant for v in check_run(SHAPE, lost)}
    stopped = without(record, "a", POST)  # the other cleanups must still run
    assert "post-eligibility" in {v.invariant for v in check_run(SHAPE, stopped)}


async def test_a_thread_sdax_gave_up_on_may_end_after_the_run() -> None:
    shape = Shape((Node("t", (), {EXEC: Policy("thread", timeout=0.0)}),), "dag", ("t",))
    record = await run_one(plan_with(shape, {("t", EXEC): Act("block")}), shape)
    assert isinstance(record.raised, SdaxExecutionError)  # timed out (a TimeoutError failure)
    (after,) = events(record, AFTER)
    assert after.seq > events(record, FINISH)[0].seq  # let go only when the run returned
    assert "a thread ended after the run returned" in observations(shape, record)
    claimed = retyped(record, (AFTER, "t", EXEC), END)
    assert "hygiene" in {v.invariant for v in check_run(shape, claimed)}


def test_a_big_run_that_misses_a_corner_fails_its_coverage_floor() -> None:
    from stress import coverage

    everything = dict.fromkeys(coverage.PLANNED + coverage.OBSERVED, coverage.floor(4000))
    assert coverage.uncovered(4000, everything, everything) == []
    planned = {**everything, "swallow": 1}
    [missed] = coverage.uncovered(4000, planned, everything)
    assert "'swallow' reached 1 times (floor 2)" in missed
    assert coverage.uncovered(coverage.MIN_RUNS - 1, {}, {}) == []  # small runs show, not assert


# -- cleanup that nothing cuts short: the budget, and caller cancels inside posts --------


def budget_plan(**options: object) -> RunPlan:
    """`c`'s post (a -> b -> c) hangs: only the cleanup budget (0 s) can end it, and the
    posts of `b` and `a`, which wait for it, are skipped."""
    return plan_with(SHAPE, {("c", POST): Act("block")}, **{"cleanup_budget": 0.0, **options})


def abandoned(raised: BaseException | None) -> dict[Hashable, bool]:
    """The tasks reported as CleanupAbandonedError among the failures, with `started`."""
    assert isinstance(raised, SdaxExecutionError)
    return {
        failure.key: failure.error.started
        for failure in raised.failures
        if isinstance(failure.error, CleanupAbandonedError)
    }


async def test_a_budget_that_runs_out_abandons_and_reports_the_posts() -> None:
    record = await run_one(budget_plan(report="flag", observe=True))  # no violation
    assert abandoned(record.raised) == {"c": True, "b": False, "a": False}
    assert isinstance(record.raised, SdaxExecutionError)
    assert record.raised.report is not None
    assert {task.task: task.phases[-1].outcome for task in record.raised.report.tasks} == {
        "a": "abandoned",
        "b": "abandoned",
        "c": "abandoned",
    }
    notes = observations(SHAPE, record)
    assert "the cleanup budget cut a running post short" in notes
    assert "the cleanup budget skipped a pending post" in notes


async def test_a_caller_cancel_inside_a_post_leaves_it_to_the_budget() -> None:
    # Cancelled one iteration after `c`'s post began: it runs on until the budget ends it.
    cancelled = dataclasses.replace(
        budget_plan(cleanup_budget=0.001), cancel_mode="cancel", trigger=("phase", "c", POST, 1)
    )
    record = await run_one(cancelled)
    assert isinstance(record.raised, asyncio.CancelledError)
    assert abandoned(record.raised.__context__) == {"c": True, "b": False, "a": False}
    cancel = events(record, "cancel")[0].seq
    assert events(record, START, "c", POST)[0].seq < cancel < events(record, "cancelled")[0].seq
    assert "a caller cancel landed inside a running post" in observations(SHAPE, record)


def forged_failures(record: RunRecord, keep: Callable[[TaskFailure], bool]) -> RunRecord:
    """`record` as if sdax had reported only the failures `keep` accepts."""
    assert isinstance(record.raised, SdaxExecutionError)
    kept = [failure for failure in record.raised.failures if keep(failure)]
    group = SdaxExecutionError(f"{len(kept)} tasks failed", [f.error for f in kept], kept)
    return dataclasses.replace(record, raised=group if kept else None)


def no_budget(record: RunRecord) -> RunRecord:
    options = dataclasses.replace(record.plan.options, cleanup_budget=None)
    return dataclasses.replace(record, plan=dataclasses.replace(record.plan, options=options))


def unlisted(record: RunRecord) -> RunRecord:
    """`c`'s post, cut short by the budget, not shown as abandoned in the attached report."""
    assert isinstance(record.raised, SdaxExecutionError)
    report = msgspec.json.decode(msgspec.json.encode(record.raised.report), type=RunReport)
    report.phase("c", POST).outcome = "failed"
    record.raised.report = report
    return record


CLEANUP_BROKEN: dict[str, tuple[Alteration, str]] = {
    "a post the budget cut short, missing from the failures": (
        lambda r: forged_failures(r, lambda f: f.key != "c"),
        "abandoned-reported",
    ),
    "a post the budget skipped, missing from the failures": (
        lambda r: forged_failures(r, lambda f: f.key != "a"),
        "abandoned-reported",
    ),
    "an abandonment the RunReport does not show": (unlisted, "abandoned-reported"),
    "posts abandoned with no budget that could run out": (no_budget, "abandoned-reported"),
    "a post cut short with no bound that could stop it": (no_budget, "cleanup-uninterrupted"),
}


@pytest.mark.parametrize("broken", CLEANUP_BROKEN)
async def test_checker_reports_a_broken_run_of_the_cleanup_rules(broken: str) -> None:
    record = await run_one(budget_plan(report="flag"))
    alter, invariant = CLEANUP_BROKEN[broken]
    violations = check_run(SHAPE, alter(record))
    assert invariant in {v.invariant for v in violations}, violations


async def test_a_post_the_caller_cut_short_breaks_cleanup_uninterrupted() -> None:
    # A plain run; then as if a caller cancel had landed in `a`'s post and stopped it.
    record = await run_one(plan())
    (start,) = events(record, START, "a", POST)
    mark = Ev(0, "cancel", None, "", 0, 0, 1)
    log = [ev for ev in record.log if ev[2:4] != ("a", POST) or ev.kind == START]
    at = log.index(start) + 1
    stopped = Ev(0, "cancelled", "a", POST, 1, 0)
    cut = renumbered(
        dataclasses.replace(record, direct_cancels=1), [*log[:at], mark, stopped, *log[at:]]
    )
    cut.raised = asyncio.CancelledError()
    found = [v for v in check_run(SHAPE, cut) if v.invariant == "cleanup-uninterrupted"]
    assert len(found) == 1
    assert "'a' post_execute attempt 1 was stopped" in found[0].detail


# -- same seed, same run: the determinism check on a virtual clock ---------------------


def test_the_virtual_clock_jumps_to_the_next_timer_only_when_nothing_is_ready() -> None:
    loop = VirtualClockLoop(seed=7)
    seen: list[tuple[str, float]] = []

    async def sleeper() -> None:
        await asyncio.sleep(3600)  # timing-ok: an hour of virtual time, no real time passes
        seen.append(("slept", loop.time()))

    async def spinner() -> None:
        for _ in range(50):  # always ready: the clock must stand still meanwhile
            await asyncio.sleep(0)
        seen.append(("spun", loop.time()))

    async def both() -> None:
        await asyncio.gather(sleeper(), spinner())

    try:
        loop.run_until_complete(both())
    finally:
        loop.close()
    assert seen == [("spun", 0.0), ("slept", 3600.0)]


# Eight independent tasks: the loop's shuffles decide the order of nearly everything.
WIDE = Shape(
    nodes=tuple(Node(f"w{i}", (), {PRE: FUNC, EXEC: FUNC, POST: THREAD}) for i in range(8)),
    builder="dag",
    declaration_order=tuple(f"w{i}" for i in range(8)),
)


def test_the_same_seed_replays_the_same_event_order() -> None:
    acts = {("w3", PRE): Act("ok", yields=2), ("w5", POST): Act("block", trigger=1)}
    wide = dataclasses.replace(plan_with(WIDE, acts, cleanup_budget=0.0), cancel_mode="cancel")
    assert replay_twice(WIDE, 0, wide, 30.0) == []
    first, second = (event_order(replay_alone(WIDE, 0, wide, 30.0)) for _ in range(2))
    assert first == second
    assert len(first) > 8 * 3  # every phase logged, and the observer's events too


def test_a_replay_on_another_loop_seed_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the run depended on something but its seed: each replay's loop gets its own.
    seeds = iter(range(1000))
    monkeypatch.setattr(determinism, "seed_for", lambda *_: next(seeds))
    violations = replay_twice(WIDE, 0, plan_with(WIDE, {}), 30.0)
    assert [v.invariant for v in violations] == ["determinism"]
    assert "add --replay-check 1" in violations[0].detail


async def test_a_stress_run_checks_determinism_on_a_sample() -> None:
    config = StressConfig(runs=40, seed=11, concurrency=4, replay_check=5)
    summary = await run_stress(config)
    shown = "\n".join(format_violations(config, run, full=True) for run in summary.failed_runs)
    assert summary.violation_counts == {}, shown
    assert summary.determinism_checked == 8  # runs 0, 5, ..., 35
