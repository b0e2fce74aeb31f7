"""Where a small run's cost goes: sdax against the hand-written endpoint, counted, not timed.

For the endpoint of `small_shapes.py` (and the bare-task floor: each phase in
its own Task, awaited directly) at N concurrent requests, per request:

- bytecodes executed, split by module (`sys.monitoring`, Python 3.12+);
- loop callbacks scheduled (every `call_soon`, `call_later`, wake-up);
- GC-tracked objects alive per request while the batch is in flight;
- cyclic-GC collections per batch of N requests, by generation.

Counts do not depend on how busy the machine is, so they show what a
change did where timings on a shared machine cannot.

    python benchmarks/breakdown.py [--loop asyncio|uvloop] [--sizes 1 100 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import small_shapes

Request = Callable[[], Awaitable[None]]


async def floor_request() -> None:
    """The endpoint with each phase in its own Task, awaited directly: what Tasks alone cost."""
    req = small_shapes.Ctx()
    start = asyncio.create_task
    try:
        await start(small_shapes.open_db(req))

        async def auth() -> None:
            async with asyncio.timeout(2.0):
                await small_shapes.step(req)

        async def flags() -> None:
            for attempt in range(3):
                try:
                    await small_shapes.step(req)
                    return
                except Exception:
                    if attempt == 2:
                        raise

        first, second = start(auth()), start(flags())
        await first
        await second
        await start(small_shapes.step(req))
    finally:
        await start(small_shapes.close_db(req))


SIDES: dict[str, Request] = {
    "sdax": small_shapes.sdax_request,
    "hand": small_shapes.hand_request,
    "floor": floor_request,
}


async def _batch(request: Request, n: int) -> None:
    await asyncio.gather(*(request() for _ in range(n)))


async def bytecodes(request: Request, n: int) -> collections.Counter[str] | None:
    monitoring: Any = getattr(sys, "monitoring", None)
    if monitoring is None:
        return None  # before 3.12
    counts: collections.Counter[Any] = collections.Counter()
    tool = monitoring.PROFILER_ID
    monitoring.use_tool_id(tool, "sdax-breakdown")
    monitoring.register_callback(
        tool, monitoring.events.INSTRUCTION, lambda code, offset: counts.update((code,))
    )
    try:
        monitoring.set_events(tool, monitoring.events.INSTRUCTION)
        await _batch(request, n)
    finally:
        monitoring.set_events(tool, 0)
        monitoring.free_tool_id(tool)
    by_module: collections.Counter[str] = collections.Counter()
    for code, count in counts.items():
        by_module[Path(code.co_filename).name] += count
    return by_module


async def callbacks(request: Request, n: int) -> int:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.BaseEventLoop):
        return -1  # uvloop's loop is not Python code to count in
    scheduled = 0
    original = loop._call_soon  # type: ignore[attr-defined]

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal scheduled
        scheduled += 1
        return original(*args, **kwargs)

    loop._call_soon = counting  # type: ignore[attr-defined]
    try:
        await _batch(request, n)
    finally:
        del loop._call_soon  # type: ignore[attr-defined]
    return scheduled


async def tracked_alive(request: Request, n: int) -> int:
    """GC-tracked objects alive while the batch is in flight (after each request's first steps)."""
    gc.collect()
    baseline = len(gc.get_objects())
    batch = asyncio.ensure_future(_batch(request, n))
    for _ in range(3):
        await asyncio.sleep(0)
    alive = len(gc.get_objects()) - baseline
    await batch
    return alive


async def collections_per_batch(request: Request, n: int) -> list[int]:
    gc.collect()
    before = [generation["collections"] for generation in gc.get_stats()]
    await _batch(request, n)
    after = [generation["collections"] for generation in gc.get_stats()]
    return [b - a for a, b in zip(before, after, strict=True)]


async def measure(sizes: Sequence[int]) -> None:
    for n in sizes:
        print(f"\nN={n} concurrent requests, per request:")
        for name, request in SIDES.items():
            await _batch(request, n)  # warm: caches, first-use imports
            counted = await bytecodes(request, n)
            scheduled = await callbacks(request, n)
            alive = await tracked_alive(request, n)
            collected = await collections_per_batch(request, n)
            line = f"  {name:5s}"
            if counted is not None:
                total = sum(counted.values())
                top = ", ".join(
                    f"{module} {count / n:.0f}" for module, count in counted.most_common(4)
                )
                line += f" bytecodes {total / n:6.0f} ({top})"
            if scheduled >= 0:
                line += f"; callbacks {scheduled / n:.1f}"
            line += f"; GC-tracked objects alive in flight {alive / n:.1f}"
            line += f"; GC collections per batch {collected}"
            print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 2000])
    args = parser.parse_args(argv)
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    print(f"Python {sys.version.split()[0]}, {args.loop} loop")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(measure(args.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
