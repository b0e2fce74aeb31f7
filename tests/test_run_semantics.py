"""A run's three phases: when things start, what a failure stops, what cleanup owes (SPEC §4)."""

from __future__ import annotations

import asyncio

import pytest

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    RunObserver,
    SdaxExecutionError,
    join,
    task_func,
)
from tests.support import EXEC, HOLD, OK, POST, PRE, Ok, Probe, Raise, matches_sequence


def build(*declarations: tuple[AsyncTask[object], tuple[str, ...]]) -> AsyncDagTaskProcessor[None]:
    builder = AsyncDagTaskProcessor[None].builder()
    for task, depends_on in declarations:
        builder.add_task(task, depends_on=depends_on)
    return builder.build()


async def test_pres_start_in_waves_looking_through_joins_and_phaseless_dependencies() -> None:
    probe = Probe()
    processor = build(
        (probe.task("A", pre=OK), ()),
        (join("J"), ("A",)),
        (probe.task("E", execute=OK), ("A",)),
        (probe.task("P", post=OK), ("A",)),
        (probe.task("B", pre=OK), ("J",)),
        (probe.task("C", pre=OK), ("E",)),
        (probe.task("D", pre=OK), ("B", "C", "P")),
    )
    await processor.process_tasks(None)
    assert matches_sequence(probe.keys("start", PRE), [{"A"}, {"B", "C"}, {"D"}])
    for later, earlier in [("B", "A"), ("C", "A"), ("D", "B"), ("D", "C")]:
        assert probe.index("end", earlier, PRE) < probe.index("start", later, PRE)


