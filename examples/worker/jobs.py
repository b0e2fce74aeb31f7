"""An arq worker whose one job runs an sdax processor (run by examples/worker/drive.py).

Each job opens its own TCP connection to redis in a pre, uses it (PING) in
its execute and closes it in a post; every open and every close is appended
to this worker's ledger file as it happens, so the driver can count them
after the worker is gone. The job's `kind` picks its fault:

    ok       succeeds
    flaky    its auth pre raises ConnectionError on the first try: arq retries the job
    fail     its auth pre raises PermissionError: the job fails
    timeout  its auth pre outlives the task's own timeout: the job fails
    hang     its execute never returns: arq's job_timeout cancels the job

A success is committed to redis (a done-marker and a per-job counter, in
one MULTI) after the run; a later try of a job already committed (arq
re-runs a job cancelled at shutdown, which may have committed just before)
returns the committed result instead of doing the work again.

Settings come from the environment: SDAX_EXAMPLE_REDIS_PORT, SDAX_EXAMPLE_LEDGER_DIR,
SDAX_EXAMPLE_COMPLETION_WAIT (arq's job_completion_wait, seconds).
"""

from __future__ import annotations

import asyncio
import logging.config
import os
from dataclasses import dataclass
from typing import Any

from arq.connections import RedisSettings
from arq.logs import default_log_config

from sdax import AsyncDagTaskProcessor, AsyncTask, task_func
from sdax.integrations.arq import SdaxWorker

HOST = "127.0.0.1"
PORT = int(os.environ.get("SDAX_EXAMPLE_REDIS_PORT", "6379"))
LEDGER_DIR = os.environ.get("SDAX_EXAMPLE_LEDGER_DIR", ".")
COMPLETION_WAIT = int(os.environ.get("SDAX_EXAMPLE_COMPLETION_WAIT", "1"))

JOB_TIMEOUT = 1.5  # arq cancels a job still running after this
AUTH_TIMEOUT = 0.5  # the auth pre's own timeout: an ok job's takes < 10 ms
CLEANUP_BUDGET = 2.0  # bounds each run's posts, also under arq's cancellation
MAX_TRIES = 5


@dataclass
class JobContext:
    """One job's state: the arq job it belongs to, and the connection it opened."""

    n: int
    kind: str
    job_try: int
    ledger: int  # the worker's ledger file descriptor, shared by every job
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    pong: bool = False


def record(job: JobContext, what: str) -> None:
    # One write(2) per line, no await: a cancellation cannot split a record from its deed.
    os.write(job.ledger, f"{what} {job.n} {job.job_try}\n".encode())


async def open_connection(job: JobContext) -> None:
    job.reader, job.writer = await asyncio.open_connection(HOST, PORT)
    record(job, "open")


async def close_connection(job: JobContext) -> None:
    if job.writer is None:  # the connect itself failed or was cancelled: nothing to close
        return
    job.writer.close()
    record(job, "close")
    await job.writer.wait_closed()


async def check_auth(job: JobContext) -> None:
    if job.kind == "fail":
        raise PermissionError(f"job {job.n}: not allowed")
    if job.kind == "flaky" and job.job_try == 1:
        raise ConnectionError(f"job {job.n}: auth service unreachable (first try)")
    if job.kind == "timeout":
        await asyncio.sleep(60)  # the task's timeout cuts this off
    await asyncio.sleep(0.002 * (job.n % 5))


async def do_work(job: JobContext) -> None:
    assert job.reader is not None
    assert job.writer is not None
    job.writer.write(b"PING\r\n")
    await job.writer.drain()
    job.pong = await job.reader.readline() == b"+PONG\r\n"
    if job.kind == "hang":
        await asyncio.Event().wait()  # until arq's job_timeout cancels the job
    await asyncio.sleep(0.005 + 0.005 * (job.n % 4))


def build_processor(ctx: dict[str, Any]) -> AsyncDagTaskProcessor[JobContext]:
    return (
        AsyncDagTaskProcessor[JobContext]
        .builder()
        .add_task(
            AsyncTask(
                "connection",
                pre_execute=task_func(open_connection, timeout=1.0),
                post_execute=task_func(close_connection),
            )
        )
        .add_task(
            AsyncTask("auth", pre_execute=task_func(check_auth, timeout=AUTH_TIMEOUT)),
            depends_on=("connection",),
        )
        .add_task(AsyncTask("work", execute=task_func(do_work)), depends_on=("auth",))
        .build()
    )


async def open_ledger(ctx: dict[str, Any]) -> None:
    path = os.path.join(LEDGER_DIR, f"ledger-{os.getpid()}.log")
    ctx["ledger"] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


async def close_ledger(ctx: dict[str, Any]) -> None:
    drain = sdax_worker.last_drain
    if drain is not None:  # what the drain found, for the driver
        await ctx["redis"].hset(
            "example:drain", str(os.getpid()), f"{drain.drained} {drain.in_flight}"
        )
    os.close(ctx["ledger"])


sdax_worker = SdaxWorker(
    build_processor,
    cleanup_budget=CLEANUP_BUDGET,
    drain_budget=5.0,
    startup=open_ledger,
    shutdown=close_ledger,
    retry_on=(ConnectionError,),
    retry_defer=0.1,
    max_tries=MAX_TRIES,
)


async def work(ctx: dict[str, Any], n: int, kind: str) -> dict[str, Any]:
    redis = ctx["redis"]
    if await redis.get(f"example:done:{n}") is not None:
        await redis.incr("example:replays")
        return {"n": n, "replayed": True}
    job = JobContext(n, kind, ctx["job_try"], ctx["ledger"])
    await sdax_worker.run(ctx, job)
    async with redis.pipeline(transaction=True) as commit:
        commit.set(f"example:done:{n}", ctx["job_try"])
        commit.hincrby("example:successes", str(n), 1)
        await commit.execute()
    return {"n": n, "pong": job.pong}


class WorkerSettings:
    functions = [work]  # noqa: RUF012 - arq reads these class attributes
    redis_settings = RedisSettings(host=HOST, port=PORT)
    on_startup = sdax_worker.on_startup
    on_shutdown = sdax_worker.on_shutdown
    max_jobs = 40
    job_timeout = JOB_TIMEOUT
    max_tries = MAX_TRIES
    keep_result = 3600
    poll_delay = 0.05
    # On SIGTERM: stop taking jobs, give running ones this long, then cancel the rest
    # (arq puts them back in the queue; their sdax cleanup runs first). 0: cancel at once.
    job_completion_wait = COMPLETION_WAIT


assert sdax_worker.check_job_timeout(JOB_TIMEOUT)

if __name__ == "__main__":
    logging.config.dictConfig(default_log_config(verbose=False))  # what `arq` the CLI does
    # Not arq.worker.run_worker: this one also finishes a shutdown that arq's close() cut short.
    sdax_worker.run_worker(WorkerSettings)  # type: ignore[arg-type]
