"""examples/service driven in-process through its ASGI interface (no server, no port).

The real-server checks (uvicorn, load, SIGTERM) are `make integration-service`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("aiosqlite")
httpx = pytest.importorskip("httpx")

from examples.service import app as service_app  # noqa: E402

ENDPOINTS = ["/profile", "/handwritten/profile"]
KIND = {"/profile": "sdax", "/handwritten/profile": "handwritten"}


@pytest.fixture
def built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> service_app.Built:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and "auth=slow" in callspec.params.get("query", ""):
        # Reach the auth timeout without waiting 2 s: a tiny timeout, and a slow
        # auth that would take a minute before its query, so nothing races the timeout.
        monkeypatch.setattr(service_app, "AUTH_TIMEOUT", 0.001)
        monkeypatch.setattr(service_app, "AUTH_SLOW", 60.0)
    return service_app.build_service(str(tmp_path), str(tmp_path / "stats.json"))


@pytest.fixture
async def client(built: service_app.Built) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=built.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        ("", 200, {"flags_attempts": 1}),
        ("?flags_fail=2", 200, {"flags_attempts": 3}),
        ("?auth=deny", 403, {"error": "forbidden"}),
        ("?auth=slow", 504, {"error": "timed out"}),
        ("?flags_fail=3", 503, {"error": "flags unavailable"}),
        ("?flags_fail=1&fetch_ms=1", 200, {"flags_attempts": 2}),
    ],
)
async def test_each_fault_gets_its_answer_and_the_connection_is_closed(
    client: httpx.AsyncClient,
    built: service_app.Built,
    endpoint: str,
    query: str,
    status: int,
    body: dict[str, Any],
) -> None:
    response = await client.get(f"{endpoint}/7{query}", headers={"x-request-id": "req-1"})
    assert response.status_code == status
    answer = response.json()
    assert answer["request_id"] == "req-1"
    assert body.items() <= answer.items()
    if status == 200:
        assert answer["user"] == {"id": 7, "name": "user 7", "bio": "bio of user 7"}
        assert answer["flags"] == service_app.FLAGS
    kind = KIND[endpoint]
    stats = built.service.stats(0)
    assert stats["opened"] == {kind: 1}
    assert stats["closed"] == {kind: 1}
    assert stats["outcomes"] == {f"{kind} {status}": 1}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_an_unknown_user_is_a_404(client: httpx.AsyncClient, endpoint: str) -> None:
    response = await client.get(f"{endpoint}/{service_app.USERS + 1}")
    assert response.status_code == 404
    assert response.json()["error"] == "not found"


def http_scope(path: str, query: bytes, request_id: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"service"), (b"x-request-id", request_id.encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def enter_slow_fetch(
    built: service_app.Built, endpoint: str, request_id: str
) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]], list[dict[str, Any]]]:
    """Start a request whose fetch would take a minute; return once it is in that fetch."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    in_fetch = built.service.fetch_started.setdefault(request_id, asyncio.Event())
    scope = http_scope(f"{endpoint}/3", b"fetch_ms=60000&close_ms=1", request_id)
    call = asyncio.create_task(built.app(scope, inbox.get, send))
    await in_fetch.wait()
    return call, inbox, sent


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_client_that_leaves_mid_fetch_gets_its_connection_closed(
    built: service_app.Built, endpoint: str
) -> None:
    call, inbox, sent = await enter_slow_fetch(built, endpoint, "leaver")
    stats = built.service.stats(0)
    assert (stats["opened"], stats["closed"], stats["fetching"]) == ({KIND[endpoint]: 1}, {}, 1)
    inbox.put_nowait({"type": "http.disconnect"})
    await call
    kind = KIND[endpoint]
    stats = built.service.stats(0)
    assert stats["opened"] == stats["closed"] == {kind: 1}
    assert stats["outcomes"] == {f"{kind} cancelled": 1}
    assert stats["fetching"] == 0
    assert sent == []  # nobody is left to answer
    assert built.processor.in_flight == 0
    assert built.service.handwritten.in_flight == 0


async def test_shutdown_waits_for_cancelled_runs_to_close_their_connections(
    built: service_app.Built, tmp_path: Path
) -> None:
    lifespan_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan_out: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        lifespan_out.append(message["type"])

    lifespan_in.put_nowait({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        built.app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_in.get, send)
    )
    calls = [
        (await enter_slow_fetch(built, endpoint, f"r{i}"))[0]
        for i, endpoint in enumerate(ENDPOINTS * 2)
    ]
    assert lifespan_out == ["lifespan.startup.complete"]
    # What uvicorn does on SIGTERM once its graceful timeout is over: cancel the
    # handlers (without waiting for them), then send lifespan.shutdown.
    for call in calls:
        call.cancel()
    lifespan_in.put_nowait({"type": "lifespan.shutdown"})
    await lifespan
    assert lifespan_out == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["opened"] == stats["closed"] == {"sdax": 2, "handwritten": 2}
    assert stats["shutdown_in_flight"] == 0
    assert stats["outcomes"] == {"sdax cancelled": 2, "handwritten cancelled": 2}
    for call in calls:
        with pytest.raises(asyncio.CancelledError):
            await call
