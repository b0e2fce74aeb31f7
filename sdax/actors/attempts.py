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

from sdax.actors.task_group import SdaxTaskGroup
from sdax.declarations import TaskFunction, describe_callable
from sdax.errors import annotate, flatten_exceptions


def ensure_awaitable(result: object, function: TaskFunction[Any], where: str) -> Awaitable[Any]:
    """`result` if it can be awaited; otherwise a TypeError that says what to do."""
    if type(result) is CoroutineType or inspect.isawaitable(result):
        return result
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


class RetryListener(Protocol):
    """Hears how a phase's retrying goes; the task actor reports it onwards."""

    def retrying(self, attempt: int, error: BaseException, delay: float) -> None:
        """Attempt `attempt` (1-based) failed with `error`; the next starts after `delay` s."""

    def attempt_started(self, attempt: int) -> None:
        """Attempt `attempt` (2 or more) is starting: its backoff was not cut short."""


async def run_phase(
    function: TaskFunction[Any],
    ctx: object,
    where: str,
    rng: random.Random,
    within: float | None = None,
    listener: RetryListener | None = None,
) -> None:
    """Run `function` under its policy; with `within`, all attempts together get that long."""
    if within is None:
        await run_attempts(function, ctx, where, rng, listener)
        return
    async with _Bound(within, f"cut off by cleanup_timeout={within:g} s", where):
        await run_attempts(function, ctx, where, rng, listener)


async def run_attempts(
    function: TaskFunction[Any],
    ctx: object,
    where: str,
    rng: random.Random,
    listener: RetryListener | None = None,
) -> None:
    """Call `function` until an attempt succeeds or retrying is not allowed.

    The last attempt's exception propagates with a note saying how many
    attempts were made. A cancellation that reaches the task between
    attempts (even one an attempt's task group turned into errors) ends the
    retrying with CancelledError; so does one that cuts a backoff short,
    which then has the failed attempt's error as its `__context__`.
    """
    attempts = function.retries + 1
    for attempt in range(1, attempts + 1):
        if attempt > 1 and listener is not None:
            listener.attempt_started(attempt)
        try:
            await _attempt(function, ctx, where, attempt, attempts)
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
            if listener is not None:
                listener.retrying(attempt, error, delay)
            await asyncio.sleep(delay)  # still handling `error`: an interruption chains to it


async def _attempt(
    function: TaskFunction[Any], ctx: object, where: str, attempt: int, attempts: int
) -> None:
    if function.timeout is None:
        await _call(function, ctx, where)
        return
    async with _Bound(function.timeout, _timed_out(attempt, attempts, function.timeout), where):
        await _call(function, ctx, where)


def _timed_out(attempt: int, attempts: int, seconds: float) -> str:
    if attempts == 1:
        return f"timed out after {seconds:g} s"
    return f"attempt {attempt} of {attempts} timed out after {seconds:g} s"


class _Bound:
    """`asyncio.timeout(seconds)` whose expiry is a TimeoutError saying what it cut off.

    What happened is the TimeoutError's own message, so `str(error)` tells
    it; a note says the same with the task and phase, and marks the error as
    sdax's own rather than one the function raised. A function that swallows
    the cancellation and returns anyway has still run out of time: that is a
    TimeoutError too, and its late result is discarded (nothing that depends
    on it may start on it).
    """

    __slots__ = ("_timeout", "_message", "_where")

    def __init__(self, seconds: float, message: str, where: str) -> None:
        self._timeout = asyncio.timeout(seconds)
        self._message = message
        self._where = where

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as error:
            error.args = (self._message,)  # asyncio's own carries no message
            raise self._noted(error) from error.__cause__
        if self._timeout.expired() and exc is None:
            # Expired, yet the body returned: it swallowed the cancellation. An
            # error of its own, raised instead, stays what it is (as asyncio's).
            raise self._noted(TimeoutError(self._message))

    def _noted(self, error: TimeoutError) -> TimeoutError:
        error.add_note(f"sdax: {self._where} {self._message}")
        return error


async def _call(function: TaskFunction[Any], ctx: object, where: str) -> None:
    if not function.has_task_group_argument:
        await ensure_awaitable(function.function(ctx), function, where)
        return
    async with SdaxTaskGroup(where) as group:
        await ensure_awaitable(function.function(ctx, group), function, where)


def _cancel_pending() -> bool:
    # Someone asked to cancel this task and the request was absorbed on the way
    # (a task group turned it into child errors): do not start another attempt.
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
