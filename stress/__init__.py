"""Monte-carlo stress runner for sdax: random processors, random faults, checked runs.

`python -m stress --runs N --seed S [--loop asyncio|uvloop] [--concurrency C]`
builds random processors (DAGs and level-built, join nodes, every kind of
phase function, random timeouts and retries), runs each with a random fault
plan (raises, retries, timeouts, hangs, self-cancellation, task-group
children failing late, rare fatal errors, cancellation of the whole run at
a random moment), and checks every run against the invariants of SPEC §4
from a log the phase functions write. See stress/invariants.py for the list.

Modules: model (plain data), generate and plans (seeded randomness), faults
(the scripted phase functions), outcomes, failures and invariants (the
checker), runner (running batches on a loop), soak, report, __main__ (CLI).
"""

from stress.invariants import RunRecord, Violation, check_run
from stress.runner import RunResult, StressConfig, Summary, run_stress

__all__ = [
    "RunRecord",
    "RunResult",
    "StressConfig",
    "Summary",
    "Violation",
    "check_run",
    "run_stress",
]
