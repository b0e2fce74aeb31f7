"""Cleanup that nothing cuts short (SPEC §4: "Cleanup is shielded", "Cleanup budget").

The sweeps cancel the caller at every loop iteration of a run's life, once
or at every iteration from then on, and check each time that no post was
interrupted or skipped and that exactly the tasks that acquired something
were cleaned up, in reverse dependency order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

import pytest

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    CleanupAbandonedError,
    PhaseFinished,
    PhaseOutcome,
    RunObserver,
    SdaxExecutionError,
    task_func,
)
from sdax.testing import ShuffledLoop
from tests.support import EXEC, HOLD, OK, POST, PRE, Probe

# A (pre, post) <- B (pre, execute, post); C (pre, post) on its own;
# D (post only) <- A. Every function suspends twice, so a cancellation can
# land inside each of them as well as between them.


class Steps:
    """Phase functions that log start and end and suspend `yields` times in between."""

    def __init__(self, yields: int = 2) -> None:
        self.yields = yields
        self.log: list[tuple[str, Hashable, str]] = []

    def function(self, key: str, phase: str) -> object:
        async def step(ctx: object) -> None:
            self.log.append(("start", key, phase))
            try:
                for _ in range(self.yields):
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                self.log.append(("cancelled", key, phase))
                raise
            self.log.append(("end", key, phase))

        step.__qualname__ = f"step[{key}, {phase}]"
        return task_func(step)

    def task(self, key: str, *phases: str) -> AsyncTask[object]:
        functions = {phase: self.function(key, phase) for phase in phases}
        return AsyncTask(key, **functions)  # type: ignore[arg-type]

    def keys(self, event: str, phase: str) -> list[Hashable]:
        return [key for kind, key, ph in self.log if kind == event and ph == phase]


def endpoint(steps: Steps) -> AsyncDagTaskProcessor[object]:
    return (
        AsyncDagTaskProcessor[object]
        .builder()
        .add_task(steps.task("A", PRE, POST))
        .add_task(steps.task("B", PRE, EXEC, POST), depends_on=("A",))
        .add_task(steps.task("C", PRE, POST))
        .add_task(steps.task("D", POST), depends_on=("A",))
        .build()
    )


def after_iterations(
    count: int, action: Callable[[], object], *, repeat: bool
) -> Callable[[], None]:
    """Do `action` once `count` loop iterations have passed (and every one after, if `repeat`).

    Returns a function that stops the ticking.
    """
    loop = asyncio.get_running_loop()
    passed = 0
    stopped = False

    def tick() -> None:
        nonlocal passed
        if stopped:
            return
        if passed >= count:
            action()
            if not repeat:
                return
        passed += 1
        loop.call_soon(tick)

    loop.call_soon(tick)

    def stop() -> None:
        nonlocal stopped
        stopped = True

    return stop


async def iterations_of_a_whole_run() -> int:
    processor = endpoint(Steps())
    run = asyncio.create_task(processor.process_tasks(None))
    count = 0

    def count_one() -> None:
        nonlocal count
        count += 1

    stop = after_iterations(0, count_one, repeat=True)
    await run
    stop()
    return count


def assert_cleanup_was_whole(steps: Steps) -> None:
    """No post was cut or skipped; exactly the tasks that acquired something were cleaned up."""
    assert steps.keys("cancelled", POST) == []
    assert sorted(steps.keys("end", POST)) == sorted(steps.keys("start", POST))
    entered = set(steps.keys("start", PRE))
    owed = set(entered)
    if "A" in steps.keys("end", PRE):
        owed.add("D")  # post-only: owed once its chain passed
    assert sorted(steps.keys("start", POST)) == sorted(owed)
    ends = steps.keys("end", POST)
    starts = steps.keys("start", POST)
    for dependent in ("B", "D"):
        if dependent in ends and "A" in starts:
            assert ends.index(dependent) < starts.index("A"), steps.log  # reverse order


@pytest.mark.parametrize("repeat", [False, True], ids=["cancel-once", "cancel-every-iteration"])
async def test_a_caller_cancel_at_any_iteration_never_cuts_or_skips_a_post(repeat: bool) -> None:
    whole = await iterations_of_a_whole_run()
    assert whole > 10  # the sweep below reaches every phase, between and inside them
    for landing in range(whole + 2):
        steps = Steps()
        run = asyncio.create_task(endpoint(steps).process_tasks(None))
        stop = after_iterations(landing, run.cancel, repeat=repeat)
        try:
            await run
        except asyncio.CancelledError:
            assert run.cancelled()
            assert steps.keys("start", EXEC) in ([], ["B"])
        finally:
            stop()
        assert_cleanup_was_whole(steps)


async def test_an_enclosing_timeout_expiring_at_any_iteration_still_raises_timeout_error() -> None:
    whole = await iterations_of_a_whole_run()
    loop = asyncio.get_running_loop()
    timed_out = 0
    for landing in range(whole + 2):
        steps = Steps()
        try:
            async with asyncio.timeout(None) as deadline:
                stop = after_iterations(
                    landing, lambda d=deadline: d.reschedule(loop.time()), repeat=False
                )
                await endpoint(steps).process_tasks(None)
        except TimeoutError:
            timed_out += 1
        finally:
            stop()
        # The run took back none of the cancellations it absorbed, and gave back none either.
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0
        assert_cleanup_was_whole(steps)
    assert timed_out > 0


async def test_a_second_cancellation_during_cleanup_interrupts_nothing() -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("A", pre=OK, post=OK))
        .add_task(probe.task("B", pre=OK, execute=HOLD, post=HOLD), depends_on=("A",))
        .build()
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("B", EXEC)
    run.cancel("first")
    await probe.started("B", POST)
    run.cancel("second")
    run.cancel("third")
    await asyncio.sleep(0)
    assert not run.done()  # still waiting for B's cleanup
    probe.release("B", POST)
    with pytest.raises(asyncio.CancelledError, match="first"):
        await run
    assert probe.count("end", "B", POST) == 1
    assert probe.count("end", "A", POST) == 1
    assert run.cancelling() == 3  # every request still stands: none was taken back


async def test_a_cancel_during_the_phase_runners_cleanup_interrupts_nothing() -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None].builder().add_task(probe.task("A", pre=OK, post=HOLD)).build()
    )

    async def phase_by_phase() -> None:
        async with processor.open(None) as runner:
            await runner.run_next()

    run = asyncio.create_task(phase_by_phase())
    await probe.started("A", POST)  # leaving the block after PRE went straight to cleanup
    run.cancel()
    await asyncio.sleep(0)
    assert not run.done()
    probe.release("A", POST)
    with pytest.raises(asyncio.CancelledError):
        await run
    assert probe.count("end", "A", POST) == 1


# -- the cleanup budget ------------------------------------------------------------


class Outcomes(RunObserver):
    def __init__(self) -> None:
        self.finished: list[PhaseFinished] = []

    def phase_finished(self, event: PhaseFinished) -> None:
        self.finished.append(event)


def budgeted(probe: Probe) -> AsyncDagTaskProcessor[None]:
    """B's cleanup hangs; A's waits for it; C's is independent and quick."""
    return (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("A", pre=OK, post=OK))
        .add_task(probe.task("B", pre=OK, post=HOLD), depends_on=("A",))
        .add_task(probe.task("C", pre=OK, post=OK))
        .build()
    )


