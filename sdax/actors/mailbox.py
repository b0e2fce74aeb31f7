"""The queue the coordinator reads its events from.

An asyncio.Queue does more than an actor needs here (size limits, task
accounting, a waiter deque, a future per `get()`). A mailbox is a list and
at most one waiter future: `put()` never blocks, and the single reader
drains everything that is there before it waits, so a future is created
once per loop iteration at most, not once per message.

Before it sleeps on a future, the reader yields to the loop once, behind
the work it has just started or woken: a phase that finishes in its first
step (or 3.12's eager phase that resumes once) has then usually reported,
and the reader carries on in the same loop iteration with no future, no
wake-up callback and no second iteration. Where nothing has arrived, the
yield cost one extra step of the reader's task; so the first yield that
finds nothing ends the yielding for the mailbox's life (one run): phases
that suspend, as I/O does, rarely report within a loop iteration, and a
run's phases tend to be alike. At worst the reader parks at once, as it
would without the yield.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Generator
from typing import Generic, TypeVar

M = TypeVar("M")


@types.coroutine
def _yield_once() -> Generator[None, None, None]:
    # A bare yield, as in asyncio.sleep(0): the task is rescheduled at the
    # back of the ready queue, behind everything already there.
    yield


class Mailbox(Generic[M]):
    """A single-reader, unbounded message queue for one event loop."""

    __slots__ = ("pending", "_waiter", "_yielding", "_yielded")

    def __init__(self) -> None:
        # What has been delivered and not yet taken, oldest first. Public so the
        # reader's "anything there?" test is an attribute load, not a call to
        # __len__ (a Python-level slot call, several per loop iteration); the
        # reader takes messages only with `take_all()`.
        self.pending: list[M] = []
        self._waiter: asyncio.Future[None] | None = None
        self._yielding = True  # until a yield before parking finds nothing
        self._yielded = False  # the last wait() was a yield, and nothing was taken since

    def put(self, message: M) -> None:
        """Deliver `message`; wakes the reader if it is waiting. Never blocks."""
        self.pending.append(message)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def take_all(self) -> list[M]:
        """Every message delivered so far, oldest first, leaving the mailbox empty.

        Messages put while the batch is being handled wait for the next batch.
        """
        messages = self.pending
        self.pending = []
        self._yielded = False
        return messages

    def wait(self) -> Awaitable[None]:
        """What the reader awaits when nothing is pending (look first): after it, look again.

        A single yield to the loop first (see the module docstring), then a
        future that `put` completes. Not a coroutine: the reader awaits the
        yield or the future itself, one level of coroutine less on each
        resumption. Cancellation propagates unchanged.
        """
        if self._yielding:
            if not self._yielded:
                self._yielded = True
                return _yield_once()  # let what is ready run first: it may be about to reply
            self._yielding = False  # the yield found nothing: park from now on
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        return waiter
