"""The task actor: runs one task's phase functions for one run, and reports.

An actor is created the first time the coordinator starts one of its task's
phases. The coordinator drives it by calling `start` and `cancel`: each only
starts or cancels an asyncio task, so it never blocks, and an idle actor
costs no asyncio task at all. Commands need no mailbox: the coordinator owns
its actors and calls them in its own task. The other way is a real queue:
each started phase is one asyncio task running `_run`, which ends by putting
exactly one event in the coordinator's mailbox.

The actor never looks at the graph and never decides what runs next.
"""

from __future__ import annotations

import asyncio
import random
import sys
import weakref
from collections.abc import Callable, Coroutine
from functools import partial
from types import CoroutineType
from typing import Any

import msgspec

from sdax.actors.attempts import ensure_awaitable, run_phase
from sdax.actors.mailbox import Mailbox
from sdax.actors.messages import (
    Event,
    PhaseCancelled,
    PhaseFailed,
    PhaseRetrying,
    PhaseSucceeded,
)
from sdax.declarations import TaskFunction
from sdax.errors import PhaseCancelledError, annotate
from sdax.graph import TaskNode
from sdax.vocabulary import CancelReason, PhaseId

PhaseStarter = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
"""Starts one phase's task for a coroutine: `loop.create_task`, or the Task class, bound."""

# Whether a phase task can finish inside the call that creates it (3.12's eager start).
_EAGER_STARTS = sys.version_info >= (3, 12)

# Phase tasks are named after their phase ("sdax execute"), which asyncio
# shows in task dumps and debug logs; before 3.12 it also spares asyncio
# formatting a fresh "Task-<n>" string for each task.
PHASE_TASK_NAMES = {phase: f"sdax {phase}" for phase in PhaseId}


def describe_phase(key: object, phase: PhaseId) -> str:
    """`task 'K' pre_execute`: how messages and notes name a phase of a task."""
    return f"task {key!r} {phase.value}"


def phase_starters(loop: asyncio.AbstractEventLoop) -> dict[PhaseId, PhaseStarter]:
    """How a run starts the tasks of each phase on `loop`, names bound in.

    With no custom task factory installed, constructing the Task directly
    does what `loop.create_task` would, minus a layer of Python calls per
    phase; a user's factory is always respected. From 3.12 the task starts
    eagerly: a phase function that finishes without suspending costs no loop
    round trip. That is safe here because the function still runs in its own
    task and context (asyncio swaps the current task), every outcome is
    caught by `TaskActor._run`, and its event only lands in the mailbox,
    which the coordinator reads once it has finished starting the batch.
    Every keyword is bound here, once per loop and task factory: a call then
    passes only the coroutine, and nothing merges keywords per task.
    """
    cached = _last_starters
    factory = loop.get_task_factory()
    if cached is not None and cached[0]() is loop and cached[1] is factory:
        return cached[2]
    starters = _phase_starters(loop, factory)
    _remember(loop, factory, starters)
    return starters


# The starters of the loop asked for last: a process nearly always runs one
# loop, and the tuple is replaced whole, so a thread reading it never sees
# one loop's starters paired with another loop. A weak reference: a closed
# loop is not kept alive by the cache.
_last_starters: (
    tuple[weakref.ref[asyncio.AbstractEventLoop], object, dict[PhaseId, PhaseStarter]] | None
) = None


def _remember(
    loop: asyncio.AbstractEventLoop, factory: object, starters: dict[PhaseId, PhaseStarter]
) -> None:
    global _last_starters
    _last_starters = (weakref.ref(loop), factory, starters)


def _phase_starters(
    loop: asyncio.AbstractEventLoop, factory: object
) -> dict[PhaseId, PhaseStarter]:
    make: Callable[..., asyncio.Task[None]] = loop.create_task
    options: dict[str, Any] = {}
    if factory is None:
        make, options = asyncio.Task, {"loop": loop}
        if _EAGER_STARTS:
            options["eager_start"] = True
    return {phase: partial(make, name=name, **options) for phase, name in PHASE_TASK_NAMES.items()}


