"""The import surface of sdax 0.7.2: code written against it imports unchanged (SPEC §1).

The three compatibility modules are facades: each name they offer is the very
object `sdax` offers, not a copy.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

import sdax

SURFACE: dict[str, list[str]] = {
    "sdax": [
        "AsyncTask",
        "TaskFunction",
        "RetryableException",
        "SdaxTaskGroup",
        "task",
        "join",
        "task_func",
        "task_group_func",
        "task_group_task",
        "task_sync_func",
        "AsyncTaskProcessor",
        "AsyncDagTaskProcessor",
        "AsyncDagTaskProcessorBuilder",
        "AsyncDagLevelAdapterBuilder",
        "AsyncPhaseRunner",
        "PhaseId",
        "SdaxExecutionError",
        "PhaseCancelledError",
        "flatten_exceptions",
        "__version__",
    ],
    "sdax.sdax_core": [
        "AsyncTaskProcessor",
        "AsyncDagTaskProcessor",
        "AsyncDagTaskProcessorBuilder",
        "AsyncDagLevelAdapterBuilder",
        "AsyncPhaseRunner",
        "PhaseId",
        "LevelKey",
        "AsyncTask",
        "TaskFunction",
        "SdaxExecutionError",
        "flatten_exceptions",
        "ExecutionWave",
        "TaskAnalysis",
        "TaskAnalyzer",
        "SdaxTaskGroup",
        "join",
        "AsyncTaskProcessorBuilder",
        "Phase",
        "PhaseContext",
    ],
    "sdax.sdax_task_analyser": [
        "TaskAnalyzer",
        "TaskAnalysis",
        "ExecutionGraph",
        "ExecutionWave",
        "AsyncTask",
    ],
    "sdax.tasks": [
        "AsyncTask",
        "TaskFunction",
        "RetryableException",
        "SdaxTaskGroup",
        "task",
        "join",
        "task_func",
        "task_group_func",
        "task_group_task",
        "task_sync_func",
    ],
}

PAIRS = [
    pytest.param(module, name, id=f"{module}.{name}")
    for module, names in SURFACE.items()
    for name in names
]


@pytest.mark.parametrize(("module", "name"), PAIRS)
def test_every_name_of_the_table_imports_from_its_module(module: str, name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module} import {name}", namespace)
    assert namespace[name] is not None


FACADE_PAIRS = [
    pytest.param(module, name, id=f"{module}.{name}")
    for module, names in SURFACE.items()
    if module != "sdax"
    for name in names
    if name in SURFACE["sdax"]
]


@pytest.mark.parametrize(("module", "name"), FACADE_PAIRS)
def test_a_facade_offers_the_same_object_as_the_top_level_package(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(sdax, name)


def test_the_analyser_facade_offers_the_analysis_classes_of_the_processor() -> None:
    from sdax.sdax_task_analyser import TaskAnalysis

    processor = sdax.AsyncDagTaskProcessor[None].builder().build()
    assert isinstance(processor.analysis, TaskAnalysis)


def test_the_version_is_a_non_empty_string() -> None:
    assert isinstance(sdax.__version__, str)
    assert sdax.__version__


def test_task_group_task_is_the_same_helper_as_task_group_func_everywhere() -> None:
    from sdax.tasks import task_group_func, task_group_task

    assert task_group_task is task_group_func is sdax.task_group_func


def test_phase_ids_name_the_three_phases() -> None:
    from sdax.sdax_core import PhaseId

    assert {phase.name for phase in PhaseId} == {"PRE_EXEC", "EXECUTE", "POST_EXEC"}


def test_the_errors_are_exceptions_that_exception_groups_and_except_star_accept() -> None:
    assert issubclass(sdax.SdaxExecutionError, ExceptionGroup)
    assert issubclass(sdax.PhaseCancelledError, Exception)
    assert issubclass(sdax.RetryableException, Exception)


def test_task_analyzer_is_subscriptable_with_a_context_and_a_key_type() -> None:
    from sdax import AsyncTask, TaskAnalyzer

    analysis = TaskAnalyzer[dict[str, int], str]().add_task(AsyncTask[Any]("A")).analyze()
    assert analysis.total_tasks == 1


def test_build_errors_start_with_the_phrases_0_7_2_users_match_on() -> None:
    from sdax import AsyncDagTaskProcessor, AsyncTask, DependencyCycleError, task_func

    async def step(ctx: object) -> None:
        pass

    missing = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("B", execute=task_func(step)), depends_on=("A",))
    )
    with pytest.raises(ValueError, match=r"^Task 'B' depends on non-existent task 'A'"):
        missing.build()
    looped = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("A", execute=task_func(step)), depends_on=("A",))
    )
    with pytest.raises(DependencyCycleError, match=r"^Cycle detected: 'A' -> 'A'"):
        looped.build()


async def test_task_function_call_passes_the_task_group_only_when_declared() -> None:
    from sdax import SdaxTaskGroup, task_func, task_group_func

    seen: list[object] = []

    async def plain(ctx: str) -> None:
        seen.append(ctx)

    async def grouped(ctx: str, group: SdaxTaskGroup) -> None:
        seen.append((ctx, group))

    group = object()
    await task_func(plain).call("c", group)  # type: ignore[arg-type]
    await task_group_func(grouped).call("c", group)  # type: ignore[arg-type]
    assert seen == ["c", ("c", group)]


def test_the_level_builder_is_an_async_task_processor_builder_as_in_0_7_2() -> None:
    from sdax.sdax_core import AsyncTaskProcessor, AsyncTaskProcessorBuilder

    assert isinstance(AsyncTaskProcessor.builder(), AsyncTaskProcessorBuilder)
    assert not isinstance(AsyncTaskProcessor.graph_builder(), AsyncTaskProcessorBuilder)

    class Incomplete(AsyncTaskProcessorBuilder[None, str]):
        def build(self) -> Any:
            return None

    with pytest.raises(TypeError, match="add_task"):
        Incomplete()  # type: ignore[abstract]


def test_phase_context_is_the_phase_runner_and_phase_a_plain_record() -> None:
    from sdax.sdax_core import AsyncPhaseRunner, Phase, PhaseContext, PhaseId

    assert PhaseContext is AsyncPhaseRunner

    async def run(ctx: object) -> PhaseId | None:
        return None

    phase = Phase(PhaseId.EXECUTE, run)
    assert (phase.phase_id, phase.run) == (PhaseId.EXECUTE, run)


def test_the_surface_check_reports_names_and_members_this_project_lacks() -> None:
    from compat.surface import missing

    def cls(members: list[str], type_parameters: int = 0) -> dict[str, Any]:
        return {"members": members, "type_parameters": type_parameters}

    reference: dict[str, dict[str, dict[str, Any] | None]] = {
        "sdax": {
            "AsyncTask": cls(["name", "pre_execute", "gone_member"]),
            "TaskFunction": cls(["call"], type_parameters=3),
            "task_func": None,
            "GoneClass": cls(["x"]),
        },
        "sdax.sdax_core": {
            "PhaseContext": cls(["pre_started"]),  # an internal: checked by name only
            "AsyncPhaseRunner": cls(["run_next"], type_parameters=1),
        },
    }
    lacking = missing(reference)
    assert lacking[0] == "sdax.AsyncTask.gone_member"
    assert lacking[1].startswith("sdax.TaskFunction[...] with 3 type arguments")
    assert lacking[2:] == ["sdax.GoneClass"]


def test_the_surface_check_counts_attributes_set_on_self_and_declared_fields() -> None:
    from compat.surface import instance_attributes
    from sdax.analysis import TaskAnalysis
    from sdax.processor import AsyncDagTaskProcessor

    assert {"wave_index_by_task", "topological_order"} <= instance_attributes(TaskAnalysis)
    assert "_graph" in instance_attributes(AsyncDagTaskProcessor)


def test_generic_classes_take_one_type_argument_or_0_7_2s_two() -> None:
    """0.7.2's README writes `AsyncDagTaskProcessor[Ctx]`; its code declared (Ctx, key)."""
    from collections.abc import Hashable

    from sdax import AsyncDagTaskProcessor, AsyncDagTaskProcessorBuilder, AsyncTaskProcessor
    from sdax.sdax_core import AsyncPhaseRunner, TaskAnalyzer

    for cls in (
        sdax.AsyncTask,
        AsyncDagTaskProcessor,
        AsyncDagTaskProcessorBuilder,
        AsyncTaskProcessor,
        AsyncPhaseRunner,
        TaskAnalyzer,
    ):
        assert cls[int].__args__ == (int, Hashable)
        assert cls[int, str].__args__ == (int, str)
        with pytest.raises(TypeError):
            cls[int, str, str]
    task = sdax.AsyncTask[dict[str, int], str]("A")
    built = AsyncDagTaskProcessor[dict[str, int], str].builder().add_task(task).build()
    assert built.analysis.total_tasks == 1
    assert TaskAnalyzer[dict[str, int], str]().add_task(task).analyze().total_tasks == 1
    assert TaskAnalyzer[dict[str, int]]().add_task(task).analyze().total_tasks == 1


