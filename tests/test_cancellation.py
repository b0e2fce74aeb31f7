"""The caller's cancellation, enclosing timeouts and KeyboardInterrupt-style errors (SPEC §4)."""

from __future__ import annotations

import asyncio

import pytest

from sdax import AsyncDagTaskProcessor, AsyncTask, SdaxExecutionError
from tests.support import EXEC, HOLD, OK, POST, PRE, Probe, Raise


def chain(probe: Probe, *tasks: AsyncTask[object]) -> AsyncDagTaskProcessor[None]:
    """Each task depends on the one before it."""
    builder = AsyncDagTaskProcessor[None].builder()
    previous: tuple[object, ...] = ()
    for task in tasks:
        builder.add_task(task, depends_on=previous)
        previous = (task.name,)
    return builder.build()


async def test_cancelling_the_caller_during_pre_cancels_pres_cleans_up_then_propagates() -> None:
    probe = Probe()
    processor = chain(
        probe,
        probe.task("A", pre=OK, execute=OK, post=OK),
        probe.task("B", pre=HOLD, execute=OK, post=OK),
        probe.task("C", pre=OK, execute=OK, post=OK),
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("B", PRE)
    run.cancel("client went away")
    with pytest.raises(asyncio.CancelledError, match="client went away"):
        await run
    assert probe.count("cancelled", "B", PRE) == 1
    assert probe.keys("start", EXEC) == []
    assert probe.keys("start", POST) == ["B", "A"]
    assert run.cancelled()


async def test_cancelling_the_caller_during_execute_cancels_executes_then_cleans_up() -> None:
    probe = Probe()
    processor = chain(
        probe,
        probe.task("A", pre=OK, execute=HOLD, post=OK),
        probe.task("B", execute=HOLD, post=OK),
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("A", EXEC)
    await probe.started("B", EXEC)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sorted(probe.keys("cancelled", EXEC)) == ["A", "B"]
    assert probe.keys("end", POST) == ["B", "A"]


@pytest.mark.parametrize("held_phase", [PRE, EXEC, POST])
async def test_an_enclosing_timeout_expiring_in_any_phase_surfaces_as_timeout_error(
    held_phase: str,
) -> None:
    probe = Probe()
    behaviours = {PRE: OK, EXEC: OK, POST: OK} | {held_phase: HOLD}
    processor = chain(
        probe,
        probe.task("A", pre=OK, post=OK),
        probe.task("B", pre=behaviours[PRE], execute=behaviours[EXEC], post=behaviours[POST]),
    )
    loop = asyncio.get_running_loop()

    def expire(deadline: asyncio.Timeout) -> None:
        deadline.reschedule(loop.time())
        if held_phase == POST:  # cleanup is shielded: it ends only when it is done
            loop.call_later(0, probe.release, "B", POST)

    async def caller() -> None:
        async with asyncio.timeout(None) as deadline:
            pending = asyncio.ensure_future(probe.started("B", held_phase))
            pending.add_done_callback(lambda _: expire(deadline))
            await processor.process_tasks(None)

    with pytest.raises(TimeoutError):
        await caller()
    if held_phase == POST:
        assert probe.count("cancelled", "B", POST) == 0
        assert probe.count("end", "B", POST) == 1
    else:
        assert probe.count("cancelled", "B", held_phase) == 1
    assert probe.count("end", "A", POST) == 1  # cleanup ran before the TimeoutError


async def test_a_cleanup_failure_never_masks_the_cancellation() -> None:
    probe = Probe()
    close_error = OSError("close failed")
    processor = chain(
        probe,
        probe.task("A", pre=OK, post=Raise(close_error)),
        probe.task("B", pre=HOLD, post=OK),
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("B", PRE)
    run.cancel()
    with pytest.raises(asyncio.CancelledError) as caught:
        await run
    context = caught.value.__context__
    assert isinstance(context, SdaxExecutionError)  # the failure stays reachable
    assert context.leaf_exceptions() == [close_error]


async def test_a_cancellation_arriving_as_a_phase_completes_still_cleans_up_exactly_once() -> None:
    probe = Probe()
    processor = chain(
        probe,
        probe.task("A", pre=OK, post=OK),
        probe.task("B", pre=HOLD, post=OK),
        probe.task("C", pre=OK, post=OK),
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("B", PRE)
    probe.release("B", PRE)  # B's pre completes in the same loop turn the cancel lands
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    for key in ("A", "B"):
        assert probe.count("start", key, POST) == 1
    assert probe.count("start", "C", PRE) == 0  # nothing new starts once cancelled
    assert probe.count("start", "C", POST) == 0


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("phase", [PRE, EXEC, POST])
async def test_a_base_exception_from_a_task_cancels_the_rest_cleans_up_and_propagates_unchanged(
    fatal: type[BaseException], phase: str
) -> None:
    probe = Probe()
    error = fatal()
    raising = Raise(error)
    processor = chain(
        probe,
        probe.task("A", pre=OK, execute=OK, post=OK),
        probe.task(
            "B",
            pre=raising if phase == PRE else OK,
            execute=raising if phase == EXEC else OK,
            post=raising if phase == POST else OK,
        ),
        probe.task("C", pre=OK, post=OK),
    )
    with pytest.raises(fatal) as caught:
        await processor.process_tasks(None)
    assert caught.value is error
    assert probe.count("end", "A", POST) == 1  # cleanup still ran, once
    if phase == PRE:
        assert probe.keys("start", EXEC) == []
        assert probe.count("start", "C", PRE) == 0


async def test_a_base_exception_in_execute_cancels_the_other_executes() -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("A", execute=Raise(KeyboardInterrupt(), hold=True), post=OK))
        .add_task(probe.task("B", execute=HOLD, post=OK))
        .build()
    )

    async def release_a_once_b_runs() -> None:
        await probe.started("B", EXEC)
        probe.release("A", EXEC)

    # Awaited here rather than in a task of its own: asyncio lets a task's
    # KeyboardInterrupt escape from the event loop itself.
    releaser = asyncio.create_task(release_a_once_b_runs())
    with pytest.raises(KeyboardInterrupt):
        await processor.process_tasks(None)
    await releaser
    assert probe.count("cancelled", "B", EXEC) == 1
    assert sorted(probe.keys("end", POST)) == ["A", "B"]
