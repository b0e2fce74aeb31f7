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
from types import CoroutineType
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
    bound = asyncio.timeout(within)
    try:
        async with bound:
            await run_attempts(function, ctx, where, rng, listener)
    except TimeoutError as error:
        if bound.expired():
            annotate(error, f"sdax: {where} cut off by cleanup_timeout={within:g} s")
        raise


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
            await _attempt(function, ctx, where)
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


async def _attempt(function: TaskFunction[Any], ctx: object, where: str) -> None:
    if function.timeout is None:
        await _call(function, ctx, where)
        return
    deadline = asyncio.timeout(function.timeout)
    try:
        async with deadline:
            await _call(function, ctx, where)
    except TimeoutError as error:
        if deadline.expired():  # ours, not one the function raised itself
            annotate(error, f"sdax: {where} timed out after {function.timeout:g} s")
        raise


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
