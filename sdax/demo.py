"""`python -m sdax demo`: one API endpoint's workflow, run twice.

The endpoint opens a database connection, then checks auth and loads
feature flags in parallel, fetches the user's data, and must close the
connection whatever happens. The first request succeeds; in the second the
flag service is down, and you can watch what sdax cancels, what it skips
and what it still cleans up. Both requests run with `report=True`, and each
is drawn as a Gantt chart (sdax.timeline) once it is over. Every external
service is simulated.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from dataclasses import dataclass, field

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    PhaseRetried,
    RunObserver,
    RunReport,
    SdaxExecutionError,
    task_func,
)
from sdax.analysis import ExecutionGraph
from sdax.plan_data import wave_lines
from sdax.timeline import render_gantt


@dataclass
class Request:
    user_id: int
    flags_service_up: bool = True
    connection: str | None = None
    user: dict[str, object] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def say(self, message: str) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        print(f"  {elapsed:7.1f} ms  {message}")


async def open_db(req: Request) -> None:
    req.say("Database  pre   open a connection")
    await asyncio.sleep(0.02)
    req.connection = f"conn-{req.user_id}"


async def close_db(req: Request) -> None:
    req.say(f"Database  post  close {req.connection or 'nothing (never opened)'}")
    await asyncio.sleep(0.005)
    req.connection = None


async def check_auth(req: Request) -> None:
    req.say("Auth      pre   verify the session token (in parallel with Flags)")
    try:
        await asyncio.sleep(0.06)
    except asyncio.CancelledError:
        req.say("Auth      pre   cancelled: a sibling failed")
        raise


async def load_flags(req: Request) -> None:
    req.say("Flags     pre   load feature flags (in parallel with Auth)")
    await asyncio.sleep(0.01)
    if not req.flags_service_up:
        raise ConnectionError("feature-flag service refused the connection")
    req.flags = {"new_profile_page": True}


async def fetch_profile(req: Request) -> None:
    req.say("Fetch     exec  read the profile over the open connection")
    await asyncio.sleep(0.01)
    req.user = {"id": req.user_id, "name": "Ada"}


async def write_audit(req: Request) -> None:
    req.say("Audit     post  write the audit record (before the connection closes)")
    await asyncio.sleep(0.002)


def build_endpoint() -> AsyncDagTaskProcessor[Request]:
    """The workflow behind one request; built once, reused by every request."""
    return (
        AsyncDagTaskProcessor[Request]
        .builder()
        .add_task(
            AsyncTask("Database", pre_execute=task_func(open_db), post_execute=task_func(close_db))
        )
        .add_task(AsyncTask("Auth", pre_execute=task_func(check_auth)), depends_on=("Database",))
        .add_task(
            AsyncTask(
                "Flags",
                pre_execute=task_func(load_flags, retries=1, initial_delay=0.01, timeout=0.5),
            ),
            depends_on=("Database",),
        )
        .add_task(
            AsyncTask("Fetch", execute=task_func(fetch_profile)),
            depends_on=("Auth", "Flags"),
        )
        # A post-only task: it cleans up before what it depends on does.
        .add_task(AsyncTask("Audit", post_execute=task_func(write_audit)), depends_on=("Fetch",))
        .build()
    )


class _SayRetries(RunObserver):
    """Makes each retry visible in the request's log."""

    def __init__(self, req: Request) -> None:
        self._req = req

    def phase_retried(self, event: PhaseRetried) -> None:
        self._req.say(
            f"{event.task!s:<9} {event.phase}: attempt {event.attempt} failed "
            f"({type(event.error).__name__}), retrying in {event.delay * 1000:.0f} ms"
        )


async def serve(endpoint: AsyncDagTaskProcessor[Request], req: Request) -> RunReport:
    """Run one request, tell how it went, draw its Gantt chart; return its report."""
    report: RunReport | None
    try:
        report = await endpoint.process_tasks(req, report=True, observers=[_SayRetries(req)])
    except SdaxExecutionError as error:
        report = error.report
        # The count only: the chart's footer below names the error (printed once).
        req.say(f"request failed after cleanup: {error.message}")
    else:
        req.say(f"request served: user={req.user}, flags={req.flags}")
    print(f"             connection left open: {req.connection is not None}")
    assert report is not None  # asked for with report=True
    print(f"\n{textwrap.indent(render_gantt(report), '  ')}")
    return report


def _print_waves(graph: ExecutionGraph) -> None:
    print("\n".join(wave_lines(graph)))


async def main() -> list[RunReport]:
    """Print the plan, serve both requests; return their reports, in request order."""
    endpoint = build_endpoint()
    analysis = endpoint.analysis
    print("The plan: pre_execute waves (each starts once those it is after have succeeded)")
    _print_waves(analysis.pre_execute_graph)
    executes = [key for key, task in analysis.tasks.items() if task.execute is not None]
    print(f"then every execute at once: {', '.join(map(str, executes))}")
    print("then post_execute waves (each starts once those it is after are cleaned up)")
    _print_waves(analysis.post_execute_graph)
    print("\nRequest 1: every service is up")
    served = await serve(endpoint, Request(user_id=1))
    print("\nRequest 2: the feature-flag service is down (one retry, then give up)")
    failed = await serve(endpoint, Request(user_id=2, flags_service_up=False))
    return [served, failed]
