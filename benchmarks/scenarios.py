"""Benchmark worker: runs scenarios against whichever `sdax` this interpreter imports.

Run it with a venv's Python (never from the project root on sys.path): it prints
one JSON line with, per scenario, the best-of-N value for sdax and for raw
asyncio (the same coroutines in one TaskGroup, ignoring order: the floor).
Only the public API shared by sdax 0.7.2 and this project is used, so the very
same code measures both sides.

    python benchmarks/scenarios.py [--loop asyncio|uvloop] [--runs N] [--smoke]
        [--only NAME ...] [--what both|sdax|raw] [--list]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import math
import os
import platform
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shapes import (
    PHASES,
    Ctx,
    Node,
    Phase,
    calls,
    chain,
    fan,
    io,
    levels,
    random_dag,
    requests_shape,
    work,
)

import sdax
from sdax import AsyncDagTaskProcessor, AsyncTask, AsyncTaskProcessor, task_func

# Building and running ---------------------------------------------------------


def declare(nodes: Sequence[Node], fn: Phase) -> list[tuple[AsyncTask[Ctx], Node]]:
    func = task_func(fn)
    return [(AsyncTask(n.name, **dict.fromkeys(n.phases, func)), n) for n in nodes]


def assemble(declared: Sequence[tuple[AsyncTask[Ctx], Node]]) -> Any:
    """Builder, add_task for each task, build(): the part `build_*` scenarios time."""
    if declared and declared[0][1].level is not None:
        levelled: Any = AsyncTaskProcessor.builder()  # unsubscripted: 0.7.2 has 2 type params
        for task, node in declared:
            levelled.add_task(task, level=node.level or 0)
        return levelled.build()
    graph: Any = AsyncDagTaskProcessor.builder()
    for task, node in declared:
        graph.add_task(task, depends_on=node.after)
    return graph.build()


def check(ctx: Ctx, expected: int) -> None:
    if ctx.count != expected:
        raise RuntimeError(f"ran {ctx.count} of {expected} phase calls")


async def run_sdax(processor: Any, expected: int, copies: int = 1) -> None:
    """One run, or `copies` concurrent runs (asyncio.gather), each with its own context."""
    ctxs = [Ctx() for _ in range(copies)]
    if copies == 1:
        await processor.process_tasks(ctxs[0])
    else:
        await asyncio.gather(*(processor.process_tasks(ctx) for ctx in ctxs))
    for ctx in ctxs:
        check(ctx, expected)


async def run_raw(fn: Phase, expected: int, copies: int = 1) -> None:
    """The floor: the same `expected` phase calls in one TaskGroup, in no order."""

    async def one() -> None:
        ctx = Ctx()
        async with asyncio.TaskGroup() as group:
            for _ in range(expected):
                group.create_task(fn(ctx))
        check(ctx, expected)

    if copies == 1:
        await one()
    else:
        await asyncio.gather(*(one() for _ in range(copies)))


@dataclass(frozen=True, slots=True)
class Job:
    """How to measure: size, repetitions, time budget and which sides."""

    n: int
    runs: int
    budget: float
    sdax: bool
    raw: bool


async def best_ms(once: Callable[[], Awaitable[object]], job: Job) -> float:
    """Best of `job.runs` runs, stopping early once `job.budget` seconds are spent."""
    best, spent = math.inf, 0.0
    for _ in range(job.runs):
        gc.collect()
        start = time.perf_counter()
        await once()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if spent > job.budget:
            break
    return best * 1000


Measure = Callable[[Job], Awaitable[dict[str, float]]]
Shape = Callable[[int], list[Node]]


def timed(shape: Shape, fn: Phase = work, concurrent: bool = False) -> Measure:
    """Wall time of one run (or of `n` concurrent runs when `concurrent` is set)."""

    async def measure(job: Job) -> dict[str, float]:
        nodes = shape(job.n)
        expected, copies = calls(nodes), job.n if concurrent else 1
        out = {}
        if job.sdax:
            processor = assemble(declare(nodes, fn))
            out["sdax"] = await best_ms(lambda: run_sdax(processor, expected, copies), job)
        if job.raw:
            out["raw"] = await best_ms(lambda: run_raw(fn, expected, copies), job)
        return out

    return measure


def build_time(shape: Shape) -> Measure:
    """Wall time of builder + add_task + build(); tasks are declared beforehand."""

    async def measure(job: Job) -> dict[str, float]:
        declared = declare(shape(job.n), work)

        async def once() -> None:
            assemble(declared)

        return {"sdax": await best_ms(once, job)} if job.sdax else {}

    return measure


async def traced_peak(once: Callable[[], Awaitable[None]]) -> float:
    """tracemalloc peak (KiB) of one call, after a warm-up call."""
    await once()
    gc.collect()
    tracemalloc.start()
    try:
        await once()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


async def memory_per_run(job: Job) -> dict[str, float]:
    nodes = levels(job.n, 10, PHASES)
    expected, out = calls(nodes), {}
    if job.sdax:
        processor = assemble(declare(nodes, work))
        out["sdax"] = await traced_peak(lambda: run_sdax(processor, expected))
    if job.raw:
        out["raw"] = await traced_peak(lambda: run_raw(work, expected))
    return out


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def rss_after(job: Job) -> dict[str, float]:
    """RSS after `n` sequential runs of the 15-task shape (zero-work phases).

    One side per process: RSS is process-wide, so the driver asks for raw apart.
    """
    nodes = requests_shape()
    expected = calls(nodes)
    processor = assemble(declare(nodes, work)) if job.sdax else None
    for _ in range(job.n):
        if processor is not None:
            await run_sdax(processor, expected)
        else:
            await run_raw(work, expected)
    gc.collect()
    return {"sdax" if job.sdax else "raw": rss_mib()}


# The catalog -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """kind: "time" (shared process, every round), "build" (own process, every round)
    or "memory" (own process, first round only). raw: "inline", "apart" (a process
    of its own, RSS being process-wide) or "none"."""

    name: str
    kind: str
    unit: str
    n: int
    smoke_n: int
    raw: str
    measure: Measure
    about: str

    def info(self) -> dict[str, object]:
        keys = ("name", "kind", "unit", "n", "smoke_n", "raw", "about")
        return {key: getattr(self, key) for key in keys}


# fmt: off
SCENARIOS = (
    Scenario("single_level", "time", "ms", 1000, 50, "inline",
             timed(lambda n: levels(n, 1, ("execute",))), "README: execute only, 1 level"),
    Scenario("multi_level", "time", "ms", 1000, 50, "inline",
             timed(lambda n: levels(n, 10, ("execute",))), "README: execute only, 10 levels"),
    Scenario("three_phases", "time", "ms", 1000, 50, "inline",
             timed(lambda n: levels(n, 10, PHASES)), "README: pre+execute+post, 10 levels"),
    Scenario("dag_chain", "time", "ms", 2000, 100, "inline",
             timed(chain), "a chain of n pre+post tasks"),
    Scenario("dag_fan", "time", "ms", 2000, 100, "inline",
             timed(fan), "1 -> n -> 1, pre+post"),
    Scenario("dag_random", "time", "ms", 2000, 100, "inline",
             timed(random_dag), "seeded random DAG, mixed phases"),
    Scenario("requests_200", "time", "ms", 200, 10, "inline",
             timed(lambda n: requests_shape(), io, concurrent=True), "n concurrent 15-task runs"),
    Scenario("requests_2000", "time", "ms", 2000, 20, "inline",
             timed(lambda n: requests_shape(), io, concurrent=True), "n concurrent 15-task runs"),
    Scenario("build_random_10k", "build", "ms", 10_000, 500, "none",
             build_time(random_dag), "build a random DAG of n tasks"),
    Scenario("build_chain_100k", "build", "ms", 100_000, 1000, "none",
             build_time(lambda n: chain(n, reverse=True)), "build a chain declared in reverse"),
    Scenario("memory_per_run", "memory", "KiB", 1000, 50, "inline",
             memory_per_run, "tracemalloc peak of one three_phases run"),
    Scenario("rss_1k_runs", "memory", "MiB", 1000, 20, "apart",
             rss_after, "RSS after n sequential 15-task runs"),
    Scenario("rss_100k_runs", "memory", "MiB", 100_000, 100, "apart",
             rss_after, "RSS after n sequential 15-task runs"),
)
# fmt: on
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


# Command line -------------------------------------------------------------------


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


async def measure_all(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name in args.only or BY_NAME:
        scenario = BY_NAME[name]
        n = scenario.smoke_n if args.smoke else scenario.n
        job = Job(n, args.runs, args.budget, args.what != "raw", args.what != "sdax")
        entry: dict[str, Any] = {"n": n, "unit": scenario.unit}
        try:
            entry.update(await scenario.measure(job))
        except Exception as error:  # reported, so one failing scenario spoils nothing else
            entry["error"] = f"{type(error).__name__}: {error}"[:300]
        results[name] = entry
    return results


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the catalog as JSON")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--runs", type=int, default=10, help="best of N runs")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per scenario")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--what", choices=("both", "sdax", "raw"), default="both")
    parser.add_argument("--only", nargs="+", choices=sorted(BY_NAME), metavar="SCENARIO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        print(json.dumps([scenario.info() for scenario in SCENARIOS]))
        return 0
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        results = runner.run(measure_all(args))
    header = {
        "python": platform.python_version(),
        "loop": args.loop,
        "sdax_version": importlib.metadata.version("sdax"),
        "sdax_file": sdax.__file__,
    }
    print(json.dumps({**header, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
