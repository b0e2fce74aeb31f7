"""ASGI glue: cancel a request's run when its client leaves, drain runs at shutdown.

    from sdax.integrations.asgi import CancelOnDisconnect, DrainOnShutdown
    app = Starlette(routes=...)
    app = DrainOnShutdown(CancelOnDisconnect(app), processors=[processor], budget=10.0)

`CancelOnDisconnect` runs each HTTP request's app call in its own task and
cancels that task when the server reports `http.disconnect` before the
response is complete. A handler awaiting `process_tasks` then sees the
cancellation sdax expects: running phases stop, every owed cleanup runs.
Starlette and FastAPI do not do this by themselves.

`DrainOnShutdown` holds back the app's `lifespan.shutdown` until the given
processors have no run in flight (or `budget` seconds passed), so the app's
own shutdown (closing a shared pool, say) never races a cleanup still using
it. Pure ASGI: neither needs Starlette.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = logging.getLogger("sdax.integrations.asgi")


class Drainable(Protocol):
    @property
    def in_flight(self) -> int: ...

    async def drain(self, timeout: float | None = None) -> bool: ...  # noqa: ASYNC109


class CancelOnDisconnect:
    """Cancel an HTTP request's handler when the client disconnects mid-request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One reader of the server's receive: it hands every message on to the
        # app, so the body is the app's, and notices the disconnect itself.
        inbox: asyncio.Queue[Message] = asyncio.Queue()

        async def handle() -> None:
            await self.app(scope, inbox.get, send)

        handler = asyncio.create_task(handle())
        disconnected = False

        async def watch() -> None:
            nonlocal disconnected
            while True:
                message = await receive()
                inbox.put_nowait(message)
                if message["type"] == "http.disconnect":
                    disconnected = True
                    handler.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.shield(handler)
        except asyncio.CancelledError:
            if handler.done() and disconnected:
                return  # the client is gone; nobody is left to answer
            # The server cancelled us (shutdown): pass it on, and wait for the handler's cleanup.
            handler.cancel()
            await asyncio.gather(handler, return_exceptions=True)
            raise
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


class DrainOnShutdown:
    """Let `processors` finish their runs before the app hears `lifespan.shutdown`.

    Waits at most `budget` seconds in all (None: as long as it takes); a drain
    that ran out of time is logged with the runs still in flight.
    """

    def __init__(
        self, app: ASGIApp, *, processors: Iterable[Drainable], budget: float | None = None
    ) -> None:
        self.app = app
        self.processors = tuple(processors)
        self.budget = budget
        if budget is not None and budget < 0:
            raise ValueError(f"DrainOnShutdown: budget must be >= 0 or None, got {budget!r}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def receive_then_drain() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await drain(self.processors, self.budget)
            return message

        await self.app(scope, receive_then_drain, send)


async def drain(processors: Iterable[Drainable], budget: float | None = None) -> bool:
    """Drain every processor within one shared `budget`; True if all reached zero."""
    loop = asyncio.get_running_loop()
    deadline = None if budget is None else loop.time() + budget
    drained = True
    for processor in processors:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        if not await processor.drain(timeout=left):
            drained = False
            _log.warning("drain ran out of time with %d run(s) in flight", processor.in_flight)
    return drained
