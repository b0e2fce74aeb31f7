"""What users declare: phase functions with their policies, and tasks.

Everything here is immutable and validated on construction, so a mistake is
reported where it is written rather than in the middle of a run.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
import sys
from collections.abc import Awaitable, Callable, Hashable, Iterable
from concurrent.futures import Executor
from dataclasses import FrozenInstanceError, dataclass
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, Unpack

from sdax._generic import K_co, KeyDefault
from sdax.errors import RetryableException
from sdax.limits import Limit, LimitUse, as_uses
from sdax.vocabulary import PhaseId

if TYPE_CHECKING:
    from sdax.task_group import SdaxTaskGroup

T = TypeVar("T")

DEFAULT_RETRYABLE: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    RetryableException,
)


@dataclass(frozen=True, slots=True)
class TaskFunction(Generic[T]):
    """One phase function and the policy it runs under.

    `timeout` bounds each attempt (children of a task group included);
    an attempt that fails with an instance of `retryable_exceptions` (for an
    exception group: every leaf) is retried up to `retries` times, the n-th
    retry (0-based) after `initial_delay * backoff_factor**n * uniform(0.5, 1)`
    seconds. `asyncio.CancelledError` is never retried.
    """

    function: Callable[..., Awaitable[Any]]
    timeout: float | None = None
    retries: int = 0
    initial_delay: float = 1.0
    backoff_factor: float = 2.0
    retryable_exceptions: tuple[type[BaseException], ...] = DEFAULT_RETRYABLE
    has_task_group_argument: bool = False
    # What the function holds while it runs, one entry per limit (the helpers
    # below accept Limits and merge repeats: see `sdax.limits.as_uses`).
    limits: tuple[LimitUse, ...] = ()

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise TypeError(
                f"TaskFunction needs a callable, got {type(self.function).__name__}: "
                f"{self.function!r}"
            )
        name = describe_callable(self.function)
        check_signature(self.function, 2 if self.has_task_group_argument else 1)
        for field_name in ("timeout", "initial_delay", "backoff_factor"):
            value = getattr(self, field_name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                wanted = {"timeout": "a number of seconds or None", "initial_delay": "a number of"
                          " seconds", "backoff_factor": "a number"}[field_name]  # fmt: skip
                raise TypeError(
                    f"{name}: {field_name} must be {wanted}, got {type(value).__name__}: {value!r}"
                )
        if self.timeout is not None and not (self.timeout >= 0):  # also rejects NaN
            raise ValueError(f"{name}: timeout must be >= 0 or None, got {self.timeout!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise TypeError(f"{name}: retries must be an int, got {self.retries!r}")
        if self.retries < 0:
            raise ValueError(f"{name}: retries must be >= 0, got {self.retries}")
        if not (self.initial_delay >= 0) or math.isinf(self.initial_delay):
            raise ValueError(
                f"{name}: initial_delay must be a finite number >= 0, got {self.initial_delay!r}"
            )
        if not (self.backoff_factor > 0) or math.isinf(self.backoff_factor):
            raise ValueError(
                f"{name}: backoff_factor must be a finite number > 0, got {self.backoff_factor!r}"
            )
        retryable = self.retryable_exceptions
        if not isinstance(retryable, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in retryable
        ):
            raise TypeError(
                f"{name}: retryable_exceptions must be a tuple of exception classes, "
                f"got {retryable!r}"
            )
        if self.retries > 0 and not retryable:
            raise ValueError(
                f"{name}: retries={self.retries} can never happen with an empty "
                "retryable_exceptions tuple"
            )
        if not isinstance(self.limits, tuple) or not all(
            isinstance(use, LimitUse) for use in self.limits
        ):
            raise TypeError(
                f"{name}: TaskFunction(limits=...) takes a tuple of LimitUse, got "
                f"{self.limits!r}; write limit.units(n), or declare the function with "
                "task_func(..., limits=[...]), which also takes Limits"
            )
        if len({use.limit for use in self.limits}) != len(self.limits):
            raise ValueError(f"{name}: limits names a Limit twice; give it once, with its units")

    def call(self, ctx: T, task_group: SdaxTaskGroup) -> Awaitable[Any]:
        """One call of the function, as an attempt makes it (0.7.2's `call`).

        No timeout, retry or limit applies: those belong to the run.
        """
        if self.has_task_group_argument:
            return self.function(ctx, task_group)
        return self.function(ctx)

    @property
    def is_plain(self) -> bool:
        """True when a single call with no timeout, retry or task group is all it takes."""
        return self.timeout is None and self.retries == 0 and not self.has_task_group_argument


if sys.version_info < (3, 13):

    def _refuse_assignment(self: object, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    # Before 3.13 the __setattr__ that dataclasses writes for a frozen, slotted
    # class calls super() with the class it replaced, so `TaskFunction[Ctx](...)`
    # (typing then sets __orig_class__ on the instance) raised TypeError instead
    # of having the assignment refused. Refusing every assignment is what
    # frozen means anyway; __post_init__ uses object.__setattr__.
    TaskFunction.__setattr__ = _refuse_assignment  # type: ignore[method-assign]


@dataclass(frozen=True, eq=False)
class AsyncTask(KeyDefault, Generic[T, K_co]):
    """A named unit of work with up to three phases.

    Equality is identity: two tasks with the same name are still two tasks
    (a builder rejects the second one). Generic in the context and, as in
    0.7.2, the key type (`AsyncTask[Ctx]` is `AsyncTask[Ctx, Hashable]`).
    """

    name: Hashable
    pre_execute: TaskFunction[T] | None = None
    execute: TaskFunction[T] | None = None
    post_execute: TaskFunction[T] | None = None

    def __post_init__(self) -> None:
        try:
            hash(self.name)
        except TypeError:
            raise TypeError(
                f"task name {self.name!r} is not hashable ({type(self.name).__name__}); "
                "use a str, int, tuple, frozenset or enum as the key"
            ) from None
        for phase in PhaseId:
            function = getattr(self, phase.value)
            if function is not None and not isinstance(function, TaskFunction):
                raise TypeError(
                    f"task {self.name!r}: {phase.value} must be a TaskFunction or None, got "
                    f"{type(function).__name__}; wrap it, e.g. "
                    f"task_func({describe_callable(function)})"
                )
        if self.post_execute is not None and self.post_execute.limits:
            raise ValueError(
                f"task {self.name!r}: post_execute cannot declare limits; cleanup never "
                "waits for a slot (releasing must not queue behind acquiring)"
            )


class _SyncAdapter:
    """Presents a plain function as an async one; it runs inline, on the loop."""

    __slots__ = ("__wrapped__",)

    def __init__(self, function: Callable[..., object]) -> None:
        self.__wrapped__ = function

    async def __call__(self, *args: Any) -> object:
        return self.__wrapped__(*args)

    def __repr__(self) -> str:
        return f"task_sync_func({describe_callable(self.__wrapped__)})"


class _ThreadAdapter:
    """Presents a blocking function as an async one that runs in a worker thread.

    The caller's contextvars are copied into the thread. Cancelling or timing
    out stops the awaiting, not the thread: Python cannot stop a thread.
    """

    __slots__ = ("__wrapped__", "executor")

    def __init__(self, function: Callable[..., object], executor: Executor | None) -> None:
        self.__wrapped__ = function
        self.executor = executor

    async def __call__(self, *args: Any) -> object:
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, self.__wrapped__, *args)
        return await loop.run_in_executor(self.executor, call)

    def __repr__(self) -> str:
        return f"task_thread_func({describe_callable(self.__wrapped__)})"


def check_signature(function: Callable[..., object], arguments: int) -> None:
    """Reject at declaration what could only fail (or silently do nothing) in a run.

    For the sync and thread adapters the wrapped function is checked: an async
    function there would return a coroutine nobody awaits. For async phase
    functions only what can be told without calling is rejected (generator
    functions, a `-> None` annotation, the wrong number of parameters), so a
    plain function that returns an awaitable stays allowed.
    """
    adapter = _adapter_name(function)
    target = getattr(function, "__wrapped__", function) if adapter else function
    name = describe_callable(target)
    if adapter and _is_async(target):
        raise TypeError(
            f"{adapter}({name}): {name} is an async function; it would return a coroutine "
            "that is never awaited. Declare it with task_func"
        )
    if not adapter:
        if inspect.isasyncgenfunction(target):
            raise TypeError(
                f"{name} is an async generator function: calling it returns an async "
                "generator, which cannot be awaited; a phase function is `async def f(ctx)`"
            )
        if _is_plain_generator(target):
            raise TypeError(
                f"{name} is a generator function: calling it returns a generator, which "
                "cannot be awaited; a phase function is `async def f(ctx)`"
            )
        if not _is_async(target) and _returns_none(target):
            raise TypeError(
                f"{name} is a plain function annotated `-> None`, so it returns nothing to "
                "await; make it `async def`, or declare it with task_sync_func"
            )
    _check_arity(target, name, arguments)


def _adapter_name(function: object) -> str | None:
    if isinstance(function, _SyncAdapter):
        return "task_sync_func"
    if isinstance(function, _ThreadAdapter):
        return "task_thread_func"
    return None


def _is_async(function: object) -> bool:
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        return True
    # A callable object whose __call__ is async.
    return not inspect.isroutine(function) and inspect.iscoroutinefunction(
        vars(type(function)).get("__call__")
    )


def _is_plain_generator(function: object) -> bool:
    # @types.coroutine generators are awaitable: their code carries CO_ITERABLE_COROUTINE.
    code = getattr(inspect.unwrap(function), "__code__", None)  # type: ignore[arg-type]
    iterable_coroutine = code is not None and bool(code.co_flags & inspect.CO_ITERABLE_COROUTINE)
    return inspect.isgeneratorfunction(function) and not iterable_coroutine


def _returns_none(function: Callable[..., object]) -> bool:
    try:
        annotation = inspect.signature(function).return_annotation
    except (TypeError, ValueError):
        return False
    return annotation is None or annotation == "None"


def _check_arity(function: Callable[..., object], name: str, arguments: int) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: nothing to check
        return
    try:
        signature.bind(*range(arguments))
    except TypeError:
        wanted = "(ctx)" if arguments == 1 else "(ctx, task_group)"
        parameters = signature.replace(return_annotation=inspect.Signature.empty)
        raise TypeError(
            f"{name}{parameters} cannot be called as {name}{wanted}; "
            f"sdax calls a phase function with {arguments} positional argument"
            f"{'' if arguments == 1 else 's'}"
        ) from None


def describe_callable(function: object) -> str:
    """A short, readable name for a user's callable, for error messages."""
    wrapped = getattr(function, "__wrapped__", None)
    if isinstance(function, (_SyncAdapter, _ThreadAdapter)) and wrapped is not None:
        function = wrapped
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    return str(name) if name else repr(function)


class RetryPolicy(TypedDict, total=False):
    """The policy keywords every phase-function helper takes.

    Each defaults to the TaskFunction field of the same name: no retries,
    then a first delay of 1 s doubling each time, retrying TimeoutError,
    ConnectionError and RetryableException; no limits. `limits` also takes
    Limit objects (one unit each) and merges repeats.
    """

    retries: int
    initial_delay: float
    backoff_factor: float
    retryable_exceptions: tuple[type[BaseException], ...]
    limits: Iterable[Limit | LimitUse]


class PhasePolicy(RetryPolicy, total=False):
    """The policy keywords of a phase function that awaits: a timeout for each attempt too."""

    timeout: float | None


_RETRY_KEYWORDS = RetryPolicy.__optional_keys__
_PHASE_KEYWORDS = PhasePolicy.__optional_keys__


def task_func(
    function: Callable[[T], Awaitable[object]], **policy: Unpack[PhasePolicy]
) -> TaskFunction[T]:
    """Declare an async phase function called as `function(ctx)`."""
    return TaskFunction(function, **_checked(function, "task_func", _PHASE_KEYWORDS, policy))


def task_group_func(
    function: Callable[[T, SdaxTaskGroup], Awaitable[object]], **policy: Unpack[PhasePolicy]
) -> TaskFunction[T]:
    """Declare an async phase function called as `function(ctx, task_group)`.

    Each attempt owns the children it creates: it ends when they all have,
    a failing child fails it, and its timeout covers them.
    """
    checked = _checked(function, "task_group_func", _PHASE_KEYWORDS, policy)
    return TaskFunction(function, has_task_group_argument=True, **checked)


task_group_task = task_group_func


def task_sync_func(
    function: Callable[[T], object], **policy: Unpack[RetryPolicy]
) -> TaskFunction[T]:
    """Declare a plain function called as `function(ctx)` inline on the event loop.

    It blocks the loop while it runs, so it has no timeout; keep it short.
    """
    if not callable(function):
        raise TypeError(f"task_sync_func needs a callable, got {type(function).__name__}")
    checked = _checked(function, "task_sync_func", _RETRY_KEYWORDS, policy)
    return TaskFunction(_SyncAdapter(function), **checked)


def task_thread_func(
    function: Callable[[T], object],
    *,
    executor: Executor | None = None,
    **policy: Unpack[PhasePolicy],
) -> TaskFunction[T]:
    """Declare a blocking function called as `function(ctx)` in a worker thread.

    It runs in `executor` (asyncio's default executor when None) with a copy
    of the caller's contextvars. A timeout or a cancellation stops the
    waiting and is reported as usual, but the thread itself runs on to the
    end of the function: threads cannot be killed, so make the function
    finish on its own (or check a flag you set in cleanup).
    """
    if not callable(function):
        raise TypeError(f"task_thread_func needs a callable, got {type(function).__name__}")
    checked = _checked(function, "task_thread_func", _PHASE_KEYWORDS, policy)
    return TaskFunction(_ThreadAdapter(function, executor), **checked)


def _checked(
    function: object, helper: str, allowed: frozenset[str], policy: RetryPolicy
) -> dict[str, Any]:
    """`policy` as TaskFunction fields: unknown keywords refused, limits normalised."""
    unknown = policy.keys() - allowed
    if unknown:
        name = min(unknown)
        why = ""
        if name == "timeout":  # only task_sync_func refuses it
            why = " (it runs inline on the loop, where nothing can interrupt it)"
        raise TypeError(
            f"{helper}({describe_callable(function)}) got an unexpected keyword argument "
            f"{name!r}{why}; it takes {', '.join(sorted(allowed))}"
        )
    fields: dict[str, Any] = dict(policy)
    if "limits" in fields:
        try:
            fields["limits"] = as_uses(fields["limits"])
        except TypeError as error:
            raise TypeError(f"{describe_callable(function)}: {error}") from None
    return fields


def join(name: Hashable) -> AsyncTask[Any]:
    """A task with no phases: a synchronisation point in the graph."""
    return AsyncTask(name)


PhaseArgument = TaskFunction[T] | Callable[[T], Awaitable[object]] | None


def task(
    name: Hashable,
    *,
    pre_execute: PhaseArgument[T] = None,
    execute: PhaseArgument[T] = None,
    post_execute: PhaseArgument[T] = None,
) -> AsyncTask[T]:
    """Declare a task; a bare async function gets the defaults of `task_func`."""
    if pre_execute is None and execute is None and post_execute is None:
        raise ValueError(
            f"task {name!r} has no phase function; give at least one of pre_execute, "
            "execute, post_execute (or use join() for a pure synchronisation node)"
        )
    try:
        return AsyncTask(
            name,
            pre_execute=_as_task_function(pre_execute),
            execute=_as_task_function(execute),
            post_execute=_as_task_function(post_execute),
        )
    except TypeError as error:
        if str(error).startswith(f"task {name!r}"):
            raise
        raise TypeError(f"task {name!r}: {error}") from None


def _as_task_function(function: PhaseArgument[T]) -> TaskFunction[T] | None:
    if function is None or isinstance(function, TaskFunction):
        return function
    return task_func(function)
