"""Many small concurrent runs: sdax against the same endpoint written by hand (issue 18).

The README's endpoint (Database pre+post -> Auth pre timeout=2.0 and Flags pre
retries=2 -> Fetch execute; every phase awaits once), one shared processor, N
concurrent `process_tasks` calls, against a hand-written version in the same
process, alternated, best of several batches; plus memory per in-flight request
(tracemalloc peak / N).

    python benchmarks/small_shapes.py [--loop asyncio|uvloop] [--sizes 1 100 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence

from sdax import AsyncDagTaskProcessor, AsyncTask, task_func


class Request:
    __slots__ = ("opened", "closed")

    def __init__(self) -> None:
        self.opened = False
        self.closed = False


async def step(req: Request) -> None:
    await asyncio.sleep(0)


async def open_db(req: Request) -> None:
    await asyncio.sleep(0)
    req.opened = True


async def close_db(req: Request) -> None:
    await asyncio.sleep(0)
    req.closed = True


ENDPOINT = (
    AsyncDagTaskProcessor[Request]
    .builder()
    .add_task(
        AsyncTask("Database", pre_execute=task_func(open_db), post_execute=task_func(close_db))
    )
    .add_task(AsyncTask("Auth", pre_execute=task_func(step, timeout=2.0)), depends_on=("Database",))
    .add_task(AsyncTask("Flags", pre_execute=task_func(step, retries=2)), depends_on=("Database",))
    .add_task(AsyncTask("Fetch", execute=task_func(step)), depends_on=("Auth", "Flags"))
    .build()
)


async def sdax_request() -> None:
    await ENDPOINT.process_tasks(Request())


async def hand_request() -> None:
    req = Request()
    try:
        await open_db(req)

        async def auth() -> None:
            async with asyncio.timeout(2.0):
                await step(req)

        async def flags() -> None:
            for attempt in range(3):
                try:
                    await step(req)
                    return
                except Exception:
                    if attempt == 2:
                        raise

        async with asyncio.TaskGroup() as group:
            group.create_task(auth())
            group.create_task(flags())
        await step(req)
    finally:
        await close_db(req)


async def batch(request: Callable[[], Awaitable[None]], n: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(request() for _ in range(n)))
    return time.perf_counter() - start


async def peak_per_request(request: Callable[[], Awaitable[None]], n: int) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    await asyncio.gather(*(request() for _ in range(n)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / n


async def measure(sizes: Sequence[int], rounds: int) -> None:
    sides = {"sdax": sdax_request, "hand": hand_request}
    for n in sizes:
        repeats = max(1, 2000 // n)
        best = dict.fromkeys(sides, float("inf"))
        for _ in range(rounds):  # sides alternate, so a slow spell hits both
            for name, request in sides.items():
                total = 0.0
                for _ in range(repeats):
                    total += await batch(request, n)
                best[name] = min(best[name], total / (repeats * n))
        print(
            f"N={n:5d}: sdax {best['sdax'] * 1e6:7.1f} us/req, hand {best['hand'] * 1e6:7.1f} "
            f"us/req, ratio {best['sdax'] / best['hand']:.2f}"
        )
    n = max(sizes)
    mem = {name: await peak_per_request(request, n) for name, request in sides.items()}
    print(
        f"memory per in-flight request at N={n}: sdax {mem['sdax'] / 1024:.1f} KiB, "
        f"hand {mem['hand'] / 1024:.1f} KiB, ratio {mem['sdax'] / mem['hand']:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 2000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    print(f"Python {sys.version.split()[0]}, {args.loop} loop")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(measure(args.sizes, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
