"""The exceptions sdax raises, and helpers to get at the ones users raised."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


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


class DependencyCycleError(ValueError):
    """The declared dependencies form a cycle; `cycle` lists it, first key repeated last."""

    def __init__(self, cycle: Sequence[Hashable]) -> None:
        self.cycle = tuple(cycle)
        path = " -> ".join(repr(key) for key in self.cycle)
        if len(self.cycle) == 2:
            detail = f"task {self.cycle[0]!r} depends on itself"
        else:
            detail = "each task depends on the next"
        super().__init__(f"dependency cycle: {path} ({detail}); remove one of these dependencies")


class SdaxExecutionError(ExceptionGroup[Exception]):
    """Every failure of one run, raised after cleanup has finished.

    The leaves are the exception objects the task functions raised (each with
    a note naming its task and phase), so `isinstance` and `except*` work on
    them directly.
    """

    def __new__(cls, message: str, exceptions: Sequence[Exception]) -> SdaxExecutionError:
        return super().__new__(cls, message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> SdaxExecutionError:  # type: ignore[override]
        # `except*` and `split()` build the matched part through derive(); keep our type.
        return SdaxExecutionError(self.message, excs)

    def leaf_exceptions(self) -> list[BaseException]:
        """The original exceptions, depth first, with nested groups flattened."""
        return flatten_exceptions(self)


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


def count_noun(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
