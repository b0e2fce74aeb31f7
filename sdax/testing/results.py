"""What a monte-carlo session found: its violations, and the counts of what it did."""

from __future__ import annotations

from dataclasses import dataclass, field

from sdax.errors import count_noun
from sdax.testing.faults import KINDS


@dataclass(frozen=True)
class Violation:
    """A promise a run broke: its seed, which invariant, what happened, how to replay it."""

    seed: int
    invariant: str
    message: str
    replay: str

    def __str__(self) -> str:
        return f"seed {self.seed}: {self.invariant}: {self.message}"


@dataclass
class MonteCarloResult:
    """What a monte-carlo session did: runs, faults injected, outcomes and violations."""

    runs: int
    seed: int
    loop: str
    concurrency: int
    violations: list[Violation] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    outcomes: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.violations

    @property
    def failing_seeds(self) -> list[int]:
        return sorted({violation.seed for violation in self.violations})

    def summary(self) -> str:
        """One line: runs, seeds, loop, violations, faults injected and outcomes."""
        last = self.seed + self.runs - 1
        faults = ", ".join(f"{kind} {count}" for kind, count in self.faults.items())
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        return (
            f"sdax.testing: {count_noun(self.runs, 'run')} "
            f"(seeds {self.seed}..{last}, {self.loop}, "
            f"concurrency {self.concurrency}, {self.elapsed:.1f} s): "
            f"{count_noun(len(self.violations), 'violation')} in "
            f"{count_noun(len(self.failing_seeds), 'seed')}; "
            f"faults injected: {faults}; outcomes: {outcomes}"
        )
