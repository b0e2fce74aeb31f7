"""Run reports: what ran, in what order, how long, and how it ended.

`process_tasks(ctx, report=True)` returns a `RunReport` (and attaches it as
`.report` to the SdaxExecutionError or RunTimeoutError it raises);
`open(ctx, report=True)` makes `runner.report()` available. Or pass a
`ReportRecorder()` as an observer and read `recorder.report` whatever the
run raised. Reports are msgspec Structs: `report.to_json()` and
`RunReport.from_json(data)` round-trip them.
"""

from __future__ import annotations

from collections.abc import Hashable

import msgspec
from msgspec import Struct

from sdax.observers import (
    PhaseFinished,
    PhaseRetried,
    PhaseStarted,
    RunFinished,
    RunObserver,
    RunStarted,
)
from sdax.vocabulary import CancelReason, PhaseId, PhaseOutcome


class ErrorInfo(Struct, frozen=True, kw_only=True):
    """An exception, as data."""

    type: str
    message: str
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, error: BaseException) -> ErrorInfo:
        kind = type(error)
        module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
        return cls(
            type=f"{module}{kind.__qualname__}",
            message=str(error),
            notes=tuple(getattr(error, "__notes__", ())),
        )


class RetryReport(Struct, frozen=True, kw_only=True):
    """A failed attempt sdax chose to retry: when it failed, with what, and the wait it set.

    The last one may have had its wait cut short (cancellation, deadline,
    cleanup_timeout), in which case no attempt followed it.
    """

    at: float
    delay: float
    error: ErrorInfo


class PhaseReport(Struct, kw_only=True):
    """One declared phase of one task. Times are perf_counter() seconds; None if it never ran."""

    phase: str
    outcome: str = PhaseOutcome.SKIPPED.value
    start: float | None = None
    end: float | None = None
    attempts: int = 0  # attempts begun
    retries: list[RetryReport] = msgspec.field(default_factory=list)  # each retried attempt
    error: ErrorInfo | None = None
    cancel_reason: CancelReason | None = None

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


class TaskReport(Struct, kw_only=True):
    task: str  # the key: itself if a str, else its repr()
    phases: list[PhaseReport]


class RunReport(Struct, kw_only=True):
    """Every task and phase of one run, with the run's outcome."""

    run_id: int
    tag: str | None = None  # the run's `tag=`, e.g. a request or job id
    outcome: str = "running"
    start: float | None = None
    end: float | None = None
    error: ErrorInfo | None = None
    tasks: list[TaskReport] = msgspec.field(default_factory=list)

    def phase(self, task: Hashable, phase: PhaseId | str) -> PhaseReport:
        """The report of one task's phase (`KeyError` if it declares no such phase)."""
        name, label = _label(task), str(phase)
        for entry in self.tasks:
            if entry.task == name:
                for report in entry.phases:
                    if report.phase == label:
                        return report
        raise KeyError((task, label))

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> RunReport:
        return msgspec.json.decode(data, type=cls)


class ReportRecorder(RunObserver):
    """Builds a RunReport of the runs it observes (the last one, if reused)."""

    def __init__(self) -> None:
        self.report: RunReport | None = None
        self._phases: dict[tuple[Hashable, PhaseId], PhaseReport] = {}

    def run_started(self, event: RunStarted) -> None:
        self.report = RunReport(run_id=event.run_id, tag=event.tag, start=event.at)
        self._phases = {}
        for key, phases in event.tasks:
            reports = [PhaseReport(phase=phase.value) for phase in phases]
            self.report.tasks.append(TaskReport(task=_label(key), phases=reports))
            self._phases.update(((key, p), r) for p, r in zip(phases, reports, strict=True))

    def phase_started(self, event: PhaseStarted) -> None:
        report = self._phases[event.task, event.phase]
        report.start = event.at
        report.outcome = "running"

    def phase_retried(self, event: PhaseRetried) -> None:
        retry = RetryReport(at=event.at, delay=event.delay, error=ErrorInfo.of(event.error))
        self._phases[event.task, event.phase].retries.append(retry)

    def phase_finished(self, event: PhaseFinished) -> None:
        report = self._phases[event.task, event.phase]
        report.end = event.at
        report.outcome = event.outcome.value
        report.attempts = event.attempts
        report.error = None if event.error is None else ErrorInfo.of(event.error)
        report.cancel_reason = event.cancel_reason

    def run_finished(self, event: RunFinished) -> None:
        if self.report is not None:
            self.report.outcome = event.outcome.value
            self.report.end = event.at
            self.report.error = None if event.error is None else ErrorInfo.of(event.error)


def _label(key: Hashable) -> str:
    return key if isinstance(key, str) else repr(key)
