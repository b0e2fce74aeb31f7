"""The fault matrix: one named test per failure scenario, each asserting the
exact outcome SPEC.md gives, on both loops.

Most scenarios live beside the feature they exercise; this module holds the
rest and is the index. Where each one is tested:

- pre of B raises while A's pre hangs; the next wave is never released:
  test_run_semantics.py::test_a_pre_failure_cancels_running_pres_starts_nothing_and_skips_execute
- execute failure while siblings run:
  test_run_semantics.py::test_an_execute_failure_does_not_cancel_the_other_executes
- post failure with siblings:
  test_run_semantics.py::test_a_failed_cleanup_does_not_stop_the_others_and_is_reported
- a post that hangs while the run is cancelled twice:
  test_shielded_cleanup.py::test_a_second_cancellation_during_cleanup_interrupts_nothing
- cancellation arriving exactly as a phase completes:
  test_cancellation.py::test_a_cancellation_arriving_as_a_phase_completes_still_cleans_up_exactly_once
- a timeout firing during retry backoff: below
- retries exhausted on TimeoutError:
  test_attempts.py::test_retries_exhausted_on_timeouts_report_the_last_timeout
- a group with mixed retryable / non-retryable leaves:
  test_attempts.py::test_a_group_is_retried_only_when_every_leaf_is_retryable
- a phase raising CancelledError itself:
  test_attempts.py::test_cancelled_error_is_never_retried_and_fails_the_phase
- KeyboardInterrupt and SystemExit from pre, execute and post:
  test_cancellation.py::test_a_base_exception_from_a_task_cancels_the_rest_cleans_up_and_propagates_unchanged
- a task-group child failing after the parent returned:
  test_attempts.py::test_a_child_failing_after_its_parent_returned_fails_the_phase_and_cancels_siblings
- a sync function raising in task_sync_func:
  test_attempts.py::test_a_sync_function_runs_inline_and_its_exception_is_reported
- a phase function returning a non-awaitable:
  test_run_semantics.py::test_a_phase_function_returning_a_non_awaitable_fails_with_a_clear_type_error
- 1,000 concurrent runs with random failures, contexts isolated:
  test_concurrency.py::test_a_thousand_concurrent_runs_with_random_failures_stay_isolated
- an enclosing asyncio.timeout expiring in each phase:
  test_cancellation.py::test_an_enclosing_timeout_expiring_in_any_phase_surfaces_as_timeout_error
- a reverse-declared 100,000-task chain: test_building.py (build and run)
- unhashable names, duplicates, self-dependency, cycles, missing dependencies,
  a bare string as depends_on: test_building.py and test_declarations.py
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from sdax import AsyncDagTaskProcessor, AsyncTask, RunTimeoutError, task_func
from sdax.vocabulary import CancelReason


def retrying_for_an_hour() -> tuple[AsyncDagTaskProcessor[None], asyncio.Event, list[str]]:
    """A task whose pre fails once and would retry after an hour; its post logs."""
    failed_once = asyncio.Event()
    cleaned: list[str] = []

    async def flaky(ctx: object) -> None:
        failed_once.set()
        raise ConnectionError("try again in an hour")

    async def cleanup(ctx: object) -> None:
        cleaned.append("post")

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(
            AsyncTask(
                "Flaky",
                pre_execute=task_func(flaky, retries=3, initial_delay=3600),
                post_execute=task_func(cleanup),
            )
        )
        .build()
    )
    return processor, failed_once, cleaned


async def test_a_run_deadline_firing_during_retry_backoff_ends_the_task_as_cancelled() -> None:
    processor, failed_once, cleaned = retrying_for_an_hour()
    with pytest.raises(RunTimeoutError) as caught:
        await processor.process_tasks(None, timeout=0, report=True)
    assert failed_once.is_set()
    assert caught.value.failures is None  # the retried error was not final: not a failure
    report = caught.value.report
    assert report is not None
    phase = report.phase("Flaky", "pre_execute")
    assert (phase.outcome, phase.cancel_reason) == ("cancelled", CancelReason.DEADLINE)
    assert len(phase.retries) == 1
    assert cleaned == ["post"]


async def test_an_enclosing_timeout_firing_during_retry_backoff_surfaces_as_timeout_error() -> None:
    processor, failed_once, cleaned = retrying_for_an_hour()
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(None) as deadline:
            waiter = asyncio.ensure_future(failed_once.wait())
            waiter.add_done_callback(lambda _: deadline.reschedule(loop.time()))
            await processor.process_tasks(None)
    assert cleaned == ["post"]


def test_every_scenario_in_the_index_names_a_test_that_exists() -> None:
    tests_dir = Path(__file__).parent
    references = re.findall(r"(test_\w+\.py)::(test_\w+)", __doc__ or "")
    assert len(references) == 14
    for module, name in references:
        source = (tests_dir / module).read_text()
        assert f"def {name}(" in source, f"{module}::{name} is gone: update the index"
