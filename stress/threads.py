"""Thread phases: `task_thread_func` functions whose every attempt is logged from both sides.

sdax runs a thread phase's attempt by handing a call to an executor
(`executor.submit`) and awaiting the future it gets back; when the attempt
times out or is cancelled, asyncio cancels that future and sdax stops
waiting, while the thread runs on. Every thread phase of a stress processor
runs on a `StressExecutor` (given to `task_thread_func`, or installed as
the loop's default executor), which sees both moments on the loop thread:

- `submit`: the attempt starts. Logged as START there (obj THREAD), since
  the function itself may never run: a future cancelled before a worker
  picks it up is dropped.
- `TrackedFuture.cancel`: sdax has stopped waiting ("abandoned"). Logged as
  the attempt's CANCELLED end, unless the thread logged its own end first.

The thread logs its end itself (END or RAISE) while sdax still waits, or,
once abandoned, as AFTER (which may come after the run returned). A block
waits on a `threading.Event` set when sdax abandons it (`release_early`)
or when the run returns, so no thread is left blocked.

On a deterministic loop (stress.virtual) the loop thread waits for each
attempt to reach its block or its end right at the submit, and for a
released one to end right after releasing it ("settling"), so that where
a thread's events fall in the run depends on the seed alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from stress.chain import Chain
from stress.faults import (
    AFTER,
    CANCEL_EPOCH,
    CANCELLED,
    CURRENT_RUN,
    END,
    RAISE,
    THREAD,
    InjectedError,
    InjectedRetryable,
    RunContext,
)
from stress.model import Act

P = ParamSpec("P")
R = TypeVar("R")

SAFETY = 120.0  # seconds: a block is always let go long before; never wedge the exit
_running = threading.local()  # .attempt: the ThreadAttempt this worker thread is running


class ThreadAttempt:
    """One attempt of a thread phase, from sdax's submit to the thread's end."""

    def __init__(self, ctx: RunContext, where: tuple[Hashable, str, int], act: Act) -> None:
        self.ctx, self.where, self.act = ctx, where, act
        self.epoch = CANCEL_EPOCH.get()  # the phase task's context, which sdax must pass on
        self.loop_thread = threading.get_ident()
        self.release = threading.Event()
        self.finished = False  # the thread logged its end while sdax still waited
        self.abandoned = False  # sdax stopped waiting first (logged as CANCELLED)
        self.chain: Chain | None = None
        self.work: Future[None] | None = None  # the pool's future of `_work`
        self.settled = threading.Event()  # the thread blocks or has ended

    def settle(self) -> None:
        """On a deterministic loop: wait until the thread blocks (if not let go) or ends."""
        if self.ctx.deterministic and self.work is not None:
            self.settled.wait(SAFETY)
            if self.release.is_set():
                # How the work ended is not for us to judge here: only that it did.
                with contextlib.suppress(Exception):
                    self.work.result(SAFETY)

    def abandon(self) -> None:
        """sdax cancelled the future (on the loop thread): it waits for the thread no more."""
        with self.ctx.lock:
            if not self.finished and not self.abandoned:
                self.abandoned = True
                self.ctx.append_locked(CANCELLED, self.where, 0, None)
        if self.chain is not None:
            self.chain.cancel()
        if self.act.release_early:
            self.release.set()

    def run(self, ctx: RunContext) -> None:
        """The function's body, in the worker thread."""
        problems = []
        if threading.get_ident() == self.loop_thread:
            problems.append(f"{self.where} ran on the event loop's thread")
        if CURRENT_RUN.get() is not ctx or CANCEL_EPOCH.get() != self.epoch:
            problems.append(f"{self.where} did not get the caller's contextvars")
        if self.act.op == "block":
            self.settled.set()
        if self.act.op == "block" and not self.release.wait(SAFETY):
            problems.append(f"{self.where} was never let go")
        error: Exception | None = None
        text = (
            f"injected {self.act.op} in {self.where[0]!r} {self.where[1]} attempt {self.where[2]}"
        )
        if self.act.op == "retryable":
            error = InjectedRetryable(text)
        elif self.act.op == "raise":
            error = InjectedError(text)
        kind = END if error is None else RAISE
        with ctx.lock:
            ctx.thread_problems.extend(problems)
            if self.abandoned:
                ctx.append_locked(AFTER, self.where, 0, kind)
            else:
                self.finished = True
                ctx.append_locked(kind, self.where, 0, error)
        if error is not None:
            raise error


