"""Human-readable output: progress lines, violations with replay commands, the summary."""

from __future__ import annotations

import time

from stress.abandoned import INVARIANTS
from stress.faults import Ev
from stress.runner import RunResult, StressConfig, Summary

SHOWN_IN_FULL = 5  # violating runs printed with their log; the others in one line


def replay_command(config: StressConfig, index: int) -> str:
    """The command that reruns run `index` alone (add --with-batch for its batch-mates too)."""
    parts = [
        "python -m stress",
        f"--replay {config.seed}:{index}",
        f"--runs {config.runs}",
        f"--concurrency {config.concurrency}",
        f"--loop {config.loop_name}",
    ]
    if config.soak:
        parts.append("--soak")
    if config.replay_check != StressConfig.replay_check:
        parts.append(f"--replay-check {config.replay_check}")
    if config.max_tasks != StressConfig.max_tasks:
        parts.append(f"--max-tasks {config.max_tasks}")
    return " ".join(parts)


class Progress:
    """Prints a plain line at most every `interval` seconds (wall clock: display only)."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.started = time.monotonic()
        self.last = self.started

    def __call__(self, summary: Summary) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        total = summary.config.runs
        print(
            f"[stress] {summary.runs}/{total} runs, {summary.violations} violations, "
            f"{now - self.started:.1f} s",
            flush=True,
        )


RUN_EVENTS = {
    "cancel": "run cancellation #{obj} took effect",
    "finish": "run returned",
    "deadline": "the twin of sdax's deadline timer fired",
}


def format_event(ev: Ev) -> str:
    if ev.kind in RUN_EVENTS:
        return f"  #{ev.seq:<4} -- {RUN_EVENTS[ev.kind].format(obj=ev.obj)}"
    if ev.kind == "begin":
        return f"  #{ev.seq:<4} {ev.key!r} {ev.phase}: the observer heard it start"
    part = "body" if ev.part == 0 else f"child {ev.part}"
    extra = f" {type(ev.obj).__name__}" if isinstance(ev.obj, BaseException) else ""
    if ev.kind in ("start", "after") and isinstance(ev.obj, str):
        extra = f" ({ev.obj})"  # a thread's attempt; the end its thread had once abandoned
    epoch = f" (created after cancel #{ev.epoch})" if ev.epoch else ""
    where = f"{ev.key!r} {ev.phase} attempt {ev.attempt} {part}"
    return f"  #{ev.seq:<4} {where}: {ev.kind}{extra}{epoch}"


def format_violations(config: StressConfig, result: RunResult, full: bool) -> str:
    """One run's violations: seed, invariants, replay command, and (if `full`) the log."""
    lines = [
        f"VIOLATION in run {result.index} (master seed {config.seed}, run seed {result.seed}, "
        f"outcome {result.outcome})",
        *(f"  [{v.invariant}] {v.detail}" for v in result.violations),
        f"  replay: {replay_command(config, result.index)}",
        "  (add --with-batch to rerun it alongside the runs that shared its processor)",
    ]
    if full:
        lines.append(describe_run(result))
    return "\n".join(lines)


def describe_run(result: RunResult) -> str:
    """The processor, the plan, what the run raised, and its event log."""
    lines: list[str] = []
    if result.shape is not None:
        lines.append(result.shape.describe())
    record = result.record
    if record is not None:
        lines.append(record.plan.describe())
        lines.append(f"raised: {record.raised!r}")
        lines.append("event log:")
        lines.extend(format_event(ev) for ev in record.log)
    return "\n".join(lines)


def _table(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return [f"{title}: none"]
    width = max(len(name) for name in counts)
    rows = [f"  {name:<{width}}  {count:>8}" for name, count in sorted(counts.items())]
    return [f"{title}:", *rows]


def format_summary(summary: Summary) -> str:
    config = summary.config
    rate = summary.runs / summary.elapsed if summary.elapsed else 0.0
    mode = "soak" if config.soak else "stress"
    lines = [
        "",
        f"== {mode} summary: seed {config.seed}, loop {config.loop_name}, concurrency "
        f"{config.concurrency} ==",
        f"runs: {summary.runs} in {summary.elapsed:.1f} s ({rate:.0f} runs/s)",
        *_table("faults planned, by kind (phase faults; run-level cancellations)", summary.faults),
        *_table("outcomes by kind", summary.outcomes),
        *_table("violations by invariant", summary.violation_counts),
        f"determinism: {summary.determinism_checked} runs replayed twice on the deterministic "
        f"loop; {summary.violation_counts.get('determinism', 0)} differed",
        "cleanup invariants (runs with something to check; violations):",
        *(
            f"  {name:<22} {summary.exercised.get(name, 0):>8} runs; "
            f"{summary.violation_counts.get(name, 0)} violations"
            for name in INVARIANTS
        ),
        *_table("observations (allowed; notable, or showing coverage)", summary.notes),
    ]
    if summary.soak is not None:
        problems = summary.soak.problems()
        lines.append("soak: flat" if not problems else "soak: NOT flat: " + "; ".join(problems))
    lines += [f"coverage floor not reached: {corner}" for corner in summary.uncovered]
    lines.append("PASS" if summary.passed else "FAIL")
    return "\n".join(lines)


def print_report(summary: Summary) -> None:
    config = summary.config
    for number, result in enumerate(summary.failed_runs):
        print(format_violations(config, result, full=number < SHOWN_IN_FULL), flush=True)
    if summary.replayed is not None and not summary.replayed.violations:
        print(f"run {summary.replayed.index}: no violation\n" + describe_run(summary.replayed))
    print(format_summary(summary), flush=True)
