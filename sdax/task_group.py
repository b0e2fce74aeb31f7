"""The children scope that a `task_group_func` attempt gets as its second argument.

Shaped after asyncio.TaskGroup (completion by callback, one small abort
method, the exit the only place that waits) with two deliberate differences:
the mode is one enum rather than several booleans, and children live in an
insertion-ordered dict so they are cancelled in creation order, not in an
order that depends on memory addresses.

Whose cancellation is it? The scope cancels the attempt's body itself when a
child fails, and takes that request back (`uncancel`) once the body has
stopped. Any other cancellation (the attempt's timeout, sdax stopping the
phase) is propagated after the children are gone, unless a child failed:
real errors take priority, and the task actor, which knows when it asked
for a cancellation, decides what the phase's outcome is.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from sdax.errors import count_noun

R = TypeVar("R")


class _Scope(enum.Enum):
    OPEN = "open"  # the body is running; children may be added
    CLOSING = "closing"  # the body has finished; waiting for the children
    ABORTING = "aborting"  # something failed: children are being cancelled
    CLOSED = "closed"  # every child has finished


class SdaxTaskGroup:
    """Creates child tasks owned by one attempt of one phase function.

    The attempt ends only when every child has; a child that fails (raises
    anything but CancelledError) cancels the body and the other children,
    and the attempt fails with an ExceptionGroup of the errors. Cancelling
    the attempt cancels the children.
    """

    __slots__ = (
        "_owner",
        "_parent",
        "_children",
        "_errors",
        "_base_error",
        "_state",
        "_drained",
        "_body_cancel_requested",
    )

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._parent: asyncio.Task[Any] | None = None
        self._children: dict[asyncio.Task[Any], None] = {}
        self._errors: list[Exception] = []
        self._base_error: BaseException | None = None
        self._state = _Scope.OPEN
        self._drained: asyncio.Future[None] | None = None
        self._body_cancel_requested = False

    def create_task(
        self,
        coro: Coroutine[Any, Any, R],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[R]:
        """Start `coro` as a child of this attempt and return its task."""
        if self._state is not _Scope.OPEN and not (
            self._state is _Scope.CLOSING and self._children
        ):
            coro.close()  # never started: close it so it warns of nothing
            raise RuntimeError(
                f"the task group of {self._owner} is {self._state.value}: "
                "create children while the attempt is still running"
            )
        child = asyncio.get_running_loop().create_task(coro, name=name, context=context)
        self._children[child] = None
        child.add_done_callback(self._on_child_done)
        return child

    async def __aenter__(self) -> SdaxTaskGroup:
        self._parent = asyncio.current_task()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        parent = self._parent
        assert parent is not None, "SdaxTaskGroup used without async with"
        if self._state is _Scope.OPEN:
            self._state = _Scope.CLOSING  # the body is over: nothing left to cancel in it
        outside_cancel: BaseException | None = None
        if isinstance(exc, asyncio.CancelledError):
            if not self._body_cancel_requested:
                outside_cancel = exc
        elif exc is not None:
            self._record(exc)
        if exc is not None and self._state is not _Scope.ABORTING:
            self._abort()

        while self._children:
            self._drained = parent.get_loop().create_future()
            try:
                await self._drained
            except asyncio.CancelledError as cancel:
                outside_cancel = cancel
                if self._state is not _Scope.ABORTING:
                    self._abort()
        self._state = _Scope.CLOSED

        if self._body_cancel_requested and parent.uncancel() > 0 and outside_cancel is None:
            # Our request collided with someone else's: theirs still stands.
            outside_cancel = asyncio.CancelledError()
        if self._base_error is not None:
            raise self._base_error
        if self._errors:
            errors, self._errors = self._errors, []  # drop our references: tracebacks are heavy
            raise ExceptionGroup(f"child tasks of {self._owner} failed", errors)
        if outside_cancel is not None:
            raise outside_cancel

    def _on_child_done(self, child: asyncio.Task[Any]) -> None:
        del self._children[child]
        if not child.cancelled() and (error := child.exception()) is not None:
            self._record(error)
            if self._state is not _Scope.ABORTING:
                self._abort()
        if not self._children and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _record(self, error: BaseException) -> None:
        if isinstance(error, Exception):
            self._errors.append(error)
        elif self._base_error is None:
            # KeyboardInterrupt, SystemExit and the like are not grouped: they end the run.
            self._base_error = error

    def _abort(self) -> None:
        body_running = self._state is _Scope.OPEN
        self._state = _Scope.ABORTING
        for child in list(self._children):
            child.cancel()
        if body_running and self._parent is not None and not self._body_cancel_requested:
            self._body_cancel_requested = True
            self._parent.cancel()

    def __repr__(self) -> str:
        children = count_noun(len(self._children), "child")
        return f"<SdaxTaskGroup of {self._owner}: {self._state.value}, {children}>"
