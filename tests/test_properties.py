"""Properties of building, analysis and runs over random DAGs (SPEC §3, §4, §7).

A random graph has tasks t0..tn-1, each depending on a random subset of the
earlier ones and having a random subset of the three phases; it is declared
in a random order. The tests compare what sdax plans and does with a small
independent model of the spec: a task's effective pre-dependencies are its
nearest dependencies with a pre_execute (looking through tasks without one),
and its effective post-dependents are its nearest dependents with a
post_execute.

The runs are plain sync tests that call the event loop themselves
(hypothesis drives the examples; pytest-asyncio does not take part).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    AsyncTaskProcessor,
    DependencyCycleError,
    TaskAnalysis,
    task_func,
)
from tests.conftest import LOOPS

PRE, EXEC, POST = "pre_execute", "execute", "post_execute"
PHASES = (PRE, EXEC, POST)

# The autouse release-order fixture only sets a context variable; sharing it
# between the examples of one test is harmless.
analysis_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
run_settings = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Dag:
    """A random graph: `keys` in generation order (dependencies come first)."""

    keys: tuple[str, ...]
    depends_on: dict[str, tuple[str, ...]]
    phases: dict[str, frozenset[str]]
    declaration_order: tuple[str, ...]
    yields: dict[str, int] = field(default_factory=dict)  # loop turns inside each phase

    def has(self, key: str, phase: str) -> bool:
        return phase in self.phases[key]

    def dependents(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {key: [] for key in self.keys}
        for key in self.keys:
            for dependency in self.depends_on[key]:
                result[dependency].append(key)
        return result

    def effective_pre_dependencies(self) -> dict[str, set[str]]:
        """Nearest dependencies with a pre_execute, looking through the others."""
        nearest: dict[str, set[str]] = {}
        for key in self.keys:
            nearest[key] = set()
            for dependency in self.depends_on[key]:
                if self.has(dependency, PRE):
                    nearest[key].add(dependency)
                else:
                    nearest[key] |= nearest[dependency]
        return nearest

    def effective_post_dependents(self) -> dict[str, set[str]]:
        """Nearest dependents with a post_execute, looking through the others."""
        dependents = self.dependents()
        nearest: dict[str, set[str]] = {}
        for key in reversed(self.keys):
            nearest[key] = set()
            for dependent in dependents[key]:
                if self.has(dependent, POST):
                    nearest[key].add(dependent)
                else:
                    nearest[key] |= nearest[dependent]
        return nearest

    def ancestors(self) -> dict[str, set[str]]:
        """Every task each task depends on, directly or not."""
        result: dict[str, set[str]] = {}
        for key in self.keys:
            result[key] = set(self.depends_on[key])
            for dependency in self.depends_on[key]:
                result[key] |= result[dependency]
        return result


@st.composite
def dags(draw: st.DrawFn, max_tasks: int = 12) -> Dag:
    count = draw(st.integers(min_value=1, max_value=max_tasks))
    keys = tuple(f"t{position}" for position in range(count))
    depends_on = {
        key: tuple(draw(st.lists(st.sampled_from(keys[:position]), unique=True, max_size=4)))
        if position
        else ()
        for position, key in enumerate(keys)
    }
    phases = {key: draw(st.frozensets(st.sampled_from(PHASES))) for key in keys}
    order = tuple(draw(st.permutations(keys)))
    yields = {key: draw(st.integers(min_value=0, max_value=2)) for key in keys}
    return Dag(keys, depends_on, phases, order, yields)


# --------------------------------------------------------------------------- building


def phase_function(key: str, phase: str, turns: int) -> Any:
    async def record(ctx: list[tuple[str, str, str]]) -> None:
        ctx.append(("start", key, phase))
        for _ in range(turns):
            await asyncio.sleep(0)  # a yield, so that phases interleave
        ctx.append(("end", key, phase))

    return task_func(record)


def make_task(dag: Dag, key: str) -> AsyncTask[Any]:
    turns = dag.yields.get(key, 0)
    functions = {phase: phase_function(key, phase, turns) for phase in dag.phases[key]}
    return AsyncTask(key, **functions)


def build(dag: Dag, extra: dict[str, tuple[str, ...]] | None = None) -> AsyncDagTaskProcessor[Any]:
    builder = AsyncDagTaskProcessor[Any].builder()
    for key in dag.declaration_order:
        depends_on = dag.depends_on[key] + (extra or {}).get(key, ())
        builder.add_task(make_task(dag, key), depends_on=depends_on)
    return builder.build()


def wave_index(analysis: TaskAnalysis, phase: str) -> dict[Hashable, int]:
    graph = analysis.pre_execute_graph if phase == PRE else analysis.post_execute_graph
    return {key: position for position, wave in enumerate(graph.waves) for key in wave.tasks}


# --------------------------------------------------------------------------- analysis


@analysis_settings
@given(dags())
def test_every_task_with_a_pre_or_post_is_in_exactly_one_wave_of_that_phase(dag: Dag) -> None:
    analysis = build(dag).analysis
    for phase, graph in ((PRE, analysis.pre_execute_graph), (POST, analysis.post_execute_graph)):
        listed = [key for wave in graph.waves for key in wave.tasks]
        assert sorted(listed) == sorted(key for key in dag.keys if dag.has(key, phase))


@analysis_settings
@given(dags())
def test_every_wave_depends_only_on_tasks_of_strictly_earlier_waves(dag: Dag) -> None:
    analysis = build(dag).analysis
    for graph in (analysis.pre_execute_graph, analysis.post_execute_graph):
        earlier: set[Hashable] = set()
        for wave in graph.waves:
            assert set(wave.depends_on_tasks) <= earlier
            earlier |= set(wave.tasks)


@analysis_settings
@given(dags())
def test_waves_group_tasks_by_their_effective_dependencies(dag: Dag) -> None:
    # Pre waves group tasks by the nearest pres they wait for. Post waves are
    # grouped as 0.7.2 groups them (by distance from the last cleanups, see
    # compat/compare_analysis.py), so each only has to cover what its tasks wait for.
    analysis = build(dag).analysis
    nearest_pres = dag.effective_pre_dependencies()
    expected: dict[frozenset[str], set[str]] = {}
    for key in dag.keys:
        if dag.has(key, PRE):
            expected.setdefault(frozenset(nearest_pres[key]), set()).add(key)
    pre_waves = analysis.pre_execute_graph.waves
    planned = {frozenset(wave.depends_on_tasks): set(wave.tasks) for wave in pre_waves}
    assert len(planned) == len(pre_waves)
    assert planned == expected

    nearest_posts = dag.effective_post_dependents()
    post_waves = analysis.post_execute_graph.waves
    in_waves = [key for wave in post_waves for key in wave.tasks]
    assert sorted(in_waves) == sorted(key for key in dag.keys if dag.has(key, POST))
    for wave in post_waves:
        for key in wave.tasks:
            assert set(nearest_posts[key]) <= set(wave.depends_on_tasks)


@analysis_settings
@given(dags())
def test_pre_waves_follow_dependencies_and_post_waves_reverse_them(dag: Dag) -> None:
    analysis = build(dag).analysis
    pre_wave, post_wave = wave_index(analysis, PRE), wave_index(analysis, POST)
    for key, dependencies in dag.ancestors().items():
        for dependency in dependencies:
            if dag.has(key, PRE) and dag.has(dependency, PRE):
                assert pre_wave[dependency] < pre_wave[key]
            if dag.has(key, POST) and dag.has(dependency, POST):
                assert post_wave[key] < post_wave[dependency]


@st.composite
def dags_with_a_back_edge(draw: st.DrawFn) -> tuple[Dag, str, str]:
    """A DAG and an edge `(source, target)` that closes a cycle: target reaches source."""
    dag = draw(dags())
    target = draw(st.sampled_from(dag.keys))
    source = draw(st.sampled_from(sorted({target} | dag.ancestors()[target])))
    return dag, source, target


@analysis_settings
@given(dags_with_a_back_edge())
def test_a_back_edge_is_always_a_cycle_error_reporting_a_real_cycle(
    case: tuple[Dag, str, str],
) -> None:
    dag, source, target = case
    edges = {key: set(dag.depends_on[key]) for key in dag.keys}
    edges[source].add(target)
    with pytest.raises(DependencyCycleError) as caught:
        build(dag, extra={source: (target,)})
    cycle = caught.value.cycle
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for key, dependency in itertools.pairwise(cycle):
        assert dependency in edges[key]
    assert " -> ".join(repr(key) for key in cycle) in str(caught.value)


@st.composite
def layered(draw: st.DrawFn) -> tuple[list[tuple[str, int]], dict[str, frozenset[str]]]:
    """Tasks with random (gapped, possibly negative) levels and phases, in random order."""
    count = draw(st.integers(min_value=1, max_value=12))
    levels = draw(st.lists(st.integers(-5, 20), min_size=count, max_size=count))
    placed = draw(st.permutations([(f"t{i}", level) for i, level in enumerate(levels)]))
    phases = {key: draw(st.frozensets(st.sampled_from(PHASES))) for key, _ in placed}
    return list(placed), phases


@analysis_settings
@given(layered())
def test_the_level_builder_plans_the_same_waves_as_the_equivalent_dag(
    case: tuple[list[tuple[str, int]], dict[str, frozenset[str]]],
) -> None:
    placed, phases = case
    by_level: dict[int, list[str]] = {}
    for key, level in placed:
        by_level.setdefault(level, []).append(key)
    depends_on: dict[str, tuple[str, ...]] = {}
    below: tuple[str, ...] = ()
    for level in sorted(by_level):
        depends_on.update((key, below) for key in by_level[level])
        below = tuple(by_level[level])
    keys = tuple(key for level in sorted(by_level) for key in by_level[level])
    dag = Dag(keys, depends_on, phases, tuple(key for key, _ in placed))

    level_builder = AsyncTaskProcessor[Any].builder()
    for key, level in placed:
        level_builder.add_task(make_task(dag, key), level)
    by_levels = level_builder.build().analysis
    by_dag = build(dag).analysis

    for key in keys:
        for lookup in ("pre_wave_containing", "post_wave_containing"):
            level_wave = getattr(by_levels, lookup)(key)
            dag_wave = getattr(by_dag, lookup)(key)
            assert (level_wave is None) == (dag_wave is None)
            if level_wave is not None and dag_wave is not None:
                assert set(level_wave.tasks) == set(dag_wave.tasks)
                assert set(level_wave.depends_on_tasks) == set(dag_wave.depends_on_tasks)
    for lookup in ("pre_execute_graph", "post_execute_graph"):
        assert len(getattr(by_levels, lookup).waves) == len(getattr(by_dag, lookup).waves)


# --------------------------------------------------------------------------- runs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the sync run tests on each loop selected with --loop, as conftest does for async ones."""
    if "loop_factory" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--loop")
        names = list(LOOPS) if choice == "all" else [choice]
        metafunc.parametrize("loop_factory", [LOOPS[name] for name in names], ids=names)


