"""task_thread_func: blocking functions in a worker thread (issue 6)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sdax import AsyncDagTaskProcessor, AsyncTask, SdaxExecutionError, task_func, task_thread_func

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def single(**phases: Any) -> AsyncDagTaskProcessor[Any]:
    return AsyncDagTaskProcessor[Any].builder().add_task(AsyncTask("Blocking", **phases)).build()


async def test_the_function_runs_in_a_worker_thread_with_the_callers_context_variables() -> None:
    seen: dict[str, object] = {}

    def blocking(ctx: dict[str, object]) -> None:
        ctx["thread"] = threading.get_ident()
        ctx["request_id"] = request_id.get()

    request_id.set("req-42")
    await single(execute=task_thread_func(blocking)).process_tasks(seen)
    assert seen["thread"] != threading.get_ident()
    assert seen["request_id"] == "req-42"


async def test_a_user_executor_is_used_when_given() -> None:
    seen: dict[str, str] = {}

    def blocking(ctx: dict[str, str]) -> None:
        ctx["thread"] = threading.current_thread().name

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdax-offload") as executor:
        processor = single(execute=task_thread_func(blocking, executor=executor))
        await processor.process_tasks(seen)
    assert seen["thread"].startswith("sdax-offload")


async def test_a_timeout_stops_the_waiting_and_is_reported_while_the_thread_runs_on() -> None:
    may_finish = threading.Event()
    finished = threading.Event()

    def blocking(ctx: object) -> None:
        may_finish.wait()
        finished.set()

    with ThreadPoolExecutor(max_workers=1) as executor:
        processor = single(pre_execute=task_thread_func(blocking, timeout=0, executor=executor))
        with pytest.raises(SdaxExecutionError) as caught:
            await processor.process_tasks(None)
        assert not finished.is_set()  # the thread is still in the function
        may_finish.set()
    assert finished.is_set()
    (leaf,) = caught.value.leaf_exceptions()
    assert type(leaf) is TimeoutError


async def test_cancelling_the_run_stops_waiting_for_the_thread_and_still_cleans_up() -> None:
    entered = threading.Event()
    may_finish = threading.Event()
    cleaned: list[str] = []

    def blocking(ctx: object) -> None:
        entered.set()
        may_finish.wait()

    async def cleanup(ctx: object) -> None:
        cleaned.append("post")

    with ThreadPoolExecutor(max_workers=1) as executor:
        processor = single(
            pre_execute=task_thread_func(blocking, executor=executor),
            post_execute=task_func(cleanup),
        )
        run = asyncio.create_task(processor.process_tasks(None))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        may_finish.set()
    assert cleaned == ["post"]


async def test_thread_functions_are_retried_like_async_ones() -> None:
    calls: list[int] = []

    def flaky(ctx: object) -> None:
        calls.append(threading.get_ident())
        if len(calls) == 1:
            raise ConnectionError("once")

    await single(execute=task_thread_func(flaky, retries=1, initial_delay=0)).process_tasks(None)
    assert len(calls) == 2
