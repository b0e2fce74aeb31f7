"""Every code example of the sdax 0.7.2 README (our API contract) run as a test.

Each test keeps the example's use of the sdax API as the README writes it
(imports included, so they sit inside the tests); the code around it is ours.
Outside services are small in-test fakes that record what was done to them,
and the README's sleeps are gone or are `asyncio.sleep(0)`: nothing here waits
on the clock. Retries run with `process_tasks(ctx, rng=NoJitter())`, which
makes every backoff delay zero without touching the declared policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sdax import SdaxTaskGroup
from tests.support import EXEC, HOLD, OK, POST, PRE, Ok, Probe, Raise

# --------------------------------------------------------------------------- helpers


class NoJitter(random.Random):
    """Jitter source whose draws are all 0, so every retry delay is 0 s; records the draws."""

    def __init__(self) -> None:
        super().__init__(0)
        self.draws: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.draws.append((a, b))
        return 0.0


async def let_the_loop_run(turns: int = 100) -> None:
    """Yield to the loop many times, so anything released by mistake gets to start."""
    for _ in range(turns):
        await asyncio.sleep(0)


class FakeConnection:
    """A database connection stand-in that remembers every call made on it."""

    def __init__(self, name: str = "db", user: dict[str, Any] | None = None) -> None:
        self.name = name
        self.user = dict(user or {})
        self.calls: list[str] = []
        self.saved: list[dict[str, Any]] = []
        self.closed = False

    async def fetch_user(self, user_id: int | None = None) -> dict[str, Any]:
        self.calls.append("fetch_user")
        await asyncio.sleep(0)
        return {**self.user, "id": user_id, "via": self.name} if user_id else dict(self.user)

    async def save(self, data: dict[str, Any]) -> None:
        self.calls.append("save")
        self.saved.append(dict(data))

    async def close(self) -> None:
        self.calls.append("close")
        self.closed = True


# ----------------------------------------------- the Quick Start context and functions
# Shared by the Quick Start, the elevator adapter and the generic-key examples.


@dataclass
class TaskContext:
    db_connection: Any = None
    user_id: int | None = None
    feature_flags: dict[str, bool] | None = None
    events: list[str] = field(default_factory=list)  # ours: what happened, in order


async def create_database_connection() -> FakeConnection:
    await asyncio.sleep(0)
    return FakeConnection()


async def open_db(ctx: TaskContext) -> None:
    ctx.db_connection = await create_database_connection()
    ctx.events.append("Database opened")  # the README prints this


async def close_db(ctx: TaskContext) -> None:
    if ctx.db_connection:
        await ctx.db_connection.close()
        ctx.events.append("Database closed")  # the README prints this


async def check_auth(ctx: TaskContext) -> None:
    ctx.events.append("Auth started")
    await asyncio.sleep(0)  # the README sleeps 0.1 s here
    ctx.user_id = 123
    ctx.events.append("Auth done")


async def load_feature_flags(ctx: TaskContext) -> None:
    ctx.events.append("Flags started")
    await asyncio.sleep(0)  # the README sleeps 0.2 s here
    ctx.feature_flags = {"new_api": True}
    ctx.events.append("Flags done")


async def fetch_user_data(ctx: TaskContext) -> None:
    if not ctx.user_id:
        raise ValueError("Auth failed")
    await asyncio.sleep(0)  # the README sleeps 0.1 s here
    ctx.events.append("Fetched")


def assert_ran_like_the_quick_start(ctx: TaskContext) -> None:
    """Database pre first; Auth and Flags pres after it; Fetch (execute) after every
    pre; the connection closed last."""
    pres = ["Auth started", "Auth done", "Flags started", "Flags done"]
    assert ctx.events[0] == "Database opened"
    assert sorted(ctx.events[1:5]) == sorted(pres)
    assert ctx.events[5:] == ["Fetched", "Database closed"]
    assert ctx.user_id == 123
    assert ctx.feature_flags == {"new_api": True}
    assert isinstance(ctx.db_connection, FakeConnection)
    assert ctx.db_connection.calls == ["close"]


# ------------------------------------------------------- TaskFunction helper functions


async def test_task_func_wraps_an_async_function_with_defaults_or_a_custom_retry_policy() -> None:
    from sdax import AsyncTask, RetryableException, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    calls: list[str] = []
    failures: list[Exception] = [ValueError("bad value"), RuntimeError("bad state")]

    async def my_async_function(ctx: None) -> None:
        calls.append("my_async_function")

    async def my_function(ctx: None) -> None:
        calls.append("my_function")
        if failures:
            raise failures.pop(0)

    # Simple usage
    task = task_func(my_async_function)
    # The README's "Default Configuration"
    assert task.function is my_async_function
    assert task.timeout is None
    assert task.retries == 0
    assert task.initial_delay == 1.0
    assert task.backoff_factor == 2.0
    assert task.retryable_exceptions == (TimeoutError, ConnectionError, RetryableException)
    simple = task

    # With custom configuration
    task = task_func(
        my_function, timeout=30.0, retries=3, retryable_exceptions=(ValueError, RuntimeError)
    )
    assert (task.timeout, task.retries) == (30.0, 3)
    assert task.retryable_exceptions == (ValueError, RuntimeError)

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Simple", execute=simple), depends_on=())
        .add_task(AsyncTask("Custom", execute=task), depends_on=())
        .build()
    )
    await processor.process_tasks(None, rng=NoJitter())
    # ValueError, then RuntimeError, were retried; the third attempt succeeded.
    assert sorted(calls) == ["my_async_function"] + ["my_function"] * 3


async def test_task_group_func_gives_the_function_a_task_group_and_retries_the_attempt() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_group_func

    subtask_runs: list[str] = []

    async def subtask_func() -> str:
        await asyncio.sleep(0)
        subtask_runs.append("run")
        if len(subtask_runs) == 1:
            raise ConnectionError("first subtask run loses its connection")
        return "subtask result"

    # For functions that need to create subtasks
    async def parent_task(ctx: None, task_group: SdaxTaskGroup) -> str:
        subtask = task_group.create_task(subtask_func(), name="subtask")
        return await subtask

    task = task_group_func(parent_task, retries=2)
    assert task.has_task_group_argument
    assert task.retries == 2

    processor = AsyncTaskProcessor.builder().add_task(AsyncTask("Parent", execute=task), 1).build()
    await processor.process_tasks(None, rng=NoJitter())
    # The failing child failed the first attempt, which was retried (ConnectionError).
    assert subtask_runs == ["run", "run"]


async def test_task_sync_func_runs_a_plain_function_on_the_context() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_sync_func

    # Wrap synchronous functions for async compatibility
    def sync_function(ctx: dict[str, int]) -> int:
        # Quick synchronous work (validation, simple calculations)
        ctx["result"] = ctx.get("input", 0) * 2
        return ctx["result"]

    task = task_sync_func(sync_function, retries=1)
    assert task.retries == 1
    assert task.timeout is None  # sync functions cannot be timed out

    processor = AsyncTaskProcessor.builder().add_task(AsyncTask("Double", execute=task), 0).build()
    ctx = {"input": 21}
    await processor.process_tasks(ctx)
    assert ctx == {"input": 21, "result": 42}
    empty: dict[str, int] = {}
    await processor.process_tasks(empty)
    assert empty == {"result": 0}


async def test_join_is_a_phaseless_node_that_task_c_depends_on_through_task_a_and_b() -> None:
    from sdax import AsyncTask, join, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    ran: list[str] = []

    async def func_a(ctx: None) -> None:
        ran.append("A")

    async def func_b(ctx: None) -> None:
        ran.append("B")

    async def func_c(ctx: None) -> None:
        ran.append("C")

    processor = (
        AsyncDagTaskProcessor.builder()
        .add_task(AsyncTask("TaskA", execute=task_func(func_a)), depends_on=())
        .add_task(AsyncTask("TaskB", execute=task_func(func_b)), depends_on=())
        .add_task(
            join("WaitForBoth"), depends_on=("TaskA", "TaskB")
        )  # Synchronizes TaskA and TaskB
        .add_task(AsyncTask("TaskC", execute=task_func(func_c)), depends_on=("WaitForBoth",))
        .build()
    )
    await processor.process_tasks(None)

    # All three ran. (They are executes, which dependencies do not order: SPEC §4.)
    assert sorted(ran) == ["A", "B", "C"]
    analysis = processor.analysis
    wait = analysis.tasks["WaitForBoth"]
    assert (wait.pre_execute, wait.execute, wait.post_execute) == (None, None, None)
    assert analysis.nodes == 1
    assert set(analysis.dependencies["WaitForBoth"]) == {"TaskA", "TaskB"}
    assert analysis.dependencies["TaskC"] == ("WaitForBoth",)


# ------------------------------------------------------------------------- Quick Start


async def test_quick_start_graph_runs_auth_and_flags_after_database() -> None:
    from sdax import AsyncTask, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    # Fluent builder pattern with helper functions
    processor = (
        AsyncDagTaskProcessor[TaskContext]
        .builder()
        .add_task(
            AsyncTask(
                name="Database", pre_execute=task_func(open_db), post_execute=task_func(close_db)
            ),
            depends_on=(),
        )
        .add_task(
            AsyncTask(name="Auth", pre_execute=task_func(check_auth)), depends_on=("Database",)
        )
        .add_task(
            AsyncTask(name="Flags", pre_execute=task_func(load_feature_flags)),
            depends_on=("Database",),
        )
        .add_task(AsyncTask(name="Fetch", execute=task_func(fetch_user_data)), depends_on=("Auth",))
        .build()
    )

    ctx = TaskContext()
    await processor.process_tasks(ctx)
    assert_ran_like_the_quick_start(ctx)
    # Auth and Flags share one wave, released when Database's pre finished.
    assert processor.analysis.pre_wave_containing("Auth") is processor.analysis.pre_wave_containing(
        "Flags"
    )


async def test_elevator_adapter_runs_the_quick_start_by_levels() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_func

    processor = (
        AsyncTaskProcessor.builder()
        .add_task(
            AsyncTask("Database", pre_execute=task_func(open_db), post_execute=task_func(close_db)),
            level=0,
        )
        .add_task(AsyncTask("Auth", pre_execute=task_func(check_auth)), level=1)
        .add_task(AsyncTask("Flags", pre_execute=task_func(load_feature_flags)), level=1)
        .add_task(AsyncTask("Fetch", execute=task_func(fetch_user_data)), level=2)
        .build()
    )

    ctx = TaskContext()
    await processor.process_tasks(ctx)
    assert_ran_like_the_quick_start(ctx)


# ---------------------------------------------------- Cleanup guarantees: a safe lock


class FakeLockService:
    """A lock service: `acquire()` waits until the test grants the lock and returns a
    handle; `release()` refuses a lock that is not held."""

    def __init__(self) -> None:
        self.held = False
        self.releases = 0
        self.log: list[str] = []
        self.waiting = asyncio.Event()  # someone is in acquire()
        self.grant = asyncio.Event()  # the test lets acquire() succeed
        self.granted = asyncio.Event()  # acquire() has returned the lock

    async def acquire(self) -> FakeLockService:
        self.waiting.set()
        try:
            await self.grant.wait()
        except asyncio.CancelledError:
            self.log.append("acquire cancelled")
            raise
        self.held = True
        self.granted.set()
        return self

    async def release(self) -> None:
        if not self.held:
            raise RuntimeError("release of a lock that is not held")
        self.held = False
        self.releases += 1


@pytest.mark.parametrize("lock_granted", [True, False], ids=["lock-acquired", "acquire-cancelled"])
async def test_post_execute_releases_a_lock_safely_whether_or_not_pre_execute_got_it(
    lock_granted: bool,
) -> None:
    from sdax import AsyncTask, SdaxExecutionError, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    some_lock = FakeLockService()  # asyncio.Lock.acquire() returns True, not a lock: a fake

    @dataclass
    class TaskContext:
        lock: FakeLockService | None = None  # README: asyncio.Lock | None
        lock_acquired: bool = False
        cleanups: int = 0  # ours: counts the runs of release_lock

    async def acquire_lock(ctx: TaskContext) -> None:
        ctx.lock = await some_lock.acquire()
        # If cancelled here, lock is acquired but flag not set
        ctx.lock_acquired = True

    async def release_lock(ctx: TaskContext) -> None:
        ctx.cleanups += 1
        # GOOD: Check if we actually acquired the lock
        if ctx.lock_acquired and ctx.lock:
            await ctx.lock.release()
        # GOOD: Or use try/except for safety
        try:
            if ctx.lock:
                await ctx.lock.release()
        except Exception:
            pass  # Already released or never acquired

    sibling_error = ValueError("a sibling pre_execute failed")

    async def failing_sibling(ctx: TaskContext) -> None:
        await some_lock.waiting.wait()
        if lock_granted:
            some_lock.grant.set()
            await some_lock.granted.wait()
        raise sibling_error

    processor = (
        AsyncDagTaskProcessor[TaskContext]
        .builder()
        .add_task(
            AsyncTask(
                "Lock", pre_execute=task_func(acquire_lock), post_execute=task_func(release_lock)
            ),
            depends_on=(),
        )
        .add_task(AsyncTask("Sibling", pre_execute=task_func(failing_sibling)), depends_on=())
        .build()
    )
    ctx = TaskContext()
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(ctx)

    # Only the sibling failed: the cancelled pre is no failure, and cleanup raised nothing.
    assert caught.value.leaf_exceptions() == [sibling_error]
    assert ctx.cleanups == 1  # post_execute ran although the run failed
    assert some_lock.held is False
    if lock_granted:
        assert ctx.lock_acquired
        assert some_lock.releases == 1  # the second release was refused and swallowed
        assert some_lock.log == []
    else:
        assert not ctx.lock_acquired
        assert some_lock.releases == 0
        assert some_lock.log == ["acquire cancelled"]


# -------------------------------------------------------- Execution model: a DAG example


async def test_complex_graph_connects_once_runs_every_step_then_closes_the_connection() -> None:
    from sdax import AsyncTask, RetryableException, join, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    connect_attempts: list[str] = []
    connection = FakeConnection(user={"user_id": 42, "name": "Ada"})

    async def create_connection() -> FakeConnection:
        connect_attempts.append("connect")
        await asyncio.sleep(0)
        if len(connect_attempts) == 1:
            raise ConnectionError("database not up yet")
        return connection

    class FakeRedis:
        def __init__(self) -> None:
            self.reads = 0

        async def get_cache(self) -> dict[str, str]:
            self.reads += 1
            await asyncio.sleep(0)
            return {"theme": "dark"}

    class FakeNotifier:
        def __init__(self) -> None:
            self.sent: list[int] = []

        async def send(self, user_id: int) -> None:
            self.sent.append(user_id)

    redis_client = FakeRedis()
    notification_service = FakeNotifier()
    processed: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def process_user_data(user_data: dict[str, Any], cache: dict[str, Any]) -> dict[str, Any]:
        processed.append((dict(user_data), dict(cache)))
        return {**user_data, **cache}

    @dataclass
    class DatabaseContext:
        connection: Any = None
        user_data: dict[str, Any] = field(default_factory=dict)
        cache: dict[str, Any] = field(default_factory=dict)

    async def connect_db(ctx: DatabaseContext) -> None:
        ctx.connection = await create_connection()

    async def load_user(ctx: DatabaseContext) -> None:
        ctx.user_data = await ctx.connection.fetch_user()

    async def load_cache(ctx: DatabaseContext) -> None:
        ctx.cache = await redis_client.get_cache()

    async def process_data(ctx: DatabaseContext) -> dict[str, Any]:
        # Process user data with cache
        return process_user_data(ctx.user_data, ctx.cache)

    async def cleanup_db(ctx: DatabaseContext) -> None:
        if ctx.connection:
            await ctx.connection.close()

    async def save_results(ctx: DatabaseContext) -> None:
        # Save processed results
        await ctx.connection.save(ctx.user_data)

    async def notify_user(ctx: DatabaseContext) -> None:
        # Send notification to user
        await notification_service.send(ctx.user_data["user_id"])

    # Complex dependency graph with helper functions
    processor = (
        AsyncDagTaskProcessor[DatabaseContext]
        .builder()
        .add_task(
            AsyncTask(
                name="ConnectDB",
                pre_execute=task_func(connect_db, timeout=5.0, retries=2),
                post_execute=task_func(cleanup_db),
            ),
            depends_on=(),
        )
        .add_task(
            AsyncTask(
                name="LoadUser",
                execute=task_func(load_user, retryable_exceptions=(ConnectionError,)),
            ),
            depends_on=("ConnectDB",),
        )
        .add_task(
            AsyncTask(name="LoadCache", execute=task_func(load_cache, timeout=3.0)),
            depends_on=("ConnectDB",),
        )
        .add_task(
            AsyncTask(name="ProcessData", execute=task_func(process_data)),
            depends_on=("LoadUser", "LoadCache"),
        )
        .add_task(join("SyncPoint"), depends_on=("LoadUser", "LoadCache", "ProcessData"))
        .add_task(
            AsyncTask(name="SaveResults", execute=task_func(save_results)),
            depends_on=("SyncPoint",),
        )
        .add_task(
            AsyncTask(name="SendNotification", execute=task_func(notify_user)),
            depends_on=("SyncPoint",),
        )
        .build()
    )

    # Every execute runs at once (dependencies do not order EXECUTE, SPEC §4), so
    # notify_user may run before load_user: the context starts with the user id.
    ctx = DatabaseContext(user_data={"user_id": 42})
    await processor.process_tasks(ctx, rng=NoJitter())

    assert connect_attempts == ["connect", "connect"]  # ConnectionError, retried
    assert ctx.connection is connection
    assert connection.calls[-1] == "close"  # cleanup after every execute
    assert sorted(connection.calls[:-1]) == ["fetch_user", "save"]
    assert ctx.user_data == {"user_id": 42, "name": "Ada"}
    assert ctx.cache == {"theme": "dark"}
    assert redis_client.reads == 1
    assert len(processed) == 1
    assert notification_service.sent == [42]

    analysis = processor.analysis
    assert [wave.tasks for wave in analysis.pre_execute_graph.waves] == [("ConnectDB",)]
    assert [wave.tasks for wave in analysis.post_execute_graph.waves] == [("ConnectDB",)]
    assert (analysis.total_tasks, analysis.tasks_with_execute, analysis.nodes) == (7, 5, 1)
    assert analysis.tasks["LoadUser"].execute.retryable_exceptions == (ConnectionError,)
    assert analysis.tasks["LoadCache"].execute.retryable_exceptions == (
        TimeoutError,
        ConnectionError,
        RetryableException,
    )


async def test_elevator_pattern_goes_up_level_by_level_then_cleans_up_in_reverse() -> None:
    from sdax import AsyncTaskProcessor

    # Level 1: [A-pre, B-pre, C-pre]; Level 2: [D-pre, E-pre];
    # Execute: [A, B, D, E]; Teardown: [D-post, E-post] then [A-post, B-post, C-post].
    probe = Probe()
    step = Ok(yields=True)
    processor = (
        AsyncTaskProcessor.builder()
        .add_task(probe.task("A", pre=HOLD, execute=step, post=step), level=1)
        .add_task(probe.task("B", pre=HOLD, execute=step, post=step), level=1)
        .add_task(probe.task("C", pre=HOLD, post=step), level=1)
        .add_task(probe.task("D", pre=step, execute=step, post=step), level=2)
        .add_task(probe.task("E", pre=step, execute=step, post=step), level=2)
        .build()
    )
    run = asyncio.create_task(processor.process_tasks(None))
    for key in "ABC":  # within a level, tasks run in parallel: all three are held at once
        await probe.started(key, PRE)
    assert probe.keys("end", PRE) == []
    for key in "ABC":
        probe.release(key, PRE)
    await run

    def last(event: str, keys: str, phase: str) -> int:
        return max(probe.index(event, key, phase) for key in keys)

    def first(event: str, keys: str, phase: str) -> int:
        return min(probe.index(event, key, phase) for key in keys)

    assert last("end", "ABC", PRE) < first("start", "DE", PRE)
    assert sorted(probe.keys("start", EXEC)) == ["A", "B", "D", "E"]
    assert last("end", "DE", PRE) < first("start", "ABDE", EXEC)
    assert last("end", "ABDE", EXEC) < first("start", "DE", POST)
    assert last("end", "DE", POST) < first("start", "ABC", POST)
    assert sorted(probe.keys("end", POST)) == ["A", "B", "C", "D", "E"]


# --------------------------------------------------------------------------- Use cases

USE_CASE_LEVELS: dict[str, list[list[str]]] = {
    "complex-api-endpoint": [
        ["Auth", "RateLimit", "FeatureFlags"],
        ["FetchUser", "FetchPermissions"],
        ["LoadData", "ProcessRequest"],
    ],
    "data-pipeline": [
        ["OpenDBConnection", "OpenFileHandle"],
        ["ReadData", "TransformData"],
        ["WriteResults"],
    ],
    "build-deploy": [
        ["CheckoutCode", "ValidateConfig"],
        ["RunTests", "BuildArtifacts"],
        ["Deploy", "NotifySlack"],
    ],
}


@pytest.mark.parametrize("levels", USE_CASE_LEVELS.values(), ids=USE_CASE_LEVELS.keys())
async def test_use_case_levels_each_start_after_the_level_below_has_finished(
    levels: list[list[str]],
) -> None:
    from sdax import AsyncTaskProcessor

    probe = Probe()
    builder = AsyncTaskProcessor.builder()
    for number, names in enumerate(levels, start=1):
        for name in names:
            builder.add_task(probe.task(name, pre=Ok(yields=True)), level=number)
    await builder.build().process_tasks(None)

    for below, above in itertools.pairwise(levels):
        finished = max(probe.index("end", name, PRE) for name in below)
        started = min(probe.index("start", name, PRE) for name in above)
        assert finished < started, (below, above)
    assert sorted(probe.keys("end", PRE)) == sorted(name for names in levels for name in names)


@pytest.mark.parametrize("failing", ["TransformData-pre", "WriteResults-execute"])
async def test_data_pipeline_always_closes_connections_and_files(failing: str) -> None:
    from sdax import AsyncTaskProcessor, SdaxExecutionError

    probe = Probe()
    error = OSError(f"{failing} failed")
    transform_pre = Raise(error) if failing == "TransformData-pre" else OK
    write = Raise(error) if failing == "WriteResults-execute" else OK
    processor = (
        AsyncTaskProcessor.builder()
        .add_task(probe.task("OpenDBConnection", pre=OK, post=OK), level=1)
        .add_task(probe.task("OpenFileHandle", pre=OK, post=OK), level=1)
        .add_task(probe.task("ReadData", pre=OK), level=2)
        .add_task(probe.task("TransformData", pre=transform_pre), level=2)
        .add_task(probe.task("WriteResults", execute=write), level=3)
        .build()
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None)
    assert caught.value.leaf_exceptions() == [error]
    # Post: always close connections/files
    assert sorted(probe.keys("end", POST)) == ["OpenDBConnection", "OpenFileHandle"]


# ------------------------------------------------ Mixing synchronous and asynchronous


async def test_sync_and_async_functions_mix_and_a_sync_function_runs_without_interruption() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_func, task_sync_func

    log: list[str] = []

    class FakeResponse:
        def __init__(self, payload: dict[str, Any]) -> None:
            self.payload = payload

        def json(self) -> dict[str, Any]:
            return self.payload

    class FakeHttpx:
        def __init__(self) -> None:
            self.requested: list[str] = []

        async def get(self, url: str) -> FakeResponse:
            self.requested.append(url)
            log.append("request sent")
            await asyncio.sleep(0)
            log.append("response received")
            return FakeResponse({"rows": 3})

    httpx = FakeHttpx()

    def sync_data_processor(ctx: dict[str, Any]) -> None:
        log.append("processing started")  # ours
        # Synchronous CPU-intensive work - BLOCKS the event loop!
        ctx["processed_data"] = []
        for item in ctx.get("raw_data", []):
            # Simulate CPU work (sorting, calculations, etc.): README has time.sleep(0.1) here
            ctx["processed_data"].append(item * 2)
        ctx["processing_complete"] = True
        log.append("processing finished")  # ours

    async def async_api_call(ctx: dict[str, Any]) -> None:
        # Asynchronous I/O - allows other tasks to run concurrently
        response = await httpx.get("https://api.example.com/data")
        ctx["api_data"] = response.json()

    processor = (
        AsyncTaskProcessor.builder()
        .add_task(AsyncTask("ProcessData", execute=task_sync_func(sync_data_processor)), level=1)
        .add_task(AsyncTask("FetchAPI", execute=task_func(async_api_call)), level=1)
        .build()
    )
    ctx: dict[str, Any] = {"raw_data": [1, 2, 3]}
    await processor.process_tasks(ctx)

    assert ctx["processed_data"] == [2, 4, 6]
    assert ctx["processing_complete"] is True
    assert ctx["api_data"] == {"rows": 3}
    assert httpx.requested == ["https://api.example.com/data"]
    # Nothing else ran while the sync function did: its two log lines are adjacent.
    started = log.index("processing started")
    assert log[started + 1] == "processing finished"
    assert sorted(log) == sorted(
        ["request sent", "response received", "processing started", "processing finished"]
    )


async def test_good_sync_functions_validate_and_format_the_context() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, SdaxExecutionError, task_sync_func

    def validate_user_input(ctx: dict[str, Any]) -> None:
        # Quick validation - doesn't block for long
        user_id = ctx.get("user_id")
        if not isinstance(user_id, int) or user_id <= 0:
            raise ValueError("Invalid user ID")
        ctx["validated"] = True

    def format_response_data(ctx: dict[str, Any]) -> None:
        # Simple data transformation
        ctx["formatted_data"] = {
            "user_id": ctx["user_id"],
            "timestamp": ctx.get("timestamp", "unknown"),
        }

    processor = (
        AsyncTaskProcessor.builder()
        .add_task(AsyncTask("Validate", pre_execute=task_sync_func(validate_user_input)), level=1)
        .add_task(AsyncTask("Format", execute=task_sync_func(format_response_data)), level=2)
        .build()
    )

    good: dict[str, Any] = {"user_id": 7}
    await processor.process_tasks(good)
    assert good == {
        "user_id": 7,
        "validated": True,
        "formatted_data": {"user_id": 7, "timestamp": "unknown"},
    }

    bad: dict[str, Any] = {"user_id": -1}
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(bad)
    (leaf,) = caught.value.leaf_exceptions()
    assert isinstance(leaf, ValueError)
    assert str(leaf) == "Invalid user ID"
    assert any("Validate" in note for note in leaf.__notes__)
    assert bad == {"user_id": -1}  # a failed pre skips the execute that would format


async def test_bad_sync_functions_block_every_other_task_while_they_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_func, task_sync_func

    (tmp_path / "large_file.txt").write_text("a large file\n" * 100)
    monkeypatch.chdir(tmp_path)
    state = {"ticks": 0}
    ticks_seen_by_calculation: list[int] = []

    def complex_calculation() -> None:
        ticks_seen_by_calculation.append(state["ticks"])

    def bad_cpu_intensive_work(ctx: dict[str, Any]) -> None:
        # DON'T DO THIS - blocks everything!
        for _ in range(1000):  # README: range(1000000)
            complex_calculation()  # Blocks all other tasks
        ctx["result"] = "done"

    def bad_file_io(ctx: dict[str, Any]) -> None:
        # DON'T DO THIS - use async I/O instead
        with open("large_file.txt") as f:
            ctx["data"] = f.read()  # Blocks the event loop

    async def ticker(ctx: dict[str, Any]) -> None:
        for _ in range(20):
            state["ticks"] += 1
            await asyncio.sleep(0)

    processor = (
        AsyncTaskProcessor.builder()
        .add_task(AsyncTask("Ticker", execute=task_func(ticker)), level=1)
        .add_task(AsyncTask("Cpu", execute=task_sync_func(bad_cpu_intensive_work)), level=1)
        .add_task(AsyncTask("File", execute=task_sync_func(bad_file_io)), level=1)
        .build()
    )
    ctx: dict[str, Any] = {}
    await processor.process_tasks(ctx)

    assert ctx == {"result": "done", "data": "a large file\n" * 100}
    assert len(ticks_seen_by_calculation) == 1000
    assert len(set(ticks_seen_by_calculation)) == 1  # the ticker never moved meanwhile
    assert state["ticks"] == 20


# ------------------------------------------------------------ High-throughput API server


class FakeApp:
    """A web framework stand-in: `@app.post(path)` registers a handler."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}

    def post(self, path: str) -> Any:
        def register(handler: Any) -> Any:
            self.routes[path] = handler
            return handler

        return register


