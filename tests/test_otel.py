"""OpenTelemetry tracing of runs (sdax.otel), checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from sdax import AsyncDagTaskProcessor, AsyncTask, SdaxExecutionError, task_func
from sdax.otel import OpenTelemetryObserver
from tests.support import HOLD, OK, Probe, Raise


@dataclass
class Tracing:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    observer: OpenTelemetryObserver

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def runs(self) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == "sdax.run"]

    def run(self) -> ReadableSpan:
        (run,) = self.runs()
        return run

    def phases(self) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name != "sdax.run"]

    def phase(self, task: str, phase: str) -> ReadableSpan:
        (span,) = [
            span
            for span in self.phases()
            if span.attributes is not None
            and (span.attributes["sdax.task"], span.attributes["sdax.phase"]) == (task, phase)
        ]
        return span


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider, exporter, OpenTelemetryObserver(tracer_provider=provider))
    provider.shutdown()


def start(span: ReadableSpan) -> int:
    assert span.start_time is not None
    return span.start_time


def end(span: ReadableSpan) -> int:
    assert span.end_time is not None
    return span.end_time


def event_names(span: ReadableSpan) -> list[str]:
    return [event.name for event in span.events]


async def test_a_successful_run_is_one_run_span_with_a_child_span_per_phase(
    tracing: Tracing,
) -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("Db", pre=OK, post=OK))
        .add_task(probe.task("Auth", pre=OK), ("Db",))
        .add_task(probe.task("Fetch", execute=OK), ("Auth",))
        .build(observers=[tracing.observer])
    )
    await processor.process_tasks(None)

    run = tracing.run()
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["sdax.tasks"] == 3
    assert run.attributes["sdax.outcome"] == "ok"
    assert isinstance(run.attributes["sdax.run_id"], int)
    assert run.status.status_code is StatusCode.UNSET
    phases = tracing.phases()
    assert sorted(span.name for span in phases) == [
        "sdax.phase Auth pre_execute",
        "sdax.phase Db post_execute",
        "sdax.phase Db pre_execute",
        "sdax.phase Fetch execute",
    ]
    for span in phases:
        assert span.parent is not None
        assert span.parent.span_id == run.context.span_id
        assert span.context.trace_id == run.context.trace_id
        assert span.attributes is not None
        assert span.attributes["sdax.attempts"] == 1
        assert span.attributes["sdax.outcome"] == "ok"
        assert span.status.status_code is StatusCode.UNSET
        assert start(run) <= start(span) <= end(span) <= end(run)
    # The spans keep the order the phases ran in.
    assert end(tracing.phase("Db", "pre_execute")) <= start(tracing.phase("Auth", "pre_execute"))
    assert end(tracing.phase("Auth", "pre_execute")) <= start(tracing.phase("Fetch", "execute"))
    assert end(tracing.phase("Fetch", "execute")) <= start(tracing.phase("Db", "post_execute"))


async def test_a_failed_phase_and_its_run_are_errors_and_a_cancelled_sibling_is_unset(
    tracing: Tracing,
) -> None:
    probe = Probe()
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("Db", pre=OK, post=OK))
        .add_task(probe.task("Auth", pre=Raise(ValueError("bad token"), hold=True)), ("Db",))
        .add_task(probe.task("Flags", pre=HOLD, post=OK), ("Db",))
        .build()
    )

    async def fail_auth_while_flags_is_held() -> None:
        await probe.started("Flags", "pre_execute")
        await probe.started("Auth", "pre_execute")
        probe.release("Auth", "pre_execute")

    helper = asyncio.create_task(fail_auth_while_flags_is_held())
    with pytest.raises(SdaxExecutionError):
        await processor.process_tasks(None, observers=[tracing.observer])
    await helper

    auth = tracing.phase("Auth", "pre_execute")
    assert auth.status.status_code is StatusCode.ERROR
    assert auth.status.description == "ValueError: bad token"
    assert auth.attributes is not None
    assert auth.attributes["sdax.outcome"] == "failed"
    (exception,) = auth.events
    assert exception.name == "exception"
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "bad token"

    flags = tracing.phase("Flags", "pre_execute")
    assert flags.status.status_code is StatusCode.UNSET
    assert flags.events == ()
    assert flags.attributes is not None
    assert flags.attributes["sdax.outcome"] == "cancelled"
    assert flags.attributes["sdax.cancel_reason"] == "sibling_failed"
    assert tracing.phase("Flags", "post_execute").status.status_code is StatusCode.UNSET

    run = tracing.run()
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None
    assert run.attributes["sdax.outcome"] == "failed"
    assert event_names(run) == ["exception"]
    assert run.events[0].attributes is not None
    assert str(run.events[0].attributes["exception.type"]).endswith("SdaxExecutionError")


async def test_failed_attempts_that_are_retried_are_events_on_the_phase_span(
    tracing: Tracing,
) -> None:
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
        .build(observers=[tracing.observer])
    )
    await processor.process_tasks(None)

    span = tracing.phase("Flaky", "execute")
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["sdax.attempts"] == 3
    assert event_names(span) == ["sdax.retry", "sdax.retry"]
    retries = [event.attributes for event in span.events]
    assert [(a["sdax.attempt"], a["exception.message"]) for a in retries if a is not None] == [
        (1, "attempt 1"),
        (2, "attempt 2"),
    ]
    assert all(a is not None and a["exception.type"] == "ConnectionError" for a in retries)
    assert start(span) <= span.events[0].timestamp <= span.events[1].timestamp <= end(span)


async def test_two_concurrent_runs_are_two_separate_traces(tracing: Tracing) -> None:
    both_running = asyncio.Barrier(2)

    async def meet(ctx: object) -> None:
        await both_running.wait()  # neither run finishes before the other has started

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Meet", pre_execute=task_func(meet)))
        .add_task(AsyncTask("After", execute=task_func(meet)), ("Meet",))
        .build(observers=[tracing.observer])
    )
    await asyncio.gather(processor.process_tasks(None), processor.process_tasks(None))

    runs = tracing.runs()
    assert len(runs) == 2
    assert runs[0].context.trace_id != runs[1].context.trace_id
    assert runs[0].attributes is not None
    assert runs[1].attributes is not None
    assert runs[0].attributes["sdax.run_id"] != runs[1].attributes["sdax.run_id"]
    for run in runs:
        children = [
            span for span in tracing.phases() if span.context.trace_id == run.context.trace_id
        ]
        assert sorted(span.name for span in children) == [
            "sdax.phase After execute",
            "sdax.phase Meet pre_execute",
        ]
        for span in children:
            assert span.parent is not None
            assert span.parent.span_id == run.context.span_id
    assert tracing.observer._runs == {}  # per-run state is dropped when a run finishes


async def test_a_run_span_nests_under_the_span_current_when_the_run_starts(
    tracing: Tracing,
) -> None:
    processor = AsyncDagTaskProcessor[None].builder().add_task(Probe().task("A", pre=OK)).build()
    tracer = tracing.provider.get_tracer("tests")
    with tracer.start_as_current_span("request") as request:
        await processor.process_tasks(None, observers=[tracing.observer])
    parent = tracing.run().parent
    assert parent is not None
    assert parent.span_id == request.get_span_context().span_id


def test_an_observer_takes_a_tracer_or_a_tracer_provider_not_both(tracing: Tracing) -> None:
    tracer = tracing.provider.get_tracer("tests")
    OpenTelemetryObserver(tracer=tracer)
    with pytest.raises(TypeError, match="not both"):
        OpenTelemetryObserver(tracer=tracer, tracer_provider=tracing.provider)


def test_sdax_imports_without_opentelemetry_and_sdax_otel_says_how_to_get_it() -> None:
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if it were not installed\n"
        "import sdax\n"
        "try:\n"
        "    import sdax.otel\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "the 'otel' extra of sdax" in result.stdout
    assert "pip install opentelemetry-api" in result.stdout
