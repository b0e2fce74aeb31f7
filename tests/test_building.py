"""Building a processor: declaring by dependency or by level, and what a build rejects (SPEC §3).

Runs record into their context, so each test can check which tasks ran and in
what order without any shared state.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sdax import (
    AsyncDagLevelAdapterBuilder,
    AsyncDagTaskProcessor,
    AsyncDagTaskProcessorBuilder,
    AsyncTask,
    AsyncTaskProcessor,
    DependencyCycleError,
    join,
    task_func,
)
from tests.support import matches_sequence

PRE, EXEC, POST = "pre_execute", "execute", "post_execute"


async def noop(ctx: object) -> None:
    pass


@dataclass
class Log:
    """The context of a run: (event, key, phase) in the order it happened."""

    events: list[tuple[str, Hashable, str]] = field(default_factory=list)

    def keys(self, event: str, phase: str) -> list[Hashable]:
        return [key for kind, key, ph in self.events if kind == event and ph == phase]

    def index(self, event: str, key: Hashable, phase: str) -> int:
        return self.events.index((event, key, phase))


def recorded(key: Hashable, *phases: str) -> AsyncTask[Log]:
    """A task whose phases log their start and end (yielding once in between)."""

    def phase_function(phase: str) -> Any:
        async def record(ctx: Log) -> None:
            ctx.events.append(("start", key, phase))
            await asyncio.sleep(0)  # a yield, so siblings interleave
            ctx.events.append(("end", key, phase))

        return task_func(record)

    return AsyncTask(key, **{phase: phase_function(phase) for phase in phases})


def dag(*declarations: tuple[AsyncTask[Log], Iterable[Hashable]]) -> AsyncDagTaskProcessor[Log]:
    builder = AsyncDagTaskProcessor[Log].builder()
    for declared, depends_on in declarations:
        builder.add_task(declared, depends_on=depends_on)
    return builder.build()


def assert_is_a_cycle_of(cycle: tuple[Hashable, ...], edges: dict[Hashable, set[Hashable]]) -> None:
    """`cycle` is closed and each key in it depends on the next one."""
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for key, dependency in itertools.pairwise(cycle):
        assert dependency in edges[key], f"{key!r} does not depend on {dependency!r}"


# --------------------------------------------------------------------------- entry points


def test_every_builder_entry_point_gives_the_builder_it_names() -> None:
    assert isinstance(AsyncDagTaskProcessor[Log].builder(), AsyncDagTaskProcessorBuilder)
    assert isinstance(AsyncDagTaskProcessor.builder(), AsyncDagTaskProcessorBuilder)
    assert isinstance(AsyncTaskProcessor.graph_builder(), AsyncDagTaskProcessorBuilder)
    assert isinstance(AsyncTaskProcessor[Log].graph_builder(), AsyncDagTaskProcessorBuilder)
    assert isinstance(AsyncTaskProcessor.builder(), AsyncDagLevelAdapterBuilder)
    assert isinstance(AsyncTaskProcessor[Log].builder(), AsyncDagLevelAdapterBuilder)
    assert isinstance(AsyncTaskProcessor.elevator_builder(), AsyncDagLevelAdapterBuilder)


def a_then_b_by_dependency(builder: AsyncDagTaskProcessorBuilder[Log]) -> Any:
    return builder.add_task(recorded("A", PRE)).add_task(recorded("B", PRE), ("A",)).build()


def a_then_b_by_level(builder: AsyncDagLevelAdapterBuilder[Log]) -> Any:
    return builder.add_task(recorded("A", PRE), 0).add_task(recorded("B", PRE), 1).build()


ENTRY_POINTS = [
    pytest.param(
        lambda: a_then_b_by_dependency(AsyncDagTaskProcessor[Log].builder()),
        id="AsyncDagTaskProcessor[Ctx].builder()",
    ),
    pytest.param(
        lambda: a_then_b_by_dependency(AsyncTaskProcessor.graph_builder()),
        id="AsyncTaskProcessor.graph_builder()",
    ),
    pytest.param(
        lambda: a_then_b_by_level(AsyncTaskProcessor.builder()), id="AsyncTaskProcessor.builder()"
    ),
    pytest.param(
        lambda: a_then_b_by_level(AsyncTaskProcessor.elevator_builder()),
        id="AsyncTaskProcessor.elevator_builder()",
    ),
]


@pytest.mark.parametrize("build", ENTRY_POINTS)
async def test_a_processor_from_each_builder_entry_point_runs_its_tasks(build: Any) -> None:
    processor = build()
    assert isinstance(processor, AsyncDagTaskProcessor)
    ctx = Log()
    await processor.process_tasks(ctx)
    assert ctx.keys("start", PRE) == ["A", "B"]


def test_add_task_returns_the_builder_so_calls_chain() -> None:
    graph = AsyncDagTaskProcessor[Log].builder()
    assert graph.add_task(recorded("A", PRE)) is graph
    assert graph.add_task(recorded("B", PRE), depends_on=["A"]) is graph
    levels = AsyncTaskProcessor[Log].builder()
    assert levels.add_task(recorded("A", PRE), level=0) is levels


async def test_an_empty_graph_builds_and_runs_doing_nothing() -> None:
    await AsyncDagTaskProcessor[Log].builder().build().process_tasks(Log())
    await AsyncTaskProcessor[Log].builder().build().process_tasks(Log())


# --------------------------------------------------------------------------- rejected at add_task


def test_a_duplicate_name_is_a_value_error_at_add_task() -> None:
    builder = AsyncDagTaskProcessor[Log].builder().add_task(recorded("Auth", PRE))
    with pytest.raises(ValueError, match=r"duplicate.*'Auth'"):
        builder.add_task(recorded("Auth", EXEC))


def test_a_duplicate_name_is_a_value_error_in_the_level_builder_too() -> None:
    builder = AsyncTaskProcessor[Log].builder().add_task(recorded("Auth", PRE), level=0)
    with pytest.raises(ValueError, match=r"duplicate.*'Auth'"):
        builder.add_task(recorded("Auth", EXEC), level=3)


def test_an_unhashable_name_is_a_type_error() -> None:
    builder = AsyncDagTaskProcessor[Log].builder()
    with pytest.raises(TypeError, match=r"\['db', 'connect'\].*hashable"):
        builder.add_task(AsyncTask(["db", "connect"], execute=task_func(noop)))


def test_a_bare_string_as_depends_on_is_a_type_error_naming_the_task() -> None:
    builder = AsyncDagTaskProcessor[Log].builder().add_task(recorded("Database", PRE))
    with pytest.raises(TypeError, match=r"'Auth'.*depends_on.*str"):
        builder.add_task(recorded("Auth", PRE), depends_on="Database")


async def test_depends_on_takes_any_iterable_of_keys() -> None:
    processor = dag(
        (recorded("A", PRE), ()),
        (recorded("B", PRE), ["A"]),
        (recorded("C", PRE), {"A", "B"}),
        (recorded("D", PRE), (key for key in ("B", "C"))),
        (recorded("E", PRE), {"D": 1}.keys()),
    )
    ctx = Log()
    await processor.process_tasks(ctx)
    assert ctx.keys("start", PRE) == ["A", "B", "C", "D", "E"]


async def test_a_dependency_named_twice_counts_once() -> None:
    processor = dag((recorded("A", PRE, POST), ()), (recorded("B", PRE, POST), ["A", "A", "A"]))
    assert processor.analysis.dependencies["B"] == ("A",)
    ctx = Log()
    await processor.process_tasks(ctx)  # one edge: B's pre is released once A's succeeds
    assert ctx.keys("start", PRE) == ["A", "B"]
    assert ctx.keys("start", POST) == ["B", "A"]


async def test_tasks_sharing_phase_functions_keep_their_own_phases_and_settings() -> None:
    # The build derives a task's phase facts once per combination of functions;
    # sharing one function must not leak phases or settings between tasks.
    calls: list[str] = []

    def counting(label: str) -> Any:
        async def count(ctx: Log) -> None:
            calls.append(label)
            if label == "flaky" and calls.count("flaky") == 1:
                raise ConnectionError("first attempt fails")

        return count

    plain = task_func(counting("plain"))
    flaky = task_func(counting("flaky"), retries=1, initial_delay=0)
    processor = dag(
        (AsyncTask("A", pre_execute=plain, post_execute=plain), ()),
        (AsyncTask("B", pre_execute=plain, execute=flaky), ("A",)),
        (AsyncTask("C", execute=plain), ("A",)),
        (AsyncTask("D", pre_execute=plain, post_execute=plain), ("B", "C")),
    )
    analysis = processor.analysis
    assert analysis.tasks_with_pre_execute == 3
    assert analysis.tasks_with_execute == 2
    assert analysis.tasks_with_post_execute == 2
    await processor.process_tasks(Log())
    assert calls.count("plain") == 3 + 1 + 2  # pres of A, B, D; execute of C; posts of A, D
    assert calls.count("flaky") == 2  # B's execute, retried once


# --------------------------------------------------------------------------- rejected at build


def test_a_missing_dependency_is_a_value_error_at_build_naming_both_tasks() -> None:
    builder = AsyncDagTaskProcessor[Log].builder()
    builder.add_task(recorded("Auth", PRE), depends_on=("Database",))  # accepted for now
    with pytest.raises(ValueError, match=r"'Auth'.*'Database'"):
        builder.build()


def test_a_missing_dependency_close_to_a_declared_name_suggests_it() -> None:
    builder = AsyncDagTaskProcessor[Log].builder().add_task(recorded("Database", PRE))
    builder.add_task(recorded("Auth", PRE), depends_on=("Databse",))
    with pytest.raises(ValueError, match=r"'Auth'.*'Databse'.*did you mean 'Database'"):
        builder.build()


async def test_a_dependency_may_be_declared_after_the_task_that_needs_it() -> None:
    processor = dag((recorded("Auth", PRE), ("Database",)), (recorded("Database", PRE), ()))
    ctx = Log()
    await processor.process_tasks(ctx)
    assert ctx.keys("start", PRE) == ["Database", "Auth"]


def test_a_task_that_depends_on_itself_is_a_cycle_error_at_build() -> None:
    builder = AsyncDagTaskProcessor[Log].builder()
    builder.add_task(recorded("A", PRE), depends_on=("A",))
    with pytest.raises(DependencyCycleError, match=re.escape("'A' -> 'A'")) as caught:
        builder.build()
    assert isinstance(caught.value, ValueError)
    assert caught.value.cycle == ("A", "A")


def test_two_tasks_that_depend_on_each_other_are_a_cycle_error_at_build() -> None:
    edges: dict[Hashable, set[Hashable]] = {"A": {"B"}, "B": {"A"}}
    builder = AsyncDagTaskProcessor[Log].builder()
    for key, depends_on in edges.items():
        builder.add_task(recorded(key, PRE), depends_on=depends_on)
    with pytest.raises(ValueError, match=r"'A' -> 'B' -> 'A'|'B' -> 'A' -> 'B'") as caught:
        builder.build()
    assert isinstance(caught.value, DependencyCycleError)
    assert_is_a_cycle_of(caught.value.cycle, edges)
    assert set(caught.value.cycle) == {"A", "B"}


def test_a_longer_cycle_is_reported_without_the_tasks_that_only_lead_into_it() -> None:
    edges: dict[Hashable, set[Hashable]] = {
        "Entry": {"A"},  # depends on the cycle but is not part of it
        "Root": set(),
        "A": {"B", "Root"},
        "B": {"C"},
        "C": {"D"},
        "D": {"A"},
    }
    builder = AsyncDagTaskProcessor[Log].builder()
    for key, depends_on in edges.items():
        builder.add_task(recorded(key, PRE), depends_on=depends_on)
    with pytest.raises(DependencyCycleError) as caught:
        builder.build()
    cycle = caught.value.cycle
    assert_is_a_cycle_of(cycle, edges)
    assert set(cycle) == {"A", "B", "C", "D"}
    assert " -> ".join(repr(key) for key in cycle) in str(caught.value)


def test_a_cycle_through_a_join_node_is_a_cycle_error() -> None:
    edges: dict[Hashable, set[Hashable]] = {"A": {"J"}, "J": {"B"}, "B": {"A"}}
    builder = AsyncDagTaskProcessor[Log].builder()
    builder.add_task(recorded("A", PRE), depends_on=edges["A"])
    builder.add_task(join("J"), depends_on=edges["J"])
    builder.add_task(recorded("B", PRE), depends_on=edges["B"])
    with pytest.raises(DependencyCycleError) as caught:
        builder.build()
    assert_is_a_cycle_of(caught.value.cycle, edges)


# --------------------------------------------------------------------------- keys


class Stage(enum.Enum):
    LOAD = "load"
    SAVE = "save"


async def test_keys_of_every_hashable_kind_name_tasks_and_dependencies_end_to_end() -> None:
    chain: list[Hashable] = [
        "database",
        ("auth", "validate"),
        7,
        frozenset({"cache", "flags"}),
        Stage.LOAD,
        (Stage.SAVE, 2),
    ]
    builder = AsyncDagTaskProcessor[Log].builder()
    for position, key in enumerate(chain):
        builder.add_task(recorded(key, PRE, POST), depends_on=chain[position - 1 : position])
    ctx = Log()
    await builder.build().process_tasks(ctx)
    assert ctx.keys("start", PRE) == chain
    assert ctx.keys("start", POST) == chain[::-1]


# --------------------------------------------------------------------------- immutability


async def test_a_built_processor_is_not_affected_by_later_builder_changes() -> None:
    builder = AsyncDagTaskProcessor[Log].builder().add_task(recorded("First", PRE, POST))
    processor = builder.build()
    builder.add_task(recorded("Late", PRE, POST), depends_on=("First",))
    builder.add_task(recorded("Broken", PRE), depends_on=("never declared",))

    ctx = Log()
    await processor.process_tasks(ctx)
    assert {key for _, key, _ in ctx.events} == {"First"}
    assert processor.analysis.total_tasks == 1


async def test_a_level_built_processor_is_not_affected_by_later_builder_changes() -> None:
    builder = AsyncTaskProcessor[Log].builder().add_task(recorded("First", PRE), level=0)
    processor = builder.build()
    builder.add_task(recorded("Late", PRE), level=1)
    builder.add_task(recorded("Earlier", PRE), level=-1)

    ctx = Log()
    await processor.process_tasks(ctx)
    assert ctx.keys("start", PRE) == ["First"]


async def test_building_twice_gives_two_processors_each_with_the_tasks_of_its_time() -> None:
    builder = AsyncDagTaskProcessor[Log].builder().add_task(recorded("A", PRE))
    first = builder.build()
    second = builder.add_task(recorded("B", PRE), ("A",)).build()
    ctx_first, ctx_second = Log(), Log()
    await first.process_tasks(ctx_first)
    await second.process_tasks(ctx_second)
    assert ctx_first.keys("start", PRE) == ["A"]
    assert ctx_second.keys("start", PRE) == ["A", "B"]


# --------------------------------------------------------------------------- levels


LEVELS: dict[int, list[str]] = {
    -3: ["a1", "a2"],
    4: ["b1", "b2", "b3"],
    10: ["c1"],
    100: ["d1", "d2"],
}


def shuffled_level_declarations() -> list[tuple[int, str]]:
    """Every (level, key) of LEVELS, in an order that is neither sorted nor grouped."""
    return [(10, "c1"), (-3, "a1"), (100, "d1"), (4, "b1"), (-3, "a2"), (4, "b2"), (100, "d2"),
            (4, "b3")]  # fmt: skip


def level_processor(*phases: str) -> AsyncTaskProcessor[Log]:
    builder = AsyncTaskProcessor[Log].builder()
    for level, key in shuffled_level_declarations():
        builder.add_task(recorded(key, *phases), level)
    return builder.build()


def equivalent_dag(*phases: str) -> AsyncDagTaskProcessor[Log]:
    declarations: list[tuple[AsyncTask[Log], Iterable[Hashable]]] = []
    below: list[str] = []
    for level in sorted(LEVELS):
        declarations.extend((recorded(key, *phases), below) for key in LEVELS[level])
        below = LEVELS[level]
    return dag(*declarations)


@pytest.mark.parametrize("processor_of", [level_processor, equivalent_dag], ids=["levels", "dag"])
async def test_unsorted_gapped_levels_start_level_by_level_like_the_equivalent_dag(
    processor_of: Any,
) -> None:
    ctx = Log()
    await processor_of(PRE, POST).process_tasks(ctx)
    levels = [set(LEVELS[level]) for level in sorted(LEVELS)]
    assert matches_sequence(ctx.keys("start", PRE), levels)
    for lower, upper in itertools.pairwise(sorted(LEVELS)):
        for later in LEVELS[upper]:
            for earlier in LEVELS[lower]:
                assert ctx.index("end", earlier, PRE) < ctx.index("start", later, PRE)
    assert matches_sequence(ctx.keys("start", POST), levels[::-1])


def wave_sets(waves: Any) -> list[tuple[set[Hashable], set[Hashable]]]:
    return [(set(wave.tasks), set(wave.depends_on_tasks)) for wave in waves]


def test_the_level_builder_plans_the_same_waves_as_the_equivalent_dag() -> None:
    by_level = level_processor(PRE, EXEC, POST).analysis
    by_dag = equivalent_dag(PRE, EXEC, POST).analysis
    assert wave_sets(by_level.pre_execute_graph.waves) == wave_sets(by_dag.pre_execute_graph.waves)
    assert wave_sets(by_level.post_execute_graph.waves) == wave_sets(
        by_dag.post_execute_graph.waves
    )
    assert wave_sets(by_level.pre_execute_graph.waves) == [
        ({"a1", "a2"}, set()),
        ({"b1", "b2", "b3"}, {"a1", "a2"}),
        ({"c1"}, {"b1", "b2", "b3"}),
        ({"d1", "d2"}, {"c1"}),
    ]


async def test_a_level_of_tasks_without_pre_execute_still_separates_the_levels_around_it() -> None:
    builder = AsyncTaskProcessor[Log].builder()
    builder.add_task(recorded("top", PRE), level=2)
    builder.add_task(recorded("middle", EXEC), level=1)
    builder.add_task(recorded("bottom", PRE), level=0)
    processor = builder.build()
    assert wave_sets(processor.analysis.pre_execute_graph.waves) == [
        ({"bottom"}, set()),
        ({"top"}, {"bottom"}),
    ]
    ctx = Log()
    await processor.process_tasks(ctx)
    assert ctx.index("end", "bottom", PRE) < ctx.index("start", "top", PRE)


async def test_level_join_nodes_never_collide_with_user_keys() -> None:
    lookalikes: list[Hashable] = [(0, "below"), (0, "above"), (1, "below"), 0, 1, "level 0"]
    builder = AsyncTaskProcessor[Log].builder()
    for position, key in enumerate(lookalikes):
        builder.add_task(recorded(key, PRE), level=position % 2)
    ctx = Log()
    await builder.build().process_tasks(ctx)
    assert matches_sequence(ctx.keys("start", PRE), [set(lookalikes[0::2]), set(lookalikes[1::2])])


@pytest.mark.parametrize("level", ["1", 1.0, None], ids=["str", "float", "None"])
def test_a_level_that_is_not_an_int_is_a_type_error_naming_the_task(level: object) -> None:
    builder = AsyncTaskProcessor[Log].builder()
    with pytest.raises(TypeError, match=r"'Auth'.*level"):
        builder.add_task(recorded("Auth", PRE), level)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- long chains


CHAIN = 100_000


def reverse_declared_chain(function: Any) -> AsyncDagTaskProcessorBuilder[Any]:
    """Task i depends on task i + 1, which is declared after it."""
    builder = AsyncDagTaskProcessor[Any].builder()
    for key in range(CHAIN):
        depends_on = (key + 1,) if key + 1 < CHAIN else ()
        builder.add_task(AsyncTask(key, pre_execute=function), depends_on=depends_on)
    return builder


def test_a_100k_chain_declared_in_reverse_order_builds_without_recursion_error() -> None:
    processor = reverse_declared_chain(task_func(noop)).build()
    analysis = processor.analysis
    assert analysis.total_tasks == CHAIN
    waves = analysis.pre_execute_graph.waves
    assert len(waves) == CHAIN
    assert (waves[0].tasks, waves[0].depends_on_tasks) == ((CHAIN - 1,), ())
    assert (waves[-1].tasks, waves[-1].depends_on_tasks) == ((0,), (1,))


def appender(into: list[int], key: int) -> Any:
    async def append(ctx: object) -> None:
        into.append(key)

    return append


async def test_a_100k_chain_runs_end_to_end_in_dependency_order() -> None:
    order: list[int] = []
    cleaned: list[int] = []
    zero_work = task_func(noop)
    builder = AsyncDagTaskProcessor[None].builder()
    for key in range(CHAIN):
        builder.add_task(
            AsyncTask(
                key,
                pre_execute=task_func(appender(order, key)),
                execute=zero_work,
                post_execute=task_func(appender(cleaned, key)),
            ),
            depends_on=(key + 1,) if key + 1 < CHAIN else (),
        )
    await builder.build().process_tasks(None)
    assert order == list(range(CHAIN - 1, -1, -1))
    assert cleaned == list(range(CHAIN))


async def test_a_misspelt_run_option_is_refused_before_anything_runs() -> None:
    ran: list[str] = []

    async def step(ctx: object) -> None:
        ran.append("step")

    processor = (
        AsyncDagTaskProcessor.builder().add_task(AsyncTask("A", execute=task_func(step))).build()
    )
    with pytest.raises(TypeError, match=r"process_tasks\(\).*'tiemout'.*timeout"):
        await processor.process_tasks(None, tiemout=1.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"open\(\).*'budget'"):
        processor.open(None, budget=1.0)  # type: ignore[call-arg]
    assert ran == []
