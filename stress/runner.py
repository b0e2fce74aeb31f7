"""Running stress runs on the current event loop, and checking each one.

Runs go in batches that share one processor: a batch of one runs alone, a
batch of `concurrency` runs concurrently (each in its own task, all awaited
together). Which batches are which, which processor each batch gets and
which plan each run gets all follow from the master seed, so `replay` can
rebuild any single run.

Each run is awaited directly by the task that drives it (stress.drive),
which catches whatever the run raises, BaseExceptions included: nothing a
run raises reaches the event loop. Once the runs of a batch have returned,
the threads they started are waited for (each is let go by then), and the
limits the runs shared are checked across the batch.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import itertools
import random
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sdax import AsyncTaskProcessor
from stress import capacity, coverage
from stress.abandoned import exercised
from stress.determinism import check_determinism
from stress.drive import drive, record_of
from stress.failures import failures_of
from stress.faults import CURRENT_RUN, RunContext
from stress.generate import build_processor, random_shape, seed_for
from stress.invariants import RunRecord, Violation, check_run
from stress.model import RunPlan, Shape
from stress.notes import observations
from stress.plans import random_plan
from stress.runreports import outcome_kind
from stress.soak import Soak
from stress.threads import install_default_executor, wait_for_threads


@dataclass
class StressConfig:
    runs: int = 200
    seed: int = 0
    concurrency: int = 4
    max_tasks: int = 30
    soak: bool = False
    sample_every: int = 10_000  # soak: runs between resource samples
    replay: int | None = None  # the index of the one run to replay
    with_batch: bool = False  # replay it alongside the runs that shared its batch
    loop_name: str = "asyncio"  # only for the replay command printed with a violation
    hang_after: float = 30.0  # seconds before a batch that has not finished counts as hung
    # Every this many runs (by index), one is replayed twice on a deterministic loop and
    # the two event orders compared (stress.determinism); 0: never.
    replay_check: int = 25


@dataclass
class RunResult:
    index: int
    seed: int
    outcome: str
    faults: tuple[str, ...]
    violations: list[Violation]
    notes: list[str] = field(default_factory=list)  # allowed but notable
    shape: Shape | None = None  # a Summary keeps these only for runs with violations
    record: RunRecord | None = None
    exercised: list[str] = field(default_factory=list)  # named invariants with work to do
    order: list[tuple[object, ...]] | None = None  # what observers heard (determinism)


@dataclass
class Summary:
    config: StressConfig
    runs: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    violation_counts: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    exercised: dict[str, int] = field(default_factory=dict)  # runs each invariant had work in
    failed_runs: list[RunResult] = field(default_factory=list)  # the first few, in full
    soak: Soak | None = None
    replayed: RunResult | None = None  # with --replay: the run, log and all
    determinism_checked: int = 0  # runs replayed twice on the deterministic loop
    elapsed: float = 0.0

    @property
    def violations(self) -> int:
        return sum(self.violation_counts.values())

    @property
    def hung(self) -> bool:
        return self.outcomes.get("hung", 0) > 0

    @property
    def uncovered(self) -> list[str]:
        """Corners this run claims to reach and did not, often enough (stress.coverage)."""
        if self.config.replay is not None or self.config.soak:
            return []
        return coverage.uncovered(self.runs, self.faults, self.notes)

    @property
    def passed(self) -> bool:
        flat = self.soak is None or self.soak.flat
        return self.violations == 0 and flat and not self.uncovered

    def add(self, result: RunResult, keep: int = 20) -> None:
        self.runs += 1
        _count(self.outcomes, [result.outcome])
        _count(self.faults, result.faults)
        _count(self.violation_counts, [v.invariant for v in result.violations])
        _count(self.notes, result.notes)
        _count(self.exercised, result.exercised)
        if result.violations and len(self.failed_runs) < keep:
            self.failed_runs.append(result)
        elif self.config.replay is None:
            result.shape = result.record = None  # a soak must not hoard logs


def _count(counter: dict[str, int], names: Any) -> None:
    for name in names:
        counter[name] = counter.get(name, 0) + 1


def layout(config: StressConfig) -> Iterator[tuple[int, int, int]]:
    """(batch, first run index, size) of every batch: sizes 1 and `concurrency`, seeded."""
    rng = random.Random(seed_for(config.seed, "layout", config.concurrency))
    batch = start = 0
    while start < config.runs:
        size = 1 if config.concurrency == 1 or rng.random() < 0.3 else config.concurrency
        yield batch, start, min(size, config.runs - start)
        batch, start = batch + 1, start + size


def shape_for(config: StressConfig, batch: int) -> Shape:
    if config.soak:  # one long-lived processor for the whole soak
        return random_shape(random.Random(seed_for(config.seed, "soak")), config.max_tasks, 10)
    return random_shape(random.Random(seed_for(config.seed, "shape", batch)), config.max_tasks)


async def run_stress(
    config: StressConfig, progress: Callable[[Summary], None] | None = None
) -> Summary:
    """Run (or replay) the configured runs on the running loop; check every one."""
    loop = asyncio.get_running_loop()
    summary = Summary(config, soak=Soak(config.runs, config.sample_every) if config.soak else None)
    loop_errors: list[dict[str, Any]] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: loop_errors.append(context))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await _run_batches(config, summary, caught, loop_errors, progress)
    finally:
        loop.set_exception_handler(previous_handler)
    return summary


async def _run_batches(
    config: StressConfig,
    summary: Summary,
    caught: list[warnings.WarningMessage],
    loop_errors: list[dict[str, Any]],
    progress: Callable[[Summary], None] | None,
) -> None:
    processor: AsyncTaskProcessor[Any] | None = None
    shape: Shape | None = None
    for batch, start, size in layout(config):
        if config.replay is not None and not start <= config.replay < start + size:
            continue
        if processor is None or not config.soak:
            shape = shape_for(config, batch)
            processor = build_processor(shape)
        assert shape is not None
        indices = list(range(start, start + size))
        if config.replay is not None and not config.with_batch:
            indices = [config.replay]
        results = await run_batch(processor, shape, config.seed, indices, config.hang_after)
        if config.replay is not None:
            results = [result for result in results if result.index == config.replay]
            summary.replayed = results[0]
        if batch % 50 == 0 or config.replay is not None or start + size >= config.runs:
            gc.collect()  # so that "destroyed but pending" and "never awaited" show up now
        await _check_determinism(config, shape, results, summary)
        _blame_batch(results[0], caught, loop_errors)
        for result in results:
            summary.add(result)
        if summary.soak is not None:
            summary.soak.after(summary.runs)
        if progress is not None:
            progress(summary)
        if config.replay is not None or any(r.outcome == "hung" for r in results):
            break  # after a hang the loop may hold stuck tasks: stop here


async def run_batch(
    processor: AsyncTaskProcessor[Any],
    shape: Shape,
    master: int,
    indices: list[int],
    hang_after: float = 30.0,
) -> list[RunResult]:
    """Run `indices` of master seed `master` concurrently through `processor`."""
    plans = [(index, random_plan(shape, seed_for(master, "run", index))) for index in indices]
    return await run_plans(processor, shape, plans, hang_after)


async def run_plans(
    processor: AsyncTaskProcessor[Any],
    shape: Shape,
    plans: list[tuple[int, RunPlan]],
    hang_after: float = 30.0,
    order: bool = False,
) -> list[RunResult]:
    """Run each (index, plan) concurrently through `processor`; check each run and the batch.

    A run still going after `hang_after` seconds is reported as hung (a wall
    clock guard only: no check depends on time); its outcome is "hung".
    `order`: record what observers hear, for stress.determinism (`RunResult.order`).
    """
    before = asyncio.all_tasks()
    contexts = _start_runs(processor, [plan for _, plan in plans], order)
    fields = [set(vars(ctx)) for ctx in contexts]
    _, hung = await asyncio.wait(
        [ctx.run_task for ctx in contexts if ctx.run_task], timeout=hang_after
    )
    for ctx in contexts:
        ctx.release_threads()  # those of a run that returned are already; a hung run's go too
    stuck = await wait_for_threads(contexts, hang_after)
    leaked = [task for task in asyncio.all_tasks() if not task.done() and task not in before]
    for task in leaked:
        task.cancel()
    results = [
        _result(shape, index, ctx, known, ctx.run_task in hung)
        for (index, _), ctx, known in zip(plans, contexts, fields, strict=True)
    ]
    for result, ctx in zip(results, contexts, strict=True):
        result.order = ctx.order
    if leaked and not hung:
        results[0].violations.append(Violation("hygiene", f"tasks still pending: {leaked[:5]}"))
    results[0].violations += [Violation("hygiene", problem) for problem in stuck]
    shared = capacity.batch_problems(shape, [r.record.log for r in results if r.record])
    results[0].violations += [Violation("limits", problem) for problem in shared]
    return results


def _start_runs(
    processor: AsyncTaskProcessor[Any], plans: list[RunPlan], order: bool = False
) -> list[RunContext]:
    """A task per run, all created before any starts: the runs really overlap."""
    loop = asyncio.get_running_loop()
    install_default_executor(loop)
    clock = itertools.count()  # orders the events of every run of the batch
    contexts = [RunContext(plan, loop, clock) for plan in plans]
    for ctx in contexts:
        ctx.order = [] if order else None
        ctx.run_context = contextvars.copy_context()
        ctx.run_context.run(CURRENT_RUN.set, ctx)
        ctx.run_task = loop.create_task(drive(processor, ctx), context=ctx.run_context)
    return contexts


def _result(shape: Shape, index: int, ctx: RunContext, known: set[str], hung: bool) -> RunResult:
    record = record_of(ctx, known)
    if hung:  # its log is still useful; the checks assume a run that ended
        hang = Violation("liveness", "the run did not finish: hung (log so far below)")
        return RunResult(index, ctx.plan.seed, "hung", ctx.plan.faults, [hang], [], shape, record)
    violations = check_run(shape, record)
    outcome = outcome_kind(ctx.raised)
    notes = observations(shape, record)
    result = RunResult(
        index, ctx.plan.seed, outcome, ctx.plan.faults, violations, notes, shape, record
    )
    result.exercised = exercised(ctx.plan, record.log, failures_of(record.raised))
    return result


async def _check_determinism(
    config: StressConfig, shape: Shape, results: list[RunResult], summary: Summary
) -> None:
    """Replay the sampled runs of a batch twice each on a deterministic loop."""
    every = config.replay_check
    if every <= 0 or config.soak:
        return
    for result in results:
        if result.index % every == 0 and result.outcome != "hung":
            plan = random_plan(shape, seed_for(config.seed, "run", result.index))
            result.violations += await check_determinism(shape, result.index, plan)
            summary.determinism_checked += 1


def _blame_batch(
    first: RunResult, caught: list[warnings.WarningMessage], loop_errors: list[dict[str, Any]]
) -> None:
    """Warnings and loop errors since the last batch: reported on this batch's first run."""
    for warning in caught:
        first.violations.append(Violation("hygiene", f"warning: {warning.message}"))
    for context in loop_errors:
        first.violations.append(Violation("hygiene", f"loop error: {context.get('message')}"))
    caught.clear()
    loop_errors.clear()
