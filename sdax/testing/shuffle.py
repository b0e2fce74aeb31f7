"""Two seeded shuffles, so that tests cannot come to rely on an order nobody
promised while a failing seed still replays exactly:

- `shuffled_release(seed)` makes every run started inside it release each
  batch of ready tasks in a seeded random order (the tasks of one wave, the
  executes, a batch of cleanups).
- `ShuffledLoop(seed)` is an event loop that runs the callbacks ready in
  each iteration in a seeded random order, as trio does with its batches of
  ready tasks: a phase task's first step, a completion, a timer and the
  coordinator's wake-up then meet in every order the loop could produce.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from sdax.actors.coordinator import release_shuffle


@contextmanager
def shuffled_release(seed: int) -> Iterator[random.Random]:
    """Within the block (and tasks started from it), shuffle every released batch."""
    shuffler = random.Random(seed)
    token = release_shuffle.set(shuffler)
    try:
        yield shuffler
    finally:
        release_shuffle.reset(token)


class ShuffledLoop(asyncio.SelectorEventLoop):
    """A selector event loop that runs each iteration's ready callbacks in a seeded order.

    Tasks start lazily on it (a task factory is installed), so a new task's
    first step is one more ready callback to shuffle, on every Python: from
    3.12 a phase would otherwise start eagerly, inside the call that creates it.

    It reorders asyncio's own ready queue, a detail of CPython's pure-Python
    loop (3.11 to 3.13); uvloop's queue lives in C and cannot be shuffled.
    For testing only.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self._shuffler = random.Random(seed)
        self.set_task_factory(_lazy_task)  # type: ignore[arg-type]  # takes the keywords too

    def _run_once(self) -> None:
        ready: Any = self._ready  # type: ignore[attr-defined]
        if len(ready) > 1:
            callbacks = list(ready)
            self._shuffler.shuffle(callbacks)
            ready.clear()
            ready.extend(callbacks)
        super()._run_once()  # type: ignore[misc]


def _lazy_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], /, **options: Any
) -> asyncio.Task[Any]:
    return asyncio.Task(coro, loop=loop, **options)
