"""Loop-iteration timers: `Chain` calls a function after K iterations of the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Chain:
    """Calls `fire` after `iterations` loop iterations (a chain of call_soon, no task)."""

    __slots__ = ("_loop", "_left", "_fire", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, iterations: int, fire: Callable[[], None]):
        self._loop = loop
        self._left = iterations
        self._fire = fire
        self._handle: asyncio.Handle | None = loop.call_soon(self._tick)

    def _tick(self) -> None:
        if self._left <= 0:
            self._handle = None
            self._fire()
            return
        self._left -= 1
        self._handle = self._loop.call_soon(self._tick)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
