"""Concurrency limits: max_concurrency and named, weighted, shared limits (issue 6)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    Limit,
    SdaxExecutionError,
    TaskFunction,
    task_func,
)
from sdax.actors.admission import Admission
from sdax.actors.mailbox import Mailbox
from sdax.vocabulary import PhaseId
from tests.support import HOLD, OK, POST, PRE, Probe, Raise


@dataclass
class Meter:
    """Counts units in use per resource while phase functions run."""

    in_use: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    peak: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    order: list[str] = field(default_factory=list)

    def function(self, name: str, uses: dict[str, int], **policy: Any) -> TaskFunction[Any]:
        async def metered(ctx: object) -> None:
            self.order.append(name)
            for resource, units in uses.items():
                self.in_use[resource] += units
                self.peak[resource] = max(self.peak[resource], self.in_use[resource])
            for _ in range(3):  # stay busy across several loop turns, like I/O
                await asyncio.sleep(0)
            for resource, units in uses.items():
                self.in_use[resource] -= units

        return task_func(metered, **policy)


async def test_max_concurrency_caps_pres_and_executes_of_a_run() -> None:
    meter = Meter()
    builder = AsyncDagTaskProcessor[None].builder()
    for i in range(20):
        builder.add_task(
            AsyncTask(
                f"t{i}",
                pre_execute=meter.function(f"pre{i}", {"all": 1}),
                execute=meter.function(f"exec{i}", {"all": 1}),
            )
        )
    await builder.build(max_concurrency=4).process_tasks(None)
    assert meter.peak["all"] == 4
    assert len(meter.order) == 40


async def test_a_named_limit_caps_only_the_tasks_that_use_it_and_keeps_dependency_order() -> None:
    meter = Meter()
    db = Limit("db", 2)
    builder = AsyncDagTaskProcessor[None].builder()
    builder.add_task(AsyncTask("root", pre_execute=meter.function("root", {})))
    for i in range(6):
        builder.add_task(
            AsyncTask(f"q{i}", pre_execute=meter.function(f"q{i}", {"db": 1}, limits=[db])),
            depends_on=("root",),
        )
        builder.add_task(
            AsyncTask(f"free{i}", pre_execute=meter.function(f"free{i}", {"free": 1})),
            depends_on=("root",),
        )
    await builder.build().process_tasks(None)
    assert meter.peak["db"] == 2
    assert meter.peak["free"] == 6  # unlimited siblings all ran together
    assert meter.order[0] == "root"


async def test_weighted_uses_count_their_units() -> None:
    meter = Meter()
    pool = Limit("pool", 3)
    builder = AsyncDagTaskProcessor[None].builder()
    for i in range(4):
        builder.add_task(
            AsyncTask(
                f"heavy{i}",
                execute=meter.function(f"heavy{i}", {"pool": 2}, limits=[pool.units(2)]),
            )
        )
        builder.add_task(
            AsyncTask(f"light{i}", execute=meter.function(f"light{i}", {"pool": 1}, limits=[pool]))
        )
    await builder.build().process_tasks(None)
    assert meter.peak["pool"] == 3


@pytest.mark.parametrize("shared", [True, False])
async def test_a_shared_limit_is_one_pool_across_concurrent_runs(shared: bool) -> None:
    meter = Meter()
    connections = Limit("connections", 3, shared=shared)
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("a", execute=meter.function("a", {"c": 1}, limits=[connections])))
        .add_task(AsyncTask("b", execute=meter.function("b", {"c": 1}, limits=[connections])))
        .build()
    )
    await asyncio.gather(*(processor.process_tasks(None) for _ in range(10)))
    assert meter.peak["c"] == (3 if shared else 20)


async def test_a_task_waiting_for_a_slot_has_not_started_and_is_owed_no_cleanup() -> None:
    probe = Probe()
    one = Limit("one", 1)

    def limited(key: str, behaviour: Any) -> AsyncTask[None]:
        return AsyncTask(
            key,
            pre_execute=probe.function(key, PRE, behaviour, limits=[one]),
            post_execute=probe.function(key, POST, OK),
        )

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(limited("Holder", HOLD))
        .add_task(probe.task("Gate", pre=HOLD))
        .add_task(limited("Waiter", OK), depends_on=("Gate",))  # asks once Holder has the slot
        .add_task(probe.task("Breaker", pre=Raise(ValueError("stop"), hold=True)))
        .build()
    )

    async def fail_once_waiter_is_queued() -> None:
        await probe.started("Holder", PRE)
        probe.release("Gate", PRE)
        await probe.ended("Gate", PRE)
        # One turn: the coordinator, woken after us, reads Gate's success and queues Waiter.
        await asyncio.sleep(0)
        probe.release("Breaker", PRE)

    helper = asyncio.create_task(fail_once_waiter_is_queued())
    with pytest.raises(SdaxExecutionError):
        await processor.process_tasks(None)
    await helper
    assert probe.count("start", "Waiter", PRE) == 0
    assert probe.count("start", "Waiter", POST) == 0
    assert probe.count("end", "Holder", POST) == 1


async def test_limits_taken_in_any_declared_order_never_deadlock_across_runs() -> None:
    meter = Meter()
    a, b = Limit("a", 1, shared=True), Limit("b", 1, shared=True)
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("ab", execute=meter.function("ab", {"a": 1, "b": 1}, limits=[a, b])))
        .add_task(AsyncTask("ba", execute=meter.function("ba", {"a": 1, "b": 1}, limits=[b, a])))
        .build()
    )
    await asyncio.gather(*(processor.process_tasks(None) for _ in range(20)))
    assert meter.peak == {"a": 1, "b": 1}


async def test_a_run_cancelled_while_queued_leaves_the_shared_pool_whole() -> None:
    probe = Probe()
    token = Limit("token", 1, shared=True)
    holder = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(
            AsyncTask("Holder", pre_execute=probe.function("Holder", PRE, HOLD, limits=[token]))
        )
        .build()
    )
    waiter = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(
            AsyncTask("Waiter", pre_execute=probe.function("Waiter", PRE, OK, limits=[token]))
        )
        .build()
    )
    holding = asyncio.create_task(holder.process_tasks(None))
    await probe.started("Holder", PRE)
    queued = asyncio.create_task(waiter.process_tasks(None))
    for _ in range(3):
        await asyncio.sleep(0)  # let it queue behind the holder
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert probe.count("start", "Waiter", PRE) == 0
    probe.release("Holder", PRE)
    await holding
    await waiter.process_tasks(None)  # the token is free again: it runs at once
    assert probe.count("end", "Waiter", PRE) == 1


async def test_withdrawing_requests_queued_behind_each_other_leaves_every_pool_whole() -> None:
    # Regression (found by the stress runner): "Partial" holds x and queues
    # for y, "Behind" queues for x. Withdrawing Partial gives x back, which
    # must not grant x to Behind, itself being withdrawn: Behind was then
    # looked for in the wrong queue and the run raised ValueError.
    x, y, z = Limit("x", 1), Limit("y", 1), Limit("z", 1)
    admission = Admission(Mailbox())
    assert admission.request(0, PhaseId.PRE_EXEC, [y.units(1)])
    assert not admission.request(1, PhaseId.PRE_EXEC, [x.units(1), y.units(1)])
    assert not admission.request(2, PhaseId.PRE_EXEC, [x.units(1), z.units(1)])
    assert admission.waiting == 2

    admission.withdraw()
    assert admission.waiting == 0
    admission.release(0)
    everything = [x.units(1), y.units(1), z.units(1)]
    assert admission.request(3, PhaseId.PRE_EXEC, everything)  # granted on the spot


def test_bad_limit_declarations_fail_early_with_clear_messages() -> None:
    async def work(ctx: object) -> None:
        return None

    with pytest.raises(ValueError, match="capacity must be >= 1"):
        Limit("db", 0)
    with pytest.raises(ValueError, match="between 1 and its capacity 2"):
        Limit("db", 2).units(3)
    with pytest.raises(TypeError, match="collection"):
        task_func(work, limits=Limit("db", 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'Close': post_execute cannot declare limits"):
        AsyncTask("Close", post_execute=task_func(work, limits=[Limit("db", 1)]))
    with pytest.raises(ValueError, match="max_concurrency must be >= 1"):
        AsyncDagTaskProcessor[None].builder().build(max_concurrency=0)
    twins = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("A", execute=task_func(work, limits=[Limit("db", 1)])))
        .add_task(AsyncTask("B", execute=task_func(work, limits=[Limit("db", 2)])))
    )
    with pytest.raises(ValueError, match=r"named 'db' .*'A' and 'B'"):
        twins.build()


async def test_a_shared_limit_shows_its_usage_on_the_running_loop() -> None:
    pool = Limit("pool", 3, shared=True)
    entered = {name: asyncio.Event() for name in ("heavy", "second")}
    release = {name: asyncio.Event() for name in ("heavy", "second")}

    def holder(name: str) -> Any:
        async def hold(ctx: object) -> None:
            entered[name].set()
            await release[name].wait()

        return hold

    def processor(name: str) -> Any:
        builder = AsyncDagTaskProcessor[None].builder()
        use = task_func(holder(name), limits=[pool.units(2)])
        return builder.add_task(AsyncTask(name, execute=use)).build()

    assert (pool.in_use, pool.free, pool.waiting) == (0, 3, 0)  # nothing used it yet
    heavy = asyncio.create_task(processor("heavy").process_tasks(None))
    await entered["heavy"].wait()
    second = asyncio.create_task(processor("second").process_tasks(None))
    for _ in range(10):  # loop turns for the second run to queue behind the first's 2 units
        if pool.waiting:
            break
        await asyncio.sleep(0)
    assert (pool.in_use, pool.free, pool.waiting) == (2, 1, 1)
    release["heavy"].set()
    await heavy
    await entered["second"].wait()
    assert (pool.in_use, pool.free, pool.waiting) == (2, 1, 0)
    release["second"].set()
    await second
    assert (pool.in_use, pool.free, pool.waiting) == (0, 3, 0)


async def test_a_per_run_limit_has_no_one_usage_to_read() -> None:
    per_run = Limit("per_run", 2)
    for read in ("in_use", "free", "waiting"):
        with pytest.raises(TypeError, match=r"limit 'per_run' is per run"):
            getattr(per_run, read)


def test_shared_usage_outside_an_event_loop_says_it_needs_one() -> None:
    with pytest.raises(RuntimeError, match=r"limit 'outside': .*event loop"):
        _ = Limit("outside", 1, shared=True).free
