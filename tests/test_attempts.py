"""One phase under its policy: timeouts, retries, self-cancellation, task groups (SPEC §4)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    PhaseCancelledError,
    RetryableException,
    SdaxExecutionError,
    SdaxTaskGroup,
    TaskFunction,
    task_func,
    task_group_func,
    task_sync_func,
)
from sdax.actors.attempts import backoff_delay, is_retryable


def single(phase_function: TaskFunction[Any], *, post: TaskFunction[Any] | None = None) -> Any:
    return (
        AsyncDagTaskProcessor[Any]
        .builder()
        .add_task(AsyncTask("T", pre_execute=phase_function, post_execute=post))
        .build()
    )


async def run_and_get_leaf(processor: Any, ctx: Any = None) -> BaseException:
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(ctx)
    (leaf,) = caught.value.leaf_exceptions()
    return leaf


class Attempts:
    """A phase function that fails with the given errors, one per attempt, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, ctx: object) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


async def test_a_timeout_bounds_each_attempt_with_the_builtin_timeout_error() -> None:
    async def hangs(ctx: object) -> None:
        await asyncio.Event().wait()

    leaf = await run_and_get_leaf(single(task_func(hangs, timeout=0)))
    assert type(leaf) is TimeoutError
    assert str(leaf) == "timed out after 0 s"  # in the message, not only in a note


async def test_an_attempt_that_swallows_its_timeout_still_timed_out_and_nothing_starts_on_it() -> (
    None
):
    async def swallows(ctx: list[str]) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ctx.append("swallowed")  # and returns, as if it had succeeded late

    async def dependent(ctx: list[str]) -> None:
        ctx.append("dependent ran")

    processor = (
        AsyncDagTaskProcessor[list[str]]
        .builder()
        .add_task(AsyncTask("Slow", pre_execute=task_func(swallows, timeout=0)))
        .add_task(AsyncTask("Next", pre_execute=task_func(dependent)), depends_on=("Slow",))
        .build()
    )
    ctx: list[str] = []
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(ctx)
    [leaf] = caught.value.leaf_exceptions()
    assert type(leaf) is TimeoutError
    assert str(leaf) == "timed out after 0 s"
    assert ctx == ["swallowed"]


async def test_an_error_raised_in_answer_to_the_timeout_stays_that_error() -> None:
    async def raises_on_cancel(ctx: object) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ValueError("gave up while closing") from None

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Slow", pre_execute=task_func(raises_on_cancel, timeout=0)))
        .build()
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None)
    [leaf] = caught.value.leaf_exceptions()
    assert type(leaf) is ValueError  # as asyncio.timeout lets it through, not a TimeoutError
    assert str(leaf) == "gave up while closing"


async def test_a_post_cut_off_by_cleanup_timeout_says_so_in_its_message() -> None:
    async def hangs(ctx: object) -> None:
        await asyncio.Event().wait()

    async def opens(ctx: object) -> None:
        pass

    processor = single(task_func(opens), post=task_func(hangs))
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None, cleanup_timeout=0)
    [leaf] = caught.value.leaf_exceptions()
    assert type(leaf) is TimeoutError
    assert str(leaf) == "cut off by cleanup_timeout=0 s"
    assert (
        str(caught.value).splitlines()[1].endswith("TimeoutError: cut off by cleanup_timeout=0 s")
    )


async def test_retries_exhausted_on_timeouts_report_the_last_timeout() -> None:
    calls = 0

    async def hangs(ctx: object) -> None:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()

    leaf = await run_and_get_leaf(single(task_func(hangs, timeout=0, retries=2, initial_delay=0)))
    assert type(leaf) is TimeoutError
    assert calls == 3
    assert str(leaf) == "attempt 3 of 3 timed out after 0 s"


async def test_a_retryable_failure_is_retried_until_an_attempt_succeeds() -> None:
    flaky = Attempts(ConnectionError("1"), RetryableException("2"))
    await single(task_func(flaky, retries=2, initial_delay=0)).process_tasks(None)
    assert flaky.calls == 3


