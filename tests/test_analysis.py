"""Introspection: the plan a processor (or a TaskAnalyzer) exposes (SPEC §7).

Waves are grouped as sdax 0.7.2 grouped them (compat/compare_analysis.py checks
that on random graphs against 0.7.2 itself). A PRE wave groups tasks with the
same effective pre-dependencies (looking through join nodes and tasks without a
pre_execute); a POST wave groups tasks at the same distance from the last
cleanups. Waves describe the plan only: a run never waits for a whole wave.
"""

from __future__ import annotations

import asyncio
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
    # api and worker are independent groups: api is met first in topological
    # order, so it takes wave 1 and worker the next free number.
    assert pre == [
        ({"db", "cache"}, set()),
        ({"api"}, {"db", "cache"}),
        ({"worker"}, {"cache"}),
        ({"report"}, {"api", "worker", "db"}),
    ]

    post = waves(analysis.post_execute_graph)
    assert post == [
        ({"report"}, set()),
        ({"api", "audit"}, {"report"}),
        # Both two cleanups away from the last one; the wave waits for the
        # nearest post dependents of either.
        ({"cache", "db"}, {"api", "audit", "report"}),
    ]

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


# --------------------------------------------------------------------------- 0.7.2's grouping


def two_chains() -> Declarations:
    """Issue 19's example: A -> B -> D and C -> E -> F, each task with a pre and a post."""
    return [
        (make("A", "pc"), ()),
        (make("B", "pc"), ("A",)),
        (make("D", "pc"), ("B",)),
        (make("C", "pc"), ()),
        (make("E", "pc"), ("C",)),
        (make("F", "pc"), ("E",)),
    ]


def exact(
    graph: ExecutionGraph[Hashable],
) -> list[tuple[int, tuple[Hashable, ...], tuple[Hashable, ...]]]:
    return [(wave.wave_num, wave.tasks, wave.depends_on_tasks) for wave in graph.waves]


def test_unrelated_chains_share_post_waves_by_distance_from_the_last_cleanups() -> None:
    analysis = analyse(two_chains())
    assert exact(analysis.post_execute_graph) == [
        (0, ("D", "F"), ()),
        (1, ("B", "E"), ("D", "F")),
        (2, ("A", "C"), ("B", "E")),
    ]


def test_a_new_pre_group_takes_the_lowest_free_wave_number_above_its_dependencies() -> None:
    analysis = analyse(two_chains())
    assert exact(analysis.pre_execute_graph) == [
        (0, ("A", "C"), ()),
        (1, ("B",), ("A",)),
        (2, ("E",), ("C",)),  # wave 1 is taken by B's group
        (3, ("D",), ("B",)),
        (4, ("F",), ("E",)),
    ]


def test_a_post_wave_ignores_post_tasks_beyond_the_nearest_ones() -> None:
    analysis = analyse(
        [
            (make("A", "pc"), ()),
            (make("B", "pc"), ("A",)),
            (make("C", "pc"), ("B",)),
            (make("S", "pc"), ("A",)),  # a short branch beside B -> C
        ]
    )
    assert exact(analysis.post_execute_graph) == [
        (0, ("C", "S"), ()),
        (1, ("B",), ("C",)),
        (2, ("A",), ("B", "S")),
    ]


def test_names_are_sorted_by_key_and_in_declaration_order_when_keys_do_not_compare() -> None:
    analysis = analyse([(make("b", "pc"), ()), (make("a", "pc"), ())])
    assert exact(analysis.pre_execute_graph) == [(0, ("a", "b"), ())]
    mixed = analyse([(make("b", "pc"), ()), (make(1, "pc"), ()), (make(("t",), "pc"), ())])
    assert exact(mixed.pre_execute_graph) == [(0, ("b", 1, ("t",)), ())]
    assert mixed.pre_task_names == ("b", 1, ("t",))


