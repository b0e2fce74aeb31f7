"""How far a task runner sits above the least that one asyncio Task per phase costs.

The suite's "raw" side is a TaskGroup. Under it is a lower floor: each phase
call in a bare `asyncio.Task`, counted down to one future, with no group, no
graph and no reporting. Any runner that gives every phase its own task pays
at least that; what it spends above it is its own. This worker prints, for
whichever `sdax` its interpreter imports, the single-level time and the
memory-per-run peak (the suite's scenarios, same sizes) beside the TaskGroup
and the bare-task floor, measured in the same process. Run it with our venv
and with the reference's to compare both sides against the same floor:

    python benchmarks/floor.py [--loop asyncio|uvloop] [--runs N]
    python -m benchmarks.floor [...]         (the same, from the repository root)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

# Its siblings are plain modules, so it runs as a script and with -m alike.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import (
    Job,
    assemble,
    best_ms,
    check,
    declare,
    loop_factory,
    memory_per_run,
    run_raw,
    run_sdax,
    traced_peak,
)
from shapes import Ctx, Phase, levels, work

import sdax

SIZE = 1000  # tasks, as in the suite's single_level and memory_per_run
ROUNDS = 5


async def run_bare(fn: Phase, expected: int) -> None:
    """`expected` calls of `fn`, each in its own bare Task; returns when all have ended."""
    loop = asyncio.get_running_loop()
    ctx, done = Ctx(), loop.create_future()
    left = expected

    async def phase() -> None:
        nonlocal left
        try:
            await fn(ctx)
        finally:
            left -= 1
            if not left:
                done.set_result(None)

    # Named, as a runner would name them: on 3.11 an unnamed task formats "Task-<n>".
    # Held until all have ended: the loop keeps only weak references to tasks.
    tasks = [asyncio.Task(phase(), loop=loop, name="phase") for _ in range(expected)]
    await done
    del tasks
    check(ctx, expected)


async def measure(runs: int) -> dict[str, dict[str, float]]:
    job = Job(SIZE, runs, budget=5.0, sdax=True, raw=True)
    single = levels(SIZE, 1, ("execute",))
    single_run = assemble(declare(single, work))
    sides: dict[str, Callable[[], Awaitable[None]]] = {
        "sdax": lambda: run_sdax(single_run, SIZE),
        "taskgroup": lambda: run_raw(work, SIZE),
        "bare_tasks": lambda: run_bare(work, SIZE),
    }
    time_ms = dict.fromkeys(sides, math.inf)
    for _ in range(ROUNDS):  # sides take turns, so a slow spell of the machine hits them all
        for side, once in sides.items():
            time_ms[side] = min(time_ms[side], await best_ms(once, job))
    # The suite's own memory scenario, whose peak is its executes all pending
    # at once: SIZE of them, as many as the bare tasks here.
    suite_peak = await memory_per_run(Job(SIZE, 1, budget=0.0, sdax=True, raw=False))
    peak_kib = {
        "sdax": suite_peak["sdax"],
        "bare_tasks": await traced_peak(lambda: run_bare(work, SIZE)),
    }
    return {"single_level_ms": time_ms, "memory_per_run_kib": peak_kib}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--runs", type=int, default=15, help="best of N runs, in each of 5 rounds")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        results = runner.run(measure(args.runs))
    time_ms, peak = results["single_level_ms"], results["memory_per_run_kib"]
    version = importlib.metadata.version("sdax")
    print(f"sdax {version} ({sdax.__file__}), Python {sys.version.split()[0]}, {args.loop} loop")
    print(
        f"  single level, {SIZE} tasks: sdax {time_ms['sdax']:.2f} ms, TaskGroup "
        f"{time_ms['taskgroup']:.2f} ms, bare tasks {time_ms['bare_tasks']:.2f} ms "
        f"(sdax / bare {time_ms['sdax'] / time_ms['bare_tasks']:.2f})"
    )
    print(
        f"  memory per run: sdax {peak['sdax']:.0f} KiB, {SIZE} pending bare tasks "
        f"{peak['bare_tasks']:.0f} KiB (sdax / bare {peak['sdax'] / peak['bare_tasks']:.2f})"
    )
    header = {"python": sys.version.split()[0], "loop": args.loop, "sdax_version": version}
    print(json.dumps({**header, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