async def test_an_error_outside_the_retryable_tuple_is_not_retried() -> None:
    flaky = Attempts(ValueError("not retryable"))
    leaf = await run_and_get_leaf(single(task_func(flaky, retries=3, initial_delay=0)))
    assert isinstance(leaf, ValueError)
    assert flaky.calls == 1


async def test_a_group_is_retried_only_when_every_leaf_is_retryable() -> None:
    mixed = ExceptionGroup("mixed", [ConnectionError("a"), ValueError("b")])
    all_retryable = ExceptionGroup("ok", [ConnectionError("a"), TimeoutError()])
    assert not is_retryable(mixed, (ConnectionError, TimeoutError))
    assert is_retryable(all_retryable, (ConnectionError, TimeoutError))

    flaky = Attempts(mixed)
    with pytest.raises(SdaxExecutionError) as caught:
        await single(task_func(flaky, retries=2, initial_delay=0)).process_tasks(None)
    assert flaky.calls == 1
    assert {type(e) for e in caught.value.leaf_exceptions()} == {ConnectionError, ValueError}

    recovering = Attempts(all_retryable)
    await single(task_func(recovering, retries=1, initial_delay=0)).process_tasks(None)
    assert recovering.calls == 2


async def test_cancelled_error_is_never_retried_and_fails_the_phase() -> None:
    flaky = Attempts(asyncio.CancelledError())
    function = task_func(
        flaky, retries=3, initial_delay=0, retryable_exceptions=(asyncio.CancelledError,)
    )
    leaf = await run_and_get_leaf(single(function))
    assert isinstance(leaf, PhaseCancelledError)
    assert isinstance(leaf.__cause__, asyncio.CancelledError)
    assert flaky.calls == 1


async def test_a_cancelled_error_leaking_from_an_inner_await_is_a_failure_not_a_success() -> None:
    log: list[str] = []

    async def leaks(ctx: object) -> None:
        inner = asyncio.get_running_loop().create_future()
        inner.cancel()
        await inner

    async def dependent(ctx: object) -> None:
        log.append("dependent started")

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Leaky", pre_execute=task_func(leaks)))
        .add_task(AsyncTask("After", pre_execute=task_func(dependent)), depends_on=("Leaky",))
        .build()
    )
    leaf = await run_and_get_leaf(processor)
    assert isinstance(leaf, PhaseCancelledError)
    assert "'Leaky'" in str(leaf)
    assert log == []


async def test_backoff_delay_follows_the_formula_with_jitter_from_the_given_rng() -> None:
    function = task_func(Attempts(), initial_delay=0.5, backoff_factor=3.0)
    rng = random.Random(7)
    twin = random.Random(7)
    for retry in range(4):
        delay = backoff_delay(function, retry, rng)
        assert delay == 0.5 * 3.0**retry * twin.uniform(0.5, 1.0)
        assert 0.25 * 3.0**retry <= delay <= 0.5 * 3.0**retry


async def test_cancelling_the_run_during_backoff_ends_the_task_without_waiting() -> None:
    failed_once = asyncio.Event()
    cleaned = asyncio.Event()

    async def flaky(ctx: object) -> None:
        failed_once.set()
        raise ConnectionError("try later")

    async def cleanup(ctx: object) -> None:
        cleaned.set()

    # An hour-long backoff: the test only finishes if cancellation ends it.
    processor = single(task_func(flaky, retries=1, initial_delay=3600), post=task_func(cleanup))
    run = asyncio.create_task(processor.process_tasks(None))
    await failed_once.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert cleaned.is_set()


async def test_a_sync_function_runs_inline_and_its_exception_is_reported() -> None:
    seen: list[str] = []

    def validate(ctx: dict[str, int]) -> None:
        seen.append("validated")
        if ctx["user_id"] <= 0:
            raise ValueError("invalid user id")

    processor = single(task_sync_func(validate))
    await processor.process_tasks({"user_id": 3})
    leaf = await run_and_get_leaf(processor, {"user_id": 0})
    assert isinstance(leaf, ValueError)
    assert seen == ["validated", "validated"]