def test_level_barriers_do_not_stop_the_user_keys_from_being_sorted() -> None:
    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(make("z", "pc"), depends_on=())
        .add_task(make("y", "pc"), depends_on=())
        .build()
    )
    from sdax import AsyncTaskProcessor

    levels = (
        AsyncTaskProcessor[None]
        .builder()
        .add_task(make("z", "pc"), 0)
        .add_task(make("y", "pc"), 0)
        .add_task(make("x", "pc"), 1)
        .build()
    )
    assert exact(processor.analysis.pre_execute_graph) == [(0, ("y", "z"), ())]
    assert exact(levels.analysis.pre_execute_graph) == [
        (0, ("y", "z"), ()),
        (1, ("x",), ("y", "z")),
    ]
    assert exact(levels.analysis.post_execute_graph) == [(0, ("x",), ()), (1, ("y", "z"), ("x",))]


async def test_a_post_starts_before_the_rest_of_its_wave_is_due() -> None:
    """Waves describe the plan: A's cleanup (wave 1) runs while D's (wave 0) still waits."""
    a_cleaned = asyncio.Event()
    order: list[str] = []

    async def cleanup_d(ctx: None) -> None:
        await a_cleaned.wait()  # would never return if A waited for its whole wave
        order.append("D")

    async def cleanup_a(ctx: None) -> None:
        order.append("A")
        a_cleaned.set()

    async def record(ctx: None) -> None:
        pass

    def chain_task(key: str, cleanup: Any = record) -> AsyncTask[None]:
        return AsyncTask(key, pre_execute=task_func(record), post_execute=task_func(cleanup))

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(chain_task("A", cleanup_a))
        .add_task(chain_task("B"), depends_on=("A",))
        .add_task(chain_task("C"))
        .add_task(chain_task("D", cleanup_d), depends_on=("C",))
        .build()
    )
    assert processor.analysis.post_wave_containing("D") == processor.analysis.post_wave_containing(
        "B"
    )
    assert processor.analysis.post_wave_index_by_task["A"] == 1
    await processor.process_tasks(None)
    assert order == ["A", "D"]


# --------------------------------------------------------------------------- 0.7.2's attributes


def test_the_phase_name_lists_are_sorted_and_post_only_tasks_have_no_pre() -> None:
    analysis = analyse(service_graph())
    assert analysis.pre_task_names == ("api", "cache", "db", "report", "worker")
    assert analysis.execute_task_names == ("report", "warm")
    assert analysis.post_task_names == ("api", "audit", "cache", "db", "report")
    assert analysis.post_only_task_names == ("audit",)


def test_the_topological_order_puts_each_task_after_its_dependencies_ties_by_declaration() -> None:
    analysis = analyse(service_graph())
    assert analysis.topological_order == (
        "db",
        "cache",
        "audit",
        "ready",
        "warm",
        "api",
        "worker",
        "report",
    )
    reversed_declaration = analyse(list(reversed(service_graph())))
    order = reversed_declaration.topological_order
    for key, deps in reversed_declaration.dependencies.items():
        assert all(order.index(dep) < order.index(key) for dep in deps)


def test_wave_lookups_counts_and_consumers_describe_the_pre_waves() -> None:
    analysis = analyse(service_graph())
    assert analysis.max_pre_wave_num == 4  # 0.7.2's name for the number of waves
    assert analysis.pre_root_wave_id == 0
    assert dict(analysis.wave_index_by_task) == {
        "db": 0,
        "cache": 0,
        "api": 1,
        "worker": 2,
        "report": 3,
    }
    assert analysis.wave_dep_count == (0, 2, 1, 3)
    assert dict(analysis.task_to_consumer_waves) == {
        "db": (1, 3),
        "cache": (1, 2),
        "api": (3,),
        "worker": (3,),
    }


def test_wave_lookups_counts_and_consumers_describe_the_post_waves() -> None:
    analysis = analyse(service_graph())
    assert analysis.max_post_wave_num == 3
    assert analysis.post_root_wave_id == 0
    assert dict(analysis.post_wave_index_by_task) == {
        "report": 0,
        "api": 1,
        "audit": 1,
        "cache": 2,
        "db": 2,
    }
    assert analysis.post_wave_dep_count == (0, 1, 3)
    assert dict(analysis.post_task_to_consumer_waves) == {
        "report": (1, 2),
        "api": (2,),
        "audit": (2,),
    }


def test_a_graph_without_pre_or_post_has_no_root_wave() -> None:
    analysis = analyse([(make("A", "e"), ())])
    assert (analysis.pre_root_wave_id, analysis.post_root_wave_id) == (None, None)
    assert (analysis.max_pre_wave_num, analysis.max_post_wave_num) == (0, 0)
    assert analysis.wave_dep_count == analysis.post_wave_dep_count == ()


