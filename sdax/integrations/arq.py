"""arq glue: one shared processor per worker, a run per job, a drain at shutdown.

    from sdax.integrations.arq import SdaxWorker

    sdax_worker = SdaxWorker(build_processor, cleanup_budget=5.0, drain_budget=10.0,
                             startup=open_pool, shutdown=close_pool)

    async def charge(ctx, order_id):
        await sdax_worker.run(ctx, Order(order_id, pool=ctx["pool"]))  # a fresh context per job

    class WorkerSettings:
        functions = [charge]
        on_startup = sdax_worker.on_startup
        on_shutdown = sdax_worker.on_shutdown
        job_timeout = 30
        job_completion_wait = 20

    if __name__ == "__main__":
        sdax_worker.run_worker(WorkerSettings)

The contract, against arq's own lifecycle (checked on arq 0.28):

- `on_startup(ctx)` runs `startup(ctx)` (open what the runs share: a pool),
  then builds the one processor of this worker (`build(ctx)`, or the
  processor given) and puts it at `ctx[key]`. arq calls it once, before it
  polls for the first job.
- `run(ctx, context)` runs the processor for one job with the job's own
  `context`, tagged `"<job_id>#<job_try>"`, with `cleanup_budget` (and
  `timeout`, if set) on every run. Cleanup is shielded: when arq cancels
  the job (its `job_timeout`, a shutdown signal, an abort), the run's posts
  still run, up to `cleanup_budget`, before the job ends. A run that failed
  only with exceptions of `retry_on` (every leaf) becomes
  `arq.Retry(defer=retry_defer)` while `ctx["job_try"] < max_tries`, so
  arq runs the job again after the cleanup; on the last try the run's own
  error is what arq records (pass the worker's `max_tries`).
- `on_shutdown(ctx)` is called by arq's `Worker.close()`: after the
  worker stopped polling (SIGTERM/SIGINT, with `job_completion_wait`
  seconds for jobs to finish first) and after it awaited its job tasks. It
  waits until the processor has no run in flight (a run in a task the job
  did not await, say), for at most `drain_budget` seconds, logs and
  records in `last_drain` what was left, and only then runs `shutdown(ctx)`
  (close the pool), so no cleanup ever uses a closed pool unless the budget
  ran out. Then arq closes its redis pool and the loop stops.
- `run_worker(WorkerSettings)` starts the worker as `arq.worker.run_worker`
  does, and finishes the shutdown itself when arq's `close()` was cut
  short before it called `on_shutdown` (it can be, see `run_worker`).
  Start workers with it (`python -m yourmodule`) rather than the `arq`
  command line, which cannot do that.

Budgets. arq marks a running job "in progress" for the worker's longest
job timeout plus 10 s; a job still cleaning up after that can be started again by another
worker. Keep `timeout` + `cleanup_budget` under `job_timeout` + 10 s
(`check_job_timeout` says whether it is). A cancelled job takes up to
`cleanup_budget` to end, and arq's `close()` waits for it without a bound
of its own, so `cleanup_budget` is required. arq's default
`job_completion_wait` is 0: a SIGTERM cancels every running job at once
(each is retried on the next start, `retry_jobs=True`); set it to let jobs
finish. Needs the `arq` extra.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

try:
    from arq.typing import WorkerSettingsType
    from arq.worker import Retry, Worker, create_worker
except ImportError as error:  # pragma: no cover - exercised with arq hidden
    raise ImportError(
        "sdax.integrations.arq needs arq: pip install 'sdax[arq]' "
        "(from a clone of this repository while this version is not on PyPI)"
    ) from error

from sdax.errors import SdaxExecutionError
from sdax.processor import AsyncTaskProcessor

T = TypeVar("T")
Ctx = dict[Any, Any]
Hook = Callable[[Ctx], Awaitable[object]]

_log = logging.getLogger("sdax.integrations.arq")

# arq 0.28: a job's "in progress" key lives for the longest job timeout plus this.
ARQ_IN_PROGRESS_MARGIN = 10.0


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What `on_shutdown` found: whether every run ended in time, and how many had not."""

    drained: bool
    in_flight: int


