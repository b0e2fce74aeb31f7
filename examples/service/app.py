"""The README's endpoint as a real Starlette service on a real sqlite file.

    GET /profile/{user_id}              the endpoint, run by one shared sdax processor
    GET /handwritten/profile/{user_id}  the same work, orchestrated by hand (TaskGroup)
    GET /stats                          connections opened/closed, outcomes, runs in flight
    GET /debug/in-fetch/{request_id}    answers once that request is in its slow fetch (408 if
                                        it is not within ?timeout=s, default 10)

Serve it with `make service` (uvicorn --loop uvloop --factory examples.service.app:create_app).

Faults are chosen per request by query parameters, so a load test can reach
every failure path:

    auth=deny       Auth raises PermissionError                   -> 403
    auth=slow       Auth outlasts its 2 s timeout                 -> 504
    flags_fail=N    the first N Flags attempts raise ConnectionError
                    (retries=2: N <= 2 -> 200, N >= 3 -> 503)
    fetch_ms=N      Fetch waits N ms first (a slow backend; clients that
                    leave during it get their run cancelled)
    close_ms=N      closing the connection takes N ms longer (slow cleanup)
    a user id above USERS                                         -> 404

Every phase function below is shared by both endpoints; only the
orchestration differs. Environment (for uvicorn --factory):
SDAX_SERVICE_DB_DIR (default: a temp dir, removed at shutdown) and
SDAX_SERVICE_STATS_FILE (the /stats JSON is written there at shutdown,
after the drain).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    SdaxExecutionError,
    flatten_exceptions,
    task_func,
)
from sdax.integrations.asgi import ASGIApp, CancelOnDisconnect, DrainOnShutdown

USERS = 1000  # user ids 1..USERS have a profile; any other id is a 404
FLAGS = {"new_profile_page": True, "dark_mode": False, "beta_search": True}
AUTH_TIMEOUT = 2.0
AUTH_SLOW = 3.0  # what auth=slow waits: longer than AUTH_TIMEOUT
FLAGS_RETRIES = 2
FLAGS_INITIAL_DELAY = 0.01
CLEANUP_BUDGET = 5.0  # keep it below the server's graceful-shutdown timeout
DRAIN_BUDGET = 10.0


@dataclass(frozen=True)
class Faults:
    auth: str = ""
    flags_fail: int = 0
    fetch_ms: int = 0
    close_ms: int = 0

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Faults:
        return cls(
            auth=query.get("auth", ""),
            flags_fail=int(query.get("flags_fail", 0)),
            fetch_ms=int(query.get("fetch_ms", 0)),
            close_ms=int(query.get("close_ms", 0)),
        )


class InFlight:
    """Counts the hand-written endpoint's calls, so shutdown can drain them too."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._count

    def enter(self) -> None:
        self._count += 1
        self._idle.clear()

    def leave(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


class Service:
    """What every request shares: the database file and the counters."""

    def __init__(self, db_dir: str | None = None) -> None:
        self.owns_dir = db_dir is None
        self.db_dir = db_dir if db_dir is not None else tempfile.mkdtemp(prefix="sdax-service-")
        self.db_path = os.path.join(self.db_dir, "service.sqlite3")
        self.opened: Counter[str] = Counter()  # endpoint -> connections opened
        self.closed: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()  # "sdax 200", "handwritten cancelled", ...
        self.fetching = 0  # requests inside a slow fetch right now
        self.fetch_started: dict[str, asyncio.Event] = {}
        self.handwritten = InFlight()
        self.shutdown_in_flight: int | None = None
        self._ids = itertools.count(1)
        create_database(self.db_path)

    def request_id(self, request: Request) -> str:
        return request.headers.get("x-request-id") or f"r{next(self._ids)}"

    def began_fetch(self, request_id: str) -> None:
        self.fetch_started.setdefault(request_id, asyncio.Event()).set()

    def stats(self, in_flight: int) -> dict[str, Any]:
        return {
            "opened": dict(self.opened),
            "closed": dict(self.closed),
            "outcomes": dict(self.outcomes),
            "fetching": self.fetching,
            "in_flight": in_flight,
            "shutdown_in_flight": self.shutdown_in_flight,
        }

    def close(self) -> None:
        if self.owns_dir:
            shutil.rmtree(self.db_dir, ignore_errors=True)


def create_database(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT, banned INTEGER);
            CREATE TABLE IF NOT EXISTS profiles (user_id INTEGER PRIMARY KEY, bio TEXT);
            CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, enabled INTEGER);
            """
        )
        db.executemany(
            "INSERT OR REPLACE INTO users VALUES (?, ?, 0)",
            [(i, f"user {i}") for i in range(1, USERS + 1)],
        )
        db.executemany(
            "INSERT OR REPLACE INTO profiles VALUES (?, ?)",
            [(i, f"bio of user {i}") for i in range(1, USERS + 1)],
        )
        db.executemany("INSERT OR REPLACE INTO flags VALUES (?, ?)", list(FLAGS.items()))
    db.close()


@dataclass
class Call:
    """One request's context."""

    service: Service
    endpoint: str
    request_id: str
    user_id: int
    faults: Faults
    connection: aiosqlite.Connection | None = None
    flags_attempts: int = 0
    flags: dict[str, bool] = field(default_factory=dict)
    profile: dict[str, object] = field(default_factory=dict)


