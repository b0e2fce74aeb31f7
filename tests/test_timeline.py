"""Timelines of a run (sdax.timeline): the Chrome trace and the text Gantt."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sdax import AsyncDagTaskProcessor, ErrorInfo, PhaseReport, RunReport, SdaxExecutionError
from sdax.report import RetryReport, TaskReport
from sdax.timeline import LEGEND, render_gantt, to_chrome_trace, write_chrome_trace
from sdax.vocabulary import CancelReason
from tests.support import HOLD, OK, POST, PRE, Probe, Raise


async def failing_run() -> RunReport:
    """Auth's pre raises while its sibling Flags' pre is held, so Flags' pre is cancelled."""
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("Db", pre=OK, post=OK))
        .add_task(probe.task("Auth", pre=Raise(ValueError("bad token"), hold=True)), ("Db",))
        .add_task(probe.task("Flags", pre=HOLD, execute=OK, post=OK), ("Db",))
        .build()
    )

    async def fail_auth_once_flags_runs() -> None:
        await probe.started("Flags", PRE)
        await probe.started("Auth", PRE)
        probe.release("Auth", PRE)

    helper = asyncio.create_task(fail_auth_once_flags_runs())
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None, report=True)
    await helper
    assert probe.count("cancelled", "Flags", PRE) == 1
    assert caught.value.report is not None
    return caught.value.report


def ns(microseconds: float) -> int:
    """A trace time back in whole nanoseconds, so comparisons are exact."""
    return round(microseconds * 1000)


async def test_the_trace_of_a_failing_run_has_one_slice_per_phase_that_ran(
    tmp_path: Path,
) -> None:
    report = await failing_run()
    path = write_chrome_trace(report, tmp_path / "run.json")
    trace = json.loads(path.read_text(encoding="utf-8"))
    assert trace == json.loads(json.dumps(to_chrome_trace(report)))
    assert trace["displayTimeUnit"] == "ms"
    events: list[dict[str, Any]] = trace["traceEvents"]
    assert {event["pid"] for event in events} == {report.run_id}

    meta = [event for event in events if event["ph"] == "M"]
    assert events[: len(meta)] == meta  # metadata first
    names = {(e["tid"], e["args"]["name"]) for e in meta if e["name"] == "thread_name"}
    assert names == {(0, "run"), (1, "Db"), (2, "Auth"), (3, "Flags")}
    order = {e["tid"]: e["args"]["sort_index"] for e in meta if e["name"] == "thread_sort_index"}
    assert order == {0: 0, 1: 1, 2: 2, 3: 3}
    process = [e["args"]["name"] for e in meta if e["name"] == "process_name"]
    assert process == [f"sdax run {report.run_id}"]

    slices = [event for event in events if event["ph"] == "X"]
    assert [(e["tid"], e["name"], e["args"]["outcome"]) for e in slices] == [
        (0, f"run {report.run_id}", "failed"),
        (1, PRE, "ok"),
        (1, POST, "ok"),
        (2, PRE, "failed"),
        (3, PRE, "cancelled"),
        (3, POST, "ok"),  # Flags' execute was skipped: no slice
    ]
    assert len(events) == len(meta) + len(slices)  # no retries, so no instants
    auth, flags = slices[3]["args"], slices[4]["args"]
    assert auth == {
        "outcome": "failed",
        "attempts": 1,
        "error_type": "ValueError",
        "error_message": "bad token",
    }
    assert flags == {
        "outcome": "cancelled",
        "attempts": 1,
        "cancel_reason": "sibling_failed",
    }
    assert slices[0]["args"]["error_type"] == "sdax.errors.SdaxExecutionError"

    run = slices[0]
    assert run["ts"] == 0
    for event in slices[1:]:
        assert event["ts"] >= 0
        assert ns(event["ts"]) + ns(event["dur"]) <= ns(run["ts"]) + ns(run["dur"])
    for tid in (1, 2, 3):
        times = [event["ts"] for event in slices if event["tid"] == tid]
        assert times == sorted(times)
    db_pre, db_post = slices[1], slices[2]
    assert ns(db_pre["ts"]) + ns(db_pre["dur"]) <= ns(slices[3]["ts"])  # Auth after Db's pre
    assert ns(slices[5]["ts"]) + ns(slices[5]["dur"]) <= ns(db_post["ts"])  # cleanup reversed


