"""Run reports and observers (issue 5)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    LoggingObserver,
    PhaseFinished,
    PhaseOutcome,
    PhaseStarted,
    RunFinished,
    RunObserver,
    RunOutcome,
    RunReport,
    RunStarted,
    SdaxExecutionError,
    task_func,
)
from sdax.vocabulary import CancelReason
from tests.support import HOLD, OK, Probe, Raise


class Recording(RunObserver):
    def __init__(self) -> None:
        self.seen: list[object] = []

    def run_started(self, event: RunStarted) -> None:
        self.seen.append(event)

    def phase_started(self, event: PhaseStarted) -> None:
        self.seen.append(event)

    def phase_finished(self, event: PhaseFinished) -> None:
        self.seen.append(event)

    def run_finished(self, event: RunFinished) -> None:
        self.seen.append(event)


def failing_processor(probe: Probe) -> AsyncDagTaskProcessor[None]:
    return (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("Db", pre=OK, post=OK))
        .add_task(probe.task("Auth", pre=Raise(ValueError("bad token"), hold=True)), ("Db",))
        .add_task(probe.task("Flags", pre=HOLD, execute=OK, post=OK), ("Db",))
        .build()
    )


async def run_failing(probe: Probe, *observers: RunObserver) -> SdaxExecutionError:
    async def fail_auth_once_flags_runs() -> None:
        await probe.started("Flags", "pre_execute")
        await probe.started("Auth", "pre_execute")
        probe.release("Auth", "pre_execute")

    helper = asyncio.create_task(fail_auth_once_flags_runs())
    with pytest.raises(SdaxExecutionError) as caught:
        await failing_processor(probe).process_tasks(None, report=True, observers=observers)
    await helper
    return caught.value


async def test_a_successful_run_reports_every_phase_ok_with_times_and_attempts() -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("A", pre=OK, execute=OK, post=OK))
        .add_task(probe.task("B", pre=OK), depends_on=("A",))
        .build()
    )
    report = await processor.process_tasks(None, report=True)
    assert report.outcome == "ok"
    assert [(t.task, [p.phase for p in t.phases]) for t in report.tasks] == [
        ("A", ["pre_execute", "execute", "post_execute"]),
        ("B", ["pre_execute"]),
    ]
    for task in report.tasks:
        for phase in task.phases:
            assert phase.outcome == "ok"
            assert phase.attempts == 1
            assert report.start <= phase.start <= phase.end <= report.end  # type: ignore[operator]
    assert report.phase("A", "pre_execute").end <= report.phase("B", "pre_execute").start  # type: ignore[operator]


async def test_a_failing_run_reports_failed_cancelled_and_skipped_phases() -> None:
    error = await run_failing(Probe())
    report = error.report
    assert report is not None
    assert report.outcome == "failed"
    assert report.error is not None
    assert report.error.type == "sdax.errors.SdaxExecutionError"
    auth = report.phase("Auth", "pre_execute")
    assert auth.outcome == "failed"
    assert auth.error is not None
    assert (auth.error.type, auth.error.message) == ("ValueError", "bad token")
    flags = report.phase("Flags", "pre_execute")
    assert flags.outcome == "cancelled"
    assert flags.cancel_reason is CancelReason.SIBLING_FAILED
    assert report.phase("Flags", "execute").outcome == "skipped"
    assert report.phase("Flags", "execute").start is None
    assert report.phase("Flags", "post_execute").outcome == "ok"  # its pre started: cleaned up


async def test_retries_are_counted_and_each_failed_attempt_is_kept() -> None:
    calls = 0

    async def flaky(ctx: object) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError(f"attempt {calls}")

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Flaky", execute=task_func(flaky, retries=2, initial_delay=0)))
        .build()
    )
    report = await processor.process_tasks(None, report=True)
    phase = report.phase("Flaky", "execute")
    assert phase.attempts == 3
    assert [retry.error.message for retry in phase.retries] == ["attempt 1", "attempt 2"]
    assert phase.start <= phase.retries[0].at <= phase.retries[1].at <= phase.end  # type: ignore[operator]


async def test_a_retry_cut_short_in_its_backoff_counts_only_the_attempts_made() -> None:
    # Regression (found by the stress runner): the retry was announced, the
    # run was cancelled during the backoff, and the phase claimed 2 attempts.
    failed_once = asyncio.Event()
    recording = Recording()

    async def flaky(ctx: object) -> None:
        failed_once.set()
        raise ConnectionError("try later")

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Flaky", execute=task_func(flaky, retries=3, initial_delay=3600)))
        .build(observers=[recording])
    )
    run = asyncio.create_task(processor.process_tasks(None))
    await failed_once.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    [finished] = [event for event in recording.seen if isinstance(event, PhaseFinished)]
    assert finished.outcome is PhaseOutcome.CANCELLED
    assert finished.attempts == 1


async def test_a_report_round_trips_through_json() -> None:
    error = await run_failing(Probe())
    assert error.report is not None
    assert RunReport.from_json(error.report.to_json()) == error.report


async def test_builder_and_run_observers_hear_the_run_in_order() -> None:
    probe = Probe()
    always, this_run = Recording(), Recording()
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("A", pre=OK))
        .build(observers=[always])
    )
    await processor.process_tasks(None, observers=[this_run])
    kinds = [type(event).__name__ for event in always.seen]
    assert kinds == ["RunStarted", "PhaseStarted", "PhaseFinished", "RunFinished"]
    assert [type(event) for event in this_run.seen] == [type(event) for event in always.seen]
    finished = always.seen[-1]
    assert isinstance(finished, RunFinished)
    assert finished.outcome is RunOutcome.OK


async def test_an_observer_that_raises_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(RunObserver):
        def phase_started(self, event: PhaseStarted) -> None:
            raise RuntimeError("observer bug")

    probe = Probe()
    processor = AsyncDagTaskProcessor[None].builder().add_task(probe.task("A", pre=OK)).build()
    with caplog.at_level(logging.ERROR, logger="sdax.observers"):
        await processor.process_tasks(None, observers=[Broken()])
    assert probe.count("end", "A", "pre_execute") == 1
    assert "observer bug" in caplog.text


async def test_the_logging_observer_logs_failures_and_the_runs_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="sdax.run"):
        await run_failing(Probe(), LoggingObserver())
    levels = {record.getMessage(): record.levelno for record in caplog.records}
    assert any(
        "'Auth' pre_execute failed" in m and lvl == logging.WARNING for m, lvl in levels.items()
    )
    assert any(m.endswith("finished: failed") for m in levels)


async def test_the_phase_runner_shows_the_report_so_far() -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None].builder().add_task(probe.task("A", pre=OK, post=OK)).build()
    )
    async with processor.open(None, report=True) as runner:
        assert runner.report() is None
        await runner.run_next()
        report = runner.report()
        assert report is not None
        assert report.phase("A", "pre_execute").outcome == "ok"
        assert report.phase("A", "post_execute").outcome == "skipped"
    assert report.phase("A", "post_execute").outcome == "ok"
    assert report.outcome == "ok"


def test_phase_outcomes_are_the_documented_values() -> None:
    assert [o.value for o in PhaseOutcome] == [
        "ok",
        "failed",
        "timed_out",
        "cancelled",
        "abandoned",
        "skipped",
    ]