# The phase functions, shared by both endpoints.


async def open_db(call: Call) -> None:
    # If this is cancelled while connecting, aiosqlite closes what it opened itself.
    call.connection = await aiosqlite.connect(call.service.db_path)
    call.service.opened[call.endpoint] += 1


async def close_db(call: Call) -> None:
    if call.connection is None:  # open_db failed or was cancelled: nothing to close
        return
    if call.faults.close_ms:
        await asyncio.sleep(call.faults.close_ms / 1000)
    await call.connection.close()
    call.connection = None
    call.service.closed[call.endpoint] += 1


async def check_auth(call: Call) -> None:
    if call.faults.auth == "slow":
        await asyncio.sleep(AUTH_SLOW)
    assert call.connection is not None
    async with call.connection.execute(
        "SELECT banned FROM users WHERE id = ?", (call.user_id,)
    ) as cursor:
        row = await cursor.fetchone()
    if call.faults.auth == "deny" or (row is not None and row[0]):
        raise PermissionError(f"user {call.user_id} may not read this profile")


async def load_flags(call: Call) -> None:
    call.flags_attempts += 1
    if call.flags_attempts <= call.faults.flags_fail:
        raise ConnectionError(f"flag service unavailable (attempt {call.flags_attempts})")
    assert call.connection is not None
    async with call.connection.execute("SELECT name, enabled FROM flags") as cursor:
        call.flags = {name: bool(enabled) async for name, enabled in cursor}


async def fetch_profile(call: Call) -> None:
    service = call.service
    if call.faults.fetch_ms:
        service.fetching += 1
        try:
            service.began_fetch(call.request_id)
            await asyncio.sleep(call.faults.fetch_ms / 1000)
        finally:
            service.fetching -= 1
            service.fetch_started.pop(call.request_id, None)  # keeps the map small
    assert call.connection is not None
    async with call.connection.execute(
        "SELECT name, bio FROM users JOIN profiles ON profiles.user_id = users.id"
        " WHERE users.id = ?",
        (call.user_id,),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise LookupError(f"no user {call.user_id}")
    call.profile = {"id": call.user_id, "name": row[0], "bio": row[1]}


# sdax: the plan, built once and shared by every request.


def build_processor() -> AsyncDagTaskProcessor[Call]:
    return (
        AsyncDagTaskProcessor[Call]
        .builder()
        .add_task(
            AsyncTask("Database", pre_execute=task_func(open_db), post_execute=task_func(close_db))
        )
        .add_task(
            AsyncTask("Auth", pre_execute=task_func(check_auth, timeout=AUTH_TIMEOUT)),
            depends_on=("Database",),
        )
        .add_task(
            AsyncTask(
                "Flags",
                pre_execute=task_func(
                    load_flags, retries=FLAGS_RETRIES, initial_delay=FLAGS_INITIAL_DELAY
                ),
            ),
            depends_on=("Database",),
        )
        .add_task(
            AsyncTask("Fetch", execute=task_func(fetch_profile)), depends_on=("Auth", "Flags")
        )
        .build()
    )


# The same endpoint by hand: direct awaits, a TaskGroup, asyncio.timeout, a retry loop.


async def handwritten(call: Call) -> None:
    try:
        await open_db(call)

        async def auth() -> None:
            async with asyncio.timeout(AUTH_TIMEOUT):
                await check_auth(call)

        async def flags() -> None:
            for attempt in range(FLAGS_RETRIES + 1):
                try:
                    await load_flags(call)
                    return
                except (TimeoutError, ConnectionError):
                    if attempt == FLAGS_RETRIES:
                        raise
                await asyncio.sleep(FLAGS_INITIAL_DELAY * 2**attempt * random.uniform(0.5, 1))

        async with asyncio.TaskGroup() as group:
            group.create_task(auth())
            group.create_task(flags())
        await fetch_profile(call)
    finally:
        # Not shielded: a second cancellation here would cut the close short.
        await close_db(call)


def write_file(path: str, text: str) -> None:
    with open(path, "w") as out:
        out.write(text)


# Failures to responses, for both endpoints (sdax's error and TaskGroup's are both groups).

ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    (PermissionError, 403, "forbidden"),
    (TimeoutError, 504, "timed out"),
    (ConnectionError, 503, "flags unavailable"),
    (LookupError, 404, "not found"),
)


