"""Prometheus metrics for sdax runs, through prometheus-client.

    from sdax.integrations.prometheus import PrometheusObserver
    processor = builder.build(observers=[PrometheusObserver(processor="checkout")])

Metrics (labels in brackets): `sdax_phases_total` [processor, task, phase,
outcome], `sdax_phase_duration_seconds` histogram [processor, task, phase],
`sdax_runs_total` [processor, outcome]. The run's `tag` is never a label: a
tag is a request or job id, one value per run, and every distinct label value
is a new time series kept for the life of the process (unbounded
cardinality); use traces or logs for per-run detail. Needs the `prometheus`
extra.
"""

from __future__ import annotations

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ImportError as error:  # pragma: no cover - exercised with prometheus_client hidden
    raise ImportError(
        "sdax.integrations.prometheus needs prometheus-client: pip install 'sdax[prometheus]'"
    ) from error

from sdax.observers import PhaseFinished, RunFinished, RunObserver


class PrometheusObserver(RunObserver):
    """Counts phases and runs by outcome and records phase durations."""

    def __init__(
        self, *, processor: str = "", registry: CollectorRegistry = REGISTRY, prefix: str = "sdax"
    ) -> None:
        self.processor = processor
        self.phases = Counter(
            f"{prefix}_phases", "Phases that ended, by outcome",
            ["processor", "task", "phase", "outcome"], registry=registry,
        )  # fmt: skip
        self.durations = Histogram(
            f"{prefix}_phase_duration_seconds", "Time from a phase's start to its end",
            ["processor", "task", "phase"], registry=registry,
        )  # fmt: skip
        self.runs = Counter(
            f"{prefix}_runs", "Runs that ended, by outcome", ["processor", "outcome"],
            registry=registry,
        )  # fmt: skip

    def phase_finished(self, event: PhaseFinished) -> None:
        task, phase = str(event.task), event.phase.name.lower()
        self.phases.labels(self.processor, task, phase, event.outcome.value).inc()
        if event.attempts:  # a skipped cleanup never ran: it has no duration
            self.durations.labels(self.processor, task, phase).observe(event.duration)

    def run_finished(self, event: RunFinished) -> None:
        self.runs.labels(self.processor, event.outcome.value).inc()
