"""The invariants every run must satisfy, checked from its log alone.

`check_run(shape, record)` returns the violations of one run (empty when
all is well), each named after the invariant it breaks:

- log: every part that started finished once; attempts are numbered 1, 2, ...
  (a phase started twice shows up here); only declared phases ran.
- retries-and-outcomes: at most retries+1 attempts; only a retryable failure
  is retried, and one always is unless sdax was entitled to cancel; nothing
  is cancelled by sdax without a cause (stress.outcomes).
- run-outcome: the run raises what SPEC says, by priority (stress.failures).
- failures-match: the reported failures are exactly the phases that failed,
  with the very exceptions raised, notes naming task and phase.
- pre-order: no pre starts before its effective pre-dependencies succeeded.
- cancel-stops-forward: no pre or execute starts after a caller cancellation.
- failure-stops-pre: no pre is released after a pre failure reached sdax.
- execute-gate: EXECUTE starts only once every pre succeeded.
- liveness: with nothing to stop it, every pre and execute runs.
- post-eligibility: exactly the eligible tasks are cleaned up (stress.cleanup).
- post-order: a post starts after all forward work and after the posts of
  its nearest dependents that were cleaned up.
- hygiene: the context holds only what tasks wrote; nothing runs after the
  run returned (the runner adds: no pending tasks, warnings or loop errors).

The checks run in order because the early ones narrow what later ones may
assume (a reported failure, or a dependent that started, tells which of
several possible outcomes a phase really had).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from sdax import SdaxExecutionError
from stress.cleanup import Tri, eligibility, post_order_problems
from stress.failures import check_failures, expected_raise
from stress.faults import FATAL, FINISH, START, Ev
from stress.model import EXEC, FORWARD, POST, PRE, RunPlan, Shape
from stress.outcomes import (
    FAILURES,
    OK,
    Outcome,
    PhaseLog,
    entitlements,
    fold,
    phase_outcomes,
)


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
        checker.post_eligibility,
        checker.post_order,
        checker.hygiene,
    ):
        check()
    return checker.violations


def observations(shape: Shape, log: list[Ev]) -> list[str]:
    """Allowed but notable: cleanups of tasks whose pre_execute never ran a line.

    sdax owes cleanup once it has started a pre's task, even if that task is
    cancelled before its first step (SPEC: "was started, whatever became of it").
    """
    started = {(ev.key, ev.phase) for ev in log if ev.kind == START and not ev.part}
    return [
        "post ran for a pre cancelled before its first step"
        for node in shape.nodes
        if PRE in node.policies and (node.key, POST) in started and (node.key, PRE) not in started
    ]


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
        self.ent = entitlements(shape, record.log, self.phases)
        self.possible: dict[tuple[Hashable, str], set[Outcome]] = {}
        problems = []
        for (key, phase), plog in self.phases.items():
            policy = shape.policy(key, phase)
            self.possible[(key, phase)] = phase_outcomes(plog, policy, self.ent[phase], problems)
        self.report("retries-and-outcomes", problems)

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
        verdict = expected_raise(
            record.log, record.direct_cancels, record.timeout_expired, record.raised
        )
        if verdict == "check-failures":
            raised = record.raised
            assert raised is None or isinstance(raised, SdaxExecutionError)
            self.report("failures-match", check_failures(raised, self.possible))
        elif verdict is not None:
            self.report("run-outcome", [verdict])

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
            plain = self.shape.policy(key, phase).kind != "group"
            outcomes = self.possible[(key, phase)]
            if phase == PRE and plain and outcomes and all(o.kind in FAILURES for o in outcomes):
                failed_at = min(failed_at, plog.final.end)
        for ev in self.record.log:
            if ev.kind == FATAL and ev.phase in FORWARD and ev.part == 0 and self._plain(ev):
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

    def _plain(self, ev: Ev) -> bool:
        return self.shape.policy(ev.key, ev.phase).kind != "group"

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

    def post_eligibility(self) -> None:
        """Exactly the eligible tasks get their post (started exactly once: see `log`)."""
        aborted = self.ent[PRE].since < math.inf
        owed = eligibility(self.shape, self.phases, self.pre_succeeded, aborted)
        for key, eligible in owed.items():
            ran = self.ran(key, POST) is not None
            if eligible is True and not ran:
                self.report("post-eligibility", [f"{key!r} is eligible but its post never ran"])
            elif eligible is False and ran:
                self.report("post-eligibility", [f"{key!r} is not eligible but its post ran"])

    def post_order(self) -> None:
        """A post starts after the forward work and after its dependents' posts ended."""
        self.report("post-order", post_order_problems(self.shape, self.phases))

    def hygiene(self) -> None:
        """The context holds only what tasks wrote; no phase code runs after the run returned."""
        log, problems = self.record.log, []
        finish = [ev.seq for ev in log if ev.kind == FINISH]
        if len(finish) != 1:
            problems.append(f"the run finished {len(finish)} times")
        elif late := [ev for ev in log if ev.seq > finish[0]]:
            problems.append(f"phase code ran after the run returned: {late[:3]}")
        starts = {
            (ev.key, ev.phase, ev.attempt): ev.seq for ev in log if ev.kind == START and not ev.part
        }
        if dict(self.record.data) != starts:
            problems.append("the context's data differs from what the phase functions wrote")
        if self.record.extra_attributes:
            problems.append(f"attributes added to the context: {self.record.extra_attributes}")
        self.report("hygiene", problems)
