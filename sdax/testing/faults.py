"""Seeded faults in a user's processor: what each phase attempt suffers, and the log it writes.

`with_faults(processor)` returns a copy of an already built processor whose
phase functions are wrapped. Outside a monte-carlo run a wrapper only calls
the original function; inside one (a `RunLog` is current in the run's
context) each attempt first asks the log what to do:

- raise: an `InjectedFault` (or `InjectedRetryableFault`, which the default
  retry policy retries), before or after the original function;
- hang: wait until cancelled, before or after the original function, only
  where something will end the wait (the phase's own timeout or the run's
  deadline; for a post_execute, cleanup_timeout or cleanup_budget);
- slow: sleep up to `FaultRates.slow_seconds`, then call the original function.

A post_execute's own function is never skipped: its raise or hang comes after
the original function returned (so a clean processor still releases what it
opened), its slow before. What an attempt gets depends only on the run's
seed, the task key, the phase and the attempt number, never on the order in
which the loop happened to run things: the same seed gives the same faults.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, NamedTuple, TypeVar

from sdax.declarations import AsyncTask, TaskFunction
from sdax.errors import RetryableException
from sdax.graph import TaskGraph, TaskNode
from sdax.processor import AsyncDagTaskProcessor, AsyncTaskProcessor
from sdax.vocabulary import PhaseId

T = TypeVar("T")

PRE, EXECUTE, POST = PhaseId.PRE_EXEC, PhaseId.EXECUTE, PhaseId.POST_EXEC

# Fault kinds, as counted in a result.
RAISE, RAISE_RETRYABLE, HANG, SLOW, CANCEL = "raise", "raise_retryable", "hang", "slow", "cancel"
KINDS = (RAISE, RAISE_RETRYABLE, HANG, SLOW, CANCEL)


class InjectedFault(Exception):
    """A failure sdax.testing injected into a phase function (not retried by default)."""


class InjectedRetryableFault(InjectedFault, RetryableException):
    """An injected failure that the default `retryable_exceptions` retries."""


@dataclasses.dataclass(frozen=True)
class FaultRates:
    """How often each fault is injected.

    `raise_error`, `hang` and `slow` are per phase attempt (one of them at
    most; their sum is at most 1); `retryable_share` is the part of raises
    that are `InjectedRetryableFault`; `cancel` is per run: the caller's task
    is cancelled from outside at a random point (a random number of loop
    iterations, or a random delay up to `cancel_seconds`). `post_hang`
    applies to post_execute functions and only when the run has a
    cleanup_timeout or cleanup_budget to end it.
    """

    raise_error: float = 0.05
    hang: float = 0.03
    slow: float = 0.10
    cancel: float = 0.10
    retryable_share: float = 0.5
    post_hang: float = 0.0
    slow_seconds: float = 0.002
    cancel_seconds: float = 0.01

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"FaultRates.{field.name} must be a number >= 0, got {value!r}")
            if field.name not in ("slow_seconds", "cancel_seconds") and value > 1:
                raise ValueError(f"FaultRates.{field.name} is a probability, got {value!r}")
        if self.raise_error + self.hang + self.slow > 1:
            raise ValueError("FaultRates: raise_error + hang + slow must be at most 1")

    @classmethod
    def none(cls) -> FaultRates:
        """No faults at all: every run goes as the processor's own functions make it."""
        return cls(raise_error=0, hang=0, slow=0, cancel=0)


class Fault(NamedTuple):
    """One fault injected into a run (task and phase are None for the caller's cancel)."""

    kind: str
    task: Hashable
    phase: PhaseId | None
    attempt: int
    before: bool  # before the original function (False: after it returned)


