"""Timelines of a run, drawn from its RunReport: a Chrome trace and a text Gantt.

`to_chrome_trace(report)` gives the trace-event JSON object that Perfetto
(ui.perfetto.dev) and chrome://tracing open: one process per run, one track
per task in declaration order, one slice per phase that ran, one instant per
failed attempt that was retried, and the run itself on a track of its own.
`render_gantt(report)` draws the same run as plain ASCII for a terminal.

Both read only the report, so they work as well on a report loaded with
`RunReport.from_json()` as on a live one, and give the same output for the
same report. A partial report (`runner.report()` mid-run) is drawn up to
the last time it records; phases still running show as outcome "running".
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import msgspec

from sdax.report import ErrorInfo, PhaseReport, RunReport

__all__ = ["GLYPHS", "render_gantt", "to_chrome_trace", "write_chrome_trace"]

RUN_TID = 0  # the run's own track; task i (0-based, declaration order) is tid i + 1

# The Gantt's characters. A phase that succeeded is drawn by phase, one that
# did not by outcome, so failures stand out whichever phase they hit.
GLYPHS: dict[str, str] = {
    "pre_execute": "=",
    "execute": "#",
    "post_execute": "~",
    "failed": "x",
    "timed_out": "!",
    "cancelled": "-",
    "running": "?",
}
LEGEND = "legend: = pre ok  # execute ok  ~ post ok  x failed  ! timed out  - cancelled"
LEGEND_RUNNING = "  ? running"  # only for a partial report that has a phase still running
MAX_LABEL = 20


def to_chrome_trace(report: RunReport) -> dict[str, Any]:
    """The run as a Chrome trace-event object: `{"traceEvents": [...], "displayTimeUnit": "ms"}`.

    pid is the run id; tid 0 is the run, tid i + 1 the i-th task (declaration
    order, kept by thread_sort_index). Times are microseconds since the run
    started (never negative). Each phase that started is an "X" slice named
    after the phase, with args outcome, attempts, error_type/error_message
    (if it failed) and cancel_reason (if sdax cancelled it); skipped phases
    have none. Each retried attempt is an "i" instant on the task's track
    with args phase, attempt and its error: the report does not record when
    an attempt failed, so the instant sits at the start of its phase (its
    "at" arg says so). Metadata events come first; the other events of one
    track are in time order. Contains only JSON types.
    """
    origin, horizon = _span(report)
    pid = report.run_id
    events: list[dict[str, Any]] = [
        _meta("process_name", pid, RUN_TID, name=f"sdax run {report.run_id}"),
        _meta("thread_name", pid, RUN_TID, name="run"),
        _meta("thread_sort_index", pid, RUN_TID, sort_index=RUN_TID),
    ]
    for tid, task in enumerate(report.tasks, start=1):
        events.append(_meta("thread_name", pid, tid, name=task.task))
        events.append(_meta("thread_sort_index", pid, tid, sort_index=tid))
    run_args: dict[str, Any] = {"outcome": report.outcome, **_error_args(report.error)}
    events.append(
        _slice(f"run {report.run_id}", "run", pid, RUN_TID, 0, _ns(horizon, origin), run_args)
    )
    for tid, task in enumerate(report.tasks, start=1):
        track: list[dict[str, Any]] = []
        for phase in task.phases:
            if phase.start is not None:
                track.extend(_phase_events(phase, pid, tid, origin, horizon))
        events.extend(sorted(track, key=lambda event: float(event["ts"])))  # stable
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_chrome_trace(report: RunReport, path: str | os.PathLike[str]) -> Path:
    """Write `to_chrome_trace(report)` to `path` as JSON (UTF-8); return the path written."""
    target = Path(path)
    target.write_bytes(msgspec.json.encode(to_chrome_trace(report)))
    return target


def _phase_events(
    phase: PhaseReport, pid: int, tid: int, origin: float, horizon: float
) -> list[dict[str, Any]]:
    assert phase.start is not None
    end = horizon if phase.end is None else phase.end
    args: dict[str, Any] = {"outcome": phase.outcome, "attempts": phase.attempts}
    args.update(_error_args(phase.error))
    if phase.cancel_reason is not None:
        args["cancel_reason"] = phase.cancel_reason
    if phase.retries:
        args["retries"] = len(phase.retries)
    start_ns = _ns(phase.start, origin)
    events = [_slice(phase.phase, "phase", pid, tid, start_ns, _ns(end, origin), args)]
    for attempt, retry in enumerate(phase.retries, start=1):
        retry_args = {
            "phase": phase.phase, "attempt": attempt, "delay_s": retry.delay,
            **_error_args(retry.error),
        }  # fmt: skip
        events.append(
            {
                "name": f"attempt {attempt} failed, retrying",
                "cat": "retry",
                "ph": "i",
                "s": "t",
                "pid": pid,
                "tid": tid,
                "ts": _ns(retry.at, origin) / 1000,
                "args": retry_args,
            }
        )
    return events


def _meta(kind: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": args}


def _slice(
    name: str, cat: str, pid: int, tid: int, start_ns: int, end_ns: int, args: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "cat": cat,
        "ph": "X",
        "pid": pid,
        "tid": tid,
        "ts": start_ns / 1000,
        "dur": max(0, end_ns - start_ns) / 1000,
        "args": args,
    }


def _ns(at: float, origin: float) -> int:
    # Whole nanoseconds since the run started: ts and ts + dur then agree
    # across slices (an end is one number, not a rounded sum), and the JSON
    # carries no float noise. Clamped: a viewer has no use for times before the run.
    return max(0, round((at - origin) * 1e9))


def _error_args(error: ErrorInfo | None) -> dict[str, Any]:
    return {} if error is None else {"error_type": error.type, "error_message": error.message}


def _span(report: RunReport) -> tuple[float, float]:
    """(origin, horizon): the run's start and end, or the phases' extremes where unrecorded."""
    times = [t for task in report.tasks for phase in task.phases for t in (phase.start, phase.end)]
    known = [t for t in times if t is not None]
    origin = report.start if report.start is not None else min(known, default=0.0)
    horizon = report.end if report.end is not None else max(known, default=origin)
    return origin, max(origin, horizon)


# --------------------------------------------------------------------------- Gantt


def render_gantt(report: RunReport, width: int = 60) -> str:
    """The run as an ASCII Gantt chart, `width` columns of bar per task.

    One row per task (declaration order; keys longer than 20 characters are
    cut, ending in ".."), bars scaled to the run's duration, one character
    per phase (see GLYPHS and the printed legend; skipped phases are blank;
    a phase that ran gets at least one column, room permitting), after the
    bar the number of retries or "skipped" if nothing ran, a time axis in
    ms, a legend, and a footer with the run's outcome and the first error:
    the failed phase that ended first, else the run's own error (first line
    of the message). Ends without a newline.
    """
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    origin, horizon = _span(report)
    total = horizon - origin
    label_width = min(MAX_LABEL, max((len(task.task) for task in report.tasks), default=1))
    lines = []
    for task in report.tasks:
        bar = _bar(task.phases, origin, total, width)
        lines.append(f"{_fit(task.task, label_width)} |{bar}|{_row_note(task.phases)}")
    total_label = f"{total * 1000:.1f} ms"
    lines.append(" " * label_width + " +" + "-" * width + "+")
    lines.append(" " * (label_width + 1) + "0" + total_label.rjust(width + 1))
    running = any(p.outcome == "running" for task in report.tasks for p in task.phases)
    lines.append(LEGEND + (LEGEND_RUNNING if running else ""))
    lines.append(f"run {report.run_id}: {report.outcome} in {total_label}")
    first = _first_error(report)
    if first is not None:
        lines.append(f"first error: {first}")
    return "\n".join(lines)


def _bar(phases: list[PhaseReport], origin: float, total: float, width: int) -> str:
    cells = [" "] * width
    previous: tuple[int, int] | None = None
    for phase in phases:
        if phase.start is None:
            continue  # skipped: never ran
        end = origin + total if phase.end is None else phase.end
        first = min(width - 1, math.floor(_fraction(phase.start, origin, total) * width))
        last = min(width - 1, max(first, math.ceil(_fraction(end, origin, total) * width) - 1))
        # A short phase must not vanish under the next one starting in its column.
        if previous is not None and previous[0] == previous[1] == first and first < width - 1:
            first += 1
            last = max(first, last)
        glyph = GLYPHS["running"] if phase.outcome == "running" else _glyph(phase)
        cells[first : last + 1] = glyph * (last - first + 1)
        previous = (first, last)
    return "".join(cells)


def _glyph(phase: PhaseReport) -> str:
    key = phase.phase if phase.outcome == "ok" else phase.outcome
    return GLYPHS.get(key, "?")


def _fraction(at: float, origin: float, total: float) -> float:
    return 0.0 if total <= 0 else min(1.0, max(0.0, (at - origin) / total))


def _fit(label: str, width: int) -> str:
    if len(label) <= width:
        return label.ljust(width)
    return label[: max(0, width - 2)] + ".." if width >= 3 else label[:width]


def _row_note(phases: list[PhaseReport]) -> str:
    if all(phase.start is None for phase in phases):
        return " skipped"  # so an empty row does not look like a drawing error
    retries = sum(len(phase.retries) for phase in phases)
    return f" {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""


def _first_error(report: RunReport) -> str | None:
    failed = [
        (phase.end if phase.end is not None else math.inf, task.task, phase)
        for task in report.tasks
        for phase in task.phases
        if phase.error is not None
    ]
    if failed:
        _, key, phase = min(failed, key=lambda item: item[0])  # first in time, ties by order
        assert phase.error is not None
        return f"{key} {phase.phase}: {_describe(phase.error)}"
    return None if report.error is None else _describe(report.error)


def _describe(error: ErrorInfo) -> str:
    # Only the first line: an SdaxExecutionError's message lists every failure.
    first_line = error.message.splitlines()[0] if error.message else ""
    return f"{error.type}: {first_line}" if first_line else error.type
