"""Concurrency limits: how many phase functions may hold a resource at once.

A `Limit` is a declaration, like a TaskFunction: a name and a capacity. A
phase function declares what it uses, `task_func(fetch, limits=[db])` or,
weighted, `limits=[db.units(2)]`; `builder.build(max_concurrency=N)` caps
every pre_execute and execute of a run at N at once.

A limit is per run unless `shared=True`: then one pool of `capacity` units
serves every run that uses this Limit object on the same event loop (a
connection pool shared by all requests, say).

A shared limit shows its pool on the running loop, read-only, for health
checks: `in_use` (units held by running phases), `free` (units left) and
`waiting` (phases queued for it). A per-run limit has no one pool to show
(each run has its own), so reading these on it raises `TypeError`.

Cleanup never waits for a slot: post_execute functions cannot declare
limits, since releasing resources must never queue behind acquiring them.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, eq=False)
class Limit:
    """A named capacity; identity decides which uses share it."""

    name: str
    capacity: int
    shared: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a Limit needs a non-empty str name, got {self.name!r}")
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise TypeError(f"limit {self.name!r}: capacity must be an int, got {self.capacity!r}")
        if self.capacity < 1:
            raise ValueError(f"limit {self.name!r}: capacity must be >= 1, got {self.capacity}")

    def units(self, count: int) -> LimitUse:
        """Use `count` units of this limit (a heavier user of the same resource)."""
        return LimitUse(self, count)

    @property
    def in_use(self) -> int:
        """Units held right now by running phases on the running loop (shared limits only)."""
        return self.capacity - self.free

    @property
    def free(self) -> int:
        """Units no phase holds right now on the running loop (shared limits only)."""
        return self._usage()[0]

    @property
    def waiting(self) -> int:
        """Phases queued for this limit right now on the running loop (shared limits only)."""
        return self._usage()[1]

    def _usage(self) -> tuple[int, int]:
        if not self.shared:
            raise TypeError(
                f"limit {self.name!r} is per run: each run has its own pool, so there is no "
                "one usage to read; declare it Limit(..., shared=True) to watch it"
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"limit {self.name!r}: its usage belongs to an event loop; read it on one"
            ) from None
        pool = shared_pools(loop).get(self)
        if pool is None:  # nothing has used it on this loop yet
            return self.capacity, 0
        return pool.free, len(pool.queue)

    def __repr__(self) -> str:
        shared = ", shared" if self.shared else ""
        return f"Limit({self.name!r}, {self.capacity}{shared})"


@dataclass(frozen=True)
class LimitUse:
    """`units` of `limit`, taken for the whole of a phase (all its attempts)."""

    limit: Limit
    units: int

    def __post_init__(self) -> None:
        if isinstance(self.units, bool) or not isinstance(self.units, int):
            raise TypeError(f"limit {self.limit.name!r}: units must be an int, got {self.units!r}")
        if not 1 <= self.units <= self.limit.capacity:
            raise ValueError(
                f"limit {self.limit.name!r}: units must be between 1 and its capacity "
                f"{self.limit.capacity}, got {self.units} (such a phase could never start)"
            )


def as_uses(limits: object) -> tuple[LimitUse, ...]:
    """Normalise a `limits=` argument: Limits and LimitUses, merged per limit."""
    if isinstance(limits, (Limit, LimitUse)):
        raise TypeError(f"limits must be a collection, not a single {type(limits).__name__}")
    merged: dict[Limit, int] = {}
    for item in limits:  # type: ignore[attr-defined]
        use = LimitUse(item, 1) if isinstance(item, Limit) else item
        if not isinstance(use, LimitUse):
            raise TypeError(f"limits takes Limit or Limit.units(n) values, got {item!r}")
        merged[use.limit] = merged.get(use.limit, 0) + use.units
    return tuple(LimitUse(limit, units) for limit, units in merged.items())


class Pool:
    """The free units of one limit and the requests queued for them, first in, first out.

    One per run for a per-run limit; one per event loop for a shared limit.
    The admission of each run (sdax.actors.admission) takes and serves them.
    """

    __slots__ = ("free", "queue")

    def __init__(self, capacity: int) -> None:
        self.free = capacity
        self.queue: deque[Any] = deque()  # the admission's requests


_shared_lock = threading.Lock()
_shared_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Limit, Pool]] = (
    weakref.WeakKeyDictionary()
)


def shared_pools(loop: asyncio.AbstractEventLoop) -> dict[Limit, Pool]:
    """The pools of the shared limits on `loop` (asyncio state belongs to one loop)."""
    with _shared_lock:
        pools = _shared_by_loop.get(loop)
        if pools is None:
            pools = _shared_by_loop[loop] = {}
        return pools