async def test_one_built_processor_serves_many_concurrent_api_requests() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_func

    app = FakeApp()
    in_flight = asyncio.Barrier(3)  # every request waits here until all three are running

    @dataclass
    class RequestContext:
        user_id: int
        authenticated: bool = False
        results: dict[str, Any] = field(default_factory=dict)

    async def authenticate(ctx: RequestContext) -> None:
        ctx.authenticated = True

    async def fetch_data(ctx: RequestContext) -> None:
        await in_flight.wait()
        ctx.results = {"user_id": ctx.user_id, "authenticated": ctx.authenticated}

    # Build immutable workflow once at startup
    processor = (
        AsyncTaskProcessor.builder()
        .add_task(AsyncTask("Auth", pre_execute=task_func(authenticate)), level=1)
        .add_task(AsyncTask("FetchData", execute=task_func(fetch_data)), level=2)
        .build()
    )

    # Reuse processor for thousands of concurrent requests
    @app.post("/api/endpoint")
    async def handle_request(user_id: int) -> dict[str, Any]:
        ctx = RequestContext(user_id=user_id)
        await processor.process_tasks(ctx)
        return ctx.results

    handler = app.routes["/api/endpoint"]
    responses = await asyncio.gather(handler(1), handler(2), handler(3))
    assert responses == [
        {"user_id": 1, "authenticated": True},
        {"user_id": 2, "authenticated": True},
        {"user_id": 3, "authenticated": True},
    ]


