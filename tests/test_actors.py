"""The runtime layer on its own: messages, mailbox, coordinator bookkeeping, layering."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sdax import AsyncDagTaskProcessor, AsyncTask, Limit, task_func
from sdax.actors import coordinator, messages
from sdax.actors.coordinator import Coordinator
from sdax.actors.flow import REACHED, Flow
from sdax.actors.mailbox import Mailbox
from sdax.graph import compile_graph
from sdax.report import ReportRecorder
from sdax.run_options import RunKeywords
from sdax.vocabulary import CancelReason, PhaseId
from tests.support import HOLD, OK, PRE, Probe, Raise
from tests.test_architecture import module_imports

SDAX = Path(__file__).resolve().parent.parent / "sdax"


def message_types(union: object) -> set[type]:
    return set(getattr(union, "__args__", ()))


def test_every_message_is_a_frozen_struct_with_exactly_one_handler() -> None:
    events = message_types(messages.Event)
    assert events
    for kind in events:
        assert issubclass(kind, msgspec.Struct)
        assert kind.__struct_config__.frozen
    assert set(coordinator._EVENT_HANDLERS) == events


def test_the_coordinator_never_imports_attempt_machinery() -> None:
    imported = module_imports(SDAX / "actors" / "coordinator.py")
    assert "sdax.actors.attempts" not in imported
    assert "sdax.task_group" not in imported


async def read(mailbox: Mailbox[str]) -> None:
    """Wait as the coordinator does: look, and await what `wait()` gives until news came."""
    while not mailbox.pending:
        await mailbox.wait()


async def parked(mailbox: Mailbox[str]) -> None:
    """Let a new reader take its two steps: it yields once, then sleeps on its future."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert mailbox._waiter is not None


async def test_the_mailbox_delivers_in_order_and_wakes_its_parked_reader() -> None:
    mailbox: Mailbox[str] = Mailbox()
    reader = asyncio.create_task(read(mailbox))
    await parked(mailbox)
    assert not reader.done()
    mailbox.put("one")
    mailbox.put("two")
    await reader
    assert mailbox.take_all() == ["one", "two"]
    assert mailbox.take_all() == []


async def test_a_mailbox_reader_finds_news_that_arrived_while_it_yielded() -> None:
    mailbox: Mailbox[str] = Mailbox()

    async def reply() -> None:  # ready before the reader's first step, as a phase is
        mailbox.put("done at once")

    for _ in range(2):  # a yield that paid off is tried again next time
        reader = asyncio.create_task(read(mailbox))
        replier = asyncio.create_task(reply())
        await asyncio.sleep(0)  # the reader's first step: it yields behind the replier
        assert mailbox._waiter is None  # and it never needed a future
        await reader
        await replier
        assert mailbox.take_all() == ["done at once"]


async def test_once_a_yield_found_nothing_the_mailbox_reader_parks_at_once() -> None:
    mailbox: Mailbox[str] = Mailbox()
    reader = asyncio.create_task(read(mailbox))
    await parked(mailbox)  # it yielded, found nothing, and parked
    mailbox.put("one")
    await reader
    assert mailbox.take_all() == ["one"]
    reader = asyncio.create_task(read(mailbox))
    await asyncio.sleep(0)  # the reader's first step
    assert mailbox._waiter is not None  # parked in it, without yielding first
    mailbox.put("two")
    await reader
    assert mailbox.take_all() == ["two"]


async def test_a_cancelled_mailbox_wait_propagates_and_leaves_the_mailbox_usable() -> None:
    mailbox: Mailbox[str] = Mailbox()
    for reader_parked in (False, True):  # cancelled while yielding, then while parked
        reader = asyncio.create_task(read(mailbox))
        if reader_parked:
            await parked(mailbox)
        else:
            await asyncio.sleep(0)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert mailbox._waiter is None or mailbox._waiter.cancelled()
    mailbox.put("after")
    await read(mailbox)
    assert mailbox.take_all() == ["after"]


def cancel_reasons(recorder: ReportRecorder) -> dict[str, CancelReason]:
    """Why sdax cancelled each phase it cancelled, by task, as the run's report has it."""
    assert recorder.report is not None
    return {
        entry.task: phase.cancel_reason
        for entry in recorder.report.tasks
        for phase in entry.phases
        if phase.cancel_reason is not None
    }


def graph_of(*tasks_and_deps: tuple[object, tuple[str, ...]]):  # type: ignore[no-untyped-def]
    return compile_graph([(task, deps) for task, deps in tasks_and_deps])  # type: ignore[misc]


async def test_cancellations_carry_the_reason_a_sibling_failed() -> None:
    probe = Probe()
    graph = graph_of(
        (probe.task("A", pre=HOLD), ()),
        (probe.task("B", pre=Raise(ValueError("x"), hold=True)), ()),
    )
    recorder = ReportRecorder()
    run = Coordinator(graph, None, RunKeywords(observers=(recorder,)))

    async def release_b() -> None:
        await probe.started("A", PRE)
        await probe.started("B", PRE)
        probe.release("B", PRE)

    helper = asyncio.create_task(release_b())
    await run.run_next_phase()
    await helper
    assert cancel_reasons(recorder) == {"A": CancelReason.SIBLING_FAILED}
    assert run.next_phase is PhaseId.POST_EXEC


