"""Many small concurrent runs: sdax against the same work written by hand (issue 18).

Two shapes, each with its hand-written twin in the same module:

- `endpoint`, the README's: Database pre+post -> Auth pre timeout=2.0 and Flags
  pre retries=2 -> Fetch execute; every phase awaits once.
- `fanout`, eight tasks: Session pre+post -> five lookups, each a pre -> Render,
  an execute that runs three children in a task group -> Audit, post-only.

One shared processor, N concurrent `process_tasks` calls, against the
hand-written version in the same process, the sides taking turns, best of
several rounds; plus memory per in-flight request (tracemalloc peak / N).
It imports only 0.7.2's API, so the interpreter of an sdax 0.7.2 venv runs it
too (`small_table.py` does that).

    python benchmarks/small_shapes.py [--loop asyncio|uvloop] [--shape endpoint fanout]
        [--sizes 1 100 2000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sdax
from sdax import AsyncDagTaskProcessor, AsyncTask, task_func, task_group_func

Request = Callable[[], Awaitable[None]]


class Ctx:
    __slots__ = ("opened", "closed", "steps")

    def __init__(self) -> None:
        self.opened = False
        self.closed = False
        self.steps = 0


async def step(ctx: Ctx) -> None:
    await asyncio.sleep(0)
    ctx.steps += 1


async def open_db(ctx: Ctx) -> None:
    await asyncio.sleep(0)
    ctx.opened = True


async def close_db(ctx: Ctx) -> None:
    await asyncio.sleep(0)
    ctx.closed = True


async def render(ctx: Ctx, group: Any) -> None:
    for _ in range(3):
        group.create_task(step(ctx))


# -- endpoint -----------------------------------------------------------------------

ENDPOINT = (
    AsyncDagTaskProcessor.builder()  # unsubscripted: 0.7.2 takes two type arguments
    .add_task(
        AsyncTask("Database", pre_execute=task_func(open_db), post_execute=task_func(close_db))
    )
    .add_task(AsyncTask("Auth", pre_execute=task_func(step, timeout=2.0)), depends_on=("Database",))
    .add_task(AsyncTask("Flags", pre_execute=task_func(step, retries=2)), depends_on=("Database",))
    .add_task(AsyncTask("Fetch", execute=task_func(step)), depends_on=("Auth", "Flags"))
    .build()
)


async def sdax_request() -> None:
    await ENDPOINT.process_tasks(Ctx())


async def hand_request() -> None:
    ctx = Ctx()
    try:
        await open_db(ctx)

        async def auth() -> None:
            async with asyncio.timeout(2.0):
                await step(ctx)

        async def flags() -> None:
            for attempt in range(3):
                try:
                    await step(ctx)
                    return
                except Exception:
                    if attempt == 2:
                        raise

        async with asyncio.TaskGroup() as group:
            group.create_task(auth())
            group.create_task(flags())
        await step(ctx)
    finally:
        await close_db(ctx)


# -- fanout -------------------------------------------------------------------------

LOOKUPS = [f"Lookup{i}" for i in range(5)]


def _fanout() -> Any:
    builder = AsyncDagTaskProcessor.builder()
    builder.add_task(
        AsyncTask("Session", pre_execute=task_func(open_db), post_execute=task_func(close_db))
    )
    for name in LOOKUPS:
        builder.add_task(AsyncTask(name, pre_execute=task_func(step)), depends_on=("Session",))
    builder.add_task(AsyncTask("Render", execute=task_group_func(render)), depends_on=LOOKUPS)
    builder.add_task(AsyncTask("Audit", post_execute=task_func(step)), depends_on=("Render",))
    return builder.build()


FANOUT = _fanout()


async def sdax_fanout() -> None:
    await FANOUT.process_tasks(Ctx())


async def hand_fanout() -> None:
    ctx = Ctx()
    try:
        await open_db(ctx)
        try:
            async with asyncio.TaskGroup() as lookups:
                for _ in LOOKUPS:
                    lookups.create_task(step(ctx))
            async with asyncio.TaskGroup() as children:
                for _ in range(3):
                    children.create_task(step(ctx))
        finally:
            await step(ctx)  # the audit
    finally:
        await close_db(ctx)


SHAPES: dict[str, dict[str, Request]] = {
    "endpoint": {"sdax": sdax_request, "hand": hand_request},
    "fanout": {"sdax": sdax_fanout, "hand": hand_fanout},
}

# -- measuring ----------------------------------------------------------------------


async def batch(request: Request, n: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(request() for _ in range(n)))
    return time.perf_counter() - start


async def peak_per_request(request: Request, n: int) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    await asyncio.gather(*(request() for _ in range(n)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / n


async def measure_shape(sides: dict[str, Request], sizes: Sequence[int], rounds: int) -> dict:
    """Microseconds per request per size and side, and memory per in-flight request."""
    result: dict[str, Any] = {"us_per_request": {}, "ratio": {}}
    for n in sizes:
        repeats = max(1, 2000 // n)
        best = dict.fromkeys(sides, float("inf"))
        for _ in range(rounds):  # sides alternate, so a slow spell hits both
            for name, request in sides.items():
                total = 0.0
                for _ in range(repeats):
                    total += await batch(request, n)
                best[name] = min(best[name], total / (repeats * n))
        result["us_per_request"][n] = {name: seconds * 1e6 for name, seconds in best.items()}
        result["ratio"][n] = best["sdax"] / best["hand"]
    n = max(sizes)
    memory = {name: await peak_per_request(request, n) for name, request in sides.items()}
    result["memory_kib"] = {name: peak / 1024 for name, peak in memory.items()}
    result["memory_ratio"] = memory["sdax"] / memory["hand"]
    result["memory_n"] = n
    return result


def show(shape: str, result: dict) -> None:
    for n, us in result["us_per_request"].items():
        print(
            f"{shape:8s} N={n:5d}: sdax {us['sdax']:7.1f} us/req, hand {us['hand']:7.1f} us/req,"
            f" ratio {result['ratio'][n]:.2f}"
        )
    kib = result["memory_kib"]
    print(
        f"{shape:8s} memory per in-flight request at N={result['memory_n']}: sdax "
        f"{kib['sdax']:.1f} KiB, hand {kib['hand']:.1f} KiB, ratio {result['memory_ratio']:.2f}"
    )


async def measure(shapes: Sequence[str], sizes: Sequence[int], rounds: int) -> dict:
    results = {}
    for shape in shapes:
        sides = SHAPES[shape]
        for request in sides.values():
            await batch(request, 2)  # warm: first-use imports and caches
        results[shape] = await measure_shape(sides, sizes, rounds)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--shape", nargs="+", choices=tuple(SHAPES), default=list(SHAPES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 2000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    args = parser.parse_args(argv)
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        results = runner.run(measure(args.shape, args.sizes, args.rounds))
    python = sys.version.split()[0]
    if args.json:
        version = getattr(sdax, "__version__", "?")
        print(json.dumps({"python": python, "loop": args.loop, "sdax": version, **results}))
        return 0
    print(f"Python {python}, {args.loop} loop, sdax {getattr(sdax, '__version__', '?')}")
    for shape, result in results.items():
        show(shape, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