class RunLog:
    """One run's fault plan and what its phase functions did, in order.

    `entries` holds (what, task, phase, attempt) tuples: "enter" and "exit"
    of every wrapped phase function. `late` lists the pre_execute and
    execute functions entered by a phase task created after the caller's
    cancellation was requested (there must be none).
    """

    def __init__(self, seed: int, rates: FaultRates, run_timeout: bool, cleanup_bound: bool):
        self.seed = seed
        self.rates = rates
        self.run_timeout = run_timeout  # a run deadline ends any hang in PRE or EXECUTE
        self.cleanup_bound = cleanup_bound  # cleanup_timeout or cleanup_budget: posts may hang
        self.entries: list[tuple[str, Hashable, PhaseId, int]] = []
        self.faults: list[Fault] = []
        self.raised: list[tuple[InjectedFault, Fault]] = []
        self.late: list[tuple[Hashable, PhaseId, int]] = []
        self._attempts: dict[tuple[Hashable, PhaseId], int] = {}
        self.entered = 0  # phase function calls so far
        self.on_enter: Callable[[int], None] | None = None  # told each call's number

    def enter(self, key: Hashable, phase: PhaseId, timed: bool) -> tuple[int, Fault | None]:
        """Log an attempt's start; return its number and the fault it is to suffer."""
        attempt = self._attempts.get((key, phase), 0) + 1
        self._attempts[key, phase] = attempt
        self.entries.append(("enter", key, phase, attempt))
        self.entered += 1
        if self.on_enter is not None:
            self.on_enter(self.entered)
        if phase is not POST and _CANCEL_REQUESTED.get():
            self.late.append((key, phase, attempt))
        return attempt, self.plan(key, phase, attempt, timed)

    def exit(self, key: Hashable, phase: PhaseId, attempt: int) -> None:
        self.entries.append(("exit", key, phase, attempt))

    def plan(self, key: Hashable, phase: PhaseId, attempt: int, timed: bool) -> Fault | None:
        """The fault of one attempt: a function of the seed and the attempt's identity only."""
        rng = random.Random(f"sdax.testing:{self.seed}:{key!r}:{phase.value}:{attempt}")
        rates, draw, before = self.rates, rng.random(), rng.random() < 0.5
        retryable = rng.random() < rates.retryable_share
        if phase is POST:
            if draw < rates.raise_error:
                return Fault(RAISE_RETRYABLE if retryable else RAISE, key, phase, attempt, False)
            if draw < rates.raise_error + rates.post_hang:
                return Fault(HANG, key, phase, attempt, False) if self.cleanup_bound else None
            if draw < rates.raise_error + rates.post_hang + rates.slow:
                return Fault(SLOW, key, phase, attempt, True)
            return None
        if draw < rates.raise_error:
            return Fault(RAISE_RETRYABLE if retryable else RAISE, key, phase, attempt, before)
        if draw < rates.raise_error + rates.hang:
            # Only where something ends the wait: the phase's timeout or the run's deadline.
            return Fault(HANG, key, phase, attempt, before) if timed or self.run_timeout else None
        if draw < rates.raise_error + rates.hang + rates.slow:
            return Fault(SLOW, key, phase, attempt, True)
        return None

    def slow_seconds(self, fault: Fault) -> float:
        where = f"{fault.task!r}:{fault.phase}:{fault.attempt}"
        rng = random.Random(f"sdax.testing:{self.seed}:{where}:slow")
        return rng.uniform(0, self.rates.slow_seconds)

    async def suffer(self, fault: Fault) -> None:
        """Do what `fault` says (raise, hang or sleep), logging it first."""
        self.faults.append(fault)
        if fault.kind == SLOW:
            await asyncio.sleep(self.slow_seconds(fault))
        elif fault.kind == HANG:
            await asyncio.get_running_loop().create_future()  # only cancellation ends this
        else:
            kind = InjectedRetryableFault if fault.kind == RAISE_RETRYABLE else InjectedFault
            error = kind(
                f"injected {fault.kind} in {fault.task!r} {fault.phase} attempt {fault.attempt} "
                f"({'before' if fault.before else 'after'} its function; seed {self.seed})"
            )
            self.raised.append((error, fault))
            raise error


# The RunLog of the run whose context this is (None: no faults, just call through).
CURRENT_RUN: contextvars.ContextVar[RunLog | None] = contextvars.ContextVar(
    "sdax_testing_run", default=None
)
# Set in a run task's context once the caller's cancellation was requested; phase
# tasks copy their creator's context, so one created afterwards sees it.
_CANCEL_REQUESTED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sdax_testing_cancel_requested", default=False
)