def run(dag: Dag, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> list[Any]:
    processor = build(dag)
    log: list[tuple[str, str, str]] = []
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(processor.process_tasks(log))
    return log


@run_settings
@given(dags())
def test_a_random_dag_runs_every_phase_once_in_an_order_the_spec_allows(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], dag: Dag
) -> None:
    log = run(dag, loop_factory)
    at = {entry: position for position, entry in enumerate(log)}

    for key in dag.keys:
        for phase in PHASES:
            expected = 1 if dag.has(key, phase) else 0
            assert log.count(("start", key, phase)) == expected, (key, phase)
            assert log.count(("end", key, phase)) == expected, (key, phase)

    pre_deps = dag.effective_pre_dependencies()
    for key in dag.keys:
        if dag.has(key, PRE):
            for dependency in pre_deps[key]:
                assert at["end", dependency, PRE] < at["start", key, PRE]

    last_pre = max((at[e] for e in log if e[0] == "end" and e[2] == PRE), default=-1)
    first_execute = min((at[e] for e in log if e[0] == "start" and e[2] == EXEC), default=len(log))
    assert last_pre < first_execute
    last_execute = max((at[e] for e in log if e[0] == "end" and e[2] == EXEC), default=-1)
    first_post = min((at[e] for e in log if e[0] == "start" and e[2] == POST), default=len(log))
    assert last_execute < first_post

    post_dependents = dag.effective_post_dependents()
    for key in dag.keys:
        if dag.has(key, POST):
            for dependent in post_dependents[key]:
                assert at["end", dependent, POST] < at["start", key, POST]