async def test_a_sync_function_is_retried_like_an_async_one() -> None:
    calls = 0

    def flaky(ctx: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("once")

    await single(task_sync_func(flaky, retries=1, initial_delay=0)).process_tasks(None)
    assert calls == 2


# -- task groups ---------------------------------------------------------------------


async def test_a_task_group_attempt_ends_only_when_its_children_have() -> None:
    child_may_finish = asyncio.Event()
    child_started = asyncio.Event()
    log: list[str] = []

    async def child() -> None:
        child_started.set()
        await child_may_finish.wait()
        log.append("child done")

    async def parent(ctx: object, group: SdaxTaskGroup) -> None:
        group.create_task(child(), name="child")
        log.append("parent returned")

    async def dependent(ctx: object) -> None:
        log.append("dependent started")

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Parent", pre_execute=task_group_func(parent)))
        .add_task(AsyncTask("After", pre_execute=task_func(dependent)), depends_on=("Parent",))
        .build()
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await child_started.wait()
    assert "dependent started" not in log
    child_may_finish.set()
    await run
    assert log == ["parent returned", "child done", "dependent started"]


async def test_a_child_failing_after_its_parent_returned_fails_the_phase_and_cancels_siblings() -> (
    None
):
    sibling_cancelled = asyncio.Event()
    failing_may_go = asyncio.Event()

    async def sibling() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            sibling_cancelled.set()
            raise

    async def failing() -> None:
        await failing_may_go.wait()
        raise ValueError("child broke")

    async def parent(ctx: object, group: SdaxTaskGroup) -> None:
        group.create_task(sibling())
        group.create_task(failing())
        failing_may_go.set()  # it fails once the parent has returned

    leaf = await run_and_get_leaf(single(task_group_func(parent)))
    assert isinstance(leaf, ValueError)
    assert any("'T'" in note for note in leaf.__notes__)
    assert sibling_cancelled.is_set()


async def test_a_child_failure_while_the_parent_runs_cancels_the_parent() -> None:
    parent_cancelled = asyncio.Event()

    async def failing() -> None:
        raise ValueError("child broke")

    async def parent(ctx: object, group: SdaxTaskGroup) -> None:
        group.create_task(failing())
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            parent_cancelled.set()
            raise

    leaf = await run_and_get_leaf(single(task_group_func(parent)))
    assert isinstance(leaf, ValueError)
    assert parent_cancelled.is_set()


async def test_a_task_group_timeout_covers_the_children() -> None:
    async def parent(ctx: object, group: SdaxTaskGroup) -> None:
        group.create_task(asyncio.Event().wait())

    leaf = await run_and_get_leaf(single(task_group_func(parent, timeout=0)))
    assert type(leaf) is TimeoutError


async def test_a_task_group_attempt_with_a_retryable_child_failure_is_retried() -> None:
    attempts = 0

    async def child(attempt: int) -> None:
        if attempt == 1:
            raise ConnectionError("first attempt only")

    async def parent(ctx: object, group: SdaxTaskGroup) -> None:
        nonlocal attempts
        attempts += 1
        group.create_task(child(attempts))

    await single(task_group_func(parent, retries=1, initial_delay=0)).process_tasks(None)
    assert attempts == 2


async def test_cancelling_the_run_cancels_task_group_children() -> None:
    child_started = asyncio.Event()
    child_cancelled = asyncio.Event()

    async def child() -> None:
        child_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            child_cancelled.set()
            raise

    async def parent(ctx: object, group: SdaxTaskGroup) -> None:
        group.create_task(child())

    run = asyncio.create_task(single(task_group_func(parent)).process_tasks(None))
    await child_started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert child_cancelled.is_set()


async def test_children_cannot_be_added_once_the_attempt_is_over() -> None:
    kept: list[SdaxTaskGroup] = []

    async def parent(ctx: object, group: SdaxTaskGroup) -> None:
        kept.append(group)

    await single(task_group_func(parent)).process_tasks(None)
    coroutine = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="task group of task 'T'"):
        kept[0].create_task(coroutine)
