"""The exceptions sdax raises, and helpers to get at the ones users raised."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from sdax.vocabulary import RunOutcome

if TYPE_CHECKING:
    from sdax.report import RunReport


class RetryableException(Exception):
    """Base class for errors that the default retry policy retries.

    An `Exception` (not a `BaseException`), so it can live in an exception group.
    """


class PhaseCancelledError(Exception):
    """A phase function ended in a `CancelledError` that sdax did not request.

    It raised one itself or let one leak from an inner await. That is a
    failure, never a silent success: its dependents do not start. The original
    `CancelledError` is the `__cause__`.
    """


class RunTimeoutError(TimeoutError):
    """The run's deadline (`timeout=`) expired before PRE and EXECUTE were done.

    Raised after cleanup. What else failed before the deadline is in
    `failures` (an SdaxExecutionError), or None.
    """

    def __init__(self, timeout: float | None, failures: SdaxExecutionError | None) -> None:
        also = "" if failures is None else f"; {failures.message} as well (see .failures)"
        super().__init__(f"run deadline of {timeout:g} s expired; cleanup ran{also}")
        self.timeout = timeout
        self.failures = failures
        self.report: RunReport | None = None  # set when the run was asked for a report

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from what __init__ takes, not from the message in `args`.
        return type(self), (self.timeout, self.failures), self.__dict__


class CleanupAbandonedError(Exception):
    """A post_execute the run owed was cut short or never started: the cleanup budget expired.

    `cleanup_budget=` bounds a run's whole cleanup stage. When it expires, a
    post that is still running is cancelled (`started` is True) and a post
    not yet started is skipped (`started` is False); each is reported as one
    of these among the run's failures, so abandoned cleanup is never silent.
    """

    def __init__(self, task: Hashable, phase: str, budget: float, started: bool) -> None:
        what = "was cancelled while it ran" if started else "never started"
        super().__init__(
            f"cleanup abandoned: the run's cleanup budget of {budget:g} s expired; it {what}"
        )
        self.task = task
        self.phase = phase
        self.budget = budget
        self.started = started

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.task, self.phase, self.budget, self.started), self.__dict__


class DependencyCycleError(ValueError):
    """The declared dependencies form a cycle; `cycle` lists it, first key repeated last."""

    def __init__(self, cycle: Sequence[Hashable]) -> None:
        self.cycle = tuple(cycle)
        path = " -> ".join(repr(key) for key in self.cycle)
        if len(self.cycle) == 2:
            detail = f"task {self.cycle[0]!r} depends on itself"
        else:
            detail = "each task depends on the next"
        # 0.7.2's phrase first ("Cycle detected"): code matches on it.
        super().__init__(f"Cycle detected: {path} ({detail}); remove one of these dependencies")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.cycle,), self.__dict__


class TaskFailure(NamedTuple):
    """One failed phase of one task: what `SdaxExecutionError.failures` lists."""

    key: Hashable
    phase: str
    error: Exception


class SdaxExecutionError(ExceptionGroup[Exception]):
    """Every failure of one run, raised after cleanup has finished.

    The leaves are the exception objects the task functions raised (each with
    a note naming its task and phase), so `isinstance` and `except*` work on
    them directly. `primary` is the failure that came first in time, the one
    that put the run on its failure path; `by_task()` groups the rest.
    """

    failures: tuple[TaskFailure, ...]
    report: RunReport | None = None  # set when the run was asked for a report

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[Exception],
        failures: Sequence[TaskFailure] = (),
    ) -> SdaxExecutionError:
        self = super().__new__(cls, message, exceptions)
        # Kept in time order; only those whose exception is in this group
        # (a group derived by `except*` carries the matching part).
        kept = {id(error) for error in exceptions}
        self.failures = tuple(f for f in failures if id(f.error) in kept)
        return self

    def __init__(
        self,
        message: str,
        exceptions: Sequence[Exception],
        failures: Sequence[TaskFailure] = (),
    ) -> None:
        super().__init__(message, exceptions)

    @property
    def primary(self) -> Exception:
        """The first failure in time: usually the one worth reporting.

        When that failure is an exception group (a task group's children),
        its first leaf: the exception a child actually raised.
        """
        first = self.failures[0].error if self.failures else self.exceptions[0]
        leaf = flatten_exceptions(first)[0]
        return leaf if isinstance(leaf, Exception) else first

    def by_task(self) -> dict[Hashable, list[tuple[str, Exception]]]:
        """Task key -> [(phase, exception), ...], each in the order they failed."""
        grouped: dict[Hashable, list[tuple[str, Exception]]] = {}
        for failure in self.failures:
            grouped.setdefault(failure.key, []).append((failure.phase, failure.error))
        return grouped

    def derive(self, excs: Sequence[Exception]) -> SdaxExecutionError:  # type: ignore[override]
        # `except*` and `split()` build the matched part through derive(); keep our type.
        return SdaxExecutionError(self.message, excs, self.failures)

    def leaf_exceptions(self) -> list[BaseException]:
        """The original exceptions, depth first, with nested groups flattened."""
        return flatten_exceptions(self)

    def flatten_exceptions(self) -> list[BaseException]:
        """The same as `leaf_exceptions()` and the module function `flatten_exceptions(error)`."""
        return flatten_exceptions(self)

    def __str__(self) -> str:
        if not self.failures:
            return super().__str__()
        lines = [self.message + ":"]
        lines.extend(_summary_line(f) for f in self.failures)
        return "\n".join(lines)


def _summary_line(failure: TaskFailure) -> str:
    """One failure as `'Key' phase: Type: message`, task and phase said once.

    A task group's failure lists the leaves its children raised, not the group.
    """
    where = f"task {failure.key!r} {failure.phase}"
    leaves = flatten_exceptions(failure.error)
    parts = []
    for leaf in leaves:
        message = str(leaf)
        # sdax's own messages start with the task and phase: do not say them twice.
        if message.startswith(where):
            message = message[len(where) :].lstrip(": ")
        parts.append(f"{type(leaf).__name__}: {message}" if message else type(leaf).__name__)
    return f"  {failure.key!r} {failure.phase}: " + "; ".join(parts)


def run_outcome(raised: BaseException | None) -> RunOutcome:
    """How a run ended, read from what it raised (None: it returned).

    The one reading of a run's exception: observers, reports, `sdax.testing`
    and the stress runner all classify runs with it.
    """
    if raised is None:
        return RunOutcome.OK
    if isinstance(raised, RunTimeoutError):
        return RunOutcome.TIMED_OUT
    if isinstance(raised, SdaxExecutionError):
        return RunOutcome.FAILED
    if isinstance(raised, asyncio.CancelledError):
        return RunOutcome.CANCELLED
    return RunOutcome.INTERRUPTED


def flatten_exceptions(error: BaseException) -> list[BaseException]:
    """The leaves of `error`: itself unless it is an exception group, depth first."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(reversed(current.exceptions))
        else:
            leaves.append(current)
    return leaves


def annotate(error: BaseException, note: str) -> BaseException:
    """Add `note` to every leaf of `error` (PEP 678) and return `error`."""
    for leaf in flatten_exceptions(error):
        leaf.add_note(note)
    return error


_IRREGULAR_PLURALS = {"child": "children"}


def count_noun(count: int, noun: str) -> str:
    """`1 task`, `2 tasks`, `1 child`, `3 children`."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {_IRREGULAR_PLURALS.get(noun, noun + 's')}"
