"""A successful run leaves no reference cycles behind (issue 3)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from sdax import AsyncTask, AsyncTaskProcessor, SdaxTaskGroup, task_func, task_group_func


async def work(ctx: list[int]) -> None:
    ctx[0] += 1


async def with_child(ctx: list[int], group: SdaxTaskGroup) -> None:
    group.create_task(work(ctx))


@pytest.fixture
def collector_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("collector_paused")
async def test_successful_runs_create_no_reference_cycles() -> None:
    plain, policed = task_func(work), task_func(work, timeout=5, retries=1)
    builder = AsyncTaskProcessor[list[int]].builder()
    for i in range(15):
        execute = (policed, task_group_func(with_child), plain)[i % 3]
        builder.add_task(
            AsyncTask(f"t{i}", pre_execute=plain, execute=execute, post_execute=plain), level=i % 3
        )
    processor = builder.build()
    await processor.process_tasks([0])  # first run: imports, caches, lazily built state
    await asyncio.sleep(0)
    gc.collect()
    for _ in range(20):
        await processor.process_tasks([0])
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        ours = [
            obj
            for obj in gc.garbage
            if type(obj).__module__.startswith("sdax")
            or isinstance(obj, (asyncio.Task, asyncio.Future))
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert ours == []
