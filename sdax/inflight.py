"""Which runs of one processor are in flight on each event loop, and waiting for none.

A service or worker that stops wants to let its runs finish, cleanup
included, before it closes what they use (a connection pool, say). A
processor counts its runs per event loop (asyncio state belongs to one
loop; a processor may serve several loops in different threads), and
`drain()` waits for that count to reach zero. Counting starts nothing and
cancels nothing.

A loop's entry exists only while it has runs in flight, so a loop that is
closed and gone is never kept alive by a processor that outlives it.
"""

from __future__ import annotations

import asyncio


class _LoopRuns:
    __slots__ = ("count", "drained")

    def __init__(self) -> None:
        self.count = 0  # invariant: > 0 while this entry exists
        self.drained: list[asyncio.Future[None]] = []  # woken when count reaches 0


class RunsInFlight:
    """The runs of one processor that have started and not finished, per event loop."""

    __slots__ = ("_loops",)

    def __init__(self) -> None:
        # Each thread touches only its own loop's entry.
        self._loops: dict[asyncio.AbstractEventLoop, _LoopRuns] = {}

    def began(self, loop: asyncio.AbstractEventLoop) -> None:
        runs = self._loops.get(loop)
        if runs is None:
            runs = self._loops[loop] = _LoopRuns()
        runs.count += 1

    def ended(self, loop: asyncio.AbstractEventLoop) -> None:
        runs = self._loops[loop]
        runs.count -= 1
        if not runs.count:
            del self._loops[loop]
            for waiter in runs.drained:
                if not waiter.done():
                    waiter.set_result(None)

    def count(self, loop: asyncio.AbstractEventLoop) -> int:
        runs = self._loops.get(loop)
        return 0 if runs is None else runs.count

    async def drain(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until no run is in flight on the running loop; False if `timeout` s passed first."""
        loop = asyncio.get_running_loop()
        runs = self._loops.get(loop)
        if runs is None:
            return True
        waiter = loop.create_future()
        runs.drained.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return False
        finally:
            if waiter in runs.drained:  # timed out or cancelled: stop listening
                runs.drained.remove(waiter)
        return True
