"""Declarations: TaskFunction, AsyncTask and the helpers that make them (SPEC §2).

Everything is checked where it is written: a bad policy or a bad phase value
fails at construction with a message naming the function or task and what is
wrong with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest

import sdax
from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    RetryableException,
    SdaxExecutionError,
    SdaxTaskGroup,
    TaskFunction,
    join,
    task,
    task_func,
    task_group_func,
    task_group_task,
    task_sync_func,
)


async def fetch_user(ctx: object) -> None:
    """A phase function whose name the error messages below must mention."""


async def fan_out(ctx: object, task_group: SdaxTaskGroup) -> None:
    """A task group phase function."""


def run_alone(declared: AsyncTask[Any], ctx: object) -> Any:
    """The coroutine of a run of a one-task processor."""
    processor = AsyncDagTaskProcessor[Any].builder().add_task(declared).build()
    return processor.process_tasks(ctx)


# --------------------------------------------------------------------------- TaskFunction


def test_a_task_function_has_the_documented_defaults() -> None:
    function = TaskFunction(fetch_user)
    assert function.function is fetch_user
    assert function.timeout is None
    assert function.retries == 0
    assert function.initial_delay == 1.0
    assert function.backoff_factor == 2.0
    assert function.retryable_exceptions == (TimeoutError, ConnectionError, RetryableException)
    assert function.has_task_group_argument is False


def test_a_task_function_is_frozen() -> None:
    function = TaskFunction(fetch_user)
    with pytest.raises(dataclasses.FrozenInstanceError):
        function.timeout = 5.0  # type: ignore[misc]


def test_a_task_function_is_slotted() -> None:
    function = TaskFunction(fetch_user)
    assert "__slots__" in vars(TaskFunction)
    assert not hasattr(function, "__dict__")


def test_a_subscripted_task_function_can_be_constructed() -> None:
    function = TaskFunction[dict[str, int]](fetch_user, timeout=2.0)
    assert isinstance(function, TaskFunction)
    assert function.timeout == 2.0


def test_a_task_function_keeps_every_policy_it_is_given() -> None:
    function = TaskFunction(
        fan_out,
        timeout=3.0,
        retries=4,
        initial_delay=0.25,
        backoff_factor=1.5,
        retryable_exceptions=(KeyError,),
        has_task_group_argument=True,
    )
    assert (function.timeout, function.retries) == (3.0, 4)
    assert (function.initial_delay, function.backoff_factor) == (0.25, 1.5)
    assert function.retryable_exceptions == (KeyError,)
    assert function.has_task_group_argument is True


INVALID_POLICIES = [
    pytest.param({"timeout": -1.0}, r"fetch_user.*timeout.*-1", id="negative timeout"),
    pytest.param({"retries": -1}, r"fetch_user.*retries.*-1", id="negative retries"),
    pytest.param(
        {"initial_delay": -0.5}, r"fetch_user.*initial_delay.*-0\.5", id="negative initial_delay"
    ),
    pytest.param({"backoff_factor": 0.0}, r"fetch_user.*backoff_factor.*0", id="zero backoff"),
    pytest.param(
        {"backoff_factor": -2.0}, r"fetch_user.*backoff_factor.*-2", id="negative backoff"
    ),
    pytest.param(
        {"retries": 3, "retryable_exceptions": ()},
        r"fetch_user.*retries.*retryable_exceptions",
        id="retries with nothing retryable",
    ),
]


@pytest.mark.parametrize(("policy", "message"), INVALID_POLICIES)
def test_an_invalid_policy_is_a_value_error_naming_the_function_and_the_field(
    policy: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TaskFunction(fetch_user, **policy)


@pytest.mark.parametrize(("policy", "message"), INVALID_POLICIES)
def test_task_func_rejects_an_invalid_policy_in_the_same_way(
    policy: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        task_func(fetch_user, **policy)


def test_task_group_func_rejects_an_invalid_policy_naming_its_function() -> None:
    with pytest.raises(ValueError, match=r"fan_out.*timeout"):
        task_group_func(fan_out, timeout=-3.0)


def test_task_sync_func_rejects_an_invalid_policy_naming_the_plain_function() -> None:
    def count_rows(ctx: object) -> None:
        pass

    with pytest.raises(ValueError, match=r"count_rows.*retries"):
        task_sync_func(count_rows, retries=-2)


def test_the_boundary_values_of_every_policy_are_accepted() -> None:
    function = TaskFunction(
        fetch_user, timeout=0.0, retries=0, initial_delay=0.0, backoff_factor=1e-9
    )
    assert function.timeout == 0.0
    assert TaskFunction(fetch_user, retries=0, retryable_exceptions=()).retries == 0


@pytest.mark.parametrize("not_callable", ["fetch_user", 42, None], ids=["str", "int", "None"])
def test_a_function_that_is_not_callable_is_a_type_error_showing_what_was_given(
    not_callable: object,
) -> None:
    with pytest.raises(TypeError, match=rf"callable.*{type(not_callable).__name__}"):
        TaskFunction(not_callable)  # type: ignore[arg-type]


def test_a_non_callable_is_rejected_by_every_helper() -> None:
    for helper in (task_func, task_group_func, task_sync_func):
        with pytest.raises(TypeError, match="callable"):
            helper("not a function")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- AsyncTask


def test_an_async_task_has_a_name_and_three_optional_phases() -> None:
    declared = AsyncTask("Upload")
    assert declared.name == "Upload"
    assert (declared.pre_execute, declared.execute, declared.post_execute) == (None, None, None)


def test_an_async_task_is_frozen() -> None:
    declared = AsyncTask("Upload", execute=task_func(fetch_user))
    with pytest.raises(dataclasses.FrozenInstanceError):
        declared.name = "Download"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        declared.execute = None  # type: ignore[misc]


def test_a_subscripted_async_task_can_be_constructed() -> None:
    declared = AsyncTask[dict[str, int]]("Upload", execute=task_func(fetch_user))
    assert isinstance(declared, AsyncTask)
    assert declared.name == "Upload"


def test_two_async_tasks_with_the_same_fields_are_still_two_tasks() -> None:
    function = task_func(fetch_user)
    first = AsyncTask("Upload", execute=function)
    second = AsyncTask("Upload", execute=function)
    assert first == first
    assert first != second
    assert len({first, second}) == 2


@pytest.mark.parametrize("phase", ["pre_execute", "execute", "post_execute"])
def test_a_phase_that_is_not_a_task_function_is_a_type_error_naming_task_and_phase(
    phase: str,
) -> None:
    with pytest.raises(TypeError, match=rf"'Upload'.*{phase}.*TaskFunction"):
        AsyncTask("Upload", **{phase: fetch_user})


# --------------------------------------------------------------------------- helpers


def test_task_func_declares_an_async_function_with_its_policy() -> None:
    function = task_func(
        fetch_user,
        timeout=1.0,
        retries=2,
        initial_delay=0.1,
        backoff_factor=3.0,
        retryable_exceptions=(OSError,),
    )
    assert isinstance(function, TaskFunction)
    assert function.function is fetch_user
    assert (function.timeout, function.retries) == (1.0, 2)
    assert (function.initial_delay, function.backoff_factor) == (0.1, 3.0)
    assert function.retryable_exceptions == (OSError,)
    assert function.has_task_group_argument is False


def test_task_func_with_no_options_equals_a_default_task_function() -> None:
    assert task_func(fetch_user) == TaskFunction(fetch_user)


HELPERS: list[Callable[..., object]] = [task_func, task_group_func, task_sync_func]


@pytest.mark.parametrize("helper", HELPERS, ids=lambda helper: helper.__name__)
def test_every_option_of_a_helper_is_keyword_only(helper: Callable[..., object]) -> None:
    with pytest.raises(TypeError):
        helper(fetch_user, 5.0)


def test_task_group_func_marks_the_function_as_taking_a_task_group() -> None:
    function = task_group_func(fan_out, timeout=2.0, retries=1)
    assert function.function is fan_out
    assert function.has_task_group_argument is True
    assert (function.timeout, function.retries) == (2.0, 1)


def test_task_group_task_is_another_name_for_task_group_func() -> None:
    assert task_group_task is task_group_func


async def test_a_task_group_function_receives_the_context_and_a_task_group() -> None:
    received: list[tuple[object, object]] = []
    child_ran = asyncio.Event()

    async def child() -> None:
        child_ran.set()

    async def spawn(ctx: object, task_group: SdaxTaskGroup) -> None:
        received.append((ctx, task_group))
        task_group.create_task(child(), name="child")

    ctx = object()
    await run_alone(AsyncTask("Spawn", execute=task_group_func(spawn)), ctx)
    [(got_ctx, got_group)] = received
    assert got_ctx is ctx
    assert isinstance(got_group, SdaxTaskGroup)
    assert child_ran.is_set()


def test_task_sync_func_has_no_timeout_option() -> None:
    def count_rows(ctx: object) -> None:
        pass

    assert task_sync_func(count_rows).timeout is None
    with pytest.raises(TypeError, match=r"task_sync_func\(.*count_rows\).*'timeout'.*inline"):
        task_sync_func(count_rows, timeout=1.0)  # type: ignore[call-arg]


def test_a_misspelt_policy_keyword_is_refused_naming_the_helper_and_the_function() -> None:
    with pytest.raises(TypeError, match=r"task_func\(.*fetch_user\).*'retires'.*retries"):
        task_func(fetch_user, retires=2)  # type: ignore[call-arg]
    # Not a policy keyword, though TaskFunction has such a field: the helper decides it.
    with pytest.raises(TypeError, match="has_task_group_argument"):
        task_func(fetch_user, has_task_group_argument=True)  # type: ignore[call-arg]


def test_task_function_holds_limit_uses_and_the_helpers_make_them() -> None:
    db = sdax.Limit("db", 4)
    assert task_func(fetch_user, limits=[db, db.units(2)]).limits == (db.units(3),)
    with pytest.raises(TypeError, match=r"tuple of LimitUse.*limit\.units\(n\)"):
        TaskFunction(fetch_user, limits=(db,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names a Limit twice"):
        TaskFunction(fetch_user, limits=(db.units(1), db.units(1)))


def test_task_sync_func_keeps_its_retry_policy() -> None:
    def count_rows(ctx: object) -> None:
        pass

    function = task_sync_func(count_rows, retries=2, initial_delay=0.5, backoff_factor=1.5)
    assert (function.retries, function.initial_delay, function.backoff_factor) == (2, 0.5, 1.5)
    assert function.has_task_group_argument is False


async def test_task_sync_func_runs_the_plain_function_inline_on_the_event_loop() -> None:
    seen: list[tuple[object, int, asyncio.AbstractEventLoop]] = []

    def record(ctx: object) -> None:
        seen.append((ctx, threading.get_ident(), asyncio.get_running_loop()))

    ctx = object()
    await run_alone(AsyncTask("Record", pre_execute=task_sync_func(record)), ctx)
    assert seen == [(ctx, threading.get_ident(), asyncio.get_running_loop())]


def test_join_is_a_task_with_a_name_and_no_phases() -> None:
    node = join("Ready")
    assert isinstance(node, AsyncTask)
    assert node.name == "Ready"
    assert (node.pre_execute, node.execute, node.post_execute) == (None, None, None)


def test_task_wraps_bare_async_functions_with_the_task_func_defaults() -> None:
    declared = task("Upload", pre_execute=fetch_user, post_execute=fetch_user)
    assert declared.name == "Upload"
    assert declared.pre_execute == task_func(fetch_user)
    assert declared.execute is None
    assert declared.post_execute == task_func(fetch_user)


def test_task_keeps_a_task_function_it_is_given() -> None:
    function = task_func(fetch_user, retries=3)
    assert task("Upload", execute=function).execute is function


def test_task_takes_its_phases_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        task("Upload", fetch_user)  # type: ignore[misc]


def test_task_with_no_phase_at_all_is_a_value_error_naming_the_task() -> None:
    with pytest.raises(ValueError, match=r"'Upload'.*no phase"):
        task("Upload")
    with pytest.raises(ValueError, match=r"'Upload'"):
        task("Upload", pre_execute=None, execute=None, post_execute=None)


# --------------------------------------------------------------------------- RetryableException


def test_retryable_exception_is_an_ordinary_exception() -> None:
    assert issubclass(RetryableException, Exception)


def test_retryable_exception_can_live_in_an_exception_group() -> None:
    error = RetryableException("flaky")
    group = ExceptionGroup("run failed", [error, ValueError("other")])
    assert group.exceptions[0] is error
    caught: list[BaseException] = []
    try:
        raise group
    except* RetryableException as matched:
        caught.extend(matched.exceptions)
    except* ValueError:
        pass
    assert caught == [error]


def test_a_subclass_of_retryable_exception_is_retryable_by_default() -> None:
    class ServiceBusy(RetryableException):
        pass

    defaults = TaskFunction(fetch_user).retryable_exceptions
    assert isinstance(ServiceBusy(), defaults)


# --------------------------------------------------------------------------- what a phase returns


async def test_a_phase_function_returning_a_non_awaitable_fails_with_a_type_error() -> None:
    def not_async(ctx: object) -> int:
        return 7

    declared = AsyncTask("Compute", execute=TaskFunction(not_async))  # type: ignore[arg-type]
    with pytest.raises(SdaxExecutionError) as caught:
        await run_alone(declared, None)
    [error] = caught.value.leaf_exceptions()
    assert isinstance(error, TypeError)
    message = str(error)
    for expected in ("'Compute'", "execute", "int", "task_sync_func"):
        assert expected in message


# ------------------------------------------- what can be told without calling the function


async def an_async_step(ctx: object) -> None:
    """Async: wrong for the sync and thread helpers."""


@pytest.mark.parametrize("helper", [task_sync_func, sdax.task_thread_func])
def test_the_sync_and_thread_helpers_reject_an_async_function(helper: Any) -> None:
    with pytest.raises(TypeError, match=r"an_async_step is an async function.*task_func"):
        helper(an_async_step)


def test_a_generator_function_is_rejected_where_it_is_declared() -> None:
    def steps(ctx: object) -> Any:
        yield ctx

    async def async_steps(ctx: object) -> Any:
        yield ctx

    with pytest.raises(TypeError, match="steps is a generator function"):
        task_func(steps)
    with pytest.raises(TypeError, match="async_steps is an async generator function"):
        task_func(async_steps)


def test_a_plain_function_annotated_none_is_rejected_one_returning_an_awaitable_is_not() -> None:
    def returns_nothing(ctx: object) -> None:
        pass

    def returns_a_coroutine(ctx: object) -> Any:
        return an_async_step(ctx)

    with pytest.raises(TypeError, match=r"returns_nothing is a plain function.*task_sync_func"):
        task_func(returns_nothing)
    assert task_func(returns_a_coroutine).function is returns_a_coroutine


def test_the_wrong_number_of_parameters_is_rejected_and_task_names_the_task() -> None:
    async def no_context() -> None:
        pass

    with pytest.raises(TypeError, match=r"no_context\(\) cannot be called as \S*no_context\(ctx\)"):
        task_func(no_context)
    with pytest.raises(TypeError, match=r"fetch_user\(ctx: 'object'\) cannot be called as"):
        task_group_func(fetch_user)
    with pytest.raises(TypeError, match=r"^task 'Load': \S*no_context\(\)"):
        task("Load", execute=no_context)


@pytest.mark.parametrize("option", ["timeout", "initial_delay", "backoff_factor"])
def test_a_policy_number_given_as_a_string_is_refused_with_its_name(option: str) -> None:
    with pytest.raises(TypeError, match=rf"fetch_user: {option} must be a number.*got str: '2'"):
        task_func(fetch_user, **{option: "2"})
