"""sdax.integrations.arq without a redis server: the hooks arq calls, driven by hand.

arq hands `on_startup` / `on_shutdown` its worker ctx and each job a ctx with
`job_id` and `job_try`; these tests pass such dicts. The real worker on a
real redis-server is `make integration-worker` (examples/worker/).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("arq")

from arq.worker import Retry

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    RunObserver,
    RunStarted,
    SdaxExecutionError,
    task_func,
)
from sdax.integrations.arq import DrainResult, SdaxWorker


@dataclass
class Job:
    """A per-job context: what happened to its one "connection"."""

    log: list[str]
    fail_with: BaseException | None = None
    hold: asyncio.Event | None = None
    in_use: asyncio.Event = field(default_factory=asyncio.Event)


async def connect(job: Job) -> None:
    job.log.append("open")
    if job.fail_with is not None:
        raise job.fail_with


async def use(job: Job) -> None:
    job.in_use.set()
    if job.hold is not None:
        await job.hold.wait()


async def close(job: Job) -> None:
    job.log.append("close")


class Tags(RunObserver):
    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def run_started(self, event: RunStarted) -> None:
        self.seen.append(event.tag)


def build(tags: RunObserver | None = None) -> AsyncDagTaskProcessor[Job]:
    task = AsyncTask(
        "connection",
        pre_execute=task_func(connect),
        execute=task_func(use),
        post_execute=task_func(close),
    )
    builder = AsyncDagTaskProcessor[Job].builder().add_task(task)
    return builder.build(observers=[tags] if tags else [])


def job_ctx(worker_ctx: dict[str, Any], job_id: str, job_try: int = 1) -> dict[str, Any]:
    return {**worker_ctx, "job_id": job_id, "job_try": job_try}


async def test_on_startup_opens_shared_resources_then_puts_the_processor_in_ctx() -> None:
    order: list[str] = []

    async def open_pool(ctx: dict[str, Any]) -> None:
        order.append("pool")
        ctx["pool"] = "a pool"

    def build_with(ctx: dict[str, Any]) -> AsyncDagTaskProcessor[Job]:
        order.append(f"build with {ctx['pool']}")
        return build()

    worker = SdaxWorker(build_with, cleanup_budget=1.0, startup=open_pool)
    with pytest.raises(RuntimeError, match="on_startup"):
        _ = worker.processor
    ctx: dict[str, Any] = {}
    await worker.on_startup(ctx)
    assert order == ["pool", "build with a pool"]
    assert ctx["sdax"] is worker.processor


async def test_each_job_runs_the_shared_processor_tagged_with_its_id_and_try() -> None:
    tags = Tags()
    worker = SdaxWorker(build(tags), cleanup_budget=1.0)
    ctx: dict[str, Any] = {}
    await worker.on_startup(ctx)
    first, second = Job([]), Job([])
    await worker.run(job_ctx(ctx, "a"), first)
    await worker.run(job_ctx(ctx, "b", job_try=3), second)
    assert tags.seen == ["a#1", "b#3"]
    assert first.log == second.log == ["open", "close"]


async def test_a_job_cancelled_by_arq_still_closes_its_connection_before_it_ends() -> None:
    worker = SdaxWorker(build(), cleanup_budget=1.0)
    ctx: dict[str, Any] = {}
    await worker.on_startup(ctx)
    job = Job([], hold=asyncio.Event())
    running = asyncio.create_task(worker.run(job_ctx(ctx, "a"), job))
    await job.in_use.wait()
    running.cancel()  # what arq's job_timeout and its SIGTERM handler do
    with pytest.raises(asyncio.CancelledError):
        await running
    assert job.log == ["open", "close"]
    assert worker.processor.in_flight == 0


async def test_a_run_that_failed_only_with_retry_on_errors_asks_arq_for_a_retry() -> None:
    worker = SdaxWorker(
        build(), cleanup_budget=1.0, retry_on=(ConnectionError,), retry_defer=0.25, max_tries=3
    )
    ctx: dict[str, Any] = {}
    await worker.on_startup(ctx)
    job = Job([], fail_with=ConnectionError("refused"))
    with pytest.raises(Retry) as retry:
        await worker.run(job_ctx(ctx, "a", job_try=2), job)
    assert retry.value.defer_score == 250
    assert isinstance(retry.value.__cause__, SdaxExecutionError)
    assert job.log == ["open", "close"]


async def test_on_the_last_try_the_runs_own_error_reaches_arq() -> None:
    worker = SdaxWorker(build(), cleanup_budget=1.0, retry_on=(ConnectionError,), max_tries=3)
    ctx: dict[str, Any] = {}
    await worker.on_startup(ctx)
    with pytest.raises(SdaxExecutionError):
        await worker.run(job_ctx(ctx, "a", job_try=3), Job([], fail_with=ConnectionError()))


async def test_other_failures_are_not_retried() -> None:
    worker = SdaxWorker(build(), cleanup_budget=1.0, retry_on=(ConnectionError,))
    ctx: dict[str, Any] = {}
    await worker.on_startup(ctx)
    with pytest.raises(SdaxExecutionError) as failed:
        await worker.run(job_ctx(ctx, "a"), Job([], fail_with=ValueError("bad")))
    assert [type(leaf) for leaf in failed.value.leaf_exceptions()] == [ValueError]


async def test_on_shutdown_waits_for_runs_in_flight_before_closing_shared_resources() -> None:
    log: list[str] = []

    async def close_pool(ctx: dict[str, Any]) -> None:
        log.append("pool closed")

    worker = SdaxWorker(build(), cleanup_budget=1.0, drain_budget=None, shutdown=close_pool)
    ctx: dict[str, Any] = {}
    await worker.on_startup(ctx)
    job = Job(log, hold=asyncio.Event())
    # A run arq does not know about: the job started it in a task it did not await.
    detached = asyncio.create_task(worker.run(job_ctx(ctx, "a"), job))
    await job.in_use.wait()
    shutting_down = asyncio.create_task(worker.on_shutdown(ctx))
    assert job.hold is not None
    job.hold.set()  # on_shutdown takes its first step before the run resumes
    assert await shutting_down == DrainResult(drained=True, in_flight=0)
    assert log == ["open", "close", "pool closed"]
    await detached


async def test_a_spent_drain_budget_is_reported_and_shared_resources_still_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []

    async def close_pool(ctx: dict[str, Any]) -> None:
        log.append("pool closed")

    worker = SdaxWorker(build(), cleanup_budget=1.0, drain_budget=0, shutdown=close_pool)
    ctx: dict[str, Any] = {}
    await worker.on_startup(ctx)
    job = Job(log, hold=asyncio.Event())
    detached = asyncio.create_task(worker.run(job_ctx(ctx, "a"), job))
    await job.in_use.wait()
    with caplog.at_level(logging.WARNING, logger="sdax.integrations.arq"):
        result = await worker.on_shutdown(ctx)
    assert result == DrainResult(drained=False, in_flight=1)
    assert worker.last_drain == result
    assert log == ["open", "pool closed"]
    assert "1 run(s) in flight" in caplog.text
    assert job.hold is not None
    job.hold.set()
    await detached


async def test_on_shutdown_before_startup_still_runs_the_shutdown_hook() -> None:
    closed: list[str] = []

    async def close_pool(ctx: dict[str, Any]) -> None:
        closed.append("pool")

    worker = SdaxWorker(build(), cleanup_budget=1.0, shutdown=close_pool)
    assert await worker.on_shutdown({}) == DrainResult(drained=True, in_flight=0)
    assert closed == ["pool"]


def test_settings_are_checked_where_they_are_given() -> None:
    with pytest.raises(ValueError, match="cleanup_budget"):
        SdaxWorker(build(), cleanup_budget=float("inf"))
    with pytest.raises(ValueError, match="drain_budget"):
        SdaxWorker(build(), cleanup_budget=1.0, drain_budget=-1)
    with pytest.raises(ValueError, match="max_tries"):
        SdaxWorker(build(), cleanup_budget=1.0, max_tries=0)


def test_check_job_timeout_compares_run_and_cleanup_with_arqs_in_progress_window() -> None:
    assert SdaxWorker(build(), cleanup_budget=5.0).check_job_timeout(30)
    assert not SdaxWorker(build(), cleanup_budget=15.0).check_job_timeout(30)
    assert SdaxWorker(build(), cleanup_budget=15.0, timeout=10.0).check_job_timeout(30)


class StubPool:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def close(self, close_connection_pool: bool = False) -> None:
        self.log.append("arq pool closed")


class CutShortWorker:
    """Stands in for arq's Worker whose close() raised before calling on_shutdown.

    Its run() starts one job, cancels it as arq's SIGTERM handler does, and
    raises CancelledError with the job's cleanup still to run.
    """

    def __init__(self, sdax_worker: SdaxWorker[Job], log: list[str]) -> None:
        self.sdax_worker = sdax_worker
        self.loop = asyncio.new_event_loop()
        self.ctx: dict[str, Any] = {}
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.pool = StubPool(log)
        self.job = Job(log, hold=asyncio.Event())

    def run(self) -> None:
        self.loop.run_until_complete(self.sdax_worker.on_startup(self.ctx))
        running = self.loop.create_task(self.sdax_worker.run(job_ctx(self.ctx, "a"), self.job))
        self.tasks["a"] = running
        self.loop.run_until_complete(self.job.in_use.wait())
        running.cancel()
        raise asyncio.CancelledError  # what arq's close() lets out of Worker.run()


def test_run_worker_finishes_a_shutdown_that_arq_cut_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []

    async def close_pool(ctx: dict[str, Any]) -> None:
        log.append("pool closed")

    sdax_worker = SdaxWorker(build(), cleanup_budget=1.0, drain_budget=None, shutdown=close_pool)
    stub = CutShortWorker(sdax_worker, log)
    monkeypatch.setattr("sdax.integrations.arq.create_worker", lambda settings, **kw: stub)
    try:
        assert sdax_worker.run_worker({"functions": []}) is stub
    finally:
        stub.loop.close()
    assert log == ["open", "close", "pool closed", "arq pool closed"]
    assert sdax_worker.last_drain == DrainResult(drained=True, in_flight=0)
