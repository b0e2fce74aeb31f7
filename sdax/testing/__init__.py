"""Helpers for testing code that uses sdax (and sdax itself).

Monte-carlo testing of your own processor (`MonteCarlo`): wrap an already
built processor so its phase functions suffer seeded faults (raise, hang
past their timeout, slow down; and the caller cancelled from outside at a
random point), run N seeded runs K at a time on asyncio or uvloop, and check
every run against sdax's cleanup promises and your own invariants. Each
violation names its seed and a one-line command that replays it; the
command line is `python -m sdax.testing run|replay module:attribute ...`.

Two seeded shuffles, `shuffled_release(seed)` and `ShuffledLoop(seed)`
(sdax.testing.shuffle), keep tests from relying on an order nobody promised.
"""

from sdax.testing.checks import CheckedRun
from sdax.testing.faults import (
    Fault,
    FaultRates,
    InjectedFault,
    InjectedRetryableFault,
    with_faults,
)
from sdax.testing.montecarlo import Invariant, MonteCarlo, new_loop
from sdax.testing.results import MonteCarloResult, Violation
from sdax.testing.shuffle import ShuffledLoop, shuffled_release

__all__ = [
    "CheckedRun",
    "Fault",
    "FaultRates",
    "InjectedFault",
    "InjectedRetryableFault",
    "Invariant",
    "MonteCarlo",
    "MonteCarloResult",
    "ShuffledLoop",
    "Violation",
    "new_loop",
    "shuffled_release",
    "with_faults",
]