class SdaxWorker(Generic[T]):
    """One processor shared by every job of an arq worker; see the module docstring."""

    def __init__(
        self,
        processor: AsyncTaskProcessor[T] | Callable[[Ctx], AsyncTaskProcessor[T]],
        *,
        cleanup_budget: float,
        drain_budget: float | None = 10.0,
        timeout: float | None = None,
        startup: Hook | None = None,
        shutdown: Hook | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        retry_defer: float = 1.0,
        max_tries: int = 5,
        key: str = "sdax",
    ) -> None:
        for name, seconds in (
            ("cleanup_budget", cleanup_budget),
            ("drain_budget", drain_budget),
            ("timeout", timeout),
            ("retry_defer", retry_defer),
        ):
            if seconds is not None and not (isinstance(seconds, int | float) and seconds >= 0):
                raise ValueError(f"SdaxWorker: {name} must be a number >= 0, got {seconds!r}")
        if not math.isfinite(cleanup_budget):
            raise ValueError("SdaxWorker: cleanup_budget must be finite (arq waits for it)")
        if max_tries < 1:
            raise ValueError(f"SdaxWorker: max_tries must be >= 1, got {max_tries!r}")
        self._build: Callable[[Ctx], AsyncTaskProcessor[T]]
        if isinstance(processor, AsyncTaskProcessor):
            built = processor
            self._build = lambda ctx: built
        else:
            self._build = processor
        self.cleanup_budget = cleanup_budget
        self.drain_budget = drain_budget
        self.timeout = timeout
        self.retry_on = retry_on
        self.retry_defer = retry_defer
        self.max_tries = max_tries
        self.key = key
        self._startup = startup
        self._shutdown = shutdown
        self._processor: AsyncTaskProcessor[T] | None = None
        self.last_drain: DrainResult | None = None
        self._shutdown_started = False

    @property
    def processor(self) -> AsyncTaskProcessor[T]:
        """The worker's processor, once `on_startup` has built it."""
        if self._processor is None:
            raise RuntimeError(
                "SdaxWorker: no processor yet: set `on_startup = sdax_worker.on_startup` "
                "in the arq WorkerSettings"
            )
        return self._processor

    def check_job_timeout(self, job_timeout: float) -> bool:
        """True if a run and its cleanup end before arq may hand the job to another worker."""
        run = self.timeout if self.timeout is not None else job_timeout
        return min(run, job_timeout) + self.cleanup_budget < job_timeout + ARQ_IN_PROGRESS_MARGIN

    async def on_startup(self, ctx: Ctx) -> None:
        """arq's on_startup: open shared resources, then build the processor into `ctx`."""
        if self._startup is not None:
            await self._startup(ctx)
        self._processor = self._build(ctx)
        ctx[self.key] = self._processor

    async def run(self, ctx: Ctx, context: T) -> None:
        """Run the processor for the job whose arq `ctx` this is, with its own `context`."""
        tag = f"{ctx.get('job_id', '?')}#{ctx.get('job_try', '?')}"
        try:
            await self.processor.process_tasks(
                context, timeout=self.timeout, cleanup_budget=self.cleanup_budget, tag=tag
            )
        except SdaxExecutionError as failed:
            if self._retryable(failed) and ctx.get("job_try", 1) < self.max_tries:
                raise Retry(defer=self.retry_defer) from failed
            raise

    def _retryable(self, failed: SdaxExecutionError) -> bool:
        leaves = failed.leaf_exceptions()
        return bool(self.retry_on) and all(isinstance(leaf, self.retry_on) for leaf in leaves)

    async def on_shutdown(self, ctx: Ctx) -> DrainResult:
        """arq's on_shutdown: drain the processor within `drain_budget`, then `shutdown(ctx)`."""
        self._shutdown_started = True
        try:
            if self._processor is not None:
                await self._processor.drain(timeout=self.drain_budget)
        finally:
            # Also when the drain itself is cancelled: record what is left, and
            # still close the shared resources, or the worker never stops.
            left = 0 if self._processor is None else self._processor.in_flight
            self.last_drain = DrainResult(drained=left == 0, in_flight=left)
            if left:
                _log.warning(
                    "drain budget of %s s spent with %d run(s) in flight; "
                    "closing shared resources anyway",
                    self.drain_budget,
                    left,
                )
            if self._shutdown is not None:
                await self._shutdown(ctx)
        return self.last_drain

    def run_worker(self, settings: WorkerSettingsType, **kwargs: Any) -> Worker:
        """`arq.worker.run_worker`, and then `on_shutdown` if arq's close() was cut short.

        arq 0.28's `Worker.close()` awaits its job tasks with a `gather` that
        raises as soon as one of them ended cancelled: a SIGTERM that lands
        while a job is being fetched or its result written (outside the job
        function, which turns a cancellation into a retry). `close()` then
        skips `on_shutdown`, the worker exits with a traceback, and runs
        still in their cleanup are left behind. Here, on that same loop:
        wait for arq's job tasks (within `drain_budget`), run `on_shutdown`
        (drain, then `shutdown(ctx)`), close arq's redis pool, and return.
        """
        worker = create_worker(settings, **kwargs)
        try:
            worker.run()
        except asyncio.CancelledError:
            if self._shutdown_started:
                raise
            _log.warning(
                "arq's Worker.close() ended early (a job task was cancelled outside its job);"
                " finishing the shutdown: job tasks, drain, on_shutdown, redis pool"
            )
            worker.loop.run_until_complete(self._finish_shutdown(worker))
        return worker

    async def _finish_shutdown(self, worker: Worker) -> None:
        pending = [task for task in worker.tasks.values() if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.drain_budget)
        await self.on_shutdown(worker.ctx)
        await worker.pool.close(close_connection_pool=True)


__all__ = ["ARQ_IN_PROGRESS_MARGIN", "DrainResult", "SdaxWorker"]
