"""OpenTelemetry metrics for sdax runs (the metrics API; any SDK or exporter).

    from sdax.integrations.otel_metrics import OpenTelemetryMetricsObserver
    processor = builder.build(observers=[OpenTelemetryMetricsObserver(processor="checkout")])

Instruments: counter `sdax.phases` (attributes `sdax.task`, `sdax.phase`,
`sdax.outcome`, and `sdax.processor` when given), histogram
`sdax.phase.duration` in seconds (task, phase, processor), counter
`sdax.runs` (outcome, processor). The run's `tag` is not an attribute: it is
one value per run, and each distinct attribute set is a separate series the
SDK keeps in memory and every backend stores (unbounded cardinality). Put
per-run detail on spans (sdax.otel) instead. Needs the `otel` extra.
"""

from __future__ import annotations

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import MeterProvider
except ImportError as error:  # pragma: no cover - exercised with opentelemetry hidden
    raise ImportError(
        "sdax.integrations.otel_metrics needs the OpenTelemetry API: pip install 'sdax[otel]'"
    ) from error

from sdax._version import __version__
from sdax.observers import PhaseFinished, RunFinished, RunObserver


class OpenTelemetryMetricsObserver(RunObserver):
    """Counts phases and runs by outcome and records phase durations."""

    def __init__(
        self, *, processor: str | None = None, meter_provider: MeterProvider | None = None
    ) -> None:
        meter = metrics.get_meter("sdax", __version__, meter_provider=meter_provider)
        self._base = {} if processor is None else {"sdax.processor": processor}
        self.phases = meter.create_counter("sdax.phases", "{phase}", "Phases that ended")
        self.durations = meter.create_histogram(
            "sdax.phase.duration", "s", "Time from a phase's start to its end"
        )
        self.runs = meter.create_counter("sdax.runs", "{run}", "Runs that ended")

    def phase_finished(self, event: PhaseFinished) -> None:
        where = {**self._base, "sdax.task": str(event.task), "sdax.phase": event.phase.name}
        self.phases.add(1, {**where, "sdax.outcome": event.outcome.value})
        if event.attempts:  # a skipped cleanup never ran: it has no duration
            self.durations.record(event.duration, where)

    def run_finished(self, event: RunFinished) -> None:
        self.runs.add(1, {**self._base, "sdax.outcome": event.outcome.value})