# ------------------------------------------------------------------------ Error handling


async def test_error_handler_sees_every_leaf_and_escalates_a_critical_error() -> None:
    from sdax import AsyncTask, SdaxExecutionError, flatten_exceptions, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    class CriticalError(Exception):
        pass

    validation_errors: list[BaseException] = []
    timeouts: list[BaseException] = []
    logged: list[BaseException] = []

    def handle_validation_error(error: BaseException) -> None:
        validation_errors.append(error)

    def handle_timeout(error: BaseException) -> None:
        timeouts.append(error)

    def log_exception(error: BaseException) -> None:
        logged.append(error)

    @dataclass
    class Request:
        critical: bool = False

    bad_input = ValueError("bad input")
    cleanup_error = RuntimeError("cleanup failed")

    async def validate(ctx: Request) -> None:
        raise bad_input

    async def slow_call(ctx: Request) -> None:
        await asyncio.Event().wait()  # never answers: the timeout of 0 s ends it

    async def broken_cleanup(ctx: Request) -> None:
        raise cleanup_error

    async def critical_step(ctx: Request) -> None:
        if ctx.critical:
            raise CriticalError("disk on fire")

    processor = (
        AsyncDagTaskProcessor[Request]
        .builder()
        .add_task(AsyncTask("Validate", execute=task_func(validate)), depends_on=())
        .add_task(AsyncTask("Slow", execute=task_func(slow_call, timeout=0)), depends_on=())
        .add_task(AsyncTask("Cleanup", post_execute=task_func(broken_cleanup)), depends_on=())
        .add_task(AsyncTask("Critical", execute=task_func(critical_step)), depends_on=())
        .build()
    )

    async def handle(ctx: Request) -> None:
        try:
            await processor.process_tasks(ctx)
        except SdaxExecutionError as exc:
            # Inspect individual failures (pre, execute, or post)
            for leaf in exc.leaf_exceptions():
                if isinstance(leaf, ValueError):
                    handle_validation_error(leaf)
                elif isinstance(leaf, asyncio.TimeoutError):
                    handle_timeout(leaf)
                else:
                    log_exception(leaf)

            # Or use the helper to work with aggregated errors
            failures = flatten_exceptions(exc)
            if any(isinstance(f, CriticalError) for f in failures):
                raise  # escalate

    await handle(Request())  # handled: nothing escapes
    assert validation_errors == [bad_input]
    assert len(timeouts) == 1
    assert type(timeouts[0]) is TimeoutError
    assert logged == [cleanup_error]

    with pytest.raises(SdaxExecutionError) as escalated:
        await handle(Request(critical=True))
    leaves = escalated.value.leaf_exceptions()
    assert len(leaves) == 4
    assert sum(isinstance(leaf, CriticalError) for leaf in leaves) == 1
    assert [type(error) for error in logged[1:]] in (
        [RuntimeError, CriticalError],
        [CriticalError, RuntimeError],
    )


