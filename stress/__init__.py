"""Monte-carlo stress runner for sdax: random processors, random faults, checked runs.

`python -m stress --runs N --seed S [--loop asyncio|uvloop] [--concurrency C]`
builds random processors (DAGs and level-built, join nodes, every kind of
phase function, thread phases included, random timeouts and retries,
max_concurrency and named limits, per run or shared), runs each with a
random fault plan (raises, retries, timeouts, hangs, self-cancellation,
task-group children failing late, threads that outlive their run, rare
fatal errors, cancellation of the whole run at a random moment) and random
options (a run deadline, a cleanup_timeout, a cleanup_budget, a RunReport,
an observer), and checks every run against the invariants of SPEC §4 and
of the README's "Beyond 0.7.2" from a log the phase functions write. See
stress/invariants.py for the list. Every K-th run (`--replay-check K`) is
also replayed twice on a deterministic loop, which must give the same
event order both times (stress.determinism).

Modules: model (plain data), generate and plans (seeded randomness),
declare, faults, threads and chain (the scripted phase functions and what
they log), outcomes, failures, cleanup, abandoned, capacity, runreports,
told and invariants (the checker), drive and runner (running batches on a
loop), virtual and determinism (same seed, same run), notes, soak, report,
__main__ (CLI), alter (broken records, for the tests).
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