async def test_cancellations_carry_the_reason_the_caller_was_cancelled() -> None:
    probe = Probe()
    graph = graph_of((probe.task("A", pre=HOLD, post=OK), ()))
    recorder = ReportRecorder()
    run = Coordinator(graph, None, RunKeywords(observers=(recorder,)))
    driver = asyncio.create_task(run.run_next_phase())
    await probe.started("A", PRE)
    driver.cancel()
    await driver  # the phase absorbs it and hands it over
    assert isinstance(run.outcome.hand_over(), asyncio.CancelledError)
    assert cancel_reasons(recorder) == {"A": CancelReason.CALLER_CANCELLED}


async def test_cancellations_carry_the_reason_a_task_raised_a_fatal_error() -> None:
    probe = Probe()
    graph = graph_of(
        (probe.task("A", pre=HOLD), ()),
        (probe.task("B", pre=Raise(SystemExit(3), hold=True)), ()),
    )
    recorder = ReportRecorder()
    run = Coordinator(graph, None, RunKeywords(observers=(recorder,)))

    async def release_b() -> None:
        await probe.started("A", PRE)
        await probe.started("B", PRE)
        probe.release("B", PRE)

    helper = asyncio.create_task(release_b())
    await run.run_next_phase()
    await helper
    assert isinstance(run.outcome.hand_over(), SystemExit)
    assert cancel_reasons(recorder) == {"A": CancelReason.FATAL_ERROR}


async def test_a_bug_in_the_coordinator_still_stops_every_phase_and_frees_shared_slots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probe = Probe()
    token = Limit("token", 1, shared=True)
    graph = graph_of(
        (AsyncTask("Holder", pre_execute=probe.function("Holder", PRE, HOLD, limits=[token])), ()),
        (probe.task("Trigger", pre=HOLD), ()),
    )

    def broken(run: Coordinator, event: messages.PhaseSucceeded) -> None:
        raise RuntimeError("a bug in sdax")

    async def break_once_holder_runs() -> None:
        await probe.started("Holder", PRE)
        monkeypatch.setitem(coordinator._EVENT_HANDLERS, messages.PhaseSucceeded, broken)
        probe.release("Trigger", PRE)  # its success is the event the broken handler fails on

    helper = asyncio.create_task(break_once_holder_runs())
    run = Coordinator(graph, None)
    with pytest.raises(RuntimeError, match="a bug in sdax"):
        await run.run_next_phase()
    await helper
    assert probe.count("cancelled", "Holder", PRE) == 1  # not left running
    monkeypatch.undo()
    again = Coordinator(
        graph_of((AsyncTask("T", pre_execute=probe.function("T", PRE, OK, limits=[token])), ())),
        None,
    )
    await again.run()  # the shared token was given back
    assert probe.count("end", "T", PRE) == 1


async def test_phases_run_in_order_and_none_is_left_after_post() -> None:
    run = Coordinator(graph_of((Probe().task("A", pre=OK), ())), None)
    order = []
    while run.next_phase is not None:
        order.append(run.next_phase)
        await run.run_next_phase()
    assert order == [PhaseId.PRE_EXEC, PhaseId.EXECUTE, PhaseId.POST_EXEC]
    with pytest.raises(RuntimeError, match="the run is over"):
        await run.run_next_phase()


async def test_each_phase_runs_in_its_own_named_task_made_by_the_loops_task_factory() -> None:
    loop = asyncio.get_running_loop()
    made: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **options)
        made.append(task)
        return task

    ran_in: dict[str, asyncio.Task[Any] | None] = {}

    async def record(ctx: object) -> None:
        ran_in[f"{len(ran_in)}"] = asyncio.current_task()

    phase = task_func(record)
    processor = AsyncDagTaskProcessor[None].builder()
    processor.add_task(AsyncTask("A", pre_execute=phase, execute=phase, post_execute=phase))
    loop.set_task_factory(factory)
    try:
        await processor.build().process_tasks(None)
    finally:
        loop.set_task_factory(None)
    assert list(ran_in.values()) == made  # one task per phase, each from the factory
    assert [task.get_name() for task in made] == [
        "sdax pre_execute",
        "sdax execute",
        "sdax post_execute",
    ]


async def test_without_a_task_factory_each_phase_still_runs_in_its_own_named_task() -> None:
    outer = asyncio.current_task()
    ran_in: list[asyncio.Task[Any] | None] = []

    async def record(ctx: object) -> None:
        ran_in.append(asyncio.current_task())

    phase = task_func(record)
    processor = AsyncDagTaskProcessor[None].builder()
    processor.add_task(AsyncTask("A", pre_execute=phase, execute=phase, post_execute=phase))
    processor.add_task(AsyncTask("B", pre_execute=phase, execute=phase, post_execute=phase))
    await processor.build().process_tasks(None)
    tasks = [task for task in ran_in if task is not None]
    assert len(set(map(id, tasks))) == 6
    assert outer not in tasks
    assert sorted(task.get_name() for task in tasks) == [
        "sdax execute",
        "sdax execute",
        "sdax post_execute",
        "sdax post_execute",
        "sdax pre_execute",
        "sdax pre_execute",
    ]


def test_a_flow_passes_through_nodes_without_the_phase_and_reports_who_is_ready() -> None:
    # 0 -> 1 (no phase) -> 3 ; 0 -> 2 -> 3 ; only 0, 2 and 3 run the phase.
    edges = ((1, 2), (3,), (3,), ())
    flow = Flow(PhaseId.PRE_EXEC, edges, [0, 1, 1, 2], [True, False, True, True])
    assert flow.start_at([0]) == [0]
    assert flow.finish([0]) == [2]  # 1 passed straight through; 3 still waits on 2
    assert flow.progress[1] == REACHED
    assert flow.finish([2]) == [3]
    assert flow.waiting == [0, 0, 0, 0]