async def test_except_star_catches_the_failures_of_a_run_by_type() -> None:
    from sdax import AsyncTask, flatten_exceptions, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    bad_input = ValueError("bad input")

    async def validate(ctx: None) -> None:
        raise bad_input

    async def slow_call(ctx: None) -> None:
        await asyncio.Event().wait()

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Validate", execute=task_func(validate)), depends_on=())
        .add_task(AsyncTask("Slow", execute=task_func(slow_call, timeout=0)), depends_on=())
        .build()
    )
    caught: dict[str, list[BaseException]] = {}
    try:
        await processor.process_tasks(None)
    except* ValueError as group:
        caught["value"] = flatten_exceptions(group)
    except* TimeoutError as group:
        caught["timeout"] = flatten_exceptions(group)

    assert caught["value"] == [bad_input]
    assert [type(error) for error in caught["timeout"]] == [TimeoutError]


# ------------------------------------------------------------------ Generic key types


async def test_string_keys_name_tasks_and_their_dependencies() -> None:
    from sdax import AsyncTask, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    # Standard string-based task names (backward compatible)
    processor = (
        AsyncDagTaskProcessor[TaskContext]
        .builder()
        .add_task(AsyncTask(name="Database", execute=task_func(open_db)), depends_on=())
        .add_task(AsyncTask(name="Auth", execute=task_func(check_auth)), depends_on=("Database",))
        .build()
    )
    ctx = TaskContext()
    await processor.process_tasks(ctx)

    assert "Database opened" in ctx.events
    assert ctx.user_id == 123
    assert not ctx.db_connection.closed  # no post_execute was declared
    assert dict(processor.analysis.dependencies) == {"Database": (), "Auth": ("Database",)}


