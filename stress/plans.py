"""Random fault plans: what each phase function does in one run.

Fault kinds (per phase): raise (non-retryable), exhaust (retryable, every
attempt), flaky (retryable, then succeeds on attempt k), timeout and
timeout-flaky (blocks under a short timeout), hang (blocks until cancelled),
swallow (blocks, swallows the cancellation, returns), raise-on-cancel,
self-cancel (raises CancelledError itself), not-awaitable (returns 42),
child-fail, child-late-fail (a task-group child fails after its parent
returned), child-hang, and rarely fatal (InjectedFatal, a BaseException).
Thread phases (which never see a cancellation) raise, fail retryably,
time out or hang; a hanging thread is let go when sdax stops waiting for
it, or only once the run has returned. Per run: maybe a cancellation of the
whole run (task.cancel() or an enclosing asyncio.timeout), when a given
phase starts or after K iterations; and the options of process_tasks: a
deadline (0, short or long), a cleanup_timeout, a cleanup_budget (0,
short or long), report=True or a ReportRecorder, and an observer that logs
which phases sdax started.

A plan must fit the processor's policies (a retry fault needs retries, a
timeout fault a short timeout) and must always let the run end: every
attempt that blocks either has a short timeout that ends it, or carries a
trigger that cancels the whole run a few loop iterations after it starts,
or (now and then) counts on a short run deadline (pres and executes) or a
short cleanup_timeout or cleanup_budget (posts) to end it. Cleanup is
shielded, so a post blocks only where its own timeout, a short
cleanup_timeout or a short budget ends it; a caller cancel it triggers
lands inside it and must leave it running. A budget that expires while a
post blocks abandons it, and skips the posts still waiting for it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Hashable

from stress.generate import weighted
from stress.model import POST, Act, Attempt, PhasePlan, Policy, RunOptions, RunPlan, Shape, short


def _ok(rng: random.Random, policy: Policy) -> Act:
    # With timeout=0 an attempt that yields even once times out: keep most quick.
    if policy.timeout == 0.0 and rng.random() < 0.8:
        return Act("ok")
    return Act("ok", yields=rng.randint(0, 2))


def _trigger(rng: random.Random, policy: Policy, bounded: bool = False) -> int | None:
    """No trigger when the phase's short timeout ends the block by itself, or (half
    the time) when the run's deadline or cleanup_timeout is `bounded`: short."""
    if policy.short_timeout or (bounded and rng.random() < 0.5):
        return None
    return rng.randint(0, 4)


def _healthy(rng: random.Random, policy: Policy) -> Attempt:
    children: tuple[Act, ...] = ()
    if policy.kind == "group":
        children = tuple(_ok(rng, policy) for _ in range(rng.randint(0, 2)))
    return Attempt(_ok(rng, policy), children)


def _repeat(attempt: Attempt, policy: Policy) -> tuple[Attempt, ...]:
    return (attempt,) * policy.attempts


def _then_ok(rng: random.Random, policy: Policy, failing: Attempt) -> tuple[Attempt, ...]:
    """Fail on attempts 1..k-1, succeed on attempt k (2 <= k <= retries + 1)."""
    k = rng.randint(2, policy.attempts)
    return (failing,) * (k - 1) + (Attempt(Act("ok")),)


def _child_fault(
    rng: random.Random, policy: Policy, fault: str, bounded: bool
) -> tuple[Attempt, ...]:
    body = _ok(rng, policy)
    if fault == "child-late-fail":
        return _repeat(Attempt(body, (Act("late", yields=rng.randint(0, 2)),)), policy)
    if fault == "child-hang":
        if rng.random() < 0.5:  # the body blocks too (and never swallows: children must end)
            body = Act("block", trigger=_trigger(rng, policy, bounded))
        child = Act("block", trigger=_trigger(rng, policy, bounded))
        return _repeat(Attempt(body, (child,)), policy)
    op = rng.choice(("raise", "retryable"))
    failing = Attempt(body, (_ok(rng, policy), Act(op, yields=rng.randint(0, 2))))
    if op == "retryable" and policy.retries and rng.random() < 0.5:
        return _then_ok(rng, policy, failing)
    return _repeat(failing, policy)


def _script(
    rng: random.Random, policy: Policy, fault: str, bounded: bool = False
) -> tuple[Attempt, ...]:
    """The attempts that produce `fault` under `policy` (`bounded`: see `_trigger`)."""
    y = rng.randint(0, 2)
    if fault.startswith("child-"):
        return _child_fault(rng, policy, fault, bounded)
    attempts = _simple(rng, policy, fault, y, _trigger(rng, policy, bounded))
    if policy.kind == "thread":  # a blocked thread is let go early, or when the run returns
        return tuple(_release(rng, attempt) for attempt in attempts)
    return attempts


def _release(rng: random.Random, attempt: Attempt) -> Attempt:
    if attempt.body.op != "block":
        return attempt
    return Attempt(dataclasses.replace(attempt.body, release_early=rng.random() < 0.5))


def _simple(
    rng: random.Random, policy: Policy, fault: str, y: int, trigger: int | None
) -> tuple[Attempt, ...]:
    simple: dict[str, Callable[[], tuple[Attempt, ...]]] = {
        "raise": lambda: (Attempt(Act("raise", y)),),
        "exhaust": lambda: _repeat(Attempt(Act("retryable", y)), policy),
        "flaky": lambda: _then_ok(rng, policy, Attempt(Act("retryable", y))),
        "timeout": lambda: _repeat(Attempt(Act("block")), policy),
        "timeout-flaky": lambda: _then_ok(rng, policy, Attempt(Act("block"))),
        "hang": lambda: (Attempt(Act("block", trigger=trigger)),),
        "swallow": lambda: (Attempt(Act("block", 0, "swallow", trigger)),),
        "raise-on-cancel": lambda: (Attempt(Act("block", 0, "raise", trigger)),),
        "self-cancel": lambda: (Attempt(Act("selfcancel", y)),),
        "not-awaitable": lambda: (Attempt(Act("notawait")),),
        "fatal": lambda: (Attempt(Act("fatal", y)),),
    }
    return simple[fault]()


