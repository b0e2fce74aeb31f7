"""OpenTelemetry tracing for sdax runs: an observer that turns a run into spans.

    from sdax.otel import OpenTelemetryObserver
    processor = builder.build(observers=[OpenTelemetryObserver()])

Each run is a span "sdax.run" (attributes `sdax.run_id`, `sdax.tasks`,
`sdax.outcome`), with one child span "sdax.phase <task> <phase>" per phase
that started (attributes `sdax.task`, `sdax.phase`, `sdax.attempts`,
`sdax.outcome`, and `sdax.cancel_reason` for a phase sdax cancelled). Spans
carry the times sdax measured, not the times the observer was called. Failed
retried attempts are "sdax.retry" events on the phase span. A phase that
failed or timed out, and a run that failed, timed out or was interrupted,
record the exception and get status ERROR; cancelled phases and runs keep
status UNSET.

The run span's parent is whatever span is current when the run starts, so a
run inside a request handler's span nests under it. Needs the `otel` extra:
`pip install 'sdax[otel]'`; `import sdax` itself never imports OpenTelemetry.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Status, StatusCode, Tracer, TracerProvider
except ImportError as error:  # pragma: no cover - exercised with opentelemetry hidden
    raise ImportError(
        "sdax.otel needs the OpenTelemetry API, the 'otel' extra of sdax: "
        "pip install opentelemetry-api (or, from a clone, pip install '.[otel]')"
    ) from error

from sdax._version import __version__
from sdax.observers import (
    PhaseFinished,
    PhaseRetried,
    PhaseStarted,
    RunFinished,
    RunObserver,
    RunStarted,
)
from sdax.vocabulary import PhaseId, PhaseOutcome, RunOutcome

_FAILED_PHASE = frozenset({PhaseOutcome.FAILED, PhaseOutcome.TIMED_OUT})
_FAILED_RUN = frozenset({RunOutcome.FAILED, RunOutcome.TIMED_OUT, RunOutcome.INTERRUPTED})


@dataclass(slots=True)
class _Run:
    span: Span
    context: Context  # the run span as a parent, passed explicitly: runs interleave
    offset_ns: int  # add to a perf_counter time in ns to get wall-clock ns since the epoch
    phases: dict[tuple[Hashable, PhaseId], Span] = field(default_factory=dict)

    def ns(self, at: float) -> int:
        return self.offset_ns + round(at * 1e9)


class OpenTelemetryObserver(RunObserver):
    """Reports every run it hears as OpenTelemetry spans (see the module docstring).

    Give it a `tracer`, or a `tracer_provider` to get one from; with neither
    it uses the global tracer provider. One observer may watch any number of
    concurrent runs: its state is per run and dropped when the run finishes.
    """

    def __init__(
        self, *, tracer_provider: TracerProvider | None = None, tracer: Tracer | None = None
    ) -> None:
        if tracer is not None and tracer_provider is not None:
            raise TypeError("pass either tracer or tracer_provider, not both")
        self._tracer = tracer or trace.get_tracer("sdax", __version__, tracer_provider)
        self._runs: dict[int, _Run] = {}

    def run_started(self, event: RunStarted) -> None:
        # Both clocks read back to back: the offset is fixed for the whole run,
        # so spans keep sdax's (monotonic) order even if the wall clock jumps.
        offset_ns = time.time_ns() - round(time.perf_counter() * 1e9)
        span = self._tracer.start_span(
            "sdax.run",
            start_time=offset_ns + round(event.at * 1e9),
            attributes={"sdax.run_id": event.run_id, "sdax.tasks": len(event.tasks)},
        )
        self._runs[event.run_id] = _Run(span, trace.set_span_in_context(span), offset_ns)

    def phase_started(self, event: PhaseStarted) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        span = self._tracer.start_span(
            f"sdax.phase {event.task} {event.phase}",
            context=run.context,
            start_time=run.ns(event.at),
            attributes={"sdax.task": str(event.task), "sdax.phase": event.phase.value},
        )
        run.phases[event.task, event.phase] = span

    def phase_retried(self, event: PhaseRetried) -> None:
        run = self._runs.get(event.run_id)
        span = None if run is None else run.phases.get((event.task, event.phase))
        if run is None or span is None:
            return
        span.add_event(
            "sdax.retry",
            attributes={
                "sdax.attempt": event.attempt,
                "sdax.retry_delay": event.delay,
                "exception.type": _qualified_name(event.error),
                "exception.message": str(event.error),
            },
            timestamp=run.ns(event.at),
        )

    def phase_finished(self, event: PhaseFinished) -> None:
        run = self._runs.get(event.run_id)
        span = None if run is None else run.phases.pop((event.task, event.phase), None)
        if run is None or span is None:
            return
        end = run.ns(event.at)
        span.set_attribute("sdax.attempts", event.attempts)
        span.set_attribute("sdax.outcome", event.outcome.value)
        if event.cancel_reason is not None:
            span.set_attribute("sdax.cancel_reason", event.cancel_reason.value)
        if event.outcome in _FAILED_PHASE and event.error is not None:
            _record_failure(span, event.error, end)
        span.end(end_time=end)

    def run_finished(self, event: RunFinished) -> None:
        run = self._runs.pop(event.run_id, None)
        if run is None:
            return
        end = run.ns(event.at)
        # Every started phase has finished by now; end any left so no span leaks.
        for span in run.phases.values():
            span.end(end_time=end)
        run.span.set_attribute("sdax.outcome", event.outcome.value)
        if event.outcome in _FAILED_RUN and event.error is not None:
            _record_failure(run.span, event.error, end)
        run.span.end(end_time=end)


def _record_failure(span: Span, error: BaseException, at_ns: int) -> None:
    span.record_exception(error, timestamp=at_ns)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def _qualified_name(error: BaseException) -> str:
    kind = type(error)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
