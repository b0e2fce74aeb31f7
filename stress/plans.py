"""Random fault plans: what each phase function does in one run.

Fault kinds (per phase): raise (non-retryable), exhaust (retryable, every
attempt), flaky (retryable, then succeeds on attempt k), timeout and
timeout-flaky (blocks under a short timeout), hang (blocks until cancelled),
swallow (blocks, swallows the cancellation, returns), raise-on-cancel,
self-cancel (raises CancelledError itself), not-awaitable (returns 42),
child-fail, child-late-fail (a task-group child fails after its parent
returned), child-hang, and rarely fatal (InjectedFatal, a BaseException).
Per run: maybe a cancellation of the whole run (task.cancel() or an
enclosing asyncio.timeout), when a given phase starts or after K iterations.

A plan must fit the processor's policies (a retry fault needs retries, a
timeout fault a short timeout) and must always let the run end: every
attempt that blocks either has a short timeout that ends it, or carries a
trigger that cancels the whole run a few loop iterations after it starts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable

from stress.generate import weighted
from stress.model import Act, Attempt, PhasePlan, Policy, RunPlan, Shape


def _ok(rng: random.Random, policy: Policy) -> Act:
    # With timeout=0 an attempt that yields even once times out: keep most quick.
    if policy.timeout == 0.0 and rng.random() < 0.8:
        return Act("ok")
    return Act("ok", yields=rng.randint(0, 2))


def _trigger(rng: random.Random, policy: Policy) -> int | None:
    """No trigger when the phase's short timeout ends the block by itself."""
    return None if policy.short_timeout else rng.randint(0, 4)


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


def _child_fault(rng: random.Random, policy: Policy, fault: str) -> tuple[Attempt, ...]:
    body = _ok(rng, policy)
    if fault == "child-late-fail":
        return _repeat(Attempt(body, (Act("late", yields=rng.randint(0, 2)),)), policy)
    if fault == "child-hang":
        if rng.random() < 0.5:  # the body blocks too (and never swallows: children must end)
            body = Act("block", trigger=_trigger(rng, policy))
        return _repeat(Attempt(body, (Act("block", trigger=_trigger(rng, policy)),)), policy)
    op = rng.choice(("raise", "retryable"))
    failing = Attempt(body, (_ok(rng, policy), Act(op, yields=rng.randint(0, 2))))
    if op == "retryable" and policy.retries and rng.random() < 0.5:
        return _then_ok(rng, policy, failing)
    return _repeat(failing, policy)


def _script(rng: random.Random, policy: Policy, fault: str) -> tuple[Attempt, ...]:
    """The attempts that produce `fault` under `policy`."""
    y = rng.randint(0, 2)
    if fault.startswith("child-"):
        return _child_fault(rng, policy, fault)
    simple: dict[str, Callable[[], tuple[Attempt, ...]]] = {
        "raise": lambda: (Attempt(Act("raise", y)),),
        "exhaust": lambda: _repeat(Attempt(Act("retryable", y)), policy),
        "flaky": lambda: _then_ok(rng, policy, Attempt(Act("retryable", y))),
        "timeout": lambda: _repeat(Attempt(Act("block")), policy),
        "timeout-flaky": lambda: _then_ok(rng, policy, Attempt(Act("block"))),
        "hang": lambda: (Attempt(Act("block", trigger=_trigger(rng, policy))),),
        "swallow": lambda: (Attempt(Act("block", 0, "swallow", _trigger(rng, policy))),),
        "raise-on-cancel": lambda: (Attempt(Act("block", 0, "raise", _trigger(rng, policy))),),
        "self-cancel": lambda: (Attempt(Act("selfcancel", y)),),
        "not-awaitable": lambda: (Attempt(Act("notawait")),),
        "fatal": lambda: (Attempt(Act("fatal", y)),),
    }
    return simple[fault]()


def allowed_faults(policy: Policy) -> list[str]:
    """The fault kinds (except fatal) that make sense for a phase with `policy`."""
    faults = ["raise", "exhaust", "self-cancel"]
    if policy.retries:
        faults.append("flaky")
    if policy.kind == "sync":
        return faults  # runs inline in one step: it cannot block or time out
    faults += ["hang", "raise-on-cancel"]
    if policy.short_timeout:
        faults.append("timeout")
        if policy.retries:
            faults.append("timeout-flaky")
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


def random_plan(shape: Shape, seed: int) -> RunPlan:
    """A fault plan for one run of a processor of `shape`, from `seed` alone."""
    rng = random.Random(seed)
    density = weighted(rng, [(0.0, 20), (0.08, 45), (0.25, 35)])
    phases: dict[tuple[Hashable, str], PhasePlan] = {}
    used: list[str] = []
    for key, phase in shape.phase_keys():
        policy = shape.policy(key, phase)
        fault = rng.choice(allowed_faults(policy)) if rng.random() < density else "none"
        if fault == "none":
            phases[(key, phase)] = PhasePlan("none", (_healthy(rng, policy),))
        else:
            phases[(key, phase)] = PhasePlan(fault, _script(rng, policy, fault))
            used.append(fault)
    if phases and rng.random() < 0.03:  # rarely, one KeyboardInterrupt-style error
        key, phase = rng.choice(list(phases))
        phases[(key, phase)] = _fatal(rng, shape.policy(key, phase))
        used.append("fatal")
    mode, trigger = _run_trigger(rng, shape)
    if trigger is not None:
        used.append(f"run-{mode}-on-{trigger[0]}")
    return RunPlan(seed, phases, mode, trigger, tuple(used))


def _fatal(rng: random.Random, policy: Policy) -> PhasePlan:
    if policy.kind == "group" and rng.random() < 0.5:
        attempt = Attempt(_ok(rng, policy), (Act("fatal", rng.randint(0, 2)),))
        return PhasePlan("fatal", (attempt,))
    return PhasePlan("fatal", _script(rng, policy, "fatal"))