async def test_a_wave_is_released_the_moment_its_last_dependency_succeeds() -> None:
    probe = Probe()
    processor = build(
        (probe.task("A", pre=HOLD), ()),
        (probe.task("B", pre=HOLD), ()),
        (probe.task("C", pre=OK), ("A", "B")),
        (probe.task("D", pre=OK), ("A",)),
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("A", PRE)
    await probe.started("B", PRE)
    probe.release("A", PRE)
    await probe.started("D", PRE)  # D waited only on A
    assert probe.count("start", "C", PRE) == 0
    probe.release("B", PRE)
    await run
    assert probe.index("end", "B", PRE) < probe.index("start", "C", PRE)


async def test_execute_runs_only_after_every_pre_and_all_executes_run_concurrently() -> None:
    probe = Probe()
    processor = build(
        (probe.task("A", pre=OK, execute=HOLD), ()),
        (probe.task("B", pre=OK, execute=HOLD), ("A",)),
        (probe.task("C", execute=HOLD), ("B",)),
    )
    run = asyncio.create_task(processor.process_tasks(None))
    for key in "ABC":  # dependencies do not order EXECUTE: all three are running at once
        await probe.started(key, EXEC)
    assert probe.index("end", "B", PRE) < min(probe.index("start", k, EXEC) for k in "ABC")
    for key in "ABC":
        probe.release(key, EXEC)
    await run


async def test_a_pre_failure_cancels_running_pres_starts_nothing_and_skips_execute() -> None:
    probe = Probe()
    error = ValueError("B cannot start")
    processor = build(
        (probe.task("A", pre=OK, execute=OK, post=OK), ()),
        (probe.task("B", pre=Raise(error, hold=True), execute=OK, post=OK), ("A",)),
        (probe.task("C", pre=HOLD, execute=OK, post=OK), ("A",)),
        (probe.task("D", pre=OK, execute=OK, post=OK), ("B",)),
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("C", PRE)
    await probe.started("B", PRE)
    probe.release("B", PRE)
    with pytest.raises(SdaxExecutionError) as caught:
        await run
    assert caught.value.leaf_exceptions() == [error]  # C's cancellation is not a failure
    assert probe.count("cancelled", "C", PRE) == 1
    assert probe.count("start", "D", PRE) == 0
    assert probe.keys("start", EXEC) == []
    # every task whose pre started is cleaned up, once; D's pre never started
    assert sorted(probe.keys("start", POST)) == ["A", "B", "C"]


# Observed, the coordinator hands every event to its handler; bare, it counts
# successes inline: both must reach the same outcome from the same batch.
@pytest.mark.parametrize("observers", [(), (RunObserver(),)], ids=["bare", "observed"])
async def test_pres_ending_together_start_no_dependent_when_one_of_them_failed(
    observers: tuple[RunObserver, ...],
) -> None:
    # A and B finish without suspending, so both outcomes reach the coordinator
    # in one batch: B's failure is known before A's success would release C.
    probe = Probe()
    error = ValueError("B failed")
    processor = build(
        (probe.task("A", pre=OK, post=OK), ()),
        (probe.task("B", pre=Raise(error), post=OK), ()),
        (probe.task("C", pre=OK, post=OK), ("A",)),
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None, observers=observers)
    assert caught.value.leaf_exceptions() == [error]
    assert probe.count("start", "C", PRE) == 0
    assert sorted(probe.keys("start", POST)) == ["A", "B"]


async def test_an_execute_failure_does_not_cancel_the_other_executes() -> None:
    probe = Probe()
    error = RuntimeError("A broke")
    processor = build(
        (probe.task("A", execute=Raise(error), post=OK), ()),
        (probe.task("B", execute=HOLD, post=OK), ()),
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("B", EXEC)
    await probe.started("A", EXEC)
    probe.release("B", EXEC)
    with pytest.raises(SdaxExecutionError) as caught:
        await run
    assert caught.value.leaf_exceptions() == [error]
    assert probe.count("end", "B", EXEC) == 1
    assert sorted(probe.keys("end", POST)) == ["A", "B"]


async def test_cleanup_runs_in_reverse_dependency_order_through_tasks_without_a_post() -> None:
    probe = Probe()
    processor = build(
        (probe.task("A", pre=OK, post=OK), ()),
        (probe.task("M", pre=OK), ("A",)),  # no post: its dependents still go before A
        (join("J"), ("M",)),
        (probe.task("C", pre=OK, post=OK), ("J",)),
        (probe.task("D", post=OK), ("C",)),
    )
    await processor.process_tasks(None)
    assert probe.keys("start", POST) == ["D", "C", "A"]
    assert probe.index("end", "D", POST) < probe.index("start", "C", POST)
    assert probe.index("end", "C", POST) < probe.index("start", "A", POST)


async def test_cleanup_has_no_false_barriers_between_independent_branches() -> None:
    probe = Probe()
    processor = build(
        (probe.task("A", pre=OK, post=OK), ()),
        (probe.task("B", pre=OK, post=HOLD), ("A",)),
        (probe.task("X", pre=OK, post=OK), ()),
        (probe.task("Y", pre=OK, post=OK), ("X",)),
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("B", POST)
    await probe.started("X", POST)  # the X/Y branch cleans up while B's post is still running
    assert probe.count("end", "Y", POST) == 1
    assert probe.count("start", "A", POST) == 0  # A waits for its dependent B
    probe.release("B", POST)
    await run
    assert probe.index("end", "B", POST) < probe.index("start", "A", POST)


async def test_a_failed_cleanup_does_not_stop_the_others_and_is_reported() -> None:
    probe = Probe()
    error = OSError("close failed")
    processor = build(
        (probe.task("A", pre=OK, post=OK), ()),
        (probe.task("B", pre=OK, post=Raise(error)), ("A",)),
        (probe.task("C", pre=OK, post=OK), ("A",)),
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None)
    assert caught.value.leaf_exceptions() == [error]
    assert sorted(probe.keys("start", POST)) == ["A", "B", "C"]
    assert probe.index("raise", "B", POST) < probe.index("start", "A", POST)


async def test_post_only_tasks_are_cleaned_up_exactly_when_their_chain_ran() -> None:
    probe = Probe()
    processor = build(
        (probe.task("Root", post=OK), ()),  # no effective pre-dependencies: always owed
        (probe.task("Good", pre=OK, post=OK), ()),
        (probe.task("Bad", pre=Raise(ValueError("no")), post=OK), ("Good",)),
        (probe.task("AfterGood", post=OK), ("Good",)),
        (probe.task("AfterBad", post=OK), ("Bad",)),
        (probe.task("Deeper", post=OK), ("AfterBad",)),
    )
    with pytest.raises(SdaxExecutionError):
        await processor.process_tasks(None)
    assert sorted(probe.keys("start", POST)) == ["AfterGood", "Bad", "Good", "Root"]


async def test_tasks_never_reached_get_no_cleanup() -> None:
    probe = Probe()
    processor = build(
        (probe.task("A", pre=Raise(ValueError("stop")), post=OK), ()),
        (probe.task("B", pre=OK, execute=OK, post=OK), ("A",)),
        (probe.task("C", execute=OK, post=OK), ("B",)),
    )
    with pytest.raises(SdaxExecutionError):
        await processor.process_tasks(None)
    assert probe.keys("start", POST) == ["A"]
    assert probe.keys("start", PRE) == ["A"]


async def test_every_failure_of_every_phase_is_reported_as_the_original_object() -> None:
    probe = Probe()
    exec_error, post_error = KeyError("missing"), OSError("disk")
    processor = build(
        (probe.task("A", pre=OK, execute=Raise(exec_error), post=Raise(post_error)), ()),
        (probe.task("B", execute=OK, post=OK), ("A",)),
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None)
    group = caught.value
    assert isinstance(group, ExceptionGroup)
    assert group.leaf_exceptions() == [exec_error, post_error]
    assert str(group).startswith("1 task failed")
    assert any("'A'" in note and "execute" in note for note in exec_error.__notes__)
    assert any("'A'" in note and "post_execute" in note for note in post_error.__notes__)
    matched: list[BaseException] = []
    try:
        raise group
    except* KeyError as keys:
        matched.extend(keys.exceptions)
    except* OSError as oses:
        matched.extend(oses.exceptions)
    assert matched == [exec_error, post_error]


async def test_failures_of_several_tasks_are_counted_in_the_message() -> None:
    probe = Probe()
    processor = build(
        (probe.task("A", execute=Raise(ValueError("a"))), ()),
        (probe.task("B", execute=Raise(ValueError("b"))), ()),
        (probe.task("C", execute=OK), ()),
    )
    with pytest.raises(SdaxExecutionError, match=r"^2 tasks failed") as caught:
        await processor.process_tasks(None)
    assert sorted(str(leaf) for leaf in caught.value.leaf_exceptions()) == ["a", "b"]


async def test_each_phase_of_each_task_starts_at_most_once_in_a_run() -> None:
    probe = Probe()
    processor = build(
        (probe.task("A", pre=OK, execute=Ok(yields=True), post=OK), ()),
        (probe.task("B", pre=Ok(yields=True), execute=OK, post=OK), ("A",)),
        (probe.task("C", pre=OK, execute=OK, post=Ok(yields=True)), ("A", "B")),
    )
    await processor.process_tasks(None)
    starts = [(key, phase) for kind, key, phase in probe.log if kind == "start"]
    assert len(starts) == len(set(starts)) == 9


async def test_an_empty_processor_runs_and_returns() -> None:
    await AsyncDagTaskProcessor[None].builder().build().process_tasks(None)


async def test_a_phase_function_returning_a_non_awaitable_fails_with_a_clear_type_error() -> None:
    def not_async(ctx: object) -> int:
        return 42

    processor = build((AsyncTask("Sync", pre_execute=task_func(not_async)), ()))  # type: ignore[arg-type]
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None)
    (error,) = caught.value.leaf_exceptions()
    assert isinstance(error, TypeError)
    for part in ("'Sync'", "pre_execute", "int", "task_sync_func"):
        assert part in str(error)
