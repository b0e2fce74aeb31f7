"""The queue the coordinator reads its events from.

An asyncio.Queue does more than an actor needs here (size limits, task
accounting, a waiter deque, a future per `get()`). A mailbox is a deque and
at most one waiter future: `put()` never blocks, and the single reader
drains everything that is there before it waits, so a future is created
once per loop iteration at most, not once per message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

M = TypeVar("M")


class Mailbox(Generic[M]):
    """A single-reader, unbounded message queue for one event loop."""

    __slots__ = ("_messages", "_waiter")

    def __init__(self) -> None:
        self._messages: deque[M] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, message: M) -> None:
        """Deliver `message`; wakes the reader if it is waiting. Never blocks."""
        self._messages.append(message)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def poll(self) -> M | None:
        """The oldest message, or None when the mailbox is empty."""
        return self._messages.popleft() if self._messages else None

    def take_all(self) -> deque[M]:
        """Every message delivered so far, oldest first, leaving the mailbox empty.

        Messages put while the batch is being handled wait for the next batch.
        """
        messages = self._messages
        self._messages = deque()
        return messages

    async def wait(self) -> None:
        """Return once a message is there. Cancellation propagates unchanged."""
        if self._messages:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def __len__(self) -> int:
        return len(self._messages)