def error_response(call: Call, error: BaseException) -> JSONResponse:
    found = flatten_exceptions(error)
    for kind, status, message in ERRORS:
        if any(isinstance(leaf, kind) for leaf in found):
            call.service.outcomes[f"{call.endpoint} {status}"] += 1
            return JSONResponse({"error": message, "request_id": call.request_id}, status)
    call.service.outcomes[f"{call.endpoint} 500"] += 1
    return JSONResponse({"error": "internal", "request_id": call.request_id}, 500)


def ok_response(call: Call) -> JSONResponse:
    call.service.outcomes[f"{call.endpoint} 200"] += 1
    body = {
        "request_id": call.request_id,
        "user": call.profile,
        "flags": call.flags,
        "flags_attempts": call.flags_attempts,
    }
    return JSONResponse(body)


@dataclass
class Built:
    app: ASGIApp  # what the server runs
    service: Service
    processor: AsyncDagTaskProcessor[Call]


def create_app(db_dir: str | None = None, stats_file: str | None = None) -> ASGIApp:
    """The service, wrapped: CancelOnDisconnect inside, DrainOnShutdown outside."""
    return build_service(db_dir, stats_file).app


def build_service(db_dir: str | None = None, stats_file: str | None = None) -> Built:
    db_dir = db_dir or os.environ.get("SDAX_SERVICE_DB_DIR") or None
    stats_file = stats_file or os.environ.get("SDAX_SERVICE_STATS_FILE") or None
    service = Service(db_dir)
    processor = build_processor()

    def new_call(request: Request, endpoint: str) -> Call:
        return Call(
            service,
            endpoint,
            service.request_id(request),
            request.path_params["user_id"],
            Faults.from_query(request.query_params),
        )

    async def profile(request: Request) -> JSONResponse:
        call = new_call(request, "sdax")
        try:
            await processor.process_tasks(call, tag=call.request_id, cleanup_budget=CLEANUP_BUDGET)
        except SdaxExecutionError as error:
            return error_response(call, error)
        except asyncio.CancelledError:
            service.outcomes["sdax cancelled"] += 1
            raise
        return ok_response(call)

    async def profile_by_hand(request: Request) -> JSONResponse:
        call = new_call(request, "handwritten")
        service.handwritten.enter()
        try:
            await handwritten(call)
        except asyncio.CancelledError:
            service.outcomes["handwritten cancelled"] += 1
            raise
        except Exception as error:
            return error_response(call, error)
        finally:
            service.handwritten.leave()
        return ok_response(call)

    async def stats(request: Request) -> JSONResponse:
        in_flight = processor.in_flight + service.handwritten.in_flight
        return JSONResponse(service.stats(in_flight))

    async def in_fetch(request: Request) -> JSONResponse:
        request_id = request.path_params["request_id"]
        started = service.fetch_started.setdefault(request_id, asyncio.Event())
        try:
            async with asyncio.timeout(float(request.query_params.get("timeout", 10))):
                await started.wait()
        except TimeoutError:
            return JSONResponse({"in_fetch": False}, 408)
        finally:
            service.fetch_started.pop(request_id, None)
        return JSONResponse({"in_fetch": True})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # DrainOnShutdown let this run only once both endpoints had no call in
        # flight (or its budget ran out): no cleanup can still be using the file.
        service.shutdown_in_flight = processor.in_flight + service.handwritten.in_flight
        if stats_file is not None:
            stats = json.dumps(service.stats(service.shutdown_in_flight))
            await asyncio.to_thread(write_file, stats_file, stats)
        service.close()

    app = Starlette(
        routes=[
            Route("/profile/{user_id:int}", profile),
            Route("/handwritten/profile/{user_id:int}", profile_by_hand),
            Route("/stats", stats),
            Route("/debug/in-fetch/{request_id}", in_fetch),
        ],
        lifespan=lifespan,
    )
    wrapped = CancelOnDisconnect(app)
    drained = DrainOnShutdown(
        wrapped, processors=[processor, service.handwritten], budget=DRAIN_BUDGET
    )
    return Built(drained, service, processor)
