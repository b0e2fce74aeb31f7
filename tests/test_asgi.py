"""sdax.integrations.asgi with a real Starlette app, driven through its ASGI interface."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from sdax import AsyncDagTaskProcessor, AsyncTask, task_func

starlette = pytest.importorskip("starlette")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from sdax.integrations.asgi import CancelOnDisconnect, DrainOnShutdown  # noqa: E402


class Resource:
    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def processor(self) -> Any:
        async def open_(ctx: object) -> None:
            self.opened += 1

        async def use(ctx: object) -> None:
            self.entered.set()
            await self.release.wait()

        async def close(ctx: object) -> None:
            self.closed += 1

        task = AsyncTask(
            "db",
            pre_execute=task_func(open_),
            execute=task_func(use),
            post_execute=task_func(close),
        )
        return AsyncDagTaskProcessor[None].builder().add_task(task).build()


def app_for(processor: Any, log: list[str]) -> Starlette:
    async def endpoint(request: Request) -> PlainTextResponse:
        body = await request.body()
        log.append(f"body {body.decode()}")
        await processor.process_tasks(None)
        return PlainTextResponse("done")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        log.append(f"shutdown with {processor.in_flight} in flight")

    return Starlette(routes=[Route("/", endpoint, methods=["POST"])], lifespan=lifespan)


async def test_a_disconnect_cancels_the_run_and_its_cleanup_runs() -> None:
    resource, log = Resource(), []
    app = CancelOnDisconnect(app_for(resource.processor(), log))
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": b"hello", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    call = asyncio.create_task(app(scope, inbox.get, send))
    await resource.entered.wait()
    inbox.put_nowait({"type": "http.disconnect"})
    await call
    assert log == ["body hello"]  # the app got its body: the watcher hands it on
    assert (resource.opened, resource.closed) == (1, 1)
    assert sent == []  # nothing answered a client that left


async def test_a_request_that_completes_is_answered() -> None:
    resource, log = Resource(), []
    resource.release.set()
    app = CancelOnDisconnect(app_for(resource.processor(), log))
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": b"x", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    await app(scope, inbox.get, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"done"


async def test_lifespan_shutdown_waits_for_runs_in_flight() -> None:
    resource, log = Resource(), []
    processor = resource.processor()
    app = DrainOnShutdown(app_for(processor, log), processors=[processor], budget=None)
    lifespan_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan_out: list[str] = []

    async def send(message: Any) -> None:
        lifespan_out.append(message["type"])

    lifespan_in.put_nowait({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, lifespan_in.get, send))
    run = asyncio.create_task(processor.process_tasks(None))
    await resource.entered.wait()
    lifespan_in.put_nowait({"type": "lifespan.shutdown"})
    for _ in range(5):  # loop turns in which shutdown must not get through
        await asyncio.sleep(0)
    assert "lifespan.shutdown.complete" not in lifespan_out
    resource.release.set()
    await run
    await lifespan
    assert log == ["shutdown with 0 in flight"]
    assert lifespan_out == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="budget must be >= 0"):
        DrainOnShutdown(app_for(Resource().processor(), []), processors=[], budget=-1)
