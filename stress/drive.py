"""Driving one run: process_tasks with the plan's options, and the record it leaves.

Each run is awaited directly by the task that drives it (`drive`), which
catches whatever the run raises, BaseExceptions included: nothing a run
raises reaches the event loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any, cast

from sdax import (
    AsyncTaskProcessor,
    ReportRecorder,
    RunObserver,
)
from sdax.observers import PhaseFinished, PhaseRetried, PhaseStarted, RunFinished, RunStarted
from sdax.testing import shuffled_release
from stress.faults import BEGIN, RunContext
from stress.invariants import RunRecord


class BeginLogger(RunObserver):
    """Logs BEGIN for each phase sdax says it started (checked by stress.runreports)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def phase_started(self, event: PhaseStarted) -> None:
        self.ctx.emit(BEGIN, (event.task, event.phase.value, 0), 0)


class OrderRecorder(RunObserver):
    """Records what sdax tells observers, in order, each with how long our log was then.

    Times and run ids left out: two runs of one seed on a deterministic loop
    (stress.determinism) must give exactly the same list.
    """

    def __init__(self, ctx: RunContext, order: list[tuple[object, ...]]) -> None:
        self.ctx, self.order = ctx, order

    def _add(self, *event: object) -> None:
        self.order.append((len(self.ctx.log), *event))

    def run_started(self, event: RunStarted) -> None:
        self._add("run started")

    def phase_started(self, event: PhaseStarted) -> None:
        self._add("started", event.task, event.phase.value)

    def phase_retried(self, event: PhaseRetried) -> None:
        self._add("retried", event.task, event.phase.value, event.attempt, type(event.error))

    def phase_finished(self, event: PhaseFinished) -> None:
        error = type(event.error).__name__
        self._add(
            "finished", event.task, event.phase.value, event.outcome.value, event.attempts, error
        )

    def run_finished(self, event: RunFinished) -> None:
        self._add("run finished", event.outcome.value, type(event.error).__name__)


async def drive(processor: AsyncTaskProcessor[Any], ctx: RunContext) -> None:
    """One run, awaited right here so that whatever it raises is caught right here."""
    seed = ctx.plan.seed
    with shuffled_release(seed):
        try:
            async with asyncio.timeout(None) as timeout_cm:
                ctx.timeout_cm = timeout_cm
                if ctx.plan.trigger is not None and ctx.plan.trigger[0] == "iterations":
                    ctx.schedule_cancel(ctx.plan.trigger_delay)
                try:
                    await _process(processor, ctx, random.Random(seed))
                finally:
                    ctx.finish()
        except BaseException as error:
            ctx.raised = error


async def _process(processor: AsyncTaskProcessor[Any], ctx: RunContext, rng: random.Random) -> None:
    options = ctx.plan.options
    observers: list[RunObserver] = []
    if options.report == "recorder":
        recorder = ctx.recorder = ReportRecorder()
        observers.append(recorder)
    if options.observe:
        observers.append(BeginLogger(ctx))
    if ctx.order is not None:
        observers.append(OrderRecorder(ctx, ctx.order))
    # From here to sdax starting its deadline timer, all runs in one step (no await).
    ctx.start_deadline_twin()
    timeout, cleanup_timeout = options.timeout, options.cleanup_timeout
    budget = options.cleanup_budget
    if options.report == "flag":
        ctx.returned = await processor.process_tasks(
            ctx, timeout=timeout, cleanup_timeout=cleanup_timeout, cleanup_budget=budget,
            rng=rng, observers=observers, report=True,
        )  # fmt: skip
    else:  # returns None (checked: the type says so, but who knows)
        running = processor.process_tasks(
            ctx, timeout=timeout, cleanup_timeout=cleanup_timeout, cleanup_budget=budget,
            rng=rng, observers=observers,
        )  # fmt: skip
        ctx.returned = await cast(Awaitable[object], running)


def record_of(ctx: RunContext, known: set[str]) -> RunRecord:
    """What the checker needs of a finished run (`known`: the context's own attributes)."""
    timeout_cm = ctx.timeout_cm
    recorder = ctx.recorder
    with ctx.lock:  # threads sdax gave up on may still be logging
        log = list(ctx.log)
        thread_problems = tuple(ctx.thread_problems)
    return RunRecord(
        plan=ctx.plan,
        log=log,
        raised=ctx.raised,
        direct_cancels=ctx.direct_cancels,
        timeout_expired=timeout_cm is not None and timeout_cm.expired(),
        data=dict(ctx.data),
        extra_attributes=tuple(sorted(set(vars(ctx)) - known)),
        returned=ctx.returned,
        recorded=recorder.report if isinstance(recorder, ReportRecorder) else None,
        thread_problems=thread_problems,
    )