class ThreadBody:
    """The function given to `task_thread_func` for one phase of one task."""

    def __init__(self, key: Hashable, phase: str) -> None:
        self.key, self.phase = key, phase

    def __call__(self, ctx: RunContext) -> None:
        attempt: ThreadAttempt | None = getattr(_running, "attempt", None)
        if attempt is None:
            raise RuntimeError("a stress thread phase ran on an executor other than ours")
        attempt.run(ctx)

    def start(self, ctx: RunContext) -> ThreadAttempt:
        """sdax submitted an attempt (on the loop thread, in the phase's task)."""
        where, plan = ctx.begin(self.key, self.phase, THREAD)
        attempt = ThreadAttempt(ctx, where, plan.body)
        ctx.threads.append(attempt)
        if ctx.threads_released:
            attempt.release.set()
        if plan.body.op == "block" and plan.body.trigger is not None:
            attempt.chain = ctx.schedule_cancel(plan.body.trigger)
        return attempt

    def __repr__(self) -> str:
        return f"thread({self.key!r}, {self.phase})"


class TrackedFuture(Future[Any]):
    """The future sdax awaits; asyncio cancels it when sdax stops waiting."""

    def __init__(self, attempt: ThreadAttempt) -> None:
        super().__init__()
        self.attempt = attempt

    def cancel(self) -> bool:
        self.attempt.abandon()
        cancelled = super().cancel()
        self.attempt.settle()
        return cancelled


class StressExecutor(ThreadPoolExecutor):
    """A thread pool that recognises the calls of stress thread phases and tracks them.

    Plenty of workers: a block released only when its run returns holds one
    until then, and must not keep another run's thread from starting.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=512, thread_name_prefix="stress-thread")

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        found = _ours(fn, args)
        if found is None:
            return super().submit(fn, *args, **kwargs)
        attempt = found[0].start(found[1])
        future = TrackedFuture(attempt)
        attempt.work = super().submit(
            _work, future, attempt, functools.partial(fn, *args, **kwargs)
        )
        attempt.settle()
        return future


def _ours(fn: object, args: tuple[object, ...]) -> tuple[ThreadBody, RunContext] | None:
    # sdax submits functools.partial(context.run, function, ctx): look inside.
    parts = (getattr(fn, "func", None), *getattr(fn, "args", ()), *args)
    body = next((part for part in parts if isinstance(part, ThreadBody)), None)
    ctx = next((part for part in parts if isinstance(part, RunContext)), None)
    return None if body is None or ctx is None else (body, ctx)


def _work(future: TrackedFuture, attempt: ThreadAttempt, call: Callable[[], object]) -> None:
    if not future.set_running_or_notify_cancel():
        attempt.settled.set()
        return  # abandoned before a worker got to it: the function never runs
    _running.attempt = attempt
    try:
        result = call()
    except BaseException as error:
        future.set_exception(error)
    else:
        future.set_result(result)
    finally:
        _running.attempt = None
        attempt.settled.set()


_given: list[StressExecutor] = []
_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StressExecutor] = (
    weakref.WeakKeyDictionary()
)


def given_executor() -> StressExecutor:
    """The executor passed as `executor=` (one for the process; its threads idle between runs)."""
    if not _given:
        _given.append(StressExecutor())
    return _given[0]


def install_default_executor(loop: asyncio.AbstractEventLoop) -> None:
    """Make a StressExecutor `loop`'s default executor (once per loop; the loop shuts it down)."""
    if loop not in _defaults:
        _defaults[loop] = executor = StressExecutor()
        loop.set_default_executor(executor)


async def wait_for_threads(contexts: list[RunContext], within: float) -> list[str]:
    """Wait for every thread the runs started to end; what is still running after `within` s."""
    pending = {
        asyncio.wrap_future(attempt.work): attempt
        for ctx in contexts
        for attempt in ctx.threads
        if attempt.work is not None and not attempt.work.done()
    }
    if not pending:
        return []
    _, stuck = await asyncio.wait(pending, timeout=within)
    return [f"a thread of {pending[future].where} never ended" for future in stuck]
