"""Runs in flight and draining them (SPEC §4 "In-flight runs"), the run tag,
phase durations, and the checks a run's arguments get at the call."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from sdax import (
    AsyncDagTaskProcessor,
    PhaseFinished,
    PhaseStarted,
    RunFinished,
    RunObserver,
    RunStarted,
)
from tests.support import HOLD, OK, POST, PRE, Probe


def held_pair(probe: Probe) -> AsyncDagTaskProcessor[None]:
    """A (pre held, post) <- B (post): a run stays in flight until A's pre is released."""
    return (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("A", pre=HOLD, post=OK))
        .add_task(probe.task("B", post=OK), depends_on=("A",))
        .build()
    )


async def test_in_flight_counts_each_run_from_its_start_to_the_end_of_its_cleanup() -> None:
    probe = Probe()
    processor = held_pair(probe)
    assert processor.in_flight == 0
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("A", PRE)
    assert processor.in_flight == 1
    probe.release("A", PRE)
    await run
    assert processor.in_flight == 0
    assert probe.keys("end", POST) == ["B", "A"]


async def test_drain_returns_true_once_every_run_has_finished_its_cleanup() -> None:
    probe = Probe()
    processor = held_pair(probe)
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("A", PRE)
    drained = asyncio.create_task(processor.drain())
    await asyncio.sleep(0)
    assert not drained.done()
    probe.release("A", PRE)
    assert await drained is True
    # Draining waited for the cleanup, not just for the forward phases.
    assert probe.keys("end", POST) == ["B", "A"]
    await run


async def test_drain_that_runs_out_of_time_says_so_and_leaves_the_run_alone() -> None:
    probe = Probe()
    processor = held_pair(probe)
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("A", PRE)
    assert await processor.drain(timeout=0) is False
    assert processor.in_flight == 1
    assert probe.count("cancelled", "A", PRE) == 0
    probe.release("A", PRE)
    await run
    assert probe.keys("end", POST) == ["B", "A"]


async def test_a_cancelled_drain_stops_waiting_and_cancels_no_run() -> None:
    probe = Probe()
    processor = held_pair(probe)
    run = asyncio.create_task(processor.process_tasks(None))
    await probe.started("A", PRE)
    drained = asyncio.create_task(processor.drain())
    await asyncio.sleep(0)
    drained.cancel()
    with pytest.raises(asyncio.CancelledError):
        await drained
    probe.release("A", PRE)
    await run
    assert probe.count("cancelled", "A", PRE) == 0
    assert await processor.drain() is True


async def test_drain_with_nothing_in_flight_returns_true_at_once() -> None:
    processor = held_pair(Probe())
    assert await processor.drain() is True
    assert await processor.drain(timeout=0) is True


async def test_an_open_run_is_in_flight_from_entering_the_block_to_leaving_it() -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None].builder().add_task(probe.task("A", pre=OK, post=OK)).build()
    )
    runner = processor.open(None)
    assert processor.in_flight == 0
    async with runner:
        assert processor.in_flight == 1
        await runner.run_next()
        assert processor.in_flight == 1
    assert processor.in_flight == 0
    assert probe.keys("end", POST) == ["A"]


async def test_runs_of_two_processors_are_counted_apart() -> None:
    first, second = Probe(), Probe()
    one, other = held_pair(first), held_pair(second)
    run = asyncio.create_task(one.process_tasks(None))
    await first.started("A", PRE)
    assert (one.in_flight, other.in_flight) == (1, 0)
    assert await other.drain(timeout=0) is True
    first.release("A", PRE)
    await run


@pytest.mark.parametrize(
    ("seconds", "error"), [("1", TypeError), (True, TypeError), (-0.5, ValueError)]
)
async def test_a_bad_drain_timeout_is_refused(seconds: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="timeout"):
        await held_pair(Probe()).drain(timeout=seconds)  # type: ignore[arg-type]


class Recorder(RunObserver):
    def __init__(self) -> None:
        self.events: list[Any] = []

    def run_started(self, event: RunStarted) -> None:
        self.events.append(event)

    def phase_started(self, event: PhaseStarted) -> None:
        self.events.append(event)

    def phase_finished(self, event: PhaseFinished) -> None:
        self.events.append(event)

    def run_finished(self, event: RunFinished) -> None:
        self.events.append(event)


async def test_the_tag_reaches_every_event_and_the_report() -> None:
    probe = Probe()
    recorder = Recorder()
    processor = held_pair(probe)
    probe.release("A", PRE)
    report = await processor.process_tasks(None, tag="job-42", observers=[recorder], report=True)
    assert report.tag == "job-42"
    assert len(recorder.events) == 2 + 2 * 3  # run start/end, 3 phases started and finished
    assert {event.tag for event in recorder.events} == {"job-42"}


async def test_a_run_without_a_tag_carries_none() -> None:
    recorder = Recorder()
    probe = Probe()
    probe.release("A", PRE)
    report = await held_pair(probe).process_tasks(None, observers=[recorder], report=True)
    assert report.tag is None
    assert {event.tag for event in recorder.events} == {None}


async def test_each_finished_phase_carries_how_long_it_ran() -> None:
    recorder = Recorder()
    probe = Probe()
    probe.release("A", PRE)
    await held_pair(probe).process_tasks(None, observers=[recorder])
    started = {(e.task, e.phase): e.at for e in recorder.events if isinstance(e, PhaseStarted)}
    finished = [e for e in recorder.events if isinstance(e, PhaseFinished)]
    assert len(finished) == 3
    for event in finished:
        assert event.duration == pytest.approx(event.at - started[event.task, event.phase])


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"timeout": "3"}, TypeError, "timeout must be a number of seconds"),
        ({"cleanup_timeout": -1}, ValueError, "cleanup_timeout must be"),
        ({"tag": 42}, TypeError, "tag"),
        ({"rng": 7}, TypeError, "rng"),
        ({"observers": Recorder()}, TypeError, "not a single Recorder"),
        ({"observers": [object()]}, TypeError, "is not a RunObserver"),
    ],
)
async def test_bad_run_arguments_are_refused_at_the_call_before_anything_runs(
    options: dict[str, object], error: type[Exception], words: str
) -> None:
    probe = Probe()
    processor = held_pair(probe)
    with pytest.raises(error, match=words):
        await processor.process_tasks(None, **options)  # type: ignore[arg-type]
    with pytest.raises(error, match=words):
        processor.open(None, **options)  # type: ignore[arg-type]
    assert probe.log == []
    assert processor.in_flight == 0


async def test_a_seeded_rng_is_accepted() -> None:
    probe = Probe()
    probe.release("A", PRE)
    await held_pair(probe).process_tasks(None, rng=random.Random(3))
    assert probe.keys("end", POST) == ["B", "A"]
