"""Scripted phase functions and the per-run context they log to.

Every phase function of a stress processor is a thin shim that asks the
run's context (`RunContext`, the `ctx` of `process_tasks`) what this attempt
should do, does it, and appends what happened to `ctx.log` with a
monotonic sequence number. The checker (sdax is not asked) works from that
log only.

Cancellation of the whole run is always fired from a loop callback, never
from inside a task, for two reasons: the run's context (`run_context`) can
only be entered from outside the run task, and a cancel requested from a
callback is handled by the coordinator before it starts anything else.
Each cancel bumps `CANCEL_EPOCH` in the run task's context; phase tasks
copy that context when sdax creates them, so a phase can tell whether it
was created before or after each cancellation.

Thread phases (stress.threads) log from worker threads, so every append
takes the run's lock; each event also gets a tick from a clock shared by
the runs of a batch, which orders the events of concurrent runs (shared
limits are checked on it). A run with a deadline starts a twin of sdax's
deadline timer just before sdax starts its own: the twin's DEADLINE event
marks the earliest moment sdax can have heard of the deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
from collections.abc import Hashable, Iterator
from typing import Any, NamedTuple

from sdax import RetryableException
from sdax.task_group import SdaxTaskGroup
from stress.chain import Chain
from stress.model import Act, Attempt, RunPlan

CANCEL_EPOCH: contextvars.ContextVar[int] = contextvars.ContextVar("stress_epoch", default=0)
# The RunContext whose run task's context this is (threads check that they got it).
CURRENT_RUN: contextvars.ContextVar[object] = contextvars.ContextVar("stress_run", default=None)

# Log event kinds. A part (0 = body, n = n-th child) logs START and one terminal.
START, END, RAISE, FATAL, SELFCANCEL = "start", "end", "raise", "fatal", "selfcancel"
CANCELLED, SWALLOWED, NOTAWAIT = "cancelled", "swallowed", "notawait"
TERMINAL = frozenset({END, RAISE, FATAL, SELFCANCEL, CANCELLED, SWALLOWED, NOTAWAIT})
SPAWN = "spawn"  # a body created a child: the attempt will wait for its children
CANCEL, FINISH = "cancel", "finish"  # run-level: a cancellation took effect; the run returned
DEADLINE = "deadline"  # run-level: the twin of sdax's deadline timer fired
BEGIN = "begin"  # our observer heard sdax start (key, phase)
# A thread's own end (obj: the kind it would have logged) after sdax stopped waiting
# for it; it may come after the run returned.
AFTER = "after"
THREAD = "thread"  # the obj of a thread attempt's START (logged when sdax submits it)


class InjectedError(Exception):
    """An ordinary, non-retryable failure a phase was told to raise."""


class InjectedRetryable(RetryableException):
    """A failure the default retry policy retries."""


class InjectedFatal(BaseException):
    """A KeyboardInterrupt-style error (asyncio does not re-raise it out of the loop)."""


class Ev(NamedTuple):
    seq: int
    kind: str
    key: Hashable
    phase: str
    attempt: int
    part: int
    obj: object = None  # the exception raised, or the cancel count for CANCEL
    epoch: int = 0  # cancellations requested before this phase task was created
    tick: int = 0  # position among the events of every run of the batch


class RunContext:
    """The `ctx` of one run: the plan, the log, and the run's cancellation switch.

    Phase functions only append to `log` and write `data`; the checker later
    verifies that nothing else changed (sdax must not touch the context).
    """

    def __init__(
        self,
        plan: RunPlan,
        loop: asyncio.AbstractEventLoop,
        clock: Iterator[int] | None = None,
    ) -> None:
        self.plan = plan
        self.loop = loop
        self.lock = threading.Lock()  # threads log too
        self.clock = itertools.count() if clock is None else clock
        self.log: list[Ev] = []
        self.data: dict[tuple[Hashable, str, int], int] = {}  # what tasks wrote
        self.counts: dict[tuple[Hashable, str], int] = {}  # attempts so far per phase
        self.run_task: asyncio.Task[None] | None = None
        self.run_context: contextvars.Context | None = None
        self.timeout_cm: asyncio.Timeout | None = None
        self.finished = False
        self.cancels = 0  # cancellations that took effect
        self.direct_cancels = 0  # of which by task.cancel()
        self.timeout_used = False
        self.raised: BaseException | None = None
        self.returned: object = None  # what process_tasks returned
        self.recorder: object = None  # the ReportRecorder observing the run, if any
        self.chains: list[Chain] = []
        self.deadline: asyncio.TimerHandle | None = None
        self.threads: list[Any] = []  # stress.threads.ThreadAttempt of this run
        self.threads_released = False
        self.thread_problems: list[str] = []  # what threads found wrong (context, ...)
        # On a deterministic loop (stress.virtual) threads are waited for at fixed points.
        self.deterministic: bool = getattr(loop, "deterministic", False)
        self.order: list[tuple[object, ...]] | None = None  # observer events (determinism)

    # -- logging -------------------------------------------------------------

    def emit(
        self, kind: str, where: tuple[Hashable, str, int], part: int, obj: object = None
    ) -> None:
        with self.lock:
            self.append_locked(kind, where, part, obj)

    def append_locked(
        self, kind: str, where: tuple[Hashable, str, int], part: int, obj: object, epoch: int = 0
    ) -> int:
        """Append one event (the caller holds `lock`); returns its sequence number."""
        seq = len(self.log)
        self.log.append(Ev(seq, kind, *where, part, obj, epoch, next(self.clock)))
        return seq

    def begin(
        self, key: Hashable, phase: str, obj: object = None
    ) -> tuple[tuple[Hashable, str, int], Attempt]:
        """Count and log the start of an attempt; fire the run trigger if it is this one."""
        attempt = self.counts.get((key, phase), 0) + 1
        self.counts[(key, phase)] = attempt
        where = (key, phase, attempt)
        with self.lock:
            self.data[where] = self.append_locked(START, where, 0, obj, CANCEL_EPOCH.get())
        if attempt == 1 and self.plan.trigger_phase == (key, phase):
            self.schedule_cancel(self.plan.trigger_delay)
        return where, self.plan.phases[(key, phase)].attempt(attempt)

    def run_event(self, kind: str, obj: object = None) -> None:
        """A run-level event (no task): CANCEL, FINISH, DEADLINE."""
        self.emit(kind, (None, "", 0), 0, obj)

    def start_deadline_twin(self) -> None:
        """Called right before process_tasks, which starts sdax's own timer in the same step."""
        timeout = self.plan.options.timeout
        if timeout is not None:
            self.deadline = self.loop.call_later(timeout, self.run_event, DEADLINE)

    # -- cancelling the run --------------------------------------------------

    def schedule_cancel(self, iterations: int) -> Chain:
        chain = Chain(self.loop, iterations, self.fire_cancel)
        self.chains.append(chain)
        return chain

    def fire_cancel(self) -> None:
        """Cancel the run now (from a loop callback), unless it is over."""
        if self.finished or self.run_task is None:
            return
        if self.plan.cancel_mode == "timeout" and not self.timeout_used:
            assert self.timeout_cm is not None
            self.timeout_used = True
            self.timeout_cm.reschedule(self.loop.time())
            if self.deterministic:
                self._expire_now()
                return
            # The timeout cancels the task in a callback of its own, queued now;
            # ours, queued right behind it, records that it happened.
            self.loop.call_soon(self._timeout_fired)
            return
        self.direct_cancels += 1
        self.run_task.cancel()
        self._took_effect()

    def _timeout_fired(self) -> None:
        if not self.finished and self.timeout_cm is not None and self.timeout_cm.expired():
            self._took_effect()

    def _expire_now(self) -> None:
        """Run the timeout's own callback here, then record it (a loop that shuffles
        its ready queue could otherwise run our record first, or a step of the run
        the cancellation reached before it). Reaches into asyncio.Timeout (3.11-3.13):
        only on the deterministic loop (stress.virtual)."""
        handle = getattr(self.timeout_cm, "_timeout_handler", None)
        expire = getattr(self.timeout_cm, "_on_timeout", None)
        assert isinstance(handle, asyncio.Handle)
        assert callable(expire)
        handle.cancel()
        expire()
        self._timeout_fired()

    def _took_effect(self) -> None:
        assert self.run_context is not None
        self.cancels += 1
        self.run_context.run(CANCEL_EPOCH.set, self.cancels)
        self.run_event(CANCEL, self.cancels)

    def finish(self) -> None:
        """The run returned: stop every pending trigger, let blocked threads go, mark the end."""
        self.finished = True
        for chain in self.chains:
            chain.cancel()
        self.chains.clear()
        if self.deadline is not None:
            self.deadline.cancel()
        self.release_threads()
        self.run_event(FINISH)

    def release_threads(self) -> None:
        """Let every blocked thread go, and any this run starts from now on (a hung run's)."""
        self.threads_released = True
        for thread in self.threads:
            thread.release.set()
            thread.settle()  # on a deterministic loop: one thread ends at a time, in order

    # -- what phase functions do ----------------------------------------------

    def call(self, key: Hashable, phase: str, group: SdaxTaskGroup | None) -> Any:
        """The phase function: a coroutine to await, or (if planned) a non-awaitable."""
        where, attempt = self.begin(key, phase)
        if attempt.body.op == "notawait":
            self.emit(NOTAWAIT, where, 0)
            return 42
        return self._attempt(where, attempt, group)

    def call_sync(self, key: Hashable, phase: str) -> None:
        where, attempt = self.begin(key, phase)
        if attempt.body.op == "ok":
            self.emit(END, where, 0)
            return
        raise self.inject(where, 0, attempt.body.op)

    async def _attempt(
        self, where: tuple[Hashable, str, int], attempt: Attempt, group: SdaxTaskGroup | None
    ) -> None:
        body_done = asyncio.Event() if attempt.children else None
        for part, child in enumerate(attempt.children, start=1):
            assert group is not None
            group.create_task(self._child(where, part, child, body_done))
            self.emit(SPAWN, where, part)
        await self._act(where, 0, attempt.body, None)
        if body_done is not None:
            body_done.set()  # releases "late" children: they fail after the body returned

    async def _child(
        self, where: tuple[Hashable, str, int], part: int, act: Act, body_done: asyncio.Event | None
    ) -> None:
        self.emit(START, where, part)
        await self._act(where, part, act, body_done)

    async def _act(
        self, where: tuple[Hashable, str, int], part: int, act: Act, gate: asyncio.Event | None
    ) -> None:
        try:
            for _ in range(act.yields):
                await asyncio.sleep(0)
            if act.op == "late" and gate is not None:
                await gate.wait()
        except asyncio.CancelledError:
            self.emit(CANCELLED, where, part)
            raise
        if act.op == "block":
            await self._block(where, part, act)
        elif act.op == "ok":
            self.emit(END, where, part)
        else:
            raise self.inject(where, part, "raise" if act.op == "late" else act.op)

    async def _block(self, where: tuple[Hashable, str, int], part: int, act: Act) -> None:
        chain = self.schedule_cancel(act.trigger) if act.trigger is not None else None
        try:
            await self.loop.create_future()  # never resolved: only cancellation ends this
        except asyncio.CancelledError:
            if act.on_cancel == "swallow":
                self.emit(SWALLOWED, where, part)
                return
            if act.on_cancel == "raise":
                raise self.inject(where, part, "raise") from None
            self.emit(CANCELLED, where, part)
            raise
        finally:
            if chain is not None:
                chain.cancel()  # ended already: no need to cancel the run for it

    def inject(self, where: tuple[Hashable, str, int], part: int, op: str) -> BaseException:
        """Create, log and return the exception `op` asks for (the caller raises it)."""
        text = f"injected {op} in {where[0]!r} {where[1]} attempt {where[2]} part {part}"
        error: BaseException
        if op == "selfcancel":
            error, kind = asyncio.CancelledError(text), SELFCANCEL
        elif op == "fatal":
            error, kind = InjectedFatal(text), FATAL
        elif op == "retryable":
            error, kind = InjectedRetryable(text), RAISE
        else:
            error, kind = InjectedError(text), RAISE
        self.emit(kind, where, part, error)
        return error
