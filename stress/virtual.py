"""A deterministic event loop: seeded ready-queue shuffles and a virtual clock.

`VirtualClockLoop(seed)` is `sdax.testing.ShuffledLoop` (each iteration's
ready callbacks run in a seeded order) whose clock is virtual: `time()`
stands still while anything is ready, and when nothing is, it jumps to the
earliest pending timer. No real time passes, so a timeout, a deadline, a
cleanup budget or a retry's backoff fires at the same point of the run
however loaded the machine is, and a seed always gives the same run.

The one other source of timing is threads. The loop says so
(`deterministic`), and stress.threads then waits, on the loop thread,
for each thread attempt to reach its block or its end before sdax hears of
the submission, and for a released thread to finish before going on, so a
thread's events land at a fixed point of the run too.

It reorders CPython's pure-Python loop internals (as ShuffledLoop does): for
the stress runner only.
"""

from __future__ import annotations

from typing import Any

from sdax.testing import ShuffledLoop


class VirtualClockLoop(ShuffledLoop):
    """ShuffledLoop on a virtual clock that advances only when nothing is ready."""

    deterministic = True  # read by stress.faults.RunContext

    def __init__(self, seed: int) -> None:
        self._now = 0.0
        super().__init__(seed)

    def time(self) -> float:
        return self._now

    def _run_once(self) -> None:
        ready: Any = self._ready  # type: ignore[attr-defined]
        if not ready and not self._stopping:  # type: ignore[attr-defined]
            scheduled: list[Any] = self._scheduled  # type: ignore[attr-defined]
            due = [handle.when() for handle in scheduled if not handle.cancelled()]
            if due:  # idle: nothing could happen before the next timer, so go there
                self._now = max(self._now, min(due))
        super()._run_once()