def test_the_analysis_is_read_only() -> None:
    analysis = analyse(service_graph())
    with pytest.raises(TypeError):
        analysis.wave_index_by_task["db"] = 5  # type: ignore[index]
    with pytest.raises(AttributeError):
        analysis.pre_execute_graph.waves[0].tasks = ()  # type: ignore[misc]


def test_the_analysis_classes_are_generic_in_the_key_type() -> None:
    from sdax import ExecutionWave

    wave = ExecutionWave[str](0, ("A",))
    assert wave.depends_on_tasks == ()
    assert ExecutionGraph[str](waves=(wave,)).wave_containing("A") is wave
    assert TaskAnalysis[str] is not None


# --------------------------------------------------------------------------- the builder's analyzer


def test_the_builders_task_analyzer_sees_the_tasks_added_to_the_builder() -> None:
    builder = AsyncDagTaskProcessor[None].builder()
    for declared, depends_on in service_graph():
        builder.add_task(declared, depends_on=depends_on)
    analysis = builder.taskAnalyzer.analyze()
    assert exact(analysis.post_execute_graph) == exact(builder.build().analysis.post_execute_graph)
    assert list(builder.taskAnalyzer.tasks) == [declared.name for declared, _ in service_graph()]
    assert builder.taskAnalyzer.dependencies["report"] == ("api", "worker", "audit")


def test_a_task_added_through_the_builders_analyzer_is_part_of_the_build() -> None:
    builder = AsyncDagTaskProcessor[None].builder().add_task(make("A", "p"))
    builder.taskAnalyzer.add_task(make("B", "p"), depends_on=("A",))
    assert exact(builder.build().analysis.pre_execute_graph) == [
        (0, ("A",), ()),
        (1, ("B",), ("A",)),
    ]
    with pytest.raises(ValueError, match="duplicate task name 'B'"):
        builder.add_task(make("B", "p"))


def test_a_task_analyzer_checks_each_task_as_it_is_added() -> None:
    analyzer = TaskAnalyzer[None, str]().add_task(make("A", "p"))
    with pytest.raises(ValueError, match="duplicate task name 'A'"):
        analyzer.add_task(make("A", "c"))
    with pytest.raises(TypeError, match="takes an AsyncTask"):
        analyzer.add_task("A")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bare str"):
        analyzer.add_task(make("B", "p"), depends_on="A")


def _refusal(add: Any, *args: Any, **kwargs: Any) -> tuple[type[BaseException], str]:
    with pytest.raises((TypeError, ValueError)) as caught:
        add(*args, **kwargs)
    return type(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("task", "depends_on"),
    [
        ("A", ()),  # not an AsyncTask
        (None, ()),  # the name "A" again (filled in below)
        ("new", "A"),  # a bare string as depends_on
        ("new", 3),  # not an iterable
        ("new", (["unhashable"],)),
    ],
    ids=["not-a-task", "duplicate", "bare-str", "not-iterable", "unhashable-dependency"],
)
def test_the_analyzer_and_the_builders_refuse_the_same_declarations_alike(
    task: Any, depends_on: Any
) -> None:
    """One declaration check serves every way of declaring: same error, nothing recorded."""
    if task is None:
        task = make("A", "c")
    elif task == "new":
        task = make("new", "p")
    analyzer = TaskAnalyzer[None]().add_task(make("A", "p"))
    builder = AsyncDagTaskProcessor[None].builder().add_task(make("A", "p"))
    refused = _refusal(analyzer.add_task, task, depends_on=depends_on)
    assert refused == _refusal(builder.add_task, task, depends_on=depends_on)
    assert refused == _refusal(builder.taskAnalyzer.add_task, task, depends_on=depends_on)
    if depends_on == ():  # the level builder takes no dependencies, the same task checks
        levels = AsyncDagTaskProcessor[None].elevator_builder().add_task(make("A", "p"), 0)
        assert refused == _refusal(levels.add_task, task, 0)
    assert list(analyzer.tasks) == list(builder.taskAnalyzer.tasks) == ["A"]
