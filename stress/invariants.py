"""The invariants every run must satisfy, checked from its log alone.

`check_run(shape, record)` returns the violations of one run (empty when
all is well), each named after the invariant it breaks:

- log: every part that started finished once; attempts are numbered 1, 2, ...
  (a phase started twice shows up here); only declared phases ran.
- retries-and-outcomes: at most retries+1 attempts; only a retryable failure
  is retried, and one always is unless sdax was entitled to cancel; nothing
  is cancelled by sdax without a cause (stress.outcomes).
- run-outcome: the run raises what SPEC says, by priority (stress.failures).
- deadline: the run timed out if, and only if, its deadline could have
  stopped it going forward (exact with a deadline of 0; stress.failures).
- failures-match: the reported failures are exactly the phases that failed,
  with the very exceptions raised, notes naming task and phase.
- pre-order: no pre starts before its effective pre-dependencies succeeded.
- cancel-stops-forward: no pre or execute starts after a caller cancellation.
- failure-stops-pre: no pre is released after a pre failure reached sdax.
- execute-gate: EXECUTE starts only once every pre succeeded.
- liveness: with nothing to stop it, every pre and execute runs.
- limits: no limit (nor max_concurrency) has more units in use than its
  capacity, per run (stress.capacity; the runner checks shared limits
  across the batch).
- told: the RunReport and our observer agree with the log (stress.runreports).
- post-eligibility: exactly the eligible tasks are cleaned up (stress.cleanup);
  a pre that never started (say, queued for a limit when the run stopped)
  is owed none; an owed post the cleanup budget skipped is reported so.
- cleanup-uninterrupted: no post is stopped by anything but its own timeout,
  cleanup_timeout or the cleanup budget; never by the caller (stress.abandoned).
- abandoned-reported: every post the budget cut short or skipped is a
  CleanupAbandonedError among the failures and in the RunReport; nothing
  else is (stress.abandoned).
- post-order: a post starts after all forward work and after the posts of
  its nearest dependents that were cleaned up.
- threads: thread phases ran in a worker thread with the caller's contextvars.
- hygiene: the context holds only what tasks wrote; nothing runs after the
  run returned but threads sdax no longer waited for (the runner adds: no
  pending tasks or threads, warnings or loop errors).

The checks run in order because the early ones narrow what later ones may
assume (a reported failure, or a dependent that started, tells which of
several possible outcomes a phase really had).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from sdax import RunReport
from stress import capacity
from stress.abandoned import AbandonedCheck, failures_known, interruption_problems, skipped_posts
from stress.cleanup import Tri, eligibility, post_order_problems
from stress.failures import (
    check_failures,
    deadline_problems,
    deadline_since,
    expected_raise,
    failures_of,
)
from stress.faults import AFTER, FATAL, FINISH, START, Ev
from stress.model import EXEC, FORWARD, POST, PRE, RunPlan, Shape, short
from stress.outcomes import (
    FAILURES,
    OK,
    Outcome,
    PhaseLog,
    entitlements,
    fold,
    phase_outcomes,
)
from stress.runreports import the_report
from stress.told import Told


class Violation(NamedTuple):
    invariant: str
    detail: str


@dataclass
class RunRecord:
    """Everything the checker needs from one finished run."""

    plan: RunPlan
    log: list[Ev]
    raised: BaseException | None
    direct_cancels: int
    timeout_expired: bool
    data: Mapping[tuple[Hashable, str, int], int] = field(default_factory=dict)
    extra_attributes: tuple[str, ...] = ()  # set on the context by someone else
    returned: object = None  # what process_tasks returned
    recorded: RunReport | None = None  # the report of our ReportRecorder, if it had one
    thread_problems: tuple[str, ...] = ()


def check_run(shape: Shape, record: RunRecord) -> list[Violation]:
    """The violations of one run of a processor of `shape`."""
    checker = _Checker(shape, record)
    for check in (
        checker.run_outcome,
        checker.pre_order,
        checker.cancel_stops_forward,
        checker.failure_stops_pre,
        checker.execute_gate,
        checker.liveness,
        checker.limits,
        checker.told,
        checker.post_eligibility,
        checker.cleanup_uninterrupted,
        checker.abandoned_reported,
        checker.post_order,
        checker.hygiene,
    ):
        check()
    return checker.violations


class _Checker:
    def __init__(self, shape: Shape, record: RunRecord) -> None:
        self.shape, self.record = shape, record
        self.violations: list[Violation] = []
        problems: list[str] = []
        self.phases: dict[tuple[Hashable, str], PhaseLog] = fold(record.log, problems)
        for key, phase in list(self.phases):
            if key not in shape.by_key or not shape.has(key, phase):
                problems.append(f"{key!r} {phase} ran but was never declared")
                del self.phases[(key, phase)]
        self.report("log", problems)
        self.deadline = deadline_since(record.log, record.raised)
        budget = record.plan.options.budget_may_expire
        self.ent = entitlements(shape, record.log, self.phases, self.deadline, budget)
        self.failures = failures_of(record.raised)
        known = failures_known(record.raised)
        self.abandoned = AbandonedCheck(
            shape, record.plan, self.phases, self.failures, known, record.recorded
        )
        self.skipped = skipped_posts(self.failures) if budget and known else set()
        cutoff = short(record.plan.options.cleanup_timeout)
        self.possible: dict[tuple[Hashable, str], set[Outcome]] = {}
        problems = []
        for (key, phase), plog in self.phases.items():
            policy, ent = shape.policy(key, phase), self.ent[phase]
            outcomes = phase_outcomes(plog, policy, ent, problems, cutoff and phase == POST)
            self.possible[(key, phase)] = outcomes
        self.report("retries-and-outcomes", problems)
        # Pres that left no trace: did sdax start them (True), or not (False)?
        self.unseen: dict[Hashable, bool] = {}
        self.owed_not_run: list[Hashable] = []  # owed posts that never ran, under a budget

    def report(self, invariant: str, problems: list[str]) -> None:
        self.violations.extend(Violation(invariant, problem) for problem in problems)

    def ran(self, key: Hashable, phase: str) -> PhaseLog | None:
        return self.phases.get((key, phase))

    def require_ok(self, key: Hashable, invariant: str, why: str) -> None:
        """`key`'s pre must have succeeded (because of `why`): narrow, or report."""
        possible = self.possible.get((key, PRE), set())
        if not any(o.kind == OK for o in possible):
            self.report(invariant, [f"{why}, though {key!r} pre_execute ended {possible}"])
        else:
            self.possible[(key, PRE)] = {Outcome(OK)}

    def run_outcome(self) -> None:
        record = self.record
        options = record.plan.options
        verdict = expected_raise(
            record.log, record.direct_cancels, record.timeout_expired, record.raised, options
        )
        skippable = options.budget_may_expire
        cancelled = verdict is None and (record.direct_cancels or record.timeout_expired)
        if verdict == "check-failures" or cancelled:  # a cancel keeps them as its __context__
            problems = check_failures(self.failures, self.possible, skippable)
            self.report("failures-match", problems)
        elif verdict is not None:
            self.report("run-outcome", [verdict])
        args = (self.phases, self.possible, self._plain)
        self.report("deadline", deadline_problems(record.log, record.raised, options, *args))

    def pre_order(self) -> None:
        """No pre starts before its effective pre-dependencies' pres succeeded."""
        for (key, phase), plog in self.phases.items():
            if phase != PRE:
                continue
            for dep in self.shape.effective_pre_deps[key]:
                dlog = self.ran(dep, PRE)
                why = f"{key!r} pre_execute started at #{plog.start}"
                if dlog is None or dlog.end >= plog.start:
                    end = "never" if dlog is None else f"at #{dlog.end}"
                    self.report("pre-order", [f"{why}; {dep!r} pre_execute finished {end}"])
                else:
                    self.require_ok(dep, "pre-order", why)

    def cancel_stops_forward(self) -> None:
        """Nothing but cleanup starts once the caller's cancellation was handled."""
        for (key, phase), plog in self.phases.items():
            if phase in FORWARD and plog.attempts[0].epoch:
                self.report(
                    "cancel-stops-forward",
                    [f"{key!r} {phase} started (#{plog.start}) by a task created after "
                     f"cancellation {plog.attempts[0].epoch}"],
                )  # fmt: skip

    def failure_stops_pre(self) -> None:
        """After a pre failure reaches sdax, no pre starts that it had not released before.

        Only failures sdax hears of in the same step as our last event count
        (no task group, which awaits its children first): then a pre released
        before the failure must have had all its dependencies end before it.
        """
        failed_at = math.inf
        for (key, phase), plog in self.phases.items():
            plain = self._plain(key, phase)
            outcomes = self.possible[(key, phase)]
            if phase == PRE and plain and outcomes and all(o.kind in FAILURES for o in outcomes):
                failed_at = min(failed_at, plog.final.end)
        for ev in self.record.log:
            if ev.kind == FATAL and ev.phase in FORWARD and not ev.part and self._plain(*ev[2:4]):
                failed_at = min(failed_at, ev.seq)
        for (key, phase), plog in self.phases.items():
            if phase != PRE or plog.start < failed_at:
                continue
            deps = [self.phases.get((d, PRE)) for d in self.shape.effective_pre_deps[key]]
            if max((dep.end for dep in deps if dep is not None), default=-1) > failed_at:
                self.report(
                    "failure-stops-pre",
                    [f"{key!r} pre_execute started at #{plog.start}, released after the "
                     f"failure at #{failed_at}"],
                )  # fmt: skip

    def _plain(self, key: Hashable, phase: str) -> bool:
        """Does sdax hear of this phase's end in the step of its last event?"""
        return self.shape.policy(key, phase).kind in ("func", "sync")

    def execute_gate(self) -> None:
        """EXECUTE starts only after every pre succeeded; no pre runs after it began."""
        starts = [p.start for (k, ph), p in self.phases.items() if ph == EXEC]
        if not starts:
            return
        first = min(starts)
        for node in self.shape.nodes:
            if PRE not in node.policies:
                continue
            plog = self.ran(node.key, PRE)
            if plog is None or plog.end > first:
                end = "never ran" if plog is None else f"ended at #{plog.end}"
                self.report("execute-gate", [f"execute began at #{first}; {node.key!r} pre {end}"])
            else:
                self.require_ok(node.key, "execute-gate", f"execute began at #{first}")

    def liveness(self) -> None:
        """With nothing to stop it, every pre and every execute runs."""
        if self.ent[PRE].since < math.inf:
            return
        phases = [PRE] if self.ent[EXEC].since < math.inf else [PRE, EXEC]
        missing = [
            f"{key!r} {phase}"
            for key, phase in self.shape.phase_keys()
            if phase in phases and (key, phase) not in self.phases
        ]
        if missing:
            self.report("liveness", [f"never started although nothing stopped the run: {missing}"])

    def pre_succeeded(self, key: Hashable) -> Tri:
        """Did `key`'s pre succeed: True, False, or None (a race decided; both allowed)."""
        kinds = {o.kind for o in self.possible.get((key, PRE), set())}
        if OK not in kinds:
            return False
        return True if kinds == {OK} else None

    def limits(self) -> None:
        """No per-run limit has more units in use than its capacity."""
        self.report("limits", capacity.run_problems(self.shape, self.record.log))

    def told(self) -> None:
        """Our observer's BEGIN events and the RunReport agree with the log."""
        told = Told(self.shape, self.record, self.phases, self.possible, self.ent, self.deadline)
        self.report("told", told.problems())
        self.unseen = told.unseen

    def post_eligibility(self) -> None:
        """Exactly the eligible tasks get their post (started exactly once: see `log`)."""
        aborted = self.ent[PRE].since < math.inf
        owed = eligibility(self.shape, self.phases, self.pre_succeeded, aborted, self.unseen)
        self.owed_not_run = []
        for key, eligible in owed.items():
            ran = self.ran(key, POST) is not None
            if eligible is True and not ran and self.record.plan.options.budget_may_expire:
                self.owed_not_run.append(key)  # skipped by the budget? (abandoned-reported)
            elif eligible is True and not ran:
                self.report("post-eligibility", [f"{key!r} is eligible but its post never ran"])
            elif eligible is False and ran:
                self.report("post-eligibility", [f"{key!r} is not eligible but its post ran"])
            elif eligible is False and key in self.skipped:
                self.report("post-eligibility", [f"{key!r} owes no cleanup, yet is reported "
                                                 "as a cleanup the budget skipped"])  # fmt: skip

    def cleanup_uninterrupted(self) -> None:
        """Only a post's own timeout, cleanup_timeout or the budget stops a post."""
        problems = interruption_problems(self.shape, self.record.plan, self.record.log)
        self.report("cleanup-uninterrupted", problems)

    def abandoned_reported(self) -> None:
        """Every post the budget cut short or skipped is reported so, and nothing else."""
        check, record = self.abandoned, self.record
        check.check_failures()
        check.check_cut_short()
        check.check_owed(self.owed_not_run)
        check.check_no_start_after(record.log)
        mode = record.plan.options.report
        report, _ = the_report(mode, record.raised, record.returned, record.recorded)
        check.check_report(report)
        self.report("abandoned-reported", check.problems)

    def post_order(self) -> None:
        """A post starts after the forward work and after its dependents' posts ended."""
        self.report("post-order", post_order_problems(self.shape, self.phases))

    def hygiene(self) -> None:
        """The context holds only what tasks wrote; no phase code runs after the run returned."""
        log, problems = self.record.log, []
        finish = [ev.seq for ev in log if ev.kind == FINISH]
        if len(finish) != 1:
            problems.append(f"the run finished {len(finish)} times")
        elif late := [ev for ev in log if ev.seq > finish[0] and ev.kind != AFTER]:
            problems.append(f"phase code ran after the run returned: {late[:3]}")
        starts = {
            (ev.key, ev.phase, ev.attempt): ev.seq for ev in log if ev.kind == START and not ev.part
        }
        if dict(self.record.data) != starts:
            problems.append("the context's data differs from what the phase functions wrote")
        if self.record.extra_attributes:
            problems.append(f"attributes added to the context: {self.record.extra_attributes}")
        self.report("hygiene", problems)
        self.report("threads", list(self.record.thread_problems))