def mark_cancel_requested(run_context: contextvars.Context) -> None:
    """Record in a run task's context (from outside that task) that its caller cancelled it."""
    run_context.run(_CANCEL_REQUESTED.set, True)


class CancelPlan:
    """Whether and when a run's caller is cancelled from outside, drawn from the run's seed.

    The point is one of: a few loop iterations after the n-th phase function
    of the run was entered (n up to the number of phase functions, so it
    lands inside the run), a number of loop iterations from the start, or a
    delay of up to `FaultRates.cancel_seconds`. The cancel comes from a loop
    callback, never from inside a task, so that the run task's context can
    be marked (phase tasks it creates from then on see it).
    """

    def __init__(self, rng: random.Random, rates: FaultRates, functions: int) -> None:
        self.planned = rng.random() < rates.cancel
        self.mode = rng.choice(("entry", "entry", "iterations", "delay"))
        self.entry = rng.randrange(1, max(functions, 1) + 1)
        self.iterations = rng.randrange(0, 8 if self.mode == "entry" else 40)
        self.delay = rng.uniform(0, rates.cancel_seconds)
        self.fired = False
        self._handle: asyncio.Handle | None = None
        self._armed = False

    def arm(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any] | None,
        scope: contextvars.Context,
        log: RunLog,
    ) -> None:
        if not self.planned or task is None:
            return
        self._armed = True

        def fire() -> None:
            if not self._armed:
                return
            self._armed = False
            self.fired = True
            mark_cancel_requested(scope)
            task.cancel()

        def step(left: int) -> None:
            if not self._armed:
                return
            if left <= 0:
                fire()
            else:
                self._handle = loop.call_soon(step, left - 1)

        def entered(count: int) -> None:
            if count == self.entry and self._armed:
                self._handle = loop.call_soon(step, self.iterations)

        if self.mode == "entry":
            log.on_enter = entered
        elif self.mode == "iterations":
            self._handle = loop.call_soon(step, self.iterations)
        else:
            self._handle = loop.call_later(self.delay, fire)

    def disarm(self) -> None:
        self._armed = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def with_faults(processor: AsyncTaskProcessor[T]) -> AsyncTaskProcessor[T]:
    """A processor like `processor` whose phase functions suffer the current run's faults.

    Same graph, policies (timeouts, retries, limits, max_concurrency) and
    observers; only each phase function is wrapped. Runs outside
    `MonteCarlo` (no RunLog in their context) behave exactly as before.
    """
    graph: TaskGraph = processor._graph
    nodes = tuple(_wrapped_node(node) for node in graph.nodes)
    return AsyncDagTaskProcessor(dataclasses.replace(graph, nodes=nodes), processor._observers)


def _wrapped_node(node: TaskNode) -> TaskNode:
    if not node.functions:
        return node
    functions = {
        phase: _wrapped(node.key, phase, function) for phase, function in node.functions.items()
    }
    task = AsyncTask[Any](
        node.task.name,
        pre_execute=functions.get(PRE),
        execute=functions.get(EXECUTE),
        post_execute=functions.get(POST),
    )
    return TaskNode(
        index=node.index,
        key=node.key,
        task=task,
        functions=functions,
        plain=node.plain,
        limits=node.limits,
    )


def _wrapped(key: Hashable, phase: PhaseId, function: TaskFunction[Any]) -> TaskFunction[Any]:
    original = function.function
    timed = function.timeout is not None

    async def call(args: tuple[Any, ...]) -> Any:
        log = CURRENT_RUN.get()
        if log is None:
            return await original(*args)
        attempt, fault = log.enter(key, phase, timed)
        try:
            if fault is not None and fault.before:
                await log.suffer(fault)
            result = await original(*args)
            if fault is not None and not fault.before:
                await log.suffer(fault)
            return result
        finally:
            log.exit(key, phase, attempt)

    wrapper: Callable[..., Awaitable[Any]]
    if function.has_task_group_argument:

        async def phase_function_with_group(ctx: Any, group: Any) -> Any:
            return await call((ctx, group))

        wrapper = phase_function_with_group
    else:

        async def phase_function(ctx: Any) -> Any:
            return await call((ctx,))

        wrapper = phase_function
    return dataclasses.replace(function, function=wrapper)