async def test_the_phase_runner_names_its_context_and_processor_as_0_7_2s_did() -> None:
    from sdax import AsyncDagTaskProcessor, AsyncTask, task_func

    async def step(ctx: list[str]) -> None:
        ctx.append("ran")

    processor = (
        AsyncDagTaskProcessor[list[str]]
        .builder()
        .add_task(AsyncTask("A", execute=task_func(step)))
        .build()
    )
    ctx: list[str] = []
    async with processor.open(ctx) as runner:
        assert runner.ctx is ctx
        assert runner.processor is processor
        while await runner.run_next():
            pass
    assert ctx == ["ran"]


def test_code_with_0_7_2s_two_type_arguments_passes_mypy_strict(tmp_path: Any) -> None:
    import subprocess
    import sys

    script = tmp_path / "two_parameters.py"
    script.write_text(
        """
from dataclasses import dataclass

from sdax import AsyncDagTaskProcessor, AsyncTask, task_func
from sdax.sdax_core import AsyncPhaseRunner
from sdax.sdax_task_analyser import TaskAnalyzer


@dataclass
class Ctx:
    n: int = 0


async def bump(ctx: Ctx) -> None:
    ctx.n += 1


keyed: AsyncTask[Ctx, str] = AsyncTask("A", execute=task_func(bump))
one: AsyncDagTaskProcessor[Ctx] = AsyncDagTaskProcessor[Ctx].builder().add_task(keyed).build()
two: AsyncDagTaskProcessor[Ctx, str] = (
    AsyncDagTaskProcessor[Ctx, str].builder().add_task(keyed).build()
)
analysis = TaskAnalyzer[Ctx, str]().add_task(keyed).analyze()


async def run(ctx: Ctx) -> None:
    runner: AsyncPhaseRunner[Ctx, str]
    async with two.open(ctx) as runner:
        await runner.run_next()
""",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout


async def test_what_the_readme_tells_library_authors_built_on_0_7_2() -> None:
    """README "For library authors building on 0.7.2", the rows code can check."""
    import asyncio

    from sdax import AsyncDagTaskProcessor, AsyncTask, SdaxExecutionError, task_func

    started: list[str] = []

    async def stops_itself(ctx: None) -> None:
        raise asyncio.CancelledError

    async def fails(ctx: None) -> None:
        raise ValueError("boom")

    async def dependent(ctx: None) -> None:
        started.append("dependent")

    processor = (
        AsyncDagTaskProcessor[None]
        .builder()
        .add_task(AsyncTask("A", pre_execute=task_func(stops_itself)))
        .add_task(AsyncTask("B", pre_execute=task_func(fails)))
        .add_task(AsyncTask("C", pre_execute=task_func(dependent)), depends_on=("A",))
        .build()
    )
    with pytest.raises(SdaxExecutionError) as caught:
        await processor.process_tasks(None)
    assert str(caught.value).startswith("2 tasks failed")
    cancelled = caught.value.subgroup(sdax.PhaseCancelledError)
    assert cancelled is not None
    [leaf] = cancelled.exceptions
    assert isinstance(leaf.__cause__, asyncio.CancelledError)
    assert started == []
    assert issubclass(sdax.RetryableException, Exception)

    with pytest.raises(TypeError):
        sdax.task_sync_func(stops_itself)
    with pytest.raises(TypeError):
        AsyncDagTaskProcessor[None].builder().add_task(AsyncTask("X"), depends_on="A")

    levels = sdax.AsyncTaskProcessor[None].builder()
    for level, key in enumerate("abc"):
        levels.add_task(AsyncTask(key, pre_execute=task_func(dependent)), level)
    analysis = levels.build().analysis
    barriers = [key for key in analysis.tasks if isinstance(key, sdax.LevelBarrier)]
    assert (analysis.total_tasks, analysis.nodes, len(barriers)) == (5, 2, 2)


def test_the_compat_worker_serialises_with_sdax_plan_data() -> None:
    """compat/dump_analysis.py loads sdax/plan_data.py by path and prints what it gives."""
    import sys
    from pathlib import Path

    from compat.reference import run_json
    from sdax import AsyncDagTaskProcessor, AsyncTask, task_func
    from sdax.plan_data import plan_data

    async def step(ctx: object) -> None:
        pass

    worker = Path(__file__).resolve().parent.parent / "compat" / "dump_analysis.py"
    spec = [{"name": "A", "phases": "pc", "deps": []}, {"name": "B", "phases": "c", "deps": ["A"]}]
    [printed] = run_json(sys.executable, worker, [{"how": "builder", "tasks": spec}], ours=True)
    processor = (
        AsyncDagTaskProcessor[object]
        .builder()
        .add_task(AsyncTask("A", pre_execute=task_func(step), post_execute=task_func(step)))
        .add_task(AsyncTask("B", post_execute=task_func(step)), depends_on=("A",))
        .build()
    )
    assert printed == plan_data(processor.analysis)
    assert printed["post_waves"] == [[0, ["B"], []], [1, ["A"], ["B"]]]
