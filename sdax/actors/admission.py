"""Admission: the slots a phase must hold before it starts.

A phase that declares limits asks for all of them before it starts; until
then it has not started (no cleanup is owed for it). Requests take their
limits one at a time in one global order (by name), which rules out the
circular wait of a deadlock, and each pool serves its queue first in,
first out, so a heavy request is not starved by lighter ones behind it.

A grant that cannot be made on the spot is made later, when some phase
gives units back, possibly in another run sharing the pool: the waiting
run then hears of it as a `SlotsGranted` event in its mailbox, like any
other news. A run that stops going forward withdraws what it still waits
for and returns what it had taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sdax.actors.mailbox import Mailbox
from sdax.actors.messages import Event, SlotsGranted
from sdax.limits import Limit, LimitUse, Pool, shared_pools
from sdax.vocabulary import PhaseId


def _serve(pool: Pool) -> None:
    """Grant the pool's queued requests, in order, while the head's units are free."""
    queue = pool.queue
    while queue:
        head: _Request = queue[0]
        units = head.uses[head.step].units
        if units > pool.free:
            return
        queue.popleft()
        pool.free -= units
        head.step += 1
        head.admission._continue(head)


class _Request:
    """One phase's claim: `uses` in acquisition order, the first `step` of them held."""

    __slots__ = ("admission", "node", "phase", "uses", "step", "pools")

    def __init__(
        self, admission: Admission, node: int, phase: PhaseId, uses: Sequence[LimitUse]
    ) -> None:
        self.admission = admission
        self.node = node
        self.phase = phase
        self.uses = uses
        self.step = 0
        self.pools = [admission._pool(use.limit) for use in uses]


class Admission:
    """One run's side of its limits."""

    __slots__ = ("_outbox", "_run_pools", "_shared_pools", "_waiting", "_held")

    def __init__(self, outbox: Mailbox[Event]) -> None:
        self._outbox = outbox
        self._run_pools: dict[Limit, Pool] = {}
        self._shared_pools = shared_pools(asyncio.get_running_loop())
        self._waiting: dict[int, _Request] = {}  # not (yet) fully granted, or granted unclaimed
        self._held: dict[int, _Request] = {}  # claimed: the phase runs holding all its units

    def request(self, node: int, phase: PhaseId, uses: Sequence[LimitUse]) -> bool:
        """Ask for `uses`; True when granted on the spot (the phase may start now)."""
        request = _Request(self, node, phase, uses)
        if self._take(request):
            self._held[node] = request
            return True
        self._waiting[node] = request
        return False

    def claim(self, node: int) -> bool:
        """Accept a grant announced by SlotsGranted; False if it was withdrawn meanwhile."""
        request = self._waiting.pop(node, None)
        if request is None:
            return False
        self._held[node] = request
        return True

    def release(self, node: int) -> None:
        """The phase of `node` has ended: give its units back."""
        request = self._held.pop(node, None)
        if request is not None:
            _give_back(request)

    def release_all(self) -> None:
        """Give back the units of every phase that holds some."""
        held, self._held = self._held, {}
        for request in held.values():
            _give_back(request)

    def withdraw(self) -> None:
        """Stop waiting: leave every queue and return what waiting requests hold."""
        waiting, self._waiting = self._waiting, {}
        # Leave every queue before giving anything back: a give-back serves
        # its pool, which must not grant a step to a request being withdrawn.
        for request in waiting.values():
            if request.step < len(request.uses):
                request.pools[request.step].queue.remove(request)
        for request in waiting.values():
            _give_back(request)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _continue(self, request: _Request) -> None:
        # Called by a pool that has just granted `request` its current step.
        if self._waiting.get(request.node) is request and self._take(request):
            self._outbox.put(SlotsGranted(task=request.node, phase=request.phase))

    def _take(self, request: _Request) -> bool:
        """Take the remaining uses in order; False once the request has to queue."""
        while request.step < len(request.uses):
            pool = request.pools[request.step]
            units = request.uses[request.step].units
            if pool.queue or units > pool.free:
                pool.queue.append(request)
                return False
            pool.free -= units
            request.step += 1
        return True

    def _pool(self, limit: Limit) -> Pool:
        pools = self._shared_pools if limit.shared else self._run_pools
        pool = pools.get(limit)
        if pool is None:
            pool = pools[limit] = Pool(limit.capacity)
        return pool


def _give_back(request: _Request) -> None:
    taken = request.step
    request.step = 0
    for pool, use in zip(request.pools[:taken], request.uses[:taken], strict=True):
        pool.free += use.units
        _serve(pool)
