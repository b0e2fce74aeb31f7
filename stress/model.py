"""Plain data shared by every part of the stress runner.

A `Shape` is what a processor was built from (tasks, dependencies, the
policy of each phase function) and is shared by every run of that
processor. A `RunPlan` is what one run does: for each phase function, what
each attempt does (return, raise, block, ...), and whether and when the run
itself is cancelled. Both are immutable and derived from seeds only, so a
seed always replays the same processor and plan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from sdax import RetryableException

# TaskFunction's default retryable_exceptions (SPEC §2).
DEFAULT_RETRYABLE: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    RetryableException,
)

PRE, EXEC, POST = "pre_execute", "execute", "post_execute"
PHASES = (PRE, EXEC, POST)
FORWARD = (PRE, EXEC)

# Timeouts at or under this many seconds are "short": an attempt that blocks
# under one ends by itself, so it needs no cancellation to finish the run.
SHORT_TIMEOUT = 0.002


def short(seconds: float | None) -> bool:
    """Whether a timeout of `seconds` can expire within a run (30 s never does)."""
    return seconds is not None and seconds <= SHORT_TIMEOUT


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """A `sdax.Limit` the processor declares: per run, or shared by the runs of a batch."""

    name: str
    capacity: int
    shared: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """How one phase function is declared: its kind and its retry/timeout policy."""

    # "func" (task_func), "group" (task_group_func), "sync" (task_sync_func) or
    # "thread" (task_thread_func)
    kind: str
    timeout: float | None = None
    retries: int = 0
    initial_delay: float = 0.0
    backoff_factor: float = 1.0
    # Which failures are retried: "default" (TimeoutError, ConnectionError,
    # RetryableException), "all" (Exception, and CancelledError, which sdax must
    # never retry anyway) or "narrow" (ConnectionError only, which we never raise).
    retry_on: str = "default"
    # (index into Shape.limits, units) as declared: a limit may be named twice
    # (sdax adds the units up); pres and executes only.
    limits: tuple[tuple[int, int], ...] = ()
    executor: str = "default"  # threads: asyncio's "default" executor or one "given"

    def retryable_exceptions(self) -> tuple[type[BaseException], ...]:
        if self.retry_on == "all":
            return (Exception, asyncio.CancelledError)
        if self.retry_on == "narrow":
            return (ConnectionError,)
        return DEFAULT_RETRYABLE

    @property
    def attempts(self) -> int:
        return self.retries + 1

    @property
    def short_timeout(self) -> bool:
        """Whether attempts can time out here: longer timeouts (30 s) never expire in a run."""
        return short(self.timeout)

    def units(self) -> dict[int, int]:
        """Units held of each limit (by index), named-twice uses added up as sdax does."""
        held: dict[int, int] = {}
        for limit, units in self.limits:
            held[limit] = held.get(limit, 0) + units
        return held


@dataclass(frozen=True, slots=True)
class Node:
    """A task of the graph (a join node when `policies` is empty)."""

    key: Hashable
    deps: tuple[Hashable, ...]
    policies: Mapping[str, Policy]
    level: int | None = None  # set for tasks declared through the level builder


@dataclass(frozen=True)
class Shape:
    """A processor's graph as the checker models it, in topological order.

    For a level-built processor the model includes its own join nodes
    between levels (the builder adds equivalent ones that we never see).
    """

    nodes: tuple[Node, ...]
    builder: str  # "dag" or "levels"
    declaration_order: tuple[Hashable, ...] = ()
    max_concurrency: int | None = None  # build(max_concurrency=...): pres/executes queue for slots
    limits: tuple[LimitSpec, ...] = ()  # the named limits its phase functions use

    @cached_property
    def by_key(self) -> dict[Hashable, Node]:
        return {node.key: node for node in self.nodes}

    @cached_property
    def dependents(self) -> dict[Hashable, tuple[Hashable, ...]]:
        found: dict[Hashable, list[Hashable]] = {node.key: [] for node in self.nodes}
        for node in self.nodes:
            for dep in node.deps:
                found[dep].append(node.key)
        return {key: tuple(keys) for key, keys in found.items()}

    @cached_property
    def effective_pre_deps(self) -> dict[Hashable, frozenset[Hashable]]:
        """SPEC §4: direct dependencies with a pre, looking through those without one."""
        effective: dict[Hashable, frozenset[Hashable]] = {}
        for node in self.nodes:  # topological: dependencies are done first
            found: set[Hashable] = set()
            for dep in node.deps:
                found |= {dep} if self.has(dep, PRE) else effective[dep]
            effective[node.key] = frozenset(found)
        return effective

    def has(self, key: Hashable, phase: str) -> bool:
        return phase in self.by_key[key].policies

    def policy(self, key: Hashable, phase: str) -> Policy:
        return self.by_key[key].policies[phase]

    def phase_keys(self) -> list[tuple[Hashable, str]]:
        """Every declared phase function as (task key, phase)."""
        return [(node.key, phase) for node in self.nodes for phase in node.policies]

    def describe(self) -> str:
        cap = "" if self.max_concurrency is None else f", max_concurrency={self.max_concurrency}"
        limits = "".join(f", {spec}" for spec in self.limits)
        lines = [f"{self.builder}-built processor, {len(self.nodes)} nodes{cap}{limits}:"]
        for node in self.nodes:
            level = "" if node.level is None else f" level={node.level}"
            phases = ", ".join(
                f"{phase}[{_policy_text(policy)}]" for phase, policy in node.policies.items()
            )
            deps = ", ".join(map(repr, node.deps)) or "-"
            lines.append(f"  {node.key!r}{level} <- {deps}: {phases or 'join'}")
        return "\n".join(lines)


def _policy_text(policy: Policy) -> str:
    parts = [policy.kind]
    if policy.timeout is not None:
        parts.append(f"timeout={policy.timeout:g}")
    if policy.retries:
        parts.append(f"retries={policy.retries} delay={policy.initial_delay:g}")
    if policy.retry_on != "default":
        parts.append(f"retry_on={policy.retry_on}")
    if policy.kind == "thread":
        parts.append(f"executor={policy.executor}")
    if policy.limits:
        parts.append("limits=" + ",".join(f"L{index}x{units}" for index, units in policy.limits))
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Act:
    """What one part (the body, or one task-group child) of an attempt does.

    ops: "ok", "raise" (non-retryable), "retryable", "fatal", "selfcancel"
    (raises CancelledError itself), "notawait" (returns a non-awaitable),
    "block" (waits forever; see `on_cancel`), "late" (a child that raises
    once the body has returned). `yields` loop iterations pass first.
    `trigger`, for a block, cancels the whole run that many iterations after
    the block starts: it is what guarantees a block without a short timeout ends.
    """

    op: str
    yields: int = 0
    on_cancel: str = "reraise"  # for a block: "reraise", "swallow" (return) or "raise"
    trigger: int | None = None
    # For a block in a thread (which never sees a cancellation): let it go as soon as
    # sdax stops waiting for it, rather than only when the run has returned.
    release_early: bool = False

    def __repr__(self) -> str:
        extra = [f"yields={self.yields}"] if self.yields else []
        if self.op == "block":
            extra.append(f"on_cancel={self.on_cancel}")
            extra.append("no trigger" if self.trigger is None else f"trigger={self.trigger}")
            if self.release_early:
                extra.append("release_early")
        return f"{self.op}({', '.join(extra)})"


@dataclass(frozen=True, slots=True)
class Attempt:
    body: Act
    children: tuple[Act, ...] = ()

    def __repr__(self) -> str:
        return repr(self.body) + (f" children {list(self.children)}" if self.children else "")


@dataclass(frozen=True, slots=True)
class PhasePlan:
    """The attempts of one phase function in one run; later attempts repeat the last."""

    fault: str  # the fault kind, for the summary ("none" when all goes well)
    attempts: tuple[Attempt, ...]

    def attempt(self, number: int) -> Attempt:
        return self.attempts[min(number, len(self.attempts)) - 1]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How `process_tasks` is called: deadline, cleanup bounds, report, observer."""

    timeout: float | None = None  # the run's deadline
    cleanup_timeout: float | None = None
    cleanup_budget: float | None = None  # bounds the whole POST stage (SPEC 4)
    report: str = "none"  # "none", "flag" (report=True) or "recorder" (a ReportRecorder observer)
    observe: bool = False  # our observer logs each phase sdax says it started

    def describe(self) -> str:
        parts = [f"timeout={self.timeout}", f"cleanup_timeout={self.cleanup_timeout}"]
        parts.append(f"cleanup_budget={self.cleanup_budget}")
        parts += [f"report={self.report}", f"observe={self.observe}"]
        return " ".join(parts)

    @property
    def budget_may_expire(self) -> bool:
        """Whether the cleanup budget can run out within a run (30 s never does)."""
        return short(self.cleanup_budget)

    @property
    def posts_bounded(self) -> bool:
        """Whether something other than a post's own timeout can stop a blocked post."""
        return short(self.cleanup_timeout) or self.budget_may_expire