# Faults whose attempt blocks until something outside the function ends it.
BLOCKING = frozenset(
    {"hang", "swallow", "raise-on-cancel", "child-hang", "timeout", "timeout-flaky"}
)


def allowed_faults(policy: Policy) -> list[str]:
    """The fault kinds (except fatal) that make sense for a phase with `policy`."""
    faults = ["raise", "exhaust", "self-cancel"]
    if policy.retries:
        faults.append("flaky")
    if policy.kind == "sync":
        return faults  # runs inline in one step: it cannot block or time out
    if policy.kind == "thread":  # a thread never sees a cancellation, nor raises one
        faults.remove("self-cancel")
    faults.append("hang")
    if policy.short_timeout:
        faults.append("timeout")
        if policy.retries:
            faults.append("timeout-flaky")
    if policy.kind == "thread":
        return faults
    faults.append("raise-on-cancel")
    if policy.kind == "func":
        faults += ["swallow", "not-awaitable"]
    else:
        faults += ["child-fail", "child-late-fail", "child-hang"]
    return faults


def _run_trigger(rng: random.Random, shape: Shape) -> tuple[str, tuple[object, ...] | None]:
    mode = weighted(rng, [("none", 60), ("cancel", 25), ("timeout", 15)])
    if mode == "none":
        return mode, None
    phases = shape.phase_keys()
    if phases and rng.random() < 0.5:
        key, phase = rng.choice(phases)
        return mode, ("phase", key, phase, rng.randint(0, 3))
    return mode, ("iterations", rng.randint(0, 80))


def random_options(rng: random.Random) -> RunOptions:
    """How process_tasks is called: deadline, cleanup bound, report, observer."""
    return RunOptions(
        timeout=weighted(rng, [(None, 60), (0.0, 10), (0.001, 15), (30.0, 15)]),
        cleanup_timeout=weighted(rng, [(None, 70), (0.0, 8), (0.001, 12), (30.0, 10)]),
        # 0 expires one loop iteration into POST (posts that finish in their first step
        # still finish); 0.001 while a blocked post waits; 30 s never.
        cleanup_budget=weighted(rng, [(None, 70), (0.0, 10), (0.001, 12), (30.0, 8)]),
        report=weighted(rng, [("none", 60), ("flag", 25), ("recorder", 15)]),
        observe=rng.random() < 0.4,
    )


def random_plan(shape: Shape, seed: int) -> RunPlan:
    """A fault plan for one run of a processor of `shape`, from `seed` alone."""
    rng = random.Random(seed)
    options = random_options(rng)
    density = weighted(rng, [(0.0, 20), (0.08, 45), (0.25, 35)])
    phases: dict[tuple[Hashable, str], PhasePlan] = {}
    used: list[str] = []
    for key, phase in shape.phase_keys():
        policy = shape.policy(key, phase)
        allowed = allowed_faults(policy)
        if phase == POST and not (policy.short_timeout or options.posts_bounded):
            # Cleanup is shielded (SPEC 4): no caller cancel ends a blocked post,
            # only its own timeout, a short cleanup_timeout or a short budget can.
            allowed = [fault for fault in allowed if fault not in BLOCKING]
        fault = rng.choice(allowed) if rng.random() < density else "none"
        if fault == "none":
            phases[(key, phase)] = PhasePlan("none", (_healthy(rng, policy),))
        else:
            bounded = options.posts_bounded if phase == POST else short(options.timeout)
            phases[(key, phase)] = PhasePlan(fault, _script(rng, policy, fault, bounded))
            used.append(f"thread-{fault}" if policy.kind == "thread" else fault)
    fatal_able = [where for where in phases if shape.policy(*where).kind != "thread"]
    if fatal_able and rng.random() < 0.03:  # rarely, one KeyboardInterrupt-style error
        key, phase = rng.choice(fatal_able)
        phases[(key, phase)] = _fatal(rng, shape.policy(key, phase))
        used.append("fatal")
    mode, trigger = _run_trigger(rng, shape)
    if trigger is not None:
        used.append(f"run-{mode}-on-{trigger[0]}")
    used += _option_names(options)
    return RunPlan(seed, phases, mode, trigger, tuple(used), options)


def _option_names(options: RunOptions) -> list[str]:
    """The options of a run, as "faults" for the summary."""
    names = []
    if options.timeout is not None:
        names.append(f"deadline-{'short' if short(options.timeout) else 'long'}")
    if options.cleanup_timeout is not None:
        names.append(f"cleanup-timeout-{'short' if short(options.cleanup_timeout) else 'long'}")
    if options.cleanup_budget is not None:
        names.append(f"cleanup-budget-{'short' if options.budget_may_expire else 'long'}")
    if options.report != "none":
        names.append(f"report-{options.report}")
    return names


def _fatal(rng: random.Random, policy: Policy) -> PhasePlan:
    if policy.kind == "group" and rng.random() < 0.5:
        attempt = Attempt(_ok(rng, policy), (Act("fatal", rng.randint(0, 2)),))
        return PhasePlan("fatal", (attempt,))
    return PhasePlan("fatal", _script(rng, policy, "fatal"))
