"""Run deadline (`timeout=`) and per-cleanup bound (`cleanup_timeout=`) (issue 6)."""

from __future__ import annotations

import asyncio

import pytest

from sdax import AsyncDagTaskProcessor, AsyncTask, RunTimeoutError, SdaxExecutionError, task_func
from tests.support import EXEC, HOLD, OK, POST, PRE, Probe, Raise


def build(probe: Probe, *tasks: object) -> AsyncDagTaskProcessor[None]:
    builder = AsyncDagTaskProcessor[None].builder()
    for task in tasks:
        builder.add_task(task)  # type: ignore[arg-type]
    return builder.build()


async def test_a_deadline_in_pre_cancels_running_work_cleans_up_and_raises_timeout_error() -> None:
    probe = Probe()
    processor = build(
        probe, probe.task("Slow", pre=HOLD, execute=OK, post=OK), probe.task("Other", post=OK)
    )
    with pytest.raises(RunTimeoutError) as caught:
        await processor.process_tasks(None, timeout=0)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.failures is None
    assert probe.count("cancelled", "Slow", PRE) == 1
    assert probe.keys("start", EXEC) == []
    assert sorted(probe.keys("end", POST)) == ["Other", "Slow"]


async def test_a_deadline_in_execute_cancels_the_executes_and_still_cleans_up() -> None:
    probe = Probe()
    processor = build(probe, probe.task("A", execute=HOLD, post=OK))
    with pytest.raises(RunTimeoutError, match="deadline of 0 s expired"):
        await processor.process_tasks(None, timeout=0)
    assert probe.count("cancelled", "A", EXEC) == 1
    assert probe.count("end", "A", POST) == 1


async def test_failures_are_reachable_from_the_timeout_error() -> None:
    probe = Probe()
    close_error = OSError("close failed")
    processor = build(probe, probe.task("A", execute=HOLD, post=Raise(close_error)))
    with pytest.raises(RunTimeoutError) as caught:
        await processor.process_tasks(None, timeout=0)
    failures = caught.value.failures
    assert isinstance(failures, SdaxExecutionError)
    assert failures.leaf_exceptions() == [close_error]


async def test_the_deadline_does_not_bound_cleanup() -> None:
    probe = Probe()
    processor = build(probe, probe.task("A", post=HOLD))
    run = asyncio.create_task(processor.process_tasks(None, timeout=0))
    await probe.started("A", POST)
    for _ in range(5):  # give an uncancelled zero-second timer every chance to fire
        await asyncio.sleep(0)
    probe.release("A", POST)
    await run
    assert probe.count("end", "A", POST) == 1


async def test_a_cleanup_cut_off_by_cleanup_timeout_is_a_failure_and_the_others_still_run() -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("Base", pre=OK, post=OK))
        .add_task(probe.task("Stuck", pre=OK, post=HOLD), depends_on=("Base",))
        .build()
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None, cleanup_timeout=0)
    (leaf,) = caught.value.leaf_exceptions()
    assert type(leaf) is TimeoutError
    assert any("cleanup_timeout" in note for note in leaf.__notes__)
    assert probe.count("cancelled", "Stuck", POST) == 1
    assert probe.count("end", "Base", POST) == 1


async def test_a_cleanup_cut_off_during_its_backoff_keeps_the_failed_attempt_as_context() -> None:
    async def close(ctx: object) -> None:
        raise ConnectionError("close failed")

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Db", post_execute=task_func(close, retries=2, initial_delay=3600)))
        .build()
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None, cleanup_timeout=0)
    (leaf,) = caught.value.leaf_exceptions()
    assert type(leaf) is TimeoutError
    assert any("cleanup_timeout" in note for note in leaf.__notes__)
    chain = []  # TimeoutError <- the CancelledError asyncio.timeout turned into it <- ...
    cause: BaseException | None = leaf
    while cause is not None:
        chain.append(cause)
        cause = cause.__context__
    assert type(chain[-1]) is ConnectionError  # ... the failure whose backoff was cut off


async def test_the_phase_runner_reports_the_deadline_when_it_is_left() -> None:
    probe = Probe()
    processor = build(probe, probe.task("A", execute=HOLD, post=OK))
    with pytest.raises(RunTimeoutError):
        async with processor.open(None, timeout=0) as runner:
            while await runner.run_next():
                pass
    assert probe.count("cancelled", "A", EXEC) == 1
    assert probe.count("end", "A", POST) == 1


@pytest.mark.parametrize("option", ["timeout", "cleanup_timeout"])
async def test_negative_or_nan_seconds_are_rejected_up_front(option: str) -> None:
    processor = build(Probe())
    for seconds in (-1, float("nan")):
        with pytest.raises(ValueError, match=option):
            await processor.process_tasks(None, **{option: seconds})
