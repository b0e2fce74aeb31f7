"""Records altered the way a buggy sdax would have left them.

The checker is no use if it cannot fail: tests (tests/test_stress_smoke.py)
take the record of a real, passing run, alter it with these, and expect
the invariant that the alteration breaks to be reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

from stress.faults import START, Ev
from stress.invariants import RunRecord


def renumbered(record: RunRecord, events: list[Ev]) -> RunRecord:
    """`record` with `events` as its log (sequence numbers and written data made consistent)."""
    log = [ev._replace(seq=seq) for seq, ev in enumerate(events)]
    data = {
        (ev.key, ev.phase, ev.attempt): ev.seq for ev in log if ev.kind == START and not ev.part
    }
    return dataclasses.replace(record, log=log, data=data)


def without(record: RunRecord, key: Hashable, phase: str) -> RunRecord:
    return renumbered(record, [ev for ev in record.log if (ev.key, ev.phase) != (key, phase)])


def moved_first(record: RunRecord, key: Hashable, phase: str) -> RunRecord:
    """The events of (key, phase) moved to the front of the log."""
    chosen = [ev for ev in record.log if (ev.key, ev.phase) == (key, phase)]
    return renumbered(record, chosen + [ev for ev in record.log if ev not in chosen])


def moved_after(
    record: RunRecord, key: Hashable, phase: str, after: tuple[Hashable, str]
) -> RunRecord:
    """The events of (key, phase) moved right after the last event of `after`."""
    chosen = [ev for ev in record.log if (ev.key, ev.phase) == (key, phase)]
    rest = [ev for ev in record.log if ev not in chosen]
    last = max(i for i, ev in enumerate(rest) if (ev.key, ev.phase) == after)
    return renumbered(record, rest[: last + 1] + chosen + rest[last + 1 :])


def events(record: RunRecord, kind: str, key: Hashable = None, phase: str = "") -> list[Ev]:
    return [ev for ev in record.log if ev.kind == kind and (key is None or ev[2:4] == (key, phase))]


def retyped(record: RunRecord, old: tuple[str, Hashable, str], new: str) -> RunRecord:
    """`record` with its (kind, key, phase) == `old` events turned into `new` ones."""
    return renumbered(
        record, [ev._replace(kind=new) if ev[1:4] == old else ev for ev in record.log]
    )