async def test_tuple_keys_name_tasks_and_their_dependencies() -> None:
    from sdax import AsyncTask, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    # Define custom key types
    ServiceKey = tuple[str, str]  # (service_name, operation)
    PriorityKey = tuple[int, str]  # (priority_level, task_name)

    async def important_task(ctx: TaskContext) -> None:
        ctx.events.append("important")

    # Use structured keys for better organization
    processor = (
        AsyncDagTaskProcessor[TaskContext]
        .builder()
        .add_task(
            AsyncTask(name=("database", "connect"), execute=task_func(open_db)), depends_on=()
        )
        .add_task(
            AsyncTask(name=("auth", "validate"), execute=task_func(check_auth)),
            depends_on=(("database", "connect"),),
        )
        .add_task(
            AsyncTask(name=(1, "high_priority"), execute=task_func(important_task)), depends_on=()
        )
        .build()
    )
    ctx = TaskContext()
    await processor.process_tasks(ctx)

    assert sorted(ctx.events) == sorted(
        ["Database opened", "Auth started", "Auth done", "important"]
    )
    assert ctx.user_id == 123
    dependencies = processor.analysis.dependencies
    connect: ServiceKey = ("database", "connect")
    priority: PriorityKey = (1, "high_priority")
    assert dependencies[("auth", "validate")] == (connect,)
    assert dependencies[priority] == ()
    assert set(processor.analysis.tasks) == {connect, ("auth", "validate"), priority}


