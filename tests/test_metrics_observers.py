"""Metrics observers with the real SDKs: prometheus_client and opentelemetry-sdk."""

from __future__ import annotations

import pytest

from sdax import AsyncDagTaskProcessor, AsyncTask, SdaxExecutionError, task_func

prometheus_client = pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

from sdax.integrations.otel_metrics import OpenTelemetryMetricsObserver  # noqa: E402
from sdax.integrations.prometheus import PrometheusObserver  # noqa: E402


async def ok(ctx: object) -> None:
    return None


async def boom(ctx: object) -> None:
    raise ValueError("boom")


def failing_fetch(observer: object) -> object:
    builder = AsyncDagTaskProcessor[None].builder()
    builder.add_task(AsyncTask("db", pre_execute=task_func(ok), post_execute=task_func(ok)))
    builder.add_task(AsyncTask("fetch", execute=task_func(boom)), depends_on=["db"])
    return builder.build(observers=[observer])  # type: ignore[list-item]


async def test_prometheus_counts_phases_runs_and_durations() -> None:
    registry = prometheus_client.CollectorRegistry()
    processor = failing_fetch(PrometheusObserver(processor="svc", registry=registry))
    with pytest.raises(SdaxExecutionError):
        await processor.process_tasks(None, tag="req-1")  # type: ignore[attr-defined]

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)  # type: ignore[no-any-return]

    phase = {"processor": "svc", "task": "db"}
    assert value("sdax_phases_total", **phase, phase="pre_exec", outcome="ok") == 1
    assert value("sdax_phases_total", **phase, phase="post_exec", outcome="ok") == 1
    fetch = {"processor": "svc", "task": "fetch", "phase": "execute"}
    assert value("sdax_phases_total", **fetch, outcome="failed") == 1
    assert value("sdax_phase_duration_seconds_count", **fetch) == 1
    assert value("sdax_runs_total", processor="svc", outcome="failed") == 1
    exposition = prometheus_client.generate_latest(registry).decode()
    assert "req-1" not in exposition  # the tag is never a label


async def test_opentelemetry_counts_phases_runs_and_durations() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    observer = OpenTelemetryMetricsObserver(processor="svc", meter_provider=provider)
    processor = failing_fetch(observer)
    for _ in range(2):
        with pytest.raises(SdaxExecutionError):
            await processor.process_tasks(None, tag="req-2")  # type: ignore[attr-defined]
    data = reader.get_metrics_data()
    points = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    phases = {
        (
            p.attributes["sdax.task"],
            p.attributes["sdax.phase"],
            p.attributes["sdax.outcome"],
        ): p.value
        for p in points["sdax.phases"]
    }
    assert phases == {
        ("db", "PRE_EXEC", "ok"): 2,
        ("db", "POST_EXEC", "ok"): 2,
        ("fetch", "EXECUTE", "failed"): 2,
    }
    assert {p.count for p in points["sdax.phase.duration"]} == {2}
    assert [(dict(p.attributes), p.value) for p in points["sdax.runs"]] == [
        ({"sdax.processor": "svc", "sdax.outcome": "failed"}, 2)
    ]
    assert all("req-2" not in str(p.attributes) for ps in points.values() for p in ps)
