"""Test helpers: scripted phase functions that log what happened, and gates
that let a test hold a phase open and decide when it ends.

Sequencing is done with events only: a test waits for `probe.started(...)`
and releases a held phase with `probe.release(...)`; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdax import AsyncTask, TaskFunction, task_func

PRE, EXEC, POST = "pre_execute", "execute", "post_execute"


class Behaviour:
    """What a scripted phase function does once started."""


@dataclass(frozen=True)
class Ok(Behaviour):
    """Return at once (after one yield to the loop if `yields`)."""

    yields: bool = False


@dataclass(frozen=True)
class Raise(Behaviour):
    """Raise `error` (after being released, if `hold`)."""

    error: BaseException
    hold: bool = False


@dataclass(frozen=True)
class Hold(Behaviour):
    """Wait until the test releases it (or it is cancelled)."""


OK = Ok()
HOLD = Hold()


@dataclass
class Gate:
    started: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Probe:
    """Builds scripted tasks and records (event, key, phase) tuples in `log`.

    Events: "start", "end" (returned), "raise", "cancelled".
    """

    def __init__(self) -> None:
        self.log: list[tuple[str, Hashable, str]] = []
        self._gates: dict[tuple[Hashable, str], Gate] = {}

    def gate(self, key: Hashable, phase: str) -> Gate:
        return self._gates.setdefault((key, phase), Gate())

    async def started(self, key: Hashable, phase: str) -> None:
        await self.gate(key, phase).started.wait()

    async def ended(self, key: Hashable, phase: str) -> None:
        """Wait until the phase function has returned normally."""
        await self.gate(key, phase).ended.wait()

    def release(self, key: Hashable, phase: str) -> None:
        self.gate(key, phase).released.set()

    def function(
        self, key: Hashable, phase: str, behaviour: Behaviour, **policy: Any
    ) -> TaskFunction[Any]:
        held = isinstance(behaviour, Hold) or (isinstance(behaviour, Raise) and behaviour.hold)

        async def scripted(ctx: object) -> None:
            gate = self.gate(key, phase)
            self.log.append(("start", key, phase))
            gate.started.set()
            try:
                if held:
                    await gate.released.wait()
                elif isinstance(behaviour, Ok) and behaviour.yields:
                    await asyncio.sleep(0)
                if isinstance(behaviour, Raise):
                    self.log.append(("raise", key, phase))
                    raise behaviour.error
            except asyncio.CancelledError:
                self.log.append(("cancelled", key, phase))
                raise
            self.log.append(("end", key, phase))
            gate.ended.set()

        scripted.__qualname__ = f"scripted[{key!r}, {phase}]"
        return task_func(scripted, **policy)

    def task(
        self,
        key: Hashable,
        pre: Behaviour | None = None,
        execute: Behaviour | None = None,
        post: Behaviour | None = None,
    ) -> AsyncTask[Any]:
        return AsyncTask(
            key,
            pre_execute=None if pre is None else self.function(key, PRE, pre),
            execute=None if execute is None else self.function(key, EXEC, execute),
            post_execute=None if post is None else self.function(key, POST, post),
        )

    def keys(self, event: str, phase: str) -> list[Hashable]:
        """Keys with `event` in `phase`, in the order it happened."""
        return [key for kind, key, ph in self.log if kind == event and ph == phase]

    def count(self, event: str, key: Hashable, phase: str) -> int:
        return self.log.count((event, key, phase))

    def index(self, event: str, key: Hashable, phase: str) -> int:
        return self.log.index((event, key, phase))


def matches_sequence(items: Sequence[Hashable], expected: Iterable[set[Hashable]]) -> bool:
    """True if `items` is the sets of `expected`, each in any order, one after another."""
    position = 0
    for group in expected:
        chunk = items[position : position + len(group)]
        if len(chunk) != len(group) or set(chunk) != group:
            return False
        position += len(group)
    return position == len(items)