async def test_level_adapter_join_nodes_never_collide_with_user_keys() -> None:
    from sdax import AsyncTaskProcessor
    from sdax.sdax_core import LevelKey

    # The README's LevelKey used (level, "below"/"above") tuples for its join nodes;
    # user keys shaped like them must still be plain user tasks.
    user_keys: list[LevelKey] = [(0, "below"), (0, "above"), "MyTask"]
    probe = Probe()
    processor = (
        AsyncTaskProcessor.builder()
        .add_task(probe.task((0, "below"), pre=Ok(yields=True)), level=0)
        .add_task(probe.task((0, "above"), pre=Ok(yields=True)), level=0)
        .add_task(probe.task("MyTask", pre=Ok(yields=True)), level=1)
        .build()
    )
    await processor.process_tasks(None)

    level_zero_done = max(probe.index("end", key, PRE) for key in user_keys[:2])
    assert level_zero_done < probe.index("start", "MyTask", PRE)
    tasks = processor.analysis.tasks
    assert all(tasks[key].pre_execute is not None for key in user_keys)
    joins = [key for key in tasks if key not in user_keys]
    assert joins  # the adapter's level nodes exist, under keys of their own
    for key in joins:
        assert (tasks[key].pre_execute, tasks[key].execute, tasks[key].post_execute) == (
            None,
            None,
            None,
        )


async def test_any_hashable_key_names_a_task_and_unhashable_keys_are_rejected() -> None:
    from sdax import AsyncTask, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    ran: list[Hashable] = []

    def recorder(key: Hashable) -> Any:
        async def record(ctx: None) -> None:
            ran.append(key)

        return task_func(record)

    # Valid key types:
    valid_keys = [
        "string_key",  # str
        ("service", "operation"),  # Tuple[str, str] (Hashable)
        (1, "priority"),  # Tuple[int, str] (Hashable)
        frozenset(["a", "b"]),  # frozenset (Hashable)
    ]

    # Invalid key types:
    invalid_keys = [
        ["list", "not_hashable"],  # List (not Hashable)
        {"dict": "not_hashable"},  # Dict (not Hashable)
        {"set", "not_hashable"},  # Set (not Hashable); README: set([...])
    ]

    builder = AsyncDagTaskProcessor[None].builder()
    previous: tuple[Hashable, ...] = ()
    for key in valid_keys:
        builder.add_task(AsyncTask(name=key, execute=recorder(key)), depends_on=previous)
        previous = (key,)
    for key in invalid_keys:
        with pytest.raises(TypeError, match="hashable"):
            builder.add_task(AsyncTask(name=key, execute=recorder("x")), depends_on=())
    processor = builder.build()
    await processor.process_tasks(None)

    assert sorted(map(repr, ran)) == sorted(map(repr, valid_keys))
    assert processor.analysis.dependencies[frozenset(["a", "b"])] == ((1, "priority"),)


# ---------------------------------------------------------------- Per-task configuration


async def test_per_task_timeout_and_retries_recover_a_flakey_api_and_tasks_are_frozen() -> None:
    from sdax import AsyncTask, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    calls: list[int] = []

    async def call_external_api(ctx: dict[str, str]) -> None:
        calls.append(len(calls) + 1)
        await asyncio.sleep(0)
        if len(calls) < 3:
            raise ConnectionError("connection reset")
        ctx["api"] = "ok"

    flakey = AsyncTask(
        name="FlakeyAPI",
        execute=task_func(
            call_external_api,
            timeout=5.0,  # 5 second timeout (use None for no timeout)
            retries=3,  # Retry 3 times
            initial_delay=1.0,  # Start retries at 1 second (default)
            backoff_factor=2.0,  # Exponential backoff: 1s, 2s, 4s
        ),
    )
    function = flakey.execute
    assert function is not None
    assert (function.timeout, function.retries) == (5.0, 3)
    assert (function.initial_delay, function.backoff_factor) == (1.0, 2.0)

    # AsyncTask and TaskFunction are frozen dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        flakey.name = "Renamed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        function.retries = 0  # type: ignore[misc]

    processor = AsyncDagTaskProcessor[dict].builder().add_task(flakey, depends_on=()).build()
    ctx: dict[str, str] = {}
    rng = NoJitter()
    await processor.process_tasks(ctx, rng=rng)
    assert calls == [1, 2, 3]  # two ConnectionErrors, then success
    assert ctx == {"api": "ok"}
    assert rng.draws == [(0.5, 1.0), (0.5, 1.0)]  # one uniform(0.5, 1.0) jitter per retry


# ------------------------------------------------------------------ Task group integration


async def test_task_group_subtasks_run_concurrently_inside_the_parent_task() -> None:
    from sdax import AsyncTask, task_group_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    events: list[str] = []
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def subtask_a() -> int:
        events.append("a started")
        a_started.set()
        await b_started.wait()  # only finishes if subtask_b runs at the same time
        events.append("a done")
        return 1

    async def subtask_b() -> int:
        events.append("b started")
        b_started.set()
        await a_started.wait()
        events.append("b done")
        return 2

    async def parent_task(ctx: TaskContext, tg: SdaxTaskGroup) -> int:
        # Create subtasks using the task group
        subtask1 = tg.create_task(subtask_a(), name="subtask_a")
        subtask2 = tg.create_task(subtask_b(), name="subtask_b")

        # Wait for both subtasks to complete
        result1, result2 = await asyncio.gather(subtask1, subtask2)
        ctx.events.append(f"sum {result1 + result2}")  # ours: the README only returns it
        return result1 + result2

    task = AsyncTask(
        name="ParentTask",
        execute=task_group_func(parent_task),  # Helper automatically enables tg parameter
    )
    processor = AsyncDagTaskProcessor[TaskContext].builder().add_task(task).build()
    ctx = TaskContext()
    await processor.process_tasks(ctx)

    assert sorted(events[:2]) == ["a started", "b started"]
    assert sorted(events[2:]) == ["a done", "b done"]
    assert ctx.events == ["sum 3"]


