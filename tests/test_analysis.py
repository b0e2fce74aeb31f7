"""Introspection: the plan a processor (or a TaskAnalyzer) exposes (SPEC §7).

Waves are asserted as lists of (tasks, depends_on_tasks) sets. A PRE wave
groups tasks with the same effective pre-dependencies (looking through join
nodes and tasks without a pre_execute); a POST wave groups tasks with the same
nearest dependents that have a post_execute. Where two waves could come in
either order the test says so and compares them as a set.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import pytest

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTask,
    DependencyCycleError,
    ExecutionGraph,
    TaskAnalysis,
    TaskAnalyzer,
    join,
    task_func,
)

Declarations = list[tuple[AsyncTask[None], tuple[Hashable, ...]]]
WaveSets = list[tuple[set[Hashable], set[Hashable]]]


async def noop(ctx: None) -> None:
    pass


def make(key: Hashable, phases: str) -> AsyncTask[None]:
    """A task with the phases named by letters: p(re), e(xecute), c(leanup)."""
    function = task_func(noop)
    return AsyncTask(
        key,
        pre_execute=function if "p" in phases else None,
        execute=function if "e" in phases else None,
        post_execute=function if "c" in phases else None,
    )


def analyse(declarations: Declarations) -> TaskAnalysis:
    builder = AsyncDagTaskProcessor[None].builder()
    for declared, depends_on in declarations:
        builder.add_task(declared, depends_on=depends_on)
    return builder.build().analysis


def waves(graph: ExecutionGraph) -> WaveSets:
    return [(set(wave.tasks), set(wave.depends_on_tasks)) for wave in graph.waves]


def as_set(wave_sets: WaveSets) -> set[tuple[frozenset[Hashable], frozenset[Hashable]]]:
    return {(frozenset(tasks), frozenset(deps)) for tasks, deps in wave_sets}


def assert_each_wave_depends_only_on_earlier_waves(graph: ExecutionGraph) -> None:
    seen: set[Hashable] = set()
    for wave in graph.waves:
        assert set(wave.depends_on_tasks) <= seen
        seen.update(wave.tasks)


# --------------------------------------------------------------------------- known graphs


def test_a_chain_through_a_join_and_an_execute_only_task_is_one_wave_per_pre() -> None:
    analysis = analyse(
        [
            (make("A", "pc"), ()),
            (join("J"), ("A",)),
            (make("B", "pc"), ("J",)),
            (make("E", "e"), ("B",)),
            (make("D", "pc"), ("E",)),
        ]
    )
    assert waves(analysis.pre_execute_graph) == [
        ({"A"}, set()),
        ({"B"}, {"A"}),
        ({"D"}, {"B"}),
    ]
    assert waves(analysis.post_execute_graph) == [
        ({"D"}, set()),
        ({"B"}, {"D"}),
        ({"A"}, {"B"}),
    ]


def test_a_diamond_is_three_waves_each_way() -> None:
    analysis = analyse(
        [
            (make("A", "pc"), ()),
            (make("B", "pc"), ("A",)),
            (make("C", "pc"), ("A",)),
            (make("D", "pc"), ("B", "C")),
        ]
    )
    assert waves(analysis.pre_execute_graph) == [
        ({"A"}, set()),
        ({"B", "C"}, {"A"}),
        ({"D"}, {"B", "C"}),
    ]
    assert waves(analysis.post_execute_graph) == [
        ({"D"}, set()),
        ({"B", "C"}, {"D"}),
        ({"A"}, {"B", "C"}),
    ]


def test_tasks_reaching_the_same_pres_by_different_paths_share_a_wave() -> None:
    analysis = analyse(
        [
            (make("A", "p"), ()),
            (make("B", "p"), ()),
            (join("J"), ("A", "B")),
            (make("X", "e"), ("A", "B")),
            (make("C", "p"), ("J",)),  # through the join
            (make("D", "p"), ("X",)),  # through an execute-only task
            (make("E", "p"), ("A", "B")),  # directly
        ]
    )
    assert waves(analysis.pre_execute_graph) == [
        ({"A", "B"}, set()),
        ({"C", "D", "E"}, {"A", "B"}),
    ]


def test_a_post_only_task_is_looked_through_for_pre_and_cleaned_up_before_its_dependency() -> None:
    analysis = analyse(
        [
            (make("A", "pc"), ()),
            (make("P", "c"), ("A",)),
            (make("B", "p"), ("P",)),
        ]
    )
    assert waves(analysis.pre_execute_graph) == [({"A"}, set()), ({"B"}, {"A"})]
    assert waves(analysis.post_execute_graph) == [({"P"}, set()), ({"A"}, {"P"})]


def test_a_dependency_without_a_pre_is_replaced_by_its_own_pre_dependencies() -> None:
    analysis = analyse(
        [
            (make("A", "p"), ()),
            (make("B", "p"), ("A",)),
            (make("P", "c"), ("A",)),
            (make("D", "p"), ("B", "P")),  # P stands for A here
        ]
    )
    assert waves(analysis.pre_execute_graph) == [
        ({"A"}, set()),
        ({"B"}, {"A"}),
        ({"D"}, {"A", "B"}),
    ]


def test_a_pre_dependency_is_found_through_a_long_run_of_phaseless_tasks() -> None:
    declarations: Declarations = [(make("A", "pc"), ())]
    previous: Hashable = "A"
    for position in range(6):
        key = f"step{position}"
        declarations.append((join(key) if position % 2 else make(key, "e"), (previous,)))
        previous = key
    declarations.append((make("Z", "pc"), (previous,)))
    analysis = analyse(declarations)
    assert waves(analysis.pre_execute_graph) == [({"A"}, set()), ({"Z"}, {"A"})]
    assert waves(analysis.post_execute_graph) == [({"Z"}, set()), ({"A"}, {"Z"})]


def test_a_task_without_dependencies_or_dependents_is_its_own_first_wave() -> None:
    analysis = analyse([(make("Alone", "pec"), ())])
    assert waves(analysis.pre_execute_graph) == [({"Alone"}, set())]
    assert waves(analysis.post_execute_graph) == [({"Alone"}, set())]


def test_a_graph_without_pre_or_post_has_no_waves() -> None:
    analysis = analyse([(make("A", "e"), ()), (join("J"), ("A",)), (make("B", "e"), ("J",))])
    assert analysis.pre_execute_graph.waves == ()
    assert analysis.post_execute_graph.waves == ()


def service_graph() -> Declarations:
    return [
        (make("db", "pc"), ()),
        (make("cache", "pc"), ()),
        (join("ready"), ("db", "cache")),
        (make("warm", "e"), ("cache",)),
        (make("api", "pc"), ("ready",)),
        (make("worker", "p"), ("warm",)),
        (make("audit", "c"), ("db",)),
        (make("report", "pec"), ("api", "worker", "audit")),
    ]


def test_the_waves_of_a_mixed_graph_look_through_joins_and_partial_tasks() -> None:
    analysis = analyse(service_graph())
    pre = waves(analysis.pre_execute_graph)
    # api and worker are independent waves of the same depth: either may come first.
    assert pre[0] == ({"db", "cache"}, set())
    assert as_set(pre[1:3]) == as_set([({"api"}, {"db", "cache"}), ({"worker"}, {"cache"})])
    assert pre[3] == ({"report"}, {"api", "worker", "db"})

    post = waves(analysis.post_execute_graph)
    assert post[0] == ({"report"}, set())
    assert post[1] == ({"api", "audit"}, {"report"})
    assert as_set(post[2:]) == as_set([({"cache"}, {"api", "report"}), ({"db"}, {"api", "audit"})])

    assert_each_wave_depends_only_on_earlier_waves(analysis.pre_execute_graph)
    assert_each_wave_depends_only_on_earlier_waves(analysis.post_execute_graph)


def test_waves_are_numbered_in_order_from_zero() -> None:
    analysis = analyse(service_graph())
    for graph in (analysis.pre_execute_graph, analysis.post_execute_graph):
        assert [wave.wave_num for wave in graph.waves] == list(range(len(graph.waves)))


# --------------------------------------------------------------------------- lookups


def test_pre_wave_containing_finds_the_wave_of_a_task_with_a_pre() -> None:
    analysis = analyse(service_graph())
    for key in ("db", "cache", "api", "worker", "report"):
        wave = analysis.pre_wave_containing(key)
        assert wave is not None
        assert key in wave.tasks
        assert wave in analysis.pre_execute_graph.waves
    wave = analysis.pre_wave_containing("worker")
    assert wave is not None
    assert (set(wave.tasks), set(wave.depends_on_tasks)) == ({"worker"}, {"cache"})


@pytest.mark.parametrize("key", ["ready", "warm", "audit", "no such task"])
def test_pre_wave_containing_is_none_for_a_task_without_a_pre(key: str) -> None:
    assert analyse(service_graph()).pre_wave_containing(key) is None


def test_post_wave_containing_finds_the_wave_of_a_task_with_a_post() -> None:
    analysis = analyse(service_graph())
    for key in ("db", "cache", "api", "audit", "report"):
        wave = analysis.post_wave_containing(key)
        assert wave is not None
        assert key in wave.tasks
        assert wave in analysis.post_execute_graph.waves
    wave = analysis.post_wave_containing("audit")
    assert wave is not None
    assert (set(wave.tasks), set(wave.depends_on_tasks)) == ({"api", "audit"}, {"report"})


@pytest.mark.parametrize("key", ["ready", "warm", "worker", "no such task"])
def test_post_wave_containing_is_none_for_a_task_without_a_post(key: str) -> None:
    assert analyse(service_graph()).post_wave_containing(key) is None


def test_dependencies_are_the_declared_direct_dependencies_of_every_task() -> None:
    declarations = service_graph()
    analysis = analyse(declarations)
    assert {key: set(deps) for key, deps in analysis.dependencies.items()} == {
        declared.name: set(depends_on) for declared, depends_on in declarations
    }


def test_tasks_maps_every_key_to_the_declared_task_object() -> None:
    declarations = service_graph()
    analysis = analyse(declarations)
    assert set(analysis.tasks) == {declared.name for declared, _ in declarations}
    for declared, _ in declarations:
        assert analysis.tasks[declared.name] is declared


def test_the_counts_cover_each_phase_and_the_phaseless_nodes() -> None:
    analysis = analyse(service_graph())
    assert analysis.total_tasks == 8
    assert analysis.tasks_with_pre_execute == 5  # db, cache, api, worker, report
    assert analysis.tasks_with_execute == 2  # warm, report
    assert analysis.tasks_with_post_execute == 5  # db, cache, api, audit, report
    assert analysis.nodes == 1  # ready


def test_an_empty_graph_has_zero_counts_and_no_waves() -> None:
    analysis = analyse([])
    counts = (
        analysis.total_tasks,
        analysis.tasks_with_pre_execute,
        analysis.tasks_with_execute,
        analysis.tasks_with_post_execute,
        analysis.nodes,
    )
    assert counts == (0, 0, 0, 0, 0)
    assert analysis.pre_execute_graph.waves == analysis.post_execute_graph.waves == ()


# --------------------------------------------------------------------------- TaskAnalyzer


def analyzer_of(declarations: Iterable[tuple[AsyncTask[Any], tuple[Hashable, ...]]]) -> Any:
    analyzer = TaskAnalyzer()
    for declared, depends_on in declarations:
        assert analyzer.add_task(declared, depends_on=depends_on) is analyzer
    return analyzer


def test_a_task_analyzer_produces_the_same_analysis_as_the_processor() -> None:
    declarations = service_graph()
    from_processor = analyse(declarations)
    analysis = analyzer_of(declarations).analyze()
    assert isinstance(analysis, TaskAnalysis)
    assert analysis.pre_execute_graph == from_processor.pre_execute_graph
    assert analysis.post_execute_graph == from_processor.post_execute_graph
    assert dict(analysis.dependencies) == dict(from_processor.dependencies)
    assert dict(analysis.tasks) == dict(from_processor.tasks)
    for name in (
        "total_tasks",
        "tasks_with_pre_execute",
        "tasks_with_execute",
        "tasks_with_post_execute",
        "nodes",
    ):
        assert getattr(analysis, name) == getattr(from_processor, name)


def test_a_task_analyzer_chains_add_task_calls() -> None:
    analysis = (
        TaskAnalyzer()
        .add_task(make("A", "p"))
        .add_task(make("B", "p"), depends_on=("A",))
        .analyze()
    )
    assert waves(analysis.pre_execute_graph) == [({"A"}, set()), ({"B"}, {"A"})]


def test_a_task_analyzer_rejects_a_cycle_and_a_missing_dependency() -> None:
    cyclic = analyzer_of([(make("A", "p"), ("B",)), (make("B", "p"), ("A",))])
    with pytest.raises(DependencyCycleError):
        cyclic.analyze()
    missing = analyzer_of([(make("A", "p"), ("Nowhere",))])
    with pytest.raises(ValueError, match=r"'A'.*'Nowhere'"):
        missing.analyze()