@dataclass(frozen=True)
class RunPlan:
    """The faults of one run.

    `cancel_mode` says how the run is cancelled when something triggers it:
    "cancel" (task.cancel() of the task awaiting the run), "timeout" (an
    enclosing asyncio.timeout is made to expire; later triggers cancel), or
    "none" (no planned cancellation; blocks still trigger task.cancel()).
    `trigger` is ("iterations", K) or ("phase", key, phase, delay).
    """

    seed: int
    phases: Mapping[tuple[Hashable, str], PhasePlan]
    cancel_mode: str = "none"
    trigger: tuple[object, ...] | None = None
    faults: tuple[str, ...] = field(default=())  # fault kinds used, for the summary
    options: RunOptions = RunOptions()

    @property
    def trigger_phase(self) -> tuple[Hashable, str] | None:
        """The phase whose first attempt, when it starts, triggers the cancellation."""
        if self.trigger is None or self.trigger[0] != "phase":
            return None
        return self.trigger[1], str(self.trigger[2])

    @property
    def trigger_delay(self) -> int:
        """Loop iterations between the trigger and the cancellation ("iterations": K)."""
        assert self.trigger is not None
        delay = self.trigger[-1]
        assert isinstance(delay, int)
        return delay

    def describe(self) -> str:
        lines = [
            f"run plan (seed {self.seed}): cancel={self.cancel_mode} trigger={self.trigger} "
            + self.options.describe()
        ]
        for (key, phase), plan in self.phases.items():
            if plan.fault != "none":
                attempts = "; ".join(map(repr, plan.attempts))
                lines.append(f"  {key!r} {phase}: {plan.fault}: attempts {attempts}")
        return "\n".join(lines)
