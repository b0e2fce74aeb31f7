"""Monte-carlo testing of a user's processor: seeded faults, many runs, every run checked.

`MonteCarlo(processor, make_ctx, invariants=[...])` wraps the processor
(`sdax.testing.faults.with_faults`) and runs seeds `seed .. seed+runs-1`,
`concurrency` at a time, each with a fresh context `make_ctx(seed)`, its
faults drawn from that seed, and the caller's task cancelled from outside
at a random point in a share of the runs. Each run is checked against the
built-in invariants (sdax.testing.checks) and the user's; every violation
comes with a one-line command that replays its seed.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Generic, TextIO, TypeVar

from sdax.observers import (
    Notification,
    PhaseFinished,
    PhaseRetried,
    PhaseStarted,
    RunFinished,
    RunObserver,
    RunStarted,
)
from sdax.processor import AsyncTaskProcessor
from sdax.report import ReportRecorder
from sdax.testing.checks import BUILT_IN, CheckedRun
from sdax.testing.faults import (
    CANCEL,
    CURRENT_RUN,
    CancelPlan,
    Fault,
    FaultRates,
    RunLog,
    with_faults,
)
from sdax.testing.results import MonteCarloResult, Violation

T = TypeVar("T")

Invariant = Callable[[CheckedRun], object]
"""A user invariant: given the finished run, returns None (or True) if it holds, a
message (or False) if it does not; an exception it raises is a violation too."""

LOOPS = ("asyncio", "uvloop")


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new event loop: "asyncio" (the default loop) or "uvloop" (needs uvloop installed)."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise RuntimeError(
                "loop 'uvloop' needs the uvloop package: pip install 'sdax[uvloop]'"
            ) from None
        return uvloop.new_event_loop()
    if name != "asyncio":
        raise ValueError(f"loop must be one of {LOOPS}, got {name!r}")
    return asyncio.new_event_loop()


class _Heard(RunObserver):
    """Keeps every event of one run, in order."""

    def __init__(self, events: list[Notification]) -> None:
        self.events = events

    def run_started(self, event: RunStarted) -> None:
        self.events.append(event)

    def phase_started(self, event: PhaseStarted) -> None:
        self.events.append(event)

    def phase_retried(self, event: PhaseRetried) -> None:
        self.events.append(event)

    def phase_finished(self, event: PhaseFinished) -> None:
        self.events.append(event)

    def run_finished(self, event: RunFinished) -> None:
        self.events.append(event)


class MonteCarlo(Generic[T]):
    """Seeded fault runs of one processor, each checked against sdax's promises and yours.

    `processor` is an already built processor (it is not changed: a wrapped
    copy gets the faults). `make_ctx(seed)` returns a fresh context per run.
    `invariants` are callables given each finished `CheckedRun` (its `ctx`,
    `error`, `outcome`, `report`, `events`, `faults`). `timeout`,
    `cleanup_timeout` and `cleanup_budget` are passed to every
    `process_tasks` call. `target` is how the command line names this
    object (`module:attribute`), used in replay commands. A run still going
    after `hang_after` seconds is reported as a violation ("hung") and left.

    Contract: run `seed + i` (i < runs) gets `make_ctx(seed + i)` and faults
    drawn from `seed + i` only, so `replay(seed + i)` reruns it alone with the
    same faults; what depends on the interleaving with concurrent runs or on
    wall-clock timing may still differ.
    """

    def __init__(
        self,
        processor: AsyncTaskProcessor[T],
        make_ctx: Callable[[int], T],
        *,
        invariants: Sequence[Invariant] = (),
        faults: FaultRates | None = None,
        timeout: float | None = None,
        cleanup_timeout: float | None = None,
        cleanup_budget: float | None = None,
        target: str | None = None,
        hang_after: float = 60.0,
    ) -> None:
        if not isinstance(processor, AsyncTaskProcessor):
            raise TypeError(f"MonteCarlo needs a built processor, got {processor!r}")
        self.processor = processor
        self.faulty = with_faults(processor)
        self._functions = sum(len(node.functions) for node in self.faulty._graph.nodes)
        self.make_ctx = make_ctx
        self.invariants = tuple(invariants)
        self.faults = FaultRates() if faults is None else faults
        self.timeout = timeout
        self.cleanup_timeout = cleanup_timeout
        self.cleanup_budget = cleanup_budget
        self.target = target
        self.hang_after = hang_after

    # -- entry points -----------------------------------------------------------------

    def run(
        self,
        runs: int = 1000,
        *,
        seed: int = 0,
        loop: str = "asyncio",
        concurrency: int = 8,
        file: TextIO | None = None,
    ) -> MonteCarloResult:
        """Run seeds `seed .. seed+runs-1` on a new event loop of kind `loop`; check each.

        Violations and their replay commands are printed to `file` (default
        stderr) as they are found. Returns the result; nothing is raised for
        a violation.
        """
        event_loop = new_loop(loop)
        try:
            return event_loop.run_until_complete(
                self.arun(runs, seed=seed, concurrency=concurrency, file=file, loop_name=loop)
            )
        finally:
            event_loop.run_until_complete(event_loop.shutdown_asyncgens())
            event_loop.close()

    def replay(
        self, seed: int, *, loop: str = "asyncio", file: TextIO | None = None
    ) -> MonteCarloResult:
        """Rerun the one run of `seed`, alone, on a new loop of kind `loop`."""
        return self.run(1, seed=seed, loop=loop, concurrency=1, file=file)

    async def arun(
        self,
        runs: int = 1000,
        *,
        seed: int = 0,
        concurrency: int = 8,
        file: TextIO | None = None,
        loop_name: str | None = None,
    ) -> MonteCarloResult:
        """As `run`, on the running event loop (`loop_name` only labels the result)."""
        if runs < 0 or concurrency < 1:
            raise ValueError(f"need runs >= 0 and concurrency >= 1, got {runs} and {concurrency}")
        name = loop_name or _loop_name(asyncio.get_running_loop())
        result = MonteCarloResult(runs=runs, seed=seed, loop=name, concurrency=concurrency)
        started = time.perf_counter()
        seeds = iter(range(seed, seed + runs))

        async def worker() -> None:
            for run_seed in seeds:
                self._record(result, await self.run_one(run_seed), name, file)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(runs, 1)))))
        result.elapsed = time.perf_counter() - started
        return result

    def replay_command(self, seed: int, loop: str = "asyncio") -> str:
        """One line that reruns `seed`: a command if `target` is known, else the call."""
        if self.target is not None:
            return f"python -m sdax.testing replay {self.target} --seed {seed} --loop {loop}"
        return f"MonteCarlo(...).replay({seed}, loop={loop!r})"

    # -- one run ----------------------------------------------------------------------

    async def run_one(self, seed: int) -> tuple[CheckedRun, list[tuple[str, str]]]:
        """Run seed `seed` once on the running loop; return it and its violations."""
        loop = asyncio.get_running_loop()
        bound = self.cleanup_timeout is not None or self.cleanup_budget is not None
        log = RunLog(seed, self.faults, run_timeout=self.timeout is not None, cleanup_bound=bound)
        run = CheckedRun(seed, self.make_ctx(seed), None, None, [], (), False, log)
        # The caller's task runs in a context of its own: the phase functions find the
        # run's log there, and a cancel from outside is marked there.
        scope = contextvars.copy_context()
        scope.run(CURRENT_RUN.set, log)
        cancel = CancelPlan(
            random.Random(f"sdax.testing:{seed}:cancel"), self.faults, self._functions
        )
        task = loop.create_task(self._caller(run, cancel, scope), context=scope)
        done, _ = await asyncio.wait({task}, timeout=self.hang_after)
        cancel.disarm()
        run.cancelled = cancel.fired
        run.faults = tuple(log.faults) + (
            (Fault(CANCEL, None, None, 0, False),) if cancel.fired else ()
        )
        if not done:
            return run, [("hung", self._hung_message())]
        return run, self._check(run)

    async def _caller(
        self, run: CheckedRun, cancel: CancelPlan, scope: contextvars.Context
    ) -> None:
        """What the user's caller does: await the run; here, keep however it ended."""
        recorder, heard = ReportRecorder(), _Heard(run.events)
        cancel.arm(asyncio.get_running_loop(), asyncio.current_task(), scope, run.log)
        try:
            await self.faulty.process_tasks(
                run.ctx,
                timeout=self.timeout,
                cleanup_timeout=self.cleanup_timeout,
                cleanup_budget=self.cleanup_budget,
                rng=random.Random(run.seed),
                observers=[recorder, heard],
                tag=f"seed {run.seed}",
            )
        except BaseException as error:  # every ending is data to check
            run.error = error
        finally:
            cancel.disarm()
            run.report = recorder.report

    def _hung_message(self) -> str:
        message = f"the run had not finished after {self.hang_after:g} s (it is left running)"
        if self.cleanup_budget is None:
            message += "; a cleanup that never ends holds its run: see cleanup_budget"
        return message

    def _check(self, run: CheckedRun) -> list[tuple[str, str]]:
        graph = self.faulty._graph
        found = [(name, message) for name, check in BUILT_IN for message in check(run, graph)]
        for invariant in self.invariants:
            name = getattr(invariant, "__name__", repr(invariant))
            try:
                verdict = invariant(run)
            except Exception as error:  # a failed assert is the usual way to say no
                first_line = next(iter(str(error).splitlines()), "")
                found.append((name, f"{type(error).__name__}: {first_line}".rstrip(": ")))
                continue
            if verdict is False:
                found.append((name, "returned False"))
            elif isinstance(verdict, str) and verdict:
                found.append((name, verdict))
        return found

    def _record(
        self,
        result: MonteCarloResult,
        checked: tuple[CheckedRun, list[tuple[str, str]]],
        loop: str,
        file: TextIO | None,
    ) -> None:
        run, found = checked
        for fault in run.faults:
            result.faults[fault.kind] = result.faults.get(fault.kind, 0) + 1
        outcome = "hung" if any(name == "hung" for name, _ in found) else run.outcome
        result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
        if not found:
            return
        replay = self.replay_command(run.seed, loop)
        for name, message in found:
            result.violations.append(Violation(run.seed, name, message, replay))
        out = sys.stderr if file is None else file
        for name, message in found:
            print(f"violation: seed {run.seed}: {name}: {message}", file=out)
        print(f"replay: {replay}", file=out)


def _loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
