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

from sdax.vocabulary import PhaseId

# Per-node progress through a flow: what the coordinator asks is whether a node
# was reached (its phase started, or it passed through), so that is all it keeps.
WAITING, REACHED = 0, 1


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
        self.progress = bytearray(len(waiting))  # WAITING or REACHED per node

    def start_at(self, sources: Sequence[int]) -> list[int]:
        """Begin at nodes that wait on nothing; the nodes ready to run the phase."""
        runs = self.runs
        ready = [node for node in sources if runs[node]]
        passing = [node for node in sources if not runs[node]]
        self.mark_reached(passing)
        ready += self.finish(passing)
        return ready

    def finish(self, finished: list[int]) -> list[int]:
        """`finished` nodes are through (ran the phase or had none): the nodes now ready.

        `finished` is used as the work list and is left empty.
        """
        edges, waiting, runs, progress = self.edges, self.waiting, self.runs, self.progress
        ready: list[int] = []
        while finished:
            for neighbour in edges[finished.pop()]:
                waiting[neighbour] -= 1
                if not waiting[neighbour]:
                    if runs[neighbour]:
                        ready.append(neighbour)  # marked reached when it starts
                    else:
                        progress[neighbour] = REACHED  # passes through
                        finished.append(neighbour)
        return ready

    def pass_everything(self) -> None:
        """Every node is through at once (no node runs the phase): skip walking the edges."""
        self.progress = bytearray([REACHED]) * len(self.waiting)

    def mark_reached(self, nodes: Sequence[int]) -> None:
        """`nodes` started the phase (or pass through it)."""
        progress = self.progress
        for node in nodes:
            progress[node] = REACHED

    def withdraw(self, node: int) -> None:
        """`node` was started but never ran its phase: as if it had never started."""
        self.progress[node] = WAITING
