"""Limits: at no moment do the phases holding a limit use more units than it has.

A phase holds its units from its grant, before its first attempt starts,
until sdax hears that it ended, after its last event: so the span from its
first START to its last event (a thread's AFTER excluded: sdax no longer
waits for it) lies within its holding. Spans that overlap in the log held
their units at the same time, so their units must fit in the capacity.
(The converse is not checked: spans that do not overlap may still have
held units together.)

A limit is per run, or shared by every run that uses the same Limit on the
same loop: the runs of a batch share their processor, so a shared limit is
checked across the batch, on the ticks of the clock the batch shares.
`max_concurrency` is a per-run limit of one unit for every pre and execute.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from stress.faults import AFTER, BEGIN, START, Ev
from stress.model import FORWARD, Shape

Span = tuple[int, int, int, str]  # (start tick, end tick, units, who)
MAX_CONCURRENCY = -1  # the pseudo-index of max_concurrency


def spans(log: Iterable[Ev]) -> dict[tuple[Hashable, str], tuple[int, int]]:
    """(first START tick, last event tick) of every phase that started."""
    found: dict[tuple[Hashable, str], tuple[int, int]] = {}
    for ev in log:
        if ev.key is None or ev.kind in (AFTER, BEGIN):
            continue
        where = (ev.key, ev.phase)
        if where in found:
            found[where] = (found[where][0], ev.tick)
        elif ev.kind == START and ev.part == 0:
            found[where] = (ev.tick, ev.tick)
    return found


def holdings(shape: Shape, log: Iterable[Ev], name: str = "") -> dict[int, list[Span]]:
    """The spans of the phases of one run that hold each limit (by index)."""
    held: dict[int, list[Span]] = {}
    for (key, phase), (start, end) in spans(log).items():
        if key not in shape.by_key or not shape.has(key, phase) or phase not in FORWARD:
            continue  # the log check reports undeclared phases; posts hold nothing
        units = shape.policy(key, phase).units()
        if shape.max_concurrency is not None:
            units[MAX_CONCURRENCY] = 1
        for index, count in units.items():
            held.setdefault(index, []).append((start, end, count, f"{name}{key!r} {phase}"))
    return held


def over_capacity(spans_: Sequence[Span], capacity: int, limit: str) -> list[str]:
    """The first moment the spans hold more than `capacity` units at once, if any."""
    edges = sorted(
        [(start, units, who) for start, _, units, who in spans_]
        + [(end, -units, who) for _, end, units, who in spans_]
    )
    in_use, holders = 0, set[str]()
    for _, units, who in edges:
        in_use += units
        if units < 0:
            holders.discard(who)
            continue
        holders.add(who)
        if in_use > capacity:
            return [f"{limit}: {in_use} units in use > {capacity}: {', '.join(sorted(holders))}"]
    return []


def peak(spans_: Sequence[Span]) -> int:
    """The most units the spans hold at once."""
    edges = sorted([(s, u) for s, _, u, _ in spans_] + [(e, -u) for _, e, u, _ in spans_])
    in_use = most = 0
    for _, units in edges:
        in_use += units
        most = max(most, in_use)
    return most


def run_problems(shape: Shape, log: Iterable[Ev]) -> list[str]:
    """Per-run limits (and max_concurrency) over capacity in one run."""
    problems = []
    for index, held in holdings(shape, log).items():
        if index == MAX_CONCURRENCY:
            assert shape.max_concurrency is not None
            problems += over_capacity(held, shape.max_concurrency, "max_concurrency")
        elif not shape.limits[index].shared:
            spec = shape.limits[index]
            problems += over_capacity(held, spec.capacity, f"limit {spec.name}")
    return problems


def batch_problems(shape: Shape, logs: Sequence[Sequence[Ev]]) -> list[str]:
    """Shared limits over capacity across the runs of a batch (which share one processor)."""
    shared: dict[int, list[Span]] = {}
    for number, log in enumerate(logs):
        for index, held in holdings(shape, log, f"run #{number} ").items():
            if index != MAX_CONCURRENCY and shape.limits[index].shared:
                shared.setdefault(index, []).extend(held)
    problems = []
    for index, held in shared.items():
        spec = shape.limits[index]
        problems += over_capacity(held, spec.capacity, f"shared limit {spec.name}")
    return problems