async def test_an_expired_budget_cancels_running_posts_skips_pending_ones_and_reports_each() -> (
    None
):
    probe = Probe()
    outcomes = Outcomes()
    with pytest.raises(SdaxExecutionError) as caught:
        await budgeted(probe).process_tasks(None, cleanup_budget=0, observers=[outcomes])
    abandoned = {error.task: error for error in caught.value.leaf_exceptions()}
    assert set(abandoned) == {"A", "B"}
    for key, error in abandoned.items():
        assert isinstance(error, CleanupAbandonedError)
        assert error.phase == POST
        assert error.budget == 0
        assert any(f"'{key}' post_execute" in note for note in error.__notes__)
    # B's post was running (or about to run) and was cancelled; A's never started.
    assert abandoned["B"].started == (probe.count("start", "B", POST) == 1)
    assert not abandoned["A"].started
    assert probe.count("start", "A", POST) == 0
    assert probe.count("end", "C", POST) == 1  # finished before the budget: not abandoned
    told = {event.task: event for event in outcomes.finished if event.phase.value == POST}
    assert told["A"].outcome is told["B"].outcome is PhaseOutcome.ABANDONED
    assert told["A"].attempts == 0
    assert told["C"].outcome is PhaseOutcome.OK


async def test_an_expired_budget_is_in_the_report() -> None:
    probe = Probe()
    with pytest.raises(SdaxExecutionError) as caught:
        await budgeted(probe).process_tasks(None, cleanup_budget=0, report=True)
    report = caught.value.report
    assert report is not None
    for key in ("A", "B"):
        phase = report.phase(key, POST)
        assert phase.outcome == "abandoned"
        assert phase.error is not None
        assert phase.error.type == "sdax.errors.CleanupAbandonedError"
    assert report.phase("A", POST).start is None  # skipped: it never started
    assert report.phase("C", POST).outcome == "ok"