async def test_task_group_parent_that_returns_early_still_waits_for_its_subtasks() -> None:
    from sdax import AsyncTask, task_func, task_group_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    @dataclass
    class Held:
        started: asyncio.Event = field(default_factory=asyncio.Event)
        release: asyncio.Event = field(default_factory=asyncio.Event)
        finished: asyncio.Event = field(default_factory=asyncio.Event)

    slow, faster = Held(), Held()
    events: list[str] = []

    async def child(name: str, held: Held) -> None:  # stands in for the README's 5 s and 3 s sleeps
        held.started.set()
        await held.release.wait()
        events.append(f"{name} done")
        held.finished.set()

    async def parent_task(ctx: TaskContext, tg: SdaxTaskGroup) -> str:
        # Create long-running subtasks
        subtask1 = tg.create_task(child("slow_task", slow), name="slow_task")
        subtask2 = tg.create_task(child("faster_task", faster), name="faster_task")
        assert not subtask1.done()  # ours
        assert not subtask2.done()  # ours

        # Return immediately - but TaskGroup waits for both subtasks!
        events.append("parent returned")
        return "parent_done"  # This task won't complete until both subtasks finish

    async def dependent(ctx: TaskContext) -> None:
        events.append("dependent started")

    # The parent runs as a pre_execute, so a dependent's pre shows when it has finished.
    processor = (
        AsyncDagTaskProcessor[TaskContext]
        .builder()
        .add_task(AsyncTask(name="ParentTask", pre_execute=task_group_func(parent_task)))
        .add_task(
            AsyncTask(name="Dependent", pre_execute=task_func(dependent)),
            depends_on=("ParentTask",),
        )
        .build()
    )
    run = asyncio.create_task(processor.process_tasks(TaskContext()))
    await slow.started.wait()
    await faster.started.wait()
    faster.release.set()
    await faster.finished.wait()
    await let_the_loop_run()
    assert events == ["parent returned", "faster_task done"]  # the dependent is still waiting
    assert not run.done()

    slow.release.set()
    await run
    assert events == ["parent returned", "faster_task done", "slow_task done", "dependent started"]


# --------------------------------------------------------------- Phase-by-phase execution


@pytest.mark.parametrize("work_fails", [False, True], ids=["clean-run", "execute-fails"])
async def test_phase_runner_reports_each_phase_and_the_failures(work_fails: bool) -> None:
    from sdax import (
        AsyncTask,
        AsyncTaskProcessor,
        SdaxExecutionError,
        flatten_exceptions,
        task_func,
    )
    from sdax.sdax_core import PhaseId  # Phase identifiers: PRE_EXEC, EXECUTE, POST_EXEC

    work_error = ValueError("work failed")
    audits: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    logged: list[BaseException] = []
    seen: list[PhaseId | None] = []

    def audit_pre_phase(ctx: dict[str, Any]) -> None:
        audits.append(dict(ctx))

    def emit_metrics(ctx: dict[str, Any]) -> None:
        metrics.append(dict(ctx))

    def log_failure(failure: BaseException) -> None:
        logged.append(failure)

    async def load(ctx: dict[str, Any]) -> None:
        ctx["loaded"] = True

    async def work(ctx: dict[str, Any]) -> None:
        ctx["worked"] = True
        if work_fails:
            raise work_error

    async def unload(ctx: dict[str, Any]) -> None:
        ctx["unloaded"] = True

    processor = (
        AsyncTaskProcessor.builder()
        .add_task(
            AsyncTask("Load", pre_execute=task_func(load), post_execute=task_func(unload)), level=1
        )
        .add_task(AsyncTask("Work", execute=task_func(work)), level=2)
        .build()
    )
    ctx: dict[str, Any] = {}

    async def run_phase_by_phase() -> None:
        async with processor.open(ctx) as runner:
            while await runner.run_next():
                seen.append(runner.last_phase_id())  # ours
                match runner.last_phase_id():
                    case PhaseId.PRE_EXEC:
                        audit_pre_phase(ctx)
                    case PhaseId.EXECUTE:
                        emit_metrics(ctx)
                    case PhaseId.POST_EXEC:
                        pass  # cleanup phase complete
            seen.append(runner.last_phase_id())  # ours: the phase that ended the loop

            if runner.has_failures():
                try:
                    runner.raise_failures()
                except SdaxExecutionError as exc:
                    for failure in flatten_exceptions(exc):
                        log_failure(failure)  # application-specific handling

    if work_fails:
        # A normal exit from `open()` raises the run's failures again (SPEC §5).
        with pytest.raises(SdaxExecutionError) as exited:
            await run_phase_by_phase()
        assert exited.value.leaf_exceptions() == [work_error]
        assert logged == [work_error]
    else:
        await run_phase_by_phase()
        assert logged == []

    # run_next() is True while a phase remains (SPEC §5): the loop body sees PRE and
    # EXECUTE, and POST_EXEC is the last phase once it has ended.
    assert seen == [PhaseId.PRE_EXEC, PhaseId.EXECUTE, PhaseId.POST_EXEC]
    assert audits == [{"loaded": True}]
    assert metrics == [{"loaded": True, "worked": True}]
    assert ctx == {"loaded": True, "worked": True, "unloaded": True}


# -------------------------------------------------------------------- Retryable exceptions


async def test_custom_retryable_errors_are_retried_and_unlisted_errors_are_not() -> None:
    from sdax import AsyncTask, RetryableException, SdaxExecutionError, task_func
    from sdax.sdax_core import AsyncDagTaskProcessor

    # RetryableException is an Exception, so it can sit in an ExceptionGroup (SPEC §2).
    assert issubclass(RetryableException, Exception)

    class CustomRetryableError(RetryableException):
        pass

    @dataclass
    class Script:
        errors: list[Exception]
        calls: int = 0

    async def my_function(ctx: Script) -> None:
        ctx.calls += 1
        if ctx.errors:
            raise ctx.errors.pop(0)

    function = task_func(
        my_function,
        retries=3,
        retryable_exceptions=(TimeoutError, CustomRetryableError),  # Custom retry logic
    )
    processor = (
        AsyncDagTaskProcessor[Script]
        .builder()
        .add_task(AsyncTask("Flaky", execute=function), depends_on=())
        .build()
    )

    recovers = Script([CustomRetryableError("busy"), TimeoutError("slow")])
    await processor.process_tasks(recovers, rng=NoJitter())
    assert recovers.calls == 3

    exhausted_errors: list[Exception] = [CustomRetryableError(f"busy {n}") for n in range(4)]
    exhausted = Script(list(exhausted_errors))
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(exhausted, rng=NoJitter())
    assert exhausted.calls == 4  # the first attempt and 3 retries
    assert caught.value.leaf_exceptions() == [exhausted_errors[-1]]

    not_listed = ConnectionError("retryable by default, but not in this tuple")
    once = Script([not_listed])
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(once, rng=NoJitter())
    assert once.calls == 1
    assert caught.value.leaf_exceptions() == [not_listed]


# -------------------------------------------------------------------------- Shared context


async def test_a_typed_context_carries_data_from_one_task_to_the_next() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_func

    @dataclass
    class TaskContext:
        user_id: int | None = None
        permissions: list[str] = field(default_factory=list)
        db_connection: Any = None

    async def task_a(ctx: TaskContext) -> None:
        ctx.user_id = 123  # Set data

    async def task_b(ctx: TaskContext) -> None:
        user_id = ctx.user_id  # Read data from task_a, with full type hints!
        ctx.permissions.append(f"read:user/{user_id}")  # ours: shows what it read

    processor = (
        AsyncTaskProcessor.builder()
        .add_task(AsyncTask("A", pre_execute=task_func(task_a)), level=1)
        .add_task(AsyncTask("B", pre_execute=task_func(task_b)), level=2)
        .build()
    )
    ctx = TaskContext()
    await processor.process_tasks(ctx)
    assert ctx.user_id == 123
    assert ctx.permissions == ["read:user/123"]


# -------------------------------------------------------------------- Concurrent execution


