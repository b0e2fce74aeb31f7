"""Running one phase function under its policy: attempts, timeout, retries.

Only the task actor uses this; the coordinator never sees an attempt.
Timeouts use `asyncio.timeout` per attempt (not `wait_for`, which can
swallow a cancellation on 3.11: gh-86296).
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable
from types import CoroutineType, TracebackType
from typing import Any, Protocol

from sdax.declarations import TaskFunction, describe_callable
from sdax.errors import annotate, flatten_exceptions
from sdax.task_group import SdaxTaskGroup


def ensure_awaitable(
    result: object, function: TaskFunction[Any], where: str | PhaseListener
) -> Awaitable[Any]:
    """`result` if it can be awaited; otherwise a TypeError that says what to do."""
    if type(result) is CoroutineType or inspect.isawaitable(result):
        return result
    if not isinstance(where, str):
        where = where.where
    raise TypeError(
        f"{where}: {describe_callable(function.function)} returned "
        f"{type(result).__name__}, which cannot be awaited; declare plain functions "
        "with task_sync_func(...)"
    )


def is_retryable(error: BaseException, retryable: tuple[type[BaseException], ...]) -> bool:
    """Whether `error` may be retried: for a group, every leaf must be retryable."""
    if isinstance(error, asyncio.CancelledError):
        return False
    leaves = flatten_exceptions(error)
    return all(
        isinstance(leaf, retryable) and not isinstance(leaf, asyncio.CancelledError)
        for leaf in leaves
    )


def backoff_delay(function: TaskFunction[Any], retry: int, rng: random.Random) -> float:
    """Seconds to wait before retry number `retry` (0-based), with jitter."""
    return function.initial_delay * function.backoff_factor**retry * rng.uniform(0.5, 1.0)


class PhaseListener(Protocol):
    """The phase being run, as the task actor tells it: where it is, and how retrying goes."""

    @property
    def where(self) -> str:
        """`task 'K' phase`, for messages and notes (formatted only when one is needed)."""

    def retrying(self, attempt: int, error: BaseException, delay: float) -> None:
        """Attempt `attempt` (1-based) failed with `error`; the next starts after `delay` s."""

    def attempt_started(self, attempt: int) -> None:
        """Attempt `attempt` (2 or more) is starting: its backoff was not cut short."""


async def run_phase(
    function: TaskFunction[Any],
    ctx: object,
    rng: random.Random,
    within: float | None,
    listener: PhaseListener,
) -> None:
    """Run `function` under its policy; with `within`, all attempts together get that long."""
    if within is None:
        await run_attempts(function, ctx, rng, listener)
        return
    async with _Bound(within, listener, cleanup=True):
        await run_attempts(function, ctx, rng, listener)


async def run_attempts(
    function: TaskFunction[Any], ctx: object, rng: random.Random, listener: PhaseListener
) -> None:
    """Call `function` until an attempt succeeds or retrying is not allowed.

    The last attempt's exception propagates with a note saying how many
    attempts were made. A cancellation that reaches the task between
    attempts (even one an attempt's task group turned into errors) ends the
    retrying with CancelledError; so does one that cuts a backoff short,
    which then has the failed attempt's error as its `__context__`.
    """
    # One coroutine for every attempt, its timeout included: each level of
    # coroutine is paid again on every resumption of the phase function.
    attempts = function.retries + 1
    timeout = function.timeout
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            listener.attempt_started(attempt)
        try:
            if timeout is None:
                await _call(function, ctx, listener)
            else:
                async with _Bound(timeout, listener, attempt=attempt, attempts=attempts):
                    await _call(function, ctx, listener)
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if attempt == attempts or not is_retryable(error, function.retryable_exceptions):
                if attempts > 1:
                    annotate(error, f"sdax: attempt {attempt} of {attempts}")
                raise
            if _cancel_pending():
                raise asyncio.CancelledError() from error
            delay = backoff_delay(function, attempt - 1, rng)
            listener.retrying(attempt, error, delay)
            await asyncio.sleep(delay)  # still handling `error`: an interruption chains to it


class _Bound:
    """`asyncio.timeout(seconds)` whose expiry is a TimeoutError saying what it cut off.

    What happened is the TimeoutError's own message, so `str(error)` tells
    it; a note says the same with the task and phase, and marks the error as
    sdax's own rather than one the function raised. A function that swallows
    the cancellation and returns anyway has still run out of time: that is a
    TimeoutError too, and its late result is discarded (nothing that depends
    on it may start on it). The message is only formatted on expiry.
    """

    __slots__ = ("_timeout", "_seconds", "_listener", "_cleanup", "_attempt", "_attempts")

    def __init__(
        self,
        seconds: float,
        listener: PhaseListener,
        *,
        cleanup: bool = False,
        attempt: int = 1,
        attempts: int = 1,
    ) -> None:
        self._timeout = asyncio.timeout(seconds)
        self._seconds = seconds
        self._listener = listener
        self._cleanup = cleanup  # the post's cleanup_timeout, not an attempt's timeout
        self._attempt = attempt
        self._attempts = attempts

    def __aenter__(self) -> Awaitable[Any]:
        # The timeout's own awaitable, not a coroutine around it: one level less.
        return self._timeout.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as error:
            error.args = (self._message(),)  # asyncio's own carries no message
            raise self._noted(error) from error.__cause__
        if self._timeout.expired() and exc is None:
            # Expired, yet the body returned: it swallowed the cancellation. An
            # error of its own, raised instead, stays what it is (as asyncio's).
            raise self._noted(TimeoutError(self._message()))

    def _message(self) -> str:
        seconds = self._seconds
        if self._cleanup:
            return f"cut off by cleanup_timeout={seconds:g} s"
        if self._attempts == 1:
            return f"timed out after {seconds:g} s"
        return f"attempt {self._attempt} of {self._attempts} timed out after {seconds:g} s"

    def _noted(self, error: TimeoutError) -> TimeoutError:
        error.add_note(f"sdax: {self._listener.where} {error.args[0]}")
        return error


def _call(function: TaskFunction[Any], ctx: object, listener: PhaseListener) -> Awaitable[Any]:
    """What an attempt awaits: the function's awaitable, or its run inside a task group."""
    if function.has_task_group_argument:
        return _call_with_group(function, ctx, listener.where)
    return ensure_awaitable(function.function(ctx), function, listener)


async def _call_with_group(function: TaskFunction[Any], ctx: object, where: str) -> None:
    async with SdaxTaskGroup(where) as group:
        await ensure_awaitable(function.function(ctx, group), function, where)


def _cancel_pending() -> bool:
    # Someone asked to cancel this task and the request was absorbed on the way
    # (a task group turned it into child errors): do not start another attempt.
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
