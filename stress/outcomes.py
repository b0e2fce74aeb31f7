"""From a run's log to what each phase may have ended as.

The log shows what our code saw, not what sdax decided; where a race with a
cancellation decides (a timeout and a cancel landing together, a cancel in
a retry's backoff), a phase gets a *set* of possible outcomes, and the
checker only demands that what sdax reports is in that set. Outside such
races the set has one element and the check is exact.

Who may cancel a phase, and from when ("entitlement"): for pre_execute,
the caller's cancellation, a fatal error, the run's deadline, or a pre that
failed; for execute, the caller, a fatal error or the deadline; for
post_execute, only the run's cleanup budget, and only when it is short:
cleanup is shielded from the caller's cancellations. A post the budget
cancels is "abandoned", a CleanupAbandonedError failure, never retried. A
short cleanup_timeout may cut a post off ("cutoff") at any time: that is
a TimeoutError failure, never retried.

A thread attempt (stress.threads) ends, in sdax's eyes, when sdax hears of
the thread's end, which is after the thread logged it: like an attempt
that awaits its children, it may still be timed out or cancelled then.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from stress.faults import (
    AFTER,
    BEGIN,
    CANCEL,
    CANCELLED,
    DEADLINE,
    FATAL,
    FINISH,
    NOTAWAIT,
    RAISE,
    SELFCANCEL,
    SPAWN,
    START,
    TERMINAL,
    THREAD,
    Ev,
)
from stress.model import EXEC, POST, PRE, Policy, Shape

OK, CANCEL_OUT, FATAL_OUT = "ok", "cancelled", "fatal"
FAIL, TIMEOUT, PCANCEL, NOT_AWAITABLE = "fail", "timeout", "pcancel", "notawait"
CUTOFF = "cutoff"  # a post cut off by cleanup_timeout
ABANDONED = "abandoned"  # a post cancelled by the run's cleanup budget
FAILURES = frozenset({FAIL, TIMEOUT, PCANCEL, NOT_AWAITABLE, CUTOFF, ABANDONED})
RUN_LEVEL = frozenset({CANCEL, FINISH, DEADLINE, BEGIN})  # events of no attempt


@dataclass(frozen=True)
class Outcome:
    """One possible end of a phase; for FAIL, the exceptions its error must hold."""

    kind: str
    errors: tuple[BaseException, ...] = ()

    def retryable(self, policy: Policy) -> bool:
        """Would sdax retry an attempt that ended like this (attempts left aside)?"""
        if self.kind in (CUTOFF, ABANDONED):
            return False  # the bound is around all the attempts
        kinds = policy.retryable_exceptions()
        if self.kind == TIMEOUT:
            return issubclass(TimeoutError, kinds)
        if self.kind == NOT_AWAITABLE:
            return issubclass(TypeError, kinds)
        return self.kind == FAIL and all(isinstance(e, kinds) for e in self.errors)

    def __repr__(self) -> str:
        return self.kind if not self.errors else f"{self.kind}{[str(e) for e in self.errors]}"


@dataclass
class AttemptLog:
    """What one attempt's body and children did, folded from the log."""

    number: int
    start: int
    epoch: int
    end: int = -1  # sequence number of its last event
    body: str | None = None  # terminal event of the body
    body_end: int = -1
    errors: list[BaseException] = field(default_factory=list)
    fatal: bool = False
    selfcancel: BaseException | None = None
    cancelled: bool = False
    notawait: bool = False
    # Created children: the attempt's task then waits for their done callbacks after
    # the body, even if every child already logged its end, and can be cancelled there.
    awaits_children: bool = False
    open_parts: set[int] = field(default_factory=set)
    thread: bool = False  # a thread attempt: START when sdax submitted it
    after: object = None  # a thread's own end, logged after sdax stopped waiting


@dataclass
class PhaseLog:
    key: Hashable
    phase: str
    attempts: list[AttemptLog] = field(default_factory=list)

    @property
    def final(self) -> AttemptLog:
        return self.attempts[-1]

    @property
    def start(self) -> int:
        return self.attempts[0].start

    @property
    def end(self) -> int:
        return max(attempt.end for attempt in self.attempts)