async def test_abandoned_cleanup_is_the_cancelled_callers_context() -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None].builder().add_task(probe.task("A", pre=HOLD, post=HOLD)).build()
    )
    run = asyncio.create_task(processor.process_tasks(None, cleanup_budget=0))
    await probe.started("A", PRE)
    run.cancel()
    with pytest.raises(asyncio.CancelledError) as caught:
        await run
    context = caught.value.__context__
    assert isinstance(context, SdaxExecutionError)
    [abandoned] = context.leaf_exceptions()
    assert isinstance(abandoned, CleanupAbandonedError)
    assert abandoned.task == "A"


async def test_a_budget_that_does_not_expire_changes_nothing() -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("A", pre=OK, post=OK))
        .add_task(probe.task("B", pre=OK, post=OK), depends_on=("A",))
        .build()
    )
    await processor.process_tasks(None, cleanup_budget=3600)
    assert probe.keys("end", POST) == ["B", "A"]


@pytest.mark.parametrize(
    ("budget", "error"),
    [("1", TypeError), (True, TypeError), (-1, ValueError), (float("nan"), ValueError)],
)
async def test_a_bad_cleanup_budget_is_refused_before_anything_runs(
    budget: object, error: type[Exception]
) -> None:
    probe = Probe()
    processor = AsyncDagTaskProcessor[None].builder().add_task(probe.task("A", pre=OK)).build()
    with pytest.raises(error, match="cleanup_budget"):
        await processor.process_tasks(None, cleanup_budget=budget)  # type: ignore[arg-type]
    with pytest.raises(error, match="cleanup_budget"):
        processor.open(None, cleanup_budget=budget)  # type: ignore[arg-type]
    assert probe.log == []


# Cleanup only for what was acquired: under a loop that shuffles its ready
# queue by seed, a failing pre is sometimes handled before the pres released
# beside it got their first turn. Those owe nothing; the ones entered owe
# their post. The sweep must meet both cases, or it proves nothing.


def _sibling_run(seed: int) -> tuple[set[str], set[str]]:
    """Run F (pre raises at once) beside B, C, D (pre, post); (pres entered, posts run)."""
    entered: set[str] = set()
    cleaned: set[str] = set()

    def pre(key: str) -> object:
        async def acquire(ctx: object) -> None:
            entered.add(key)
            await asyncio.sleep(0)

        return task_func(acquire)

    def post(key: str) -> object:
        async def release(ctx: object) -> None:
            cleaned.add(key)

        return task_func(release)

    async def fail(ctx: object) -> None:
        raise ValueError("F failed")

    builder = AsyncDagTaskProcessor[None].builder()
    builder.add_task(AsyncTask("F", pre_execute=task_func(fail)))
    for key in "BCD":
        builder.add_task(AsyncTask(key, pre_execute=pre(key), post_execute=post(key)))  # type: ignore[arg-type]
    processor = builder.build()

    async def main() -> None:
        with pytest.raises(SdaxExecutionError):
            await processor.process_tasks(None)

    loop = ShuffledLoop(seed)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return entered, cleaned


def test_a_pre_cancelled_before_it_was_entered_owes_no_cleanup_under_a_shuffled_loop() -> None:
    never_entered = entered_and_cleaned = 0
    for seed in range(300):
        entered, cleaned = _sibling_run(seed)
        assert cleaned == entered, f"seed {seed}: pres entered {entered}, posts run {cleaned}"
        never_entered += len(set("BCD") - entered)
        entered_and_cleaned += len(cleaned)
    assert never_entered > 0, "no seed cancelled a pre before it was entered"
    assert entered_and_cleaned > 0, "no seed entered a pre beside the failing one"
