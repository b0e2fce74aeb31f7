"""The run's error: the primary failure, failures by task, a readable message (issue 6)."""

from __future__ import annotations

import asyncio

import pytest

from sdax import AsyncDagTaskProcessor, SdaxExecutionError, flatten_exceptions
from tests.support import HOLD, OK, Probe, Raise


async def failing_run() -> tuple[SdaxExecutionError, list[BaseException]]:
    probe = Probe()
    first = ValueError("bad token")
    later = [KeyError("missing"), OSError("close failed")]
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(probe.task("Auth", pre=Raise(first, hold=True), post=Raise(later[1])))
        .add_task(probe.task("Flags", pre=HOLD, post=OK))
        .add_task(probe.task("Cache", execute=Raise(later[0])), depends_on=())
        .build()
    )

    async def fail_auth_once_flags_runs() -> None:
        await probe.started("Flags", "pre_execute")
        probe.release("Auth", "pre_execute")

    helper = asyncio.create_task(fail_auth_once_flags_runs())
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None)
    await helper
    return caught.value, [first, *later]


async def test_primary_is_the_failure_that_put_the_run_on_its_failure_path() -> None:
    error, (first, _, close_error) = await failing_run()
    assert error.primary is first
    assert error.failures[-1].error is close_error


async def test_by_task_groups_failures_per_task_in_time_order() -> None:
    error, (first, _, close_error) = await failing_run()
    assert error.by_task() == {"Auth": [("pre_execute", first), ("post_execute", close_error)]}


async def test_the_message_lists_each_failing_task_phase_and_exception_on_its_own_line() -> None:
    error, _ = await failing_run()
    assert str(error).splitlines() == [
        "1 task failed:",
        "  'Auth' pre_execute: ValueError: bad token",
        "  'Auth' post_execute: OSError: close failed",
    ]


async def test_except_star_and_leaf_exceptions_keep_working_with_the_new_fields() -> None:
    error, (first, _, close_error) = await failing_run()
    assert flatten_exceptions(error) == error.leaf_exceptions() == [first, close_error]
    matched: list[BaseExceptionGroup[BaseException]] = []
    try:
        raise error
    except* OSError as oses:
        matched.append(oses)
    except* ValueError as values:
        matched.append(values)
    oses_part, values_part = matched
    assert isinstance(oses_part, SdaxExecutionError)
    assert oses_part.primary is close_error
    assert oses_part.by_task() == {"Auth": [("post_execute", close_error)]}
    assert values_part.exceptions == (first,)
