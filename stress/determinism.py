"""Same seed, same run: sampled runs replayed twice on a deterministic loop.

sdax draws every choice it makes (the order it releases a batch in, retry
jitter) from seeds, so on a loop that is itself deterministic
(stress.virtual: seeded ready-queue shuffles, a virtual clock, threads
waited for at fixed points) a run's seed must decide everything it does.
`check_determinism` runs one planned run twice, each time alone on a new
`VirtualClockLoop` seeded from the run's seed, in a thread of its own (the
runner's loop is busy awaiting it). It compares the two event orders (our
log, and what sdax told an observer, interleaved) and reports the first
difference as a `determinism` violation; the replays are checked like any
other run as well, so the shuffled orders they explore count too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from stress.faults import Ev
from stress.generate import build_processor, seed_for
from stress.invariants import Violation
from stress.model import RunPlan, Shape
from stress.virtual import VirtualClockLoop

if TYPE_CHECKING:
    from stress.runner import RunResult

_replayer = ThreadPoolExecutor(1, thread_name_prefix="stress-replay")


def replay_alone(shape: Shape, index: int, plan: RunPlan, hang_after: float) -> RunResult:
    """Run `plan` alone on a new deterministic loop (in the calling thread)."""
    from stress.runner import run_plans  # the runner calls this module: import when used

    loop = VirtualClockLoop(seed_for(plan.seed, "virtual loop"))
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        running = run_plans(build_processor(shape), shape, [(index, plan)], hang_after, True)
        (result,) = loop.run_until_complete(running)
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    result.violations += [Violation("hygiene", f"loop error: {e.get('message')}") for e in errors]
    return result


def event_order(result: RunResult) -> list[tuple[object, ...]]:
    """What happened, in order: the log (no sequence numbers or ticks) and the observer's."""
    record = result.record
    log: Sequence[Ev] = record.log if record is not None else ()
    events: list[tuple[object, ...]] = [
        (ev.kind, ev.key, ev.phase, ev.attempt, ev.part, ev.epoch, _shown(ev.obj)) for ev in log
    ]
    raised = _shown(record.raised) if record is not None else None
    return [*events, ("observer", *(result.order or ())), ("raised", raised)]


def _shown(obj: object) -> object:
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}({obj})"
    return obj if obj is None or isinstance(obj, (int, str)) else repr(obj)


def first_difference(one: Sequence[object], two: Sequence[object]) -> str | None:
    for position, (a, b) in enumerate(zip(one, two, strict=False)):
        if a != b:
            return f"event {position}: {a!r} the first time, {b!r} the second"
    if len(one) != len(two):
        return f"{len(one)} events the first time, {len(two)} the second"
    return None


def replay_twice(shape: Shape, index: int, plan: RunPlan, hang_after: float) -> list[Violation]:
    """The determinism check of one run, in the calling thread (no loop may be running)."""
    first = replay_alone(shape, index, plan, hang_after)
    second = replay_alone(shape, index, plan, hang_after)
    found = [
        Violation(v.invariant, f"on the deterministic loop: {v.detail}") for v in first.violations
    ]
    difference = first_difference(event_order(first), event_order(second))
    if difference is not None:
        found.append(
            Violation(
                "determinism",
                f"the same seed gave another event order on the deterministic loop: "
                f"{difference} (rerun this check: add --replay-check 1 to the replay command)",
            )
        )
    return found


async def check_determinism(
    shape: Shape, index: int, plan: RunPlan, hang_after: float = 30.0
) -> list[Violation]:
    """`replay_twice` in a thread of its own, awaited from the runner's loop."""
    done = _replayer.submit(replay_twice, shape, index, plan, hang_after)
    return await asyncio.wrap_future(done)
