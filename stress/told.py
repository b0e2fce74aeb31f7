"""The `told` invariant: what sdax told of a run against what the log shows.

Puts together the checks of stress.runreports for one run, and learns on
the way, for each pre that left no trace in the log, whether sdax started
it (and so owes its task cleanup): our observer heard it start or not, or
the report lists it as cancelled (started, then cancelled before its first
step) or skipped (never started: say, still queued for a limit).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING

from sdax import RunReport
from sdax.vocabulary import CancelReason
from stress.faults import FATAL
from stress.model import EXEC, POST, PRE, Shape
from stress.outcomes import FAILURES, Entitlement, Outcome, PhaseLog
from stress.runreports import (
    REASONS,
    Tri,
    begun,
    entries,
    label,
    observer_problems,
    phase_problems,
    run_problems,
    the_report,
)

if TYPE_CHECKING:
    from stress.invariants import RunRecord

Where = tuple[Hashable, str]


class Told:
    def __init__(
        self,
        shape: Shape,
        record: RunRecord,
        phases: Mapping[Where, PhaseLog],
        possible: Mapping[Where, set[Outcome]],
        ent: Mapping[str, Entitlement],
        deadline: float,
    ) -> None:
        self.shape, self.record, self.phases, self.possible = shape, record, phases, possible
        self.ent, self.deadline = ent, deadline
        self.unseen: dict[Hashable, bool] = {}  # pres with no trace: started by sdax?

    def problems(self) -> list[str]:
        record, problems = self.record, list[str]()
        started: set[Where] | None = None
        if record.plan.options.observe:
            started, problems = begun(record.log)
            problems += observer_problems(self.shape, started, self.phases, self.cancellable())
            pres = (key for key, phase in self.shape.phase_keys() if phase == PRE)
            self.unseen = {k: (k, PRE) in started for k in pres if (k, PRE) not in self.phases}
        mode = record.plan.options.report
        report, api = the_report(mode, record.raised, record.returned, record.recorded)
        problems += api
        if report is not None:
            problems += run_problems(report, record.raised)
            problems += self.phase_reports(report, started)
        return problems

    def cancellable(self) -> dict[str, bool]:
        """May sdax have cancelled a phase of each kind (say, before its first step)?"""
        return {
            PRE: self.ent[PRE].since < math.inf,
            EXEC: self.ent[EXEC].since < math.inf,
            POST: self.ent[POST].ever,
        }

    def reasons(self) -> set[str]:
        """The reasons sdax may give for a cancellation in this run."""
        pre_failed = any(
            outcome.kind in FAILURES
            for (_, phase), outcomes in self.possible.items()
            if phase == PRE
            for outcome in outcomes
        )
        happened = {
            CancelReason.CALLER_CANCELLED: bool(self.ent[EXEC].marks),
            CancelReason.DEADLINE: self.deadline < math.inf,
            CancelReason.FATAL_ERROR: any(ev.kind == FATAL for ev in self.record.log),
            CancelReason.SIBLING_FAILED: pre_failed,
        }
        return {reason.value for reason, yes in happened.items() if yes}

    def phase_reports(self, report: RunReport, started: set[Where] | None) -> list[str]:
        problems: list[str] = []
        found = entries(report, problems)
        declared = {(label(key), phase): (key, phase) for key, phase in self.shape.phase_keys()}
        if found.keys() != declared.keys():
            problems.append(f"phases reported {sorted(found)} != declared {sorted(declared)}")
        reasons, cancellable = self.reasons(), self.cancellable()
        record_budget = self.record.plan.options.budget_may_expire
        for name, (key, phase) in declared.items():
            if (entry := found.get(name)) is None:
                continue
            # Not observed: a phase with no trace may have been cancelled before its first
            # step (a race) whenever sdax could cancel it.
            unseen: Tri = None if cancellable[phase] else False
            if started is not None:
                unseen = (key, phase) in started
            plog, possible = self.phases.get((key, phase)), self.possible.get((key, phase), set())
            skippable = phase == POST and record_budget
            allowed = reasons & REASONS[phase]
            for problem in phase_problems(entry, plog, possible, unseen, allowed, skippable):
                problems.append(f"{key!r} {phase}: {problem}")
            if phase == PRE and plog is None and entry.outcome in ("skipped", "cancelled"):
                self.unseen.setdefault(key, entry.outcome == "cancelled")
        return problems