class RunScope:
    """What every actor of one run shares: the context, where to report, and how to start."""

    __slots__ = ("ctx", "outbox", "rng", "starters", "clock")

    def __init__(
        self,
        ctx: object,
        outbox: Mailbox[Event],
        rng: random.Random,
        starters: dict[PhaseId, PhaseStarter],
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.rng = rng
        self.starters = starters
        self.clock = clock  # set when the run is observed: events then carry their time


class TaskActor:
    """Runs the phases of one task, one at a time, as the coordinator says."""

    __slots__ = ("_node", "_scope", "_task", "_phase", "_cancel_reason")

    def __init__(self, node: TaskNode, scope: RunScope) -> None:
        self._node = node
        self._scope = scope
        self._task: asyncio.Task[None] | None = None
        self._phase: PhaseId | None = None
        # Set when the coordinator cancels the running phase; a CancelledError
        # seen while this is None was not ours, and is a failure.
        self._cancel_reason: CancelReason | None = None

    def start(self, phase: PhaseId, within: float | None) -> None:
        """Start running `phase`, all its attempts within `within` seconds if set."""
        self._phase = phase
        self._cancel_reason = None
        function = self._node.functions[phase]
        task = self._scope.starters[phase](self._run(phase, function, within))
        # From 3.12 the phase may have run to its end eagerly, inside that call:
        # holding on to its finished task would only keep it from being freed.
        if not (_EAGER_STARTS and task.done()):
            self._task = task

    def cancel(self, reason: CancelReason) -> None:
        """Cancel the running phase, if any, for `reason`; it reports how it ended."""
        task = self._task
        if task is None or task.done() or self._cancel_reason is not None:
            return
        self._cancel_reason = reason
        task.cancel(reason.description)
        # A task cancelled before its first step never enters `_run`, which
        # would then report nothing: the callback reports for it.
        task.add_done_callback(self._report_if_never_started)

    def abandon(self) -> asyncio.Task[None] | None:
        """Cancel the running phase with nobody to report to; its task, to wait for."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def _run(self, phase: PhaseId, function: TaskFunction[Any], within: float | None) -> None:
        node = self._node
        scope = self._scope
        retries: _PhaseReporter | None = None
        event: Event
        try:
            if within is None and phase in node.plain:  # the hot path, inline
                result = function.function(scope.ctx)
                if type(result) is not CoroutineType:
                    result = ensure_awaitable(result, function, self._where(phase))
                await result
            else:
                retries = _PhaseReporter(node, phase, scope.outbox)
                await run_phase(function, scope.ctx, scope.rng, within, retries)
        except asyncio.CancelledError as cancel:
            event = self._cancelled(phase, cancel)
        except GeneratorExit:
            raise  # the coroutine is being closed, not run: nothing to report
        except BaseException as error:
            annotate(error, f"sdax: raised by {self._where(phase)}")
            event = PhaseFailed(task=node.index, phase=phase, error=error)
        else:
            event = PhaseSucceeded(task=node.index, phase=phase)
        self._task = None
        if retries is not None and retries.begun > 1:
            event = msgspec.structs.replace(event, attempts=retries.begun)
        if scope.clock is not None:
            event = msgspec.structs.replace(event, at=scope.clock())
        scope.outbox.put(event)

    def _cancelled(self, phase: PhaseId, cancel: asyncio.CancelledError) -> Event:
        reason = self._cancel_reason
        if reason is not None:
            return PhaseCancelled(task=self._node.index, phase=phase, reason=reason)
        error = PhaseCancelledError(
            f"{self._where(phase)} ended with a CancelledError that sdax did not request "
            "(raised by the function or leaked from an await inside it)"
        )
        error.__cause__ = cancel
        annotate(error, f"sdax: raised by {self._where(phase)}")
        return PhaseFailed(task=self._node.index, phase=phase, error=error)

    def _report_if_never_started(self, task: asyncio.Task[None]) -> None:
        # Cancelled before its first step, the task never entered `_run`, so the
        # phase function never ran: no attempt began and nothing was acquired.
        if task.cancelled() and self._phase is not None and self._cancel_reason is not None:
            self._task = None
            clock = self._scope.clock
            self._scope.outbox.put(
                PhaseCancelled(
                    task=self._node.index,
                    phase=self._phase,
                    reason=self._cancel_reason,
                    at=clock() if clock is not None else 0.0,
                    attempts=0,
                )
            )

    def _where(self, phase: PhaseId) -> str:
        return describe_phase(self._node.key, phase)

    def __repr__(self) -> str:
        state = "idle" if self._task is None else f"running {self._phase}"
        return f"<TaskActor {self._node.key!r}: {state}>"


class _PhaseReporter:
    """One phase run under its policy: tells the coordinator of each retry, counts attempts."""

    __slots__ = ("_node", "_phase", "_outbox", "begun")

    def __init__(self, node: TaskNode, phase: PhaseId, outbox: Mailbox[Event]) -> None:
        self._node = node
        self._phase = phase
        self._outbox = outbox
        self.begun = 1

    @property
    def where(self) -> str:
        return describe_phase(self._node.key, self._phase)

    def retrying(self, attempt: int, error: BaseException, delay: float) -> None:
        retrying = PhaseRetrying(
            task=self._node.index, phase=self._phase, attempt=attempt, error=error, delay=delay
        )
        self._outbox.put(retrying)

    def attempt_started(self, attempt: int) -> None:
        self.begun = attempt
