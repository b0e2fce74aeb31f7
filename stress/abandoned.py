"""Two cleanup invariants of SPEC §4, each checked on its own here.

- cleanup-uninterrupted: a running post is never stopped by anything but
  its own timeout, the run's cleanup_timeout or its cleanup budget. The
  caller's cancellations (one or many, landing before or inside a post)
  stop nothing: every post attempt the log shows stopped (it logged a
  cancellation, swallowed one, or raised in answer to one) must have had
  one of those three bounds short enough to fire.
- abandoned-reported: abandoned cleanup is never silent. Every post the
  budget cut short, and every owed post it skipped, is a
  `sdax.CleanupAbandonedError` naming its task and phase among the run's
  failures (the SdaxExecutionError, the RunTimeoutError's, or the
  CancelledError's `__context__`) and an "abandoned" entry of the
  RunReport; nothing is reported abandoned without a budget that could
  run out; and no post starts once the budget has run out. Where a
  KeyboardInterrupt-style error ended the run (it propagates unchanged and
  carries no failures), the RunReport of a ReportRecorder stands in for the
  failures.

Pure functions of the model, the plan and the folded log, used by
stress.invariants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable, Mapping, Sequence

from sdax import CleanupAbandonedError, RunReport, SdaxExecutionError, flatten_exceptions
from stress.failures import skipped_cleanup
from stress.faults import CANCEL, CANCELLED, FATAL, RAISE, SELFCANCEL, START, SWALLOWED, Ev
from stress.model import POST, RunPlan, Shape, short
from stress.outcomes import PhaseLog

Where = tuple[Hashable, str]
Phases = Mapping[Where, PhaseLog]
STOPPED = frozenset({CANCELLED, SWALLOWED})
FAILED_PARTS = frozenset({RAISE, FATAL, SELFCANCEL})


def _stopped_parts(plan: RunPlan, key: Hashable, events: Sequence[Ev]) -> list[Ev]:
    """The events of one post attempt that show a part of it was cancelled."""
    found = []
    for ev in events:
        if ev.kind in STOPPED:
            found.append(ev)
        elif ev.kind == RAISE:  # a block that raises when cancelled
            attempt = plan.phases[(key, POST)].attempt(ev.attempt)
            act = attempt.body if ev.part == 0 else attempt.children[ev.part - 1]
            if act.op == "block" and act.on_cancel == "raise":
                found.append(ev)
    return found


def interruption_problems(shape: Shape, plan: RunPlan, log: Sequence[Ev]) -> list[str]:
    """cleanup-uninterrupted: each post attempt stopped had a bound entitled to stop it."""
    options = plan.options
    bounds = short(options.cleanup_timeout) or options.budget_may_expire
    by_attempt: dict[tuple[Hashable, int], list[Ev]] = {}
    for ev in log:
        if ev.phase == POST:
            by_attempt.setdefault((ev.key, ev.attempt), []).append(ev)
    problems = []
    for (key, number), events in by_attempt.items():
        if key not in shape.by_key or not shape.has(key, POST):
            continue  # reported under "log"
        policy = shape.policy(key, POST)
        if bounds or policy.short_timeout:
            continue
        stopped = _stopped_parts(plan, key, events)
        if policy.kind == "group" and stopped:
            # A failing child cancels its siblings and the body (task-group rule).
            failed = {ev.part for ev in events if ev.kind in FAILED_PARTS}
            stopped = [ev for ev in stopped if not failed - {ev.part}]
        if stopped:
            cancels = [ev.seq for ev in log if ev.kind == CANCEL]
            problems.append(
                f"{key!r} post_execute attempt {number} was stopped ({stopped[0].kind} at "
                f"#{stopped[0].seq}; caller cancels at {cancels}) though neither its timeout, "
                f"cleanup_timeout={options.cleanup_timeout} nor "
                f"cleanup_budget={options.cleanup_budget} could stop it"
            )
    return problems


def abandoned_failures(
    failures: SdaxExecutionError | None,
) -> dict[Where, list[BaseException]]:
    """The reported failures holding a CleanupAbandonedError, by (task, phase)."""
    found: dict[Where, list[BaseException]] = {}
    for failure in failures.failures if failures is not None else ():
        leaves = flatten_exceptions(failure.error)
        if any(isinstance(leaf, CleanupAbandonedError) for leaf in leaves):
            found[(failure.key, failure.phase)] = leaves
    return found


def skipped_posts(failures: SdaxExecutionError | None) -> set[Hashable]:
    """The posts reported as skipped by the budget (abandoned before they began)."""
    return {
        where[0]
        for where, leaves in abandoned_failures(failures).items()
        if skipped_cleanup(where, leaves)
    }


def failures_known(raised: BaseException | None) -> bool:
    """Did the run hand back its failures? (Not when a fatal BaseException propagated.)"""
    if isinstance(raised, asyncio.CancelledError) or raised is None:
        return True
    if type(raised) is TimeoutError:  # an enclosing asyncio.timeout
        return isinstance(raised.__cause__, asyncio.CancelledError)
    return isinstance(raised, Exception)


class AbandonedCheck:
    """abandoned-reported, for one run (see the module docstring)."""

    def __init__(
        self,
        shape: Shape,
        plan: RunPlan,
        phases: Phases,
        failures: SdaxExecutionError | None,
        known: bool,
        recorded: RunReport | None = None,
    ) -> None:
        self.shape, self.plan, self.phases = shape, plan, phases
        self.known = known  # the failures were handed back: they can be checked
        self.abandoned: dict[Where, list[BaseException]] = {}
        if known:
            self.abandoned = abandoned_failures(failures)
        elif recorded is not None:
            # A KeyboardInterrupt-style error propagates unchanged and carries no
            # failures, but a ReportRecorder heard every abandonment all the same.
            self.abandoned = reported_abandoned(shape, recorded)
        self.checkable = known or recorded is not None  # is `abandoned` the whole story?
        self.problems: list[str] = []

    def check_failures(self) -> None:
        """Each abandonment reported is one CleanupAbandonedError of a post, with a budget."""
        may_expire = self.plan.options.budget_may_expire
        for (key, phase), leaves in self.abandoned.items():
            name = f"{key!r} {phase}"
            if not may_expire:
                self.problems.append(
                    f"{name} reported abandoned, yet cleanup_budget="
                    f"{self.plan.options.cleanup_budget} cannot run out"
                )
            if not self.known:
                continue  # taken from a report: no exception objects to look at
            error = leaves[0]
            if len(leaves) != 1 or phase != POST:
                self.problems.append(f"{name}: abandoned, reported as {leaves}")
            elif not isinstance(error, CleanupAbandonedError):
                continue
            elif (error.task, error.phase) != (key, phase):
                self.problems.append(f"{name}: its error names {error.task!r} {error.phase}")
            elif error.started != ((key, POST) in self.phases):
                ran = "ran" if (key, POST) in self.phases else "never ran"
                self.problems.append(f"{name} {ran}, yet started={error.started}")

    def check_cut_short(self) -> None:
        """A post the budget alone can have stopped is reported abandoned."""
        options = self.plan.options
        if not self.checkable or not options.budget_may_expire or short(options.cleanup_timeout):
            return  # a cut-off by cleanup_timeout is a TimeoutError instead
        for (key, phase), plog in self.phases.items():
            # Not if its own timeout may have stopped it, or a failing child (task group).
            if phase != POST or not self._cut_by_budget(plog):
                continue
            if (key, POST) not in self.abandoned:
                self.problems.append(
                    f"{key!r} post_execute was cut short (#{plog.final.body_end}) by the cleanup "
                    "budget but is not reported as CleanupAbandonedError among the failures"
                )

    def check_owed(self, owed_not_run: Iterable[Hashable]) -> None:
        """Owed posts that never ran: with a budget that ran out, each reported skipped."""
        for key in owed_not_run:
            if self.checkable and (key, POST) not in self.abandoned:
                self.problems.append(
                    f"{key!r} is owed cleanup, its post never ran, and it is not reported "
                    "as CleanupAbandonedError among the failures"
                )

    def check_no_start_after(self, log: Sequence[Ev]) -> None:
        """Once the budget ran out (a post it cut logged its end), no post begins."""
        if short(self.plan.options.cleanup_timeout):
            return  # a post's cancellation may then be the cleanup_timeout's, before the budget
        cut = [
            self.phases[where].final.body_end
            for where in self.abandoned
            if where in self.phases and self._cut_by_budget(self.phases[where])
        ]
        if not cut:
            return
        late = [
            ev
            for ev in log
            if ev[1:4:2] == (START, POST) and (ev.attempt, ev.part) == (1, 0) and ev.seq > min(cut)
        ]
        if late:
            self.problems.append(
                f"{late[0].key!r} post_execute started at #{late[0].seq}, after the budget "
                f"cut a post short (#{min(cut)})"
            )

    def _cut_by_budget(self, plog: PhaseLog) -> bool:
        """Was this post's final attempt surely cancelled by the budget, nothing else?"""
        final = plog.final
        surely = final.body == CANCELLED and not self.shape.policy(plog.key, POST).short_timeout
        return surely and not (final.errors or final.fatal or final.selfcancel is not None)

    def check_report(self, report: RunReport | None) -> None:
        """The RunReport lists exactly the reported abandonments as "abandoned"."""
        if report is None or not self.known:
            return
        listed = {
            (task.task, entry.phase): entry
            for task in report.tasks
            for entry in task.phases
            if entry.outcome == "abandoned"
        }
        named = {(_label(key), phase): (key, phase) for key, phase in self.abandoned}
        for name in named.keys() - listed.keys():
            self.problems.append(f"{name[0]} {name[1]} abandoned, but not so in the RunReport")
        for name in listed.keys() - named.keys():
            self.problems.append(f"{name[0]} {name[1]}: RunReport says abandoned; failures do not")
        for name in named.keys() & listed.keys():
            entry, ran = listed[name], named[name] in self.phases
            error = entry.error.type if entry.error is not None else None
            if not str(error).endswith("CleanupAbandonedError") or (entry.attempts > 0) != ran:
                self.problems.append(f"{name[0]} {name[1]}: reported abandoned as {entry}")