def handmade_report() -> RunReport:
    """A failing run with fixed times: sixteenths of the 125 ms run, exact in binary."""
    unit = 0.125 / 16

    def phase(
        name: str, outcome: str, start: float, end: float, attempts: int = 1, **more: Any
    ) -> PhaseReport:
        return PhaseReport(
            phase=name,
            outcome=outcome,
            start=start * unit,
            end=end * unit,
            attempts=attempts,
            **more,
        )

    refused = ErrorInfo(type="ConnectionError", message="refused")
    first_try = RetryReport(at=4 * unit, delay=0.0625, error=refused)
    return RunReport(
        run_id=7,
        outcome="failed",
        start=0.0,
        end=0.125,
        error=ErrorInfo(type="sdax.errors.SdaxExecutionError", message="2 tasks failed:\n  ..."),
        tasks=[
            TaskReport(task="Database", phases=[phase(PRE, "ok", 0, 2), phase(POST, "ok", 14, 16)]),
            TaskReport(
                task="Auth",
                phases=[phase(PRE, "cancelled", 2, 8, cancel_reason=CancelReason.SIBLING_FAILED)],
            ),
            TaskReport(
                task="Flags",
                phases=[
                    phase(PRE, "failed", 2, 6, 2, retries=[first_try], error=refused),
                ],
            ),
            TaskReport(
                task="Cache",
                phases=[
                    phase(PRE, "timed_out", 2, 7, error=ErrorInfo(type="TimeoutError", message=""))
                ],
            ),
            TaskReport(task="Render", phases=[phase("execute", "ok", 8, 12)]),
            TaskReport(task="Fetch", phases=[PhaseReport(phase="execute")]),
            TaskReport(
                task="a_task_with_a_very_long_name",
                phases=[phase(PRE, "ok", 2, 2.25), phase(POST, "ok", 2.5, 3)],
            ),
        ],
    )


def test_the_gantt_of_a_known_report_is_exactly_this() -> None:
    expected = "\n".join(
        [
            "Database             |==            ~~|",
            "Auth                 |  ------        |",
            "Flags                |  xxxx          | 1 retry",
            "Cache                |  !!!!!         |",
            "Render               |        ####    |",
            "Fetch                |                | skipped",
            "a_task_with_a_very.. |  =~            |",  # the short pre keeps its column
            "                     +----------------+",
            "                     0         125.0 ms",
            "legend: = pre ok  # execute ok  ~ post ok  x failed  ! timed out  - cancelled",
            "run 7: failed in 125.0 ms",
            "first error: Flags pre_execute: ConnectionError: refused",  # ended before Cache
        ]
    )
    assert render_gantt(handmade_report(), width=16) == expected


def test_a_partial_report_is_drawn_up_to_its_last_recorded_time() -> None:
    report = RunReport(
        run_id=1,
        start=0.0,
        tasks=[
            TaskReport(
                task="A", phases=[PhaseReport(phase=PRE, outcome="ok", start=0.0, end=0.25)]
            ),
            TaskReport(task="B", phases=[PhaseReport(phase=PRE, outcome="running", start=0.5)]),
        ],
    )
    assert render_gantt(report, width=4).splitlines()[:2] == ["A |==  |", "B |   ?|"]
    assert render_gantt(report, width=4).splitlines()[4].endswith("? running")
    running = to_chrome_trace(report)["traceEvents"][-1]
    assert (running["name"], running["dur"], running["args"]["outcome"]) == (PRE, 0, "running")


def test_the_trace_of_a_known_report_is_deterministic_and_shows_retries() -> None:
    report = handmade_report()
    trace = to_chrome_trace(report)
    again = to_chrome_trace(RunReport.from_json(report.to_json()))
    assert msgspec.json.encode(trace) == msgspec.json.encode(again)
    flags = [
        event for event in trace["traceEvents"] if event.get("tid") == 3 and event["ph"] != "M"
    ]
    assert flags == [
        {
            "name": PRE,
            "cat": "phase",
            "ph": "X",
            "pid": 7,
            "tid": 3,
            "ts": 15625.0,
            "dur": 31250.0,
            "args": {
                "outcome": "failed",
                "attempts": 2,
                "error_type": "ConnectionError",
                "error_message": "refused",
                "retries": 1,
            },
        },
        {
            "name": "attempt 1 failed, retrying",
            "cat": "retry",
            "ph": "i",
            "s": "t",
            "pid": 7,
            "tid": 3,
            "ts": 31250.0,
            "args": {
                "phase": PRE,
                "attempt": 1,
                "delay_s": 0.0625,
                "error_type": "ConnectionError",
                "error_message": "refused",
            },
        },
    ]
    run = next(event for event in trace["traceEvents"] if event["ph"] == "X")
    assert (run["name"], run["tid"], run["ts"], run["dur"]) == ("run 7", 0, 0.0, 125000.0)


async def test_the_gantt_of_a_real_run_shows_every_task_and_the_legend() -> None:
    report = await failing_run()
    chart = render_gantt(report)
    rows = chart.splitlines()
    assert [row.split(" ", 1)[0] for row in rows[:3]] == ["Db", "Auth", "Flags"]
    assert all(len(row) == len(rows[0]) for row in rows[:3])
    assert LEGEND in rows
    assert rows[-2].startswith(f"run {report.run_id}: failed in ")
    assert rows[-1] == "first error: Auth pre_execute: ValueError: bad token"


def test_a_gantt_needs_at_least_one_column() -> None:
    with pytest.raises(ValueError, match="width"):
        render_gantt(handmade_report(), width=0)