async def test_concurrent_runs_of_one_processor_each_fill_their_own_context() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_func

    all_running = asyncio.Barrier(3)

    @dataclass
    class RequestContext:
        user_id: int
        greeting: str = ""

    async def greet(ctx: RequestContext) -> None:
        await all_running.wait()  # passes only if the three runs are in flight together
        ctx.greeting = f"hello {ctx.user_id}"

    # Build immutable processor once at startup
    processor = (
        AsyncTaskProcessor.builder()
        .add_task(AsyncTask("Greet", execute=task_func(greet)), level=1)
        .build()
    )

    contexts = [
        RequestContext(user_id=123),
        RequestContext(user_id=456),
        RequestContext(user_id=789),
    ]
    # Reuse processor for multiple concurrent requests - each with its own context
    await asyncio.gather(
        processor.process_tasks(contexts[0]),
        processor.process_tasks(contexts[1]),
        processor.process_tasks(contexts[2]),
    )
    assert [ctx.greeting for ctx in contexts] == ["hello 123", "hello 456", "hello 789"]


async def test_safe_concurrent_runs_each_use_and_close_their_own_connection() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_func

    all_fetching = asyncio.Barrier(3)

    class FakePool:
        def __init__(self) -> None:
            self.handed_out: list[FakeConnection] = []

        async def acquire(self) -> FakeConnection:
            await asyncio.sleep(0)
            connection = FakeConnection(name=f"conn-{len(self.handed_out)}")
            self.handed_out.append(connection)
            return connection

    db_pool = FakePool()

    @dataclass
    class RequestContext:
        # All request state contained in context
        user_id: int
        db_connection: Any = None
        api_results: dict[str, Any] = field(default_factory=dict)

    async def open_db(ctx: RequestContext) -> None:
        # Each execution gets its own connection
        ctx.db_connection = await db_pool.acquire()

    async def fetch_user_data(ctx: RequestContext) -> None:
        await all_fetching.wait()  # ours: the three runs overlap here
        # Uses this execution's connection
        ctx.api_results["user"] = await ctx.db_connection.fetch_user(ctx.user_id)

    async def close_db(ctx: RequestContext) -> None:
        # Cleans up this execution's connection
        if ctx.db_connection:
            await ctx.db_connection.close()

    # The README calls add_task on the processor; a built processor is immutable, so the
    # task goes to the builder (plus a fetch step, so the connection gets used).
    processor = (
        AsyncTaskProcessor.builder()
        .add_task(
            AsyncTask("DB", pre_execute=task_func(open_db), post_execute=task_func(close_db)),
            level=1,
        )
        .add_task(AsyncTask("Fetch", execute=task_func(fetch_user_data)), level=2)
        .build()
    )

    contexts = [
        RequestContext(user_id=123),
        RequestContext(user_id=456),
        RequestContext(user_id=789),
    ]
    await asyncio.gather(*(processor.process_tasks(ctx) for ctx in contexts))

    assert len(db_pool.handed_out) == 3
    assert len({id(ctx.db_connection) for ctx in contexts}) == 3
    for ctx in contexts:
        connection = ctx.db_connection
        assert ctx.api_results["user"] == {"id": ctx.user_id, "via": connection.name}
        assert connection.calls == ["fetch_user", "close"]
        assert connection.closed


async def test_unsafe_shared_state_is_written_by_every_concurrent_run() -> None:
    from sdax import AsyncTask, AsyncTaskProcessor, task_func

    all_fetching = asyncio.Barrier(3)

    @dataclass
    class RequestContext:
        user_id: int

    async def fetch_data(user_id: int) -> str:
        await all_fetching.wait()  # the three runs are inside unsafe_task at once
        return f"data for {user_id}"

    # BAD - shared state causes race conditions
    SHARED_CACHE: dict[int, str] = {}  # module-level in the README

    async def unsafe_task(ctx: RequestContext) -> None:
        # Race condition! Multiple executions writing to same dict
        SHARED_CACHE[ctx.user_id] = await fetch_data(ctx.user_id)  # BAD!

    processor = (
        AsyncTaskProcessor.builder()
        .add_task(AsyncTask("Unsafe", execute=task_func(unsafe_task)), level=1)
        .build()
    )
    contexts = [RequestContext(user_id=1), RequestContext(user_id=2), RequestContext(user_id=3)]
    await asyncio.gather(*(processor.process_tasks(ctx) for ctx in contexts))

    # sdax isolates contexts only: all three runs wrote into the one shared dict.
    assert SHARED_CACHE == {1: "data for 1", 2: "data for 2", 3: "data for 3"}


# ------------------------------------------------ this project's own README and docs/
# A block that calls asyncio.run is a whole program: it runs in a fresh interpreter,
# as a reader who pasted it would run it. The other blocks are fragments of the
# programs around them (`await` at top level, the endpoint of the Quick Start): they
# must at least compile.

_ROOT = Path(__file__).resolve().parent.parent
_DOCUMENTS = [_ROOT / "README.md", *sorted((_ROOT / "docs").glob("*.md"))]


def _python_blocks() -> list[tuple[str, str]]:
    blocks: list[tuple[str, str]] = []
    for document in _DOCUMENTS:
        lines = document.read_text(encoding="utf-8").splitlines()
        start: int | None = None
        for number, line in enumerate(lines, start=1):
            if start is None and line.strip() == "```python":
                start = number
            elif start is not None and line.strip() == "```":
                name = f"{document.relative_to(_ROOT)}:{start}"
                blocks.append((name, "\n".join(lines[start : number - 1]) + "\n"))
                start = None
    return blocks


_BLOCKS = _python_blocks()
_PROGRAMS = [block for block in _BLOCKS if "asyncio.run(" in block[1]]
_FRAGMENTS = [block for block in _BLOCKS if "asyncio.run(" not in block[1]]


def test_the_readme_has_a_quick_start_program() -> None:
    assert any(name.startswith("README.md") for name, _ in _PROGRAMS)


@pytest.mark.parametrize(("name", "code"), _PROGRAMS, ids=[name for name, _ in _PROGRAMS])
def test_a_program_in_the_docs_runs_as_pasted(name: str, code: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, f"{name} failed:\n{result.stderr}"
    assert result.stdout.strip(), f"{name} printed nothing"
    assert result.stderr == ""


def test_the_quick_start_prints_what_happened_in_order(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = next(code for name, code in _PROGRAMS if name.startswith("README.md"))
    script = tmp_path / "quickstart.py"
    script.write_text(code, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout.splitlines()  # fmt: skip
    assert out[0] == "connection opened"
    assert sorted(out[1:3]) == ["flags loaded", "user 42 authenticated"]
    assert out[3:] == ["profile fetched", "connection closed", "{'id': 42, 'new_page': True}"]


def test_the_quick_start_passes_mypy_strict(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = next(code for name, code in _PROGRAMS if name.startswith("README.md"))
    script = tmp_path / "quickstart.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("name", "code"), _FRAGMENTS, ids=[name for name, _ in _FRAGMENTS])
def test_a_fragment_in_the_docs_compiles(name: str, code: str) -> None:
    import ast

    # Fragments that continue a try block begin with `except`: give them their `try`.
    if code.lstrip().startswith("except"):
        code = "try:\n    pass\n" + code
    compile(code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
