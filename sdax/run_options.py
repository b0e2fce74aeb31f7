"""The options of one run: declared once, checked where they are passed.

`RunKeywords` is the one declaration of the keywords `process_tasks()` and
`open()` take, and also what a coordinator reads: `run_options()` checks
them before anything runs (so a mistake is reported at the call that made
it) and returns them with every observer of the run in one tuple.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypedDict

from sdax.observers import RunObserver


class RunKeywords(TypedDict, total=False):
    """The keywords of `process_tasks()` and `open()`; each defaults to "none".

    - `timeout`: seconds for PRE and EXECUTE together; when it passes, running
      work is cancelled, cleanup runs, and the run raises RunTimeoutError.
    - `cleanup_timeout`: seconds for each post_execute, all its attempts.
    - `cleanup_budget`: seconds for the whole of cleanup; each post it cancels
      or skips is reported as a CleanupAbandonedError.
    - `rng`: the random.Random that draws retry jitter.
    - `observers`: RunObservers that hear this run, after the processor's own.
    - `tag`: a str every event and the report carry (a request or job id).
    """

    timeout: float | None
    cleanup_timeout: float | None
    cleanup_budget: float | None
    rng: random.Random | None
    observers: Sequence[RunObserver]
    tag: str | None


# The options of every plain run. Never written to: a checked RunKeywords is read-only.
DEFAULT_OPTIONS = RunKeywords()

_SECONDS = ("timeout", "cleanup_timeout", "cleanup_budget")


def run_options(
    keywords: RunKeywords,
    where: str,
    *,
    first: Sequence[RunObserver] = (),
    last: Sequence[RunObserver] = (),
) -> RunKeywords:
    """Check the keywords passed to `where`; `first` and `last` hear the run around its own."""
    unknown = keywords.keys() - RunKeywords.__optional_keys__
    if unknown:
        raise TypeError(
            f"{where}() got an unexpected keyword argument {min(unknown)!r}; "
            f"the run options are {', '.join(RunKeywords.__annotations__)} (and report)"
        )
    for name in _SECONDS:
        seconds = keywords.get(name)
        if seconds is not None:
            check_seconds(name, seconds)
    rng = keywords.get("rng")
    if rng is not None and not isinstance(rng, random.Random):
        raise TypeError(
            f"rng must be a random.Random (e.g. random.Random(seed)) or None, got {rng!r}"
        )
    tag = keywords.get("tag")
    if tag is not None and not isinstance(tag, str):
        raise TypeError(f"tag must be a str or None, got {type(tag).__name__}: {tag!r}")
    own = checked_observers(keywords.get("observers", ()), "observers=")
    return {**keywords, "observers": (*first, *own, *last)}


def check_seconds(name: str, seconds: object) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds or None, got {type(seconds).__name__}: {seconds!r}"
        )
    if not seconds >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, got {seconds!r}")


def checked_observers(observers: object, where: str) -> tuple[RunObserver, ...]:
    """`observers` if it is a list or tuple of RunObservers, else a TypeError saying why."""
    if isinstance(observers, RunObserver):
        raise TypeError(
            f"{where} takes a list of observers, not a single {type(observers).__name__}: "
            f"wrap it in a list, [{type(observers).__name__}(...)]"
        )
    if not isinstance(observers, (list, tuple)):
        raise TypeError(f"{where} takes a list or tuple of RunObservers, got {observers!r}")
    for observer in observers:
        if not isinstance(observer, RunObserver):
            raise TypeError(
                f"{where}: {observer!r} is not a RunObserver; subclass sdax.RunObserver "
                "and override the callbacks you need"
            )
    return tuple(observers)
