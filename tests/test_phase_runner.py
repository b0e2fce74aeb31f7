"""`processor.open(ctx)`: running phase by phase (SPEC §5)."""

from __future__ import annotations

import asyncio

import pytest

from sdax import AsyncDagTaskProcessor, PhaseId, SdaxExecutionError
from tests.support import EXEC, HOLD, OK, POST, PRE, Probe, Raise


def two_tasks(probe: Probe, *, b_pre: object = OK) -> AsyncDagTaskProcessor[None]:
    return (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("A", pre=OK, execute=OK, post=OK))
        .add_task(probe.task("B", pre=b_pre, execute=OK, post=OK), depends_on=("A",))  # type: ignore[arg-type]
        .build()
    )


async def test_run_next_runs_one_phase_at_a_time_in_order() -> None:
    probe = Probe()
    seen: list[tuple[bool, PhaseId | None, PhaseId | None]] = []
    async with two_tasks(probe).open(None) as runner:
        assert runner.next_phase_id() is PhaseId.PRE_EXEC
        assert runner.last_phase_id() is None
        while True:
            more = await runner.run_next()
            seen.append((more, runner.last_phase_id(), runner.next_phase_id()))
            if not more:
                break
        assert not runner.has_failures()
    assert seen == [
        (True, PhaseId.PRE_EXEC, PhaseId.EXECUTE),
        (True, PhaseId.EXECUTE, PhaseId.POST_EXEC),
        (False, PhaseId.POST_EXEC, None),
    ]
    assert [(kind, phase) for kind, _, phase in probe.log if kind == "start"] == [
        ("start", PRE),
        ("start", PRE),
        ("start", EXEC),
        ("start", EXEC),
        ("start", POST),
        ("start", POST),
    ]


async def test_leaving_before_any_phase_runs_nothing() -> None:
    probe = Probe()
    async with two_tasks(probe).open(None):
        pass
    assert probe.log == []


async def test_leaving_after_pre_skips_execute_but_cleans_up() -> None:
    probe = Probe()
    async with two_tasks(probe).open(None) as runner:
        await runner.run_next()
    assert probe.keys("start", EXEC) == []
    assert probe.keys("end", POST) == ["B", "A"]


async def test_leaving_after_execute_runs_the_cleanup() -> None:
    probe = Probe()
    async with two_tasks(probe).open(None) as runner:
        await runner.run_next()
        await runner.run_next()
    assert probe.keys("end", POST) == ["B", "A"]


async def test_a_pre_failure_is_collected_and_the_next_phase_is_cleanup() -> None:
    probe = Probe()
    error = ValueError("B failed")
    with pytest.raises(SdaxExecutionError) as caught:
        async with two_tasks(probe, b_pre=Raise(error)).open(None) as runner:
            assert await runner.run_next() is True
            assert runner.has_failures()
            assert runner.failures() == [error]
            assert runner.next_phase_id() is PhaseId.POST_EXEC
            with pytest.raises(SdaxExecutionError):
                runner.raise_failures()
            assert await runner.run_next() is False
    assert caught.value.leaf_exceptions() == [error]  # a normal exit raises the failures
    assert probe.keys("start", EXEC) == []


async def test_leaving_with_an_exception_cleans_up_and_propagates_it() -> None:
    probe = Probe()
    with pytest.raises(LookupError, match="caller's own"):
        async with two_tasks(probe).open(None) as runner:
            await runner.run_next()
            raise LookupError("caller's own error")
    assert probe.keys("end", POST) == ["B", "A"]


async def test_run_next_after_close_raises_runtime_error() -> None:
    probe = Probe()
    runner = two_tasks(probe).open(None)
    async with runner:
        await runner.run_next()
    with pytest.raises(RuntimeError, match="closed"):
        await runner.run_next()


async def test_aclose_finishes_what_consistency_requires() -> None:
    probe = Probe()
    runner = two_tasks(probe).open(None)
    await runner.__aenter__()
    await runner.run_next()
    await runner.aclose()
    await runner.aclose()  # idempotent
    assert probe.keys("end", POST) == ["B", "A"]
    assert runner.next_phase_id() is None


async def test_a_cancellation_during_a_phase_is_raised_by_run_next_after_cleanup_on_exit() -> None:
    probe = Probe()
    processor = two_tasks(probe, b_pre=HOLD)

    async def phase_by_phase() -> None:
        async with processor.open(None) as runner:
            while await runner.run_next():
                pass

    run = asyncio.create_task(phase_by_phase())
    await probe.started("B", PRE)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert probe.count("cancelled", "B", PRE) == 1
    assert probe.keys("end", POST) == ["B", "A"]
