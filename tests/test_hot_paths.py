"""The shortcuts taken for speed do what the general path does.

Two paths exist only to spare common runs some work, and each has a twin:

- a run nobody observes and with no limits counts each success inline in
  the coordinator (`Coordinator._handle_delivered`); an observed run hands
  every event to `_on_phase_ended`;
- a phase function with no timeout, retry or task group is called inline by
  its task actor (`TaskActor._run`); any other goes through `run_phase`.

Each scenario below runs four ways (bare or observed, plain or through the
attempt machinery with a policy that never changes anything) and must end
the same way every time: the same phases started, ended, raised and
cancelled, the same exception, the same failures.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import pytest

from sdax import AsyncDagTaskProcessor, AsyncTask, RunObserver
from sdax.errors import SdaxExecutionError, run_outcome
from tests.support import EXEC, HOLD, OK, POST, PRE, Behaviour, Probe, Raise


class _NeverRaised(Exception):
    pass


# Goes through `run_phase`, and changes nothing: nothing ever raises _NeverRaised.
THROUGH_ATTEMPTS: dict[str, Any] = {"retries": 1, "retryable_exceptions": (_NeverRaised,)}

Graph = list[tuple[AsyncTask[Any], tuple[str, ...]]]
Scenario = Callable[[Probe, dict[str, Any]], Graph]


def _task(
    probe: Probe,
    key: str,
    policy: dict[str, Any],
    *,
    pre: Behaviour | None = None,
    execute: Behaviour | None = None,
    post: Behaviour | None = None,
) -> AsyncTask[Any]:
    def declared(phase: str, behaviour: Behaviour | None) -> Any:
        return None if behaviour is None else probe.function(key, phase, behaviour, **policy)

    return AsyncTask(
        key,
        pre_execute=declared(PRE, pre),
        execute=declared(EXEC, execute),
        post_execute=declared(POST, post),
    )


def endpoint(probe: Probe, policy: dict[str, Any]) -> Graph:
    return [
        (_task(probe, "Database", policy, pre=OK, post=OK), ()),
        (_task(probe, "Auth", policy, pre=OK), ("Database",)),
        (_task(probe, "Flags", policy, pre=OK), ("Database",)),
        (_task(probe, "Fetch", policy, execute=OK), ("Auth", "Flags")),
    ]


def a_pre_fails(probe: Probe, policy: dict[str, Any]) -> Graph:
    return [
        (_task(probe, "Database", policy, pre=OK, post=OK), ()),
        (_task(probe, "Auth", policy, pre=Raise(ValueError("denied"))), ("Database",)),
        (_task(probe, "Flags", policy, pre=HOLD, post=OK), ("Database",)),
        (_task(probe, "Fetch", policy, execute=OK), ("Auth", "Flags")),
    ]


def execute_and_cleanup_fail(probe: Probe, policy: dict[str, Any]) -> Graph:
    return [
        (_task(probe, "Database", policy, pre=OK, post=Raise(OSError("close"))), ()),
        (_task(probe, "Fetch", policy, execute=Raise(KeyError("row"))), ("Database",)),
        (_task(probe, "Render", policy, execute=OK, post=OK), ("Database",)),
    ]


def a_task_raises_a_fatal_error(probe: Probe, policy: dict[str, Any]) -> Graph:
    return [
        (_task(probe, "Database", policy, pre=OK, post=OK), ()),
        (_task(probe, "Auth", policy, pre=Raise(SystemExit(2))), ("Database",)),
        (_task(probe, "Flags", policy, pre=HOLD, post=OK), ("Database",)),
    ]


SCENARIOS: dict[str, Scenario] = {
    "endpoint": endpoint,
    "a pre fails": a_pre_fails,
    "execute and cleanup fail": execute_and_cleanup_fail,
    "a task raises a fatal error": a_task_raises_a_fatal_error,
}


async def _ending(
    scenario: Scenario, *, observed: bool, policy: dict[str, Any]
) -> tuple[object, ...]:
    """How one run of `scenario` ends, in terms that do not depend on the order of starts."""
    probe = Probe()
    builder = AsyncDagTaskProcessor[Any].builder()
    for task, depends_on in scenario(probe, policy):
        builder.add_task(task, depends_on)
    processor = builder.build(observers=[RunObserver()] if observed else [])
    raised: BaseException | None = None
    try:
        await processor.process_tasks(None)
    except BaseException as error:
        raised = error
    failures: list[tuple[Hashable, str, type[BaseException]]] = []
    if isinstance(raised, SdaxExecutionError):
        failures = sorted(((f.key, f.phase, type(f.error)) for f in raised.failures), key=repr)
    return run_outcome(raised), type(raised), failures, sorted(probe.log, key=repr)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_bare_and_observed_runs_plain_and_policy_functions_end_alike(name: str) -> None:
    scenario = SCENARIOS[name]
    endings = {
        (observed, bool(policy)): await _ending(scenario, observed=observed, policy=policy)
        for observed in (False, True)
        for policy in ({}, THROUGH_ATTEMPTS)
    }
    first = endings[False, False]
    assert all(ending == first for ending in endings.values()), endings