def fold(log: Sequence[Ev], problems: list[str]) -> dict[tuple[Hashable, str], PhaseLog]:
    """Group the log by phase and attempt; report events that make no sense."""
    phases: dict[tuple[Hashable, str], PhaseLog] = {}
    for ev in log:
        if ev.kind in RUN_LEVEL:
            continue
        plog = phases.setdefault((ev.key, ev.phase), PhaseLog(ev.key, ev.phase))
        if ev.kind == START and ev.part == 0:
            if ev.attempt != len(plog.attempts) + 1:
                problems.append(f"{ev.key!r} {ev.phase} attempt {ev.attempt} out of order")
            started = AttemptLog(ev.attempt, ev.seq, ev.epoch, ev.seq, thread=ev.obj == THREAD)
            started.open_parts.add(0)
            plog.attempts.append(started)
            continue
        attempt = next((a for a in plog.attempts if a.number == ev.attempt), None)
        if attempt is None:
            problems.append(f"event {ev} before its attempt started")
            continue
        _apply(attempt, ev, problems)
    for plog in phases.values():
        for attempt in plog.attempts:
            if attempt.open_parts:
                problems.append(
                    f"{plog.key!r} {plog.phase} attempt {attempt.number}: parts "
                    f"{sorted(attempt.open_parts)} never finished"
                )
    return phases


def _apply(attempt: AttemptLog, ev: Ev, problems: list[str]) -> None:
    if ev.kind == AFTER:  # not part of the attempt as sdax saw it: `end` stays
        if not attempt.thread or attempt.body != CANCELLED or attempt.after is not None:
            problems.append(f"unexpected event {ev}")
        attempt.after = ev.obj
        return
    attempt.end = max(attempt.end, ev.seq)
    if ev.kind == SPAWN:
        attempt.awaits_children = True
        return
    if ev.kind == START:
        attempt.open_parts.add(ev.part)
        return
    if ev.kind not in TERMINAL or ev.part not in attempt.open_parts:
        problems.append(f"unexpected event {ev}")
        return
    attempt.open_parts.discard(ev.part)
    if ev.part == 0:
        attempt.body, attempt.body_end = ev.kind, ev.seq
    if ev.kind == RAISE:
        assert isinstance(ev.obj, BaseException)
        attempt.errors.append(ev.obj)
    elif ev.kind == FATAL:
        attempt.fatal = True
    elif ev.kind == SELFCANCEL:
        attempt.selfcancel = ev.obj  # type: ignore[assignment]
    elif ev.kind == CANCELLED:
        attempt.cancelled = True
    elif ev.kind == NOTAWAIT:
        attempt.notawait = True


@dataclass(frozen=True)
class Entitlement:
    """When sdax may cancel a phase: any time after `since`.

    `marks`: the (seq, epoch) of the caller's cancellations. For posts
    `since` is when the cleanup budget may have run out (never, unless the
    budget is short): the caller's cancellations entitle nobody there.
    """

    since: float = math.inf
    marks: tuple[tuple[int, int], ...] = ()

    def before(self, seq: float) -> bool:
        """May sdax have cancelled the phase before `seq`?"""
        return self.since < seq

    @property
    def ever(self) -> bool:
        return self.since < math.inf


def stop_kind(phase: str) -> str:
    """What a phase sdax cancelled ended as: a post can only have been abandoned."""
    return ABANDONED if phase == POST else CANCEL_OUT


def _stops(policy: Policy, cancel: bool, cutoff: bool, stop: str = CANCEL_OUT) -> set[Outcome]:
    """The ways sdax may have stopped an attempt that had not ended in its eyes."""
    stops = {Outcome(TIMEOUT)} if policy.short_timeout else set()
    if cancel:
        stops.add(Outcome(stop))
    if cutoff:
        stops.add(Outcome(CUTOFF))
    return stops


