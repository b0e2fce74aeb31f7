"""Completion spreading through the task graph, in the manner of graphlib.

PRE flows from dependencies to dependents, POST the other way. Each node
waits for a count of neighbours upstream; when a node finishes, the count of
each neighbour downstream drops, and at zero the neighbour either runs the
flow's phase or, having none to run, passes straight through. Pure
bookkeeping: a Flow decides nothing about starting work, it only says which
nodes are ready.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdax.declarations import PhaseId

# Per-node progress through a flow.
WAITING, STARTED, FINISHED = 0, 1, 2


class Flow:
    """One run's progress through one phase's flow."""

    __slots__ = ("phase", "edges", "waiting", "runs", "progress")

    def __init__(
        self,
        phase: PhaseId,
        edges: tuple[tuple[int, ...], ...],
        waiting: list[int],
        runs: Sequence[bool],
    ) -> None:
        self.phase = phase
        self.edges = edges  # downstream neighbours of each node
        self.waiting = waiting  # invariant: unfinished neighbours upstream of each node
        self.runs = runs  # whether a node runs the phase or passes through
        self.progress = bytearray(len(waiting))  # WAITING, STARTED or FINISHED per node

    def start_at(self, sources: Sequence[int]) -> list[int]:
        """Begin at nodes that wait on nothing; the nodes ready to run the phase."""
        runs = self.runs
        ready = [node for node in sources if runs[node]]
        ready += self.finish([node for node in sources if not runs[node]])
        return ready

    def finish(self, finished: list[int]) -> list[int]:
        """`finished` nodes are through (ran the phase or had none): the nodes now ready.

        `finished` is used as the work list and is left empty.
        """
        edges, waiting, runs, progress = self.edges, self.waiting, self.runs, self.progress
        ready: list[int] = []
        while finished:
            node = finished.pop()
            progress[node] = FINISHED
            for neighbour in edges[node]:
                waiting[neighbour] -= 1
                if not waiting[neighbour]:
                    (ready if runs[neighbour] else finished).append(neighbour)
        return ready

    def pass_everything(self) -> None:
        """Every node is through at once (no node runs the phase): skip walking the edges."""
        self.progress = bytearray([FINISHED]) * len(self.waiting)

    def mark_started(self, nodes: Sequence[int]) -> None:
        progress = self.progress
        for node in nodes:
            progress[node] = STARTED

    def withdraw(self, node: int) -> None:
        """`node` was started but never ran its phase: as if it had never started."""
        self.progress[node] = WAITING
