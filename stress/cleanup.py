"""The POST rules (SPEC §4): who is owed cleanup, and in which order it runs.

Pure functions over the model graph and the folded log, used by
stress.invariants. Three-valued where a race decided what happened earlier
(`None`: either answer is allowed).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

from stress.model import FORWARD, POST, PRE, Shape
from stress.outcomes import PhaseLog

Tri = bool | None  # True, False, or "either, depending on a race"
Phases = Mapping[tuple[Hashable, str], PhaseLog]


def eligibility(
    shape: Shape,
    phases: Phases,
    pre_succeeded: Callable[[Hashable], Tri],
    aborted: bool,
    unseen: Mapping[Hashable, bool],
) -> dict[Hashable, Tri]:
    """Cleanup eligibility of every task with a post.

    A task with a pre is owed cleanup once its pre's function was entered; one without
    a pre once its chain ran: every effective pre-dependency succeeded,
    through dependencies without a pre, recursively. `aborted`: the forward
    phases may have been stopped early, so a pre that was released but left
    no trace was never entered and owes nothing once `unseen` (from our
    observer, or the run's report) tells us about it; without that, or for a
    thread (whose trace starts late), its cleanup is optional rather than owed.
    """
    passed: dict[Hashable, Tri] = {}
    eligible: dict[Hashable, Tri] = {}
    for node in shape.nodes:  # topological order: dependencies first
        gates = [pre_succeeded(d) if shape.has(d, PRE) else passed[d] for d in node.deps]
        ready: Tri = False if False in gates else (None if None in gates else True)
        passed[node.key] = ready
        if POST not in node.policies:
            continue
        if PRE not in node.policies:
            eligible[node.key] = ready
        elif (node.key, PRE) in phases:
            eligible[node.key] = True
        elif ready is False:
            eligible[node.key] = False
        elif node.key in unseen:
            # No trace: its function was never entered, so it owes nothing
            # (SPEC 4), whether or not sdax had created its task. A thread's
            # trace starts in the thread, after sdax entered the attempt: one
            # sdax began may have been entered.
            thread = node.policies[PRE].kind == "thread"
            eligible[node.key] = None if unseen[node.key] and thread else False
        else:
            eligible[node.key] = None if aborted else True
    return eligible


def nearest_posts(shape: Shape, phases: Phases, key: Hashable) -> set[Hashable]:
    """Dependents of `key` whose post ran, looking through those whose post did not.

    These are the posts that `key`'s post must wait for (sdax passes through
    tasks that owe no cleanup, SPEC: "directly or through tasks without a post").
    """
    found: set[Hashable] = set()
    stack, seen = list(shape.dependents[key]), set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if (current, POST) in phases:
            found.add(current)
        else:
            stack.extend(shape.dependents[current])
    return found


def post_order_problems(shape: Shape, phases: Phases) -> list[str]:
    """Posts that started before the forward work or a dependent's post had ended."""
    forward_end = max((p.end for (_, ph), p in phases.items() if ph in FORWARD), default=-1)
    problems = []
    for (key, phase), plog in phases.items():
        if phase != POST:
            continue
        started = f"{key!r} post started at #{plog.start}"
        if plog.start < forward_end:
            problems.append(f"{started}; forward work ended at #{forward_end}")
        for dependent in nearest_posts(shape, phases, key):
            end = phases[(dependent, POST)].end
            if end > plog.start:
                problems.append(
                    f"{started}; the post of its dependent {dependent!r} ended at #{end}"
                )
    return problems
