"""Soak mode: watch resident memory, live tasks and open file descriptors.

A sample is taken (after a full garbage collection) once the warm-up is
over, then every `every` runs and at the end. The soak passes only if,
compared with the warm-up sample, memory grew by at most `RSS_SLACK` and
the task and descriptor counts did not change.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
from dataclasses import dataclass, field

RSS_SLACK = 5 * 1024 * 1024  # bytes


@dataclass(frozen=True)
class Sample:
    runs: int
    rss: int  # bytes
    tasks: int
    fds: int

    def line(self) -> str:
        return (
            f"[soak] {self.runs:>8} runs: rss {self.rss / 2**20:7.1f} MB, "
            f"live tasks {self.tasks}, open fds {self.fds}"
        )


def rss_bytes() -> int:
    """Resident set size now (/proc/self/statm; peak RSS where there is no /proc)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


@dataclass
class Soak:
    runs: int
    every: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def warm_up(self) -> int:
        return min(self.every, max(1, self.runs // 10))

    def after(self, done: int) -> None:
        """Called after each batch with the number of runs done so far."""
        last = self.samples[-1].runs if self.samples else 0
        due = self.warm_up if not self.samples else (last // self.every + 1) * self.every
        if done >= due or (done >= self.runs and last < done):
            self.take(done)

    def take(self, done: int) -> None:
        gc.collect()
        sample = Sample(done, rss_bytes(), len(asyncio.all_tasks()), open_fds())
        self.samples.append(sample)
        label = " (warm-up baseline)" if len(self.samples) == 1 else ""
        print(sample.line() + label, flush=True)

    @property
    def flat(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        if len(self.samples) < 2:
            return ["fewer than two samples: run more (at least twice the warm-up)"]
        base, found = self.samples[0], []
        for sample in self.samples[1:]:
            if sample.rss - base.rss > RSS_SLACK:
                found.append(
                    f"rss grew by {(sample.rss - base.rss) / 2**20:.1f} MB by run {sample.runs}"
                )
            if sample.tasks != base.tasks:
                found.append(f"live tasks {base.tasks} -> {sample.tasks} by run {sample.runs}")
            if sample.fds != base.fds:
                found.append(f"open fds {base.fds} -> {sample.fds} by run {sample.runs}")
        return found
