"""The declared phase functions of a stress processor, and the limits they use.

Every phase function is a thin shim that asks the run's context what this
attempt should do (stress.faults, stress.threads).
"""

from __future__ import annotations

from collections.abc import Coroutine, Hashable, Sequence
from typing import Any

from sdax import (
    Limit,
    LimitUse,
    TaskFunction,
    task_func,
    task_group_func,
    task_sync_func,
    task_thread_func,
)
from sdax.task_group import SdaxTaskGroup
from stress.faults import RunContext
from stress.model import Policy, Shape
from stress.threads import ThreadBody, given_executor


def limits_of(shape: Shape) -> list[Limit]:
    """New Limit objects for `shape` (identity decides sharing: one set per processor)."""
    return [Limit(spec.name, spec.capacity, shared=spec.shared) for spec in shape.limits]


def uses(policy: Policy, limits: Sequence[Limit]) -> list[Limit | LimitUse]:
    """`limits=` as declared: a bare Limit for one unit now and then, else `limit.units(k)`."""
    return [
        limits[index] if units == 1 and position % 2 == 0 else limits[index].units(units)
        for position, (index, units) in enumerate(policy.limits)
    ]


def phase_function(
    key: Hashable, phase: str, policy: Policy, limits: Sequence[Limit] = ()
) -> TaskFunction[RunContext]:
    """The declared function for `phase` of task `key`; what it does is read from ctx."""
    options: dict[str, Any] = {
        "retries": policy.retries,
        "initial_delay": policy.initial_delay,
        "backoff_factor": policy.backoff_factor,
        "retryable_exceptions": policy.retryable_exceptions(),
        "limits": uses(policy, limits),
    }
    if policy.kind == "sync":

        def run_sync(ctx: RunContext) -> None:
            ctx.call_sync(key, phase)

        return task_sync_func(run_sync, **options)
    if policy.kind == "thread":
        executor = given_executor() if policy.executor == "given" else None
        body = ThreadBody(key, phase)
        return task_thread_func(body, timeout=policy.timeout, executor=executor, **options)
    if policy.kind == "group":

        def run_group(ctx: RunContext, group: SdaxTaskGroup) -> Coroutine[Any, Any, None]:
            return ctx.call(key, phase, group)  # type: ignore[no-any-return]

        return task_group_func(run_group, timeout=policy.timeout, **options)

    def run(ctx: RunContext) -> Coroutine[Any, Any, None]:
        return ctx.call(key, phase, None)  # type: ignore[no-any-return]

    return task_func(run, timeout=policy.timeout, **options)
