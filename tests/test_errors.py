"""The run's error: the primary failure, failures by task, a readable message; and every
sdax exception survives pickle and copy."""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest

import sdax
from sdax import (
    AsyncDagTaskProcessor,
    CleanupAbandonedError,
    DependencyCycleError,
    PhaseCancelledError,
    RetryableException,
    RunReport,
    RunTimeoutError,
    SdaxExecutionError,
    TaskFailure,
    flatten_exceptions,
)
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


# -- exceptions travel: pickle and copy (SPEC §4, "Exceptions travel") ---------------


def sample_errors() -> list[BaseException]:
    """One instance of every exception class sdax defines, with its attributes filled in."""
    leaf = ValueError("bad token")
    leaf.add_note("sdax: raised by task 'Auth' pre_execute")
    failures = SdaxExecutionError(
        "1 task failed", [leaf], [TaskFailure("Auth", "pre_execute", leaf)]
    )
    abandoned = CleanupAbandonedError(("db", 1), "post_execute", 0.5, started=True)
    abandoned.add_note("sdax: task ('db', 1) post_execute abandoned by the run's cleanup budget")
    return [
        RetryableException("try again"),
        PhaseCancelledError("task 'A' pre_execute ended with a CancelledError"),
        RunTimeoutError(2.0, failures),
        RunTimeoutError(0.25, None),
        CleanupAbandonedError("B", "post_execute", 0.0, started=False),
        abandoned,
        DependencyCycleError(["A", "B", "A"]),
        DependencyCycleError(["A", "A"]),
        failures,
    ]


def test_every_exception_class_sdax_exports_has_a_sample() -> None:
    exported = {
        value
        for value in vars(sdax).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert exported == {type(error) for error in sample_errors()}


def same_error(copied: BaseException, original: BaseException) -> None:
    assert type(copied) is type(original)
    assert str(copied) == str(original)
    assert repr(copied.args) == repr(original.args)
    assert getattr(copied, "__notes__", None) == getattr(original, "__notes__", None)
    for name, value in vars(original).items():
        if name == "__notes__":
            continue
        copied_value = getattr(copied, name)
        if isinstance(value, BaseException):
            same_error(copied_value, value)
        elif isinstance(value, tuple) and value and isinstance(value[0], TaskFailure):
            assert [(f.key, f.phase, str(f.error)) for f in copied_value] == [
                (f.key, f.phase, str(f.error)) for f in value
            ]
        else:
            assert copied_value == value, name


@pytest.mark.parametrize(
    "travel",
    [
        lambda error: pickle.loads(pickle.dumps(error)),
        copy.copy,
        copy.deepcopy,
    ],
    ids=["pickle", "copy", "deepcopy"],
)
def test_every_sdax_exception_survives_pickle_and_copy(
    travel: Callable[[BaseException], BaseException],
) -> None:
    for original in sample_errors():
        same_error(travel(original), original)


async def test_a_failed_runs_error_and_report_survive_pickle() -> None:
    error, _ = await failing_run()
    error.report = RunReport(run_id=7, tag="job-1", outcome="failed")
    copied = pickle.loads(pickle.dumps(error))
    assert isinstance(copied, SdaxExecutionError)
    assert str(copied) == str(error)
    assert copied.report == error.report
    assert [failure.key for failure in copied.failures] == ["Auth", "Auth"]
    assert copied.primary is copied.failures[0].error  # identities kept inside the copy


async def test_a_run_timeout_error_from_a_real_run_survives_pickle() -> None:
    probe = Probe()
    processor = AsyncDagTaskProcessor[None].builder().add_task(probe.task("A", pre=HOLD)).build()
    with pytest.raises(RunTimeoutError) as caught:
        await processor.process_tasks(None, timeout=0)
    copied = pickle.loads(pickle.dumps(caught.value))
    assert type(copied) is RunTimeoutError
    assert (copied.timeout, str(copied)) == (0, str(caught.value))


# ------------------------------------------------------- summaries a newcomer can read


async def test_a_task_group_failure_reads_as_what_the_child_raised() -> None:
    from sdax import AsyncDagTaskProcessor, AsyncTask, SdaxTaskGroup, task_group_func

    child_error = ValueError("child broke")

    async def child() -> None:
        raise child_error

    async def spawn(ctx: None, group: SdaxTaskGroup) -> None:
        group.create_task(child())

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("T", execute=task_group_func(spawn)))
        .build()
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None)
    assert caught.value.primary is child_error
    assert str(caught.value) == "1 task failed:\n  'T' execute: ValueError: child broke"


async def test_a_summary_names_the_task_and_phase_once() -> None:
    from sdax import AsyncDagTaskProcessor, AsyncTask, task_func

    def not_async(ctx: None) -> Any:
        return 42

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("SyncTask", pre_execute=task_func(not_async)))
        .build()
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None)
    line = str(caught.value).splitlines()[1]
    assert line.startswith("  'SyncTask' pre_execute: TypeError: ")
    assert line.count("SyncTask") == 1


def test_flatten_exceptions_is_also_a_method() -> None:
    leaf = KeyError("k")
    error = SdaxExecutionError("1 task failed", [ExceptionGroup("g", [leaf])])
    assert error.flatten_exceptions() == [leaf] == error.leaf_exceptions()


def test_counts_in_reprs_agree_with_their_number() -> None:
    from sdax import AsyncDagTaskProcessor, AsyncTask, task_func
    from sdax.errors import count_noun

    async def step(ctx: None) -> None:
        pass

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("Only", pre_execute=task_func(step)))
        .build()
    )
    assert repr(processor) == "<AsyncDagTaskProcessor of 1 task>"
    assert repr(processor.analysis) == "<TaskAnalysis 1 task, 1 pre wave, 0 post waves>"
    assert [count_noun(n, "child") for n in (1, 2)] == ["1 child", "2 children"]


def test_submodules_are_attributes_of_sdax_without_their_own_import() -> None:
    import subprocess
    import sys

    code = "import sdax; print(sdax.timeline.to_chrome_trace.__name__, sdax.testing.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["to_chrome_trace", "sdax.testing"]