def reported_abandoned(shape: Shape, report: RunReport) -> dict[Where, list[BaseException]]:
    """The (task, phase) pairs a RunReport lists as abandoned (no exception objects)."""
    keys = {_label(key): key for key in shape.by_key}
    return {
        (keys[task.task], entry.phase): []
        for task in report.tasks
        for entry in task.phases
        if entry.outcome == "abandoned" and task.task in keys
    }


def _label(key: Hashable) -> str:
    return key if isinstance(key, str) else repr(key)


def cleanup_notes(
    log: Sequence[Ev], phases: Phases, failures: SdaxExecutionError | None
) -> list[str]:
    """Coverage: caller cancels inside posts, posts cut short or skipped by the budget."""
    notes = []
    cancels = [ev.seq for ev in log if ev.kind == CANCEL]
    posts = [plog for (_, phase), plog in phases.items() if phase == POST]
    if any(plog.start < seq < plog.end for plog in posts for seq in cancels):
        notes.append("a caller cancel landed inside a running post")
    cleanup_end = max((plog.end for plog in posts), default=-1)
    if sum(seq < cleanup_end for seq in cancels) > 1:
        notes.append("caller cancels landed twice or more before cleanup ended")
    abandoned = abandoned_failures(failures)
    if any(where in phases for where in abandoned):
        notes.append("the cleanup budget cut a running post short")
    if skipped_posts(failures):
        notes.append("the cleanup budget skipped a pending post")
    return notes


INVARIANTS = ("cleanup-uninterrupted", "abandoned-reported")


def exercised(plan: RunPlan, log: Sequence[Ev], failures: SdaxExecutionError | None) -> list[str]:
    """Which of this module's invariants had something to check in a run (for the summary).

    cleanup-uninterrupted: a caller cancel landed before a post ended; abandoned-reported:
    the budget could run out and did (a post was reported abandoned), or a post was owed.
    """
    post_ends = [ev.seq for ev in log if ev.phase == POST]
    cancels = [ev.seq for ev in log if ev.kind == CANCEL]
    found = []
    if post_ends and cancels and min(cancels) < max(post_ends):
        found.append(INVARIANTS[0])
    if plan.options.budget_may_expire and abandoned_failures(failures):
        found.append(INVARIANTS[1])
    return found
