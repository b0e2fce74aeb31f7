"""Coverage floors: the corners a stress run claims to reach, asserted.

A run of thousands of cases that never planned, say, a swallowed timeout or
never cut a post off by cleanup_timeout would pass while proving nothing
about that corner. From `MIN_RUNS` runs on, each corner below must have been
reached at least `floor(runs)` times, or the stress run fails. The rarest
corner here was reached about 1,100 times per 100,000 runs (seed 1, both
loops), so the floors hold with a wide margin; rarer corners are only shown.
"""

from __future__ import annotations

from collections.abc import Mapping

MIN_RUNS = 2000

# Faults the generator plans (stress.plans), with the run-level cancellations.
PLANNED = (
    "raise", "exhaust", "flaky", "timeout", "timeout-flaky", "hang", "swallow",
    "raise-on-cancel", "self-cancel", "not-awaitable", "child-fail", "child-late-fail",
    "child-hang", "fatal", "thread-raise", "thread-exhaust", "thread-flaky", "thread-hang",
    "thread-timeout", "thread-timeout-flaky", "run-cancel-on-iterations", "run-cancel-on-phase",
    "run-timeout-on-iterations", "run-timeout-on-phase", "deadline-short",
    "cleanup-timeout-short", "cleanup-budget-short",
)  # fmt: skip

# What the checker saw happen (stress.invariants notes).
OBSERVED = (
    "a post was cut off by cleanup_timeout",
    "a per-run limit was full",
    "the run timed out, with failures as well",
    # Cleanup is shielded and budgeted (SPEC 4, stress.abandoned):
    "a caller cancel landed inside a running post",
    "the cleanup budget cut a running post short",
    "the cleanup budget skipped a pending post",
    "caller cancels landed twice or more before cleanup ended",
)


def floor(runs: int) -> int:
    return max(1, runs // MIN_RUNS)


def uncovered(runs: int, planned: Mapping[str, int], observed: Mapping[str, int]) -> list[str]:
    """The corners reached fewer times than the floor, each with its count."""
    if runs < MIN_RUNS:
        return []
    need = floor(runs)
    return [
        f"{corner!r} reached {counts.get(corner, 0)} times (floor {need})"
        for corners, counts in ((PLANNED, planned), (OBSERVED, observed))
        for corner in corners
        if counts.get(corner, 0) < need
    ]