def attempt_results(
    attempt: AttemptLog,
    policy: Policy,
    entitled: bool,
    late_cancel: bool,
    cutoff: bool = False,
    stop: str = CANCEL_OUT,
) -> set[Outcome]:
    """What this attempt may have ended as, in sdax's eyes.

    `entitled`: sdax may have cancelled it before its last event;
    `late_cancel`: sdax may cancel it after that (while it waits on children,
    or has not yet heard that its thread ended); `cutoff`: a post under a
    short cleanup_timeout; `stop`: what a cancellation by sdax makes of it.
    """
    if attempt.fatal:
        return {Outcome(FATAL_OUT)}
    # Race: after our last event, the task still awaits its children, or has yet to
    # hear that its thread ended; a timeout or cancellation may land in between.
    late = set()
    if attempt.awaits_children or attempt.thread:
        late = _stops(policy, late_cancel, cutoff, stop)
    if attempt.errors:  # real errors beat any cancellation (task group rule), not a thread's
        return {Outcome(FAIL, tuple(attempt.errors))} | (late if attempt.thread else set())
    if attempt.notawait:
        return {Outcome(NOT_AWAITABLE)}
    if attempt.selfcancel is not None:
        return {Outcome(PCANCEL, (attempt.selfcancel,))} | late
    if attempt.cancelled:  # empty: cancelled by nobody entitled to
        return _stops(policy, entitled, cutoff, stop) | late
    # Returned, or swallowed the cancellation and returned: if its timer fired
    # first, that is still a timeout (SPEC 4: a late result is discarded).
    return {Outcome(OK)} | _stops(policy, False, cutoff) | late


def phase_outcomes(
    plog: PhaseLog, policy: Policy, ent: Entitlement, problems: list[str], cutoff: bool = False
) -> set[Outcome]:
    """The possible outcomes of a started phase; reports impossible attempt sequences."""
    name = f"{plog.key!r} {plog.phase}"
    if len(plog.attempts) > policy.attempts:
        problems.append(f"{name}: {len(plog.attempts)} attempts, retries={policy.retries}")
    stop = stop_kind(plog.phase)
    for attempt in plog.attempts[:-1]:
        entitled = ent.before(attempt.end)
        results = attempt_results(attempt, policy, entitled, True, cutoff, stop)
        if not any(result.retryable(policy) for result in results):
            problems.append(f"{name}: attempt {attempt.number} ended {results} yet was retried")
    final = plog.final
    results = attempt_results(final, policy, ent.before(final.end), ent.ever, cutoff, stop)
    possible: set[Outcome] = set()
    for result in results:
        if result.retryable(policy) and final.number < policy.attempts:
            # Stopped during the backoff, or before the retry was begun.
            possible |= _stops(policy, ent.ever, cutoff, stop) - {Outcome(TIMEOUT)}
        else:
            possible.add(result)
    if not possible:
        problems.append(f"{name}: final attempt {final.number} {results} cannot end this way")
    return possible


def entitlements(
    shape: Shape,
    log: Sequence[Ev],
    phases: dict[tuple[Hashable, str], PhaseLog],
    deadline: float = math.inf,
    budget: bool = False,
) -> dict[str, Entitlement]:
    """When sdax may cancel pre, execute and post phases (see the module docstring).

    `deadline`: from when the run's deadline may have stopped it (stress.failures);
    `budget`: whether the cleanup budget may have run out during POST.
    """
    marks = tuple((ev.seq, int(ev.obj)) for ev in log if ev.kind == CANCEL)  # type: ignore[call-overload]
    fatal = [ev.seq for ev in log if ev.kind == FATAL and ev.phase != POST]
    base = min([seq for seq, _ in marks] + fatal + [deadline])
    # The first pre (by the end of its last attempt) that may have failed entitles the
    # rest from then on. Erring early only makes the checks more lenient, never wrong.
    since = base
    for plog in sorted((p for p in phases.values() if p.phase == PRE), key=lambda p: p.end):
        if plog.end >= since:
            break
        ends = attempt_results(plog.final, shape.policy(plog.key, PRE), False, True)
        if any(outcome.kind in FAILURES for outcome in ends):
            since = plog.end
    return {
        PRE: Entitlement(since, marks),
        EXEC: Entitlement(base, marks),
        # Cleanup is shielded (SPEC 4): no caller cancel may stop a post, only a short
        # budget, which may run out any time after POST began (before its first post).
        POST: Entitlement(-1 if budget else math.inf, marks),
    }
