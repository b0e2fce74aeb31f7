"""Worker: analyse graphs with whichever sdax is importable and print the plans as JSON.

Run by compare_analysis.py under this project and under sdax 0.7.2 in turn, so
it uses only the API the two share. Reads a JSON list of graph specs on stdin:
`{"how": "builder" | "analyzer" | "builder.taskAnalyzer" | "levels", "tasks":
[{"name": str, "phases": "pec"-letters, "deps": [str], "level": int}]}`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from sdax import AsyncDagTaskProcessor, AsyncTask, AsyncTaskProcessor, task_func
from sdax.sdax_task_analyser import TaskAnalyzer

# TaskAnalysis attributes compared, besides the waves.
ATTRIBUTES = (
    "total_tasks",
    "tasks_with_pre_execute",
    "tasks_with_execute",
    "tasks_with_post_execute",
    "nodes",
    "pre_task_names",
    "execute_task_names",
    "post_task_names",
    "post_only_task_names",
    "topological_order",
    "dependencies",
    "max_pre_wave_num",
    "max_post_wave_num",
    "pre_root_wave_id",
    "post_root_wave_id",
    "wave_index_by_task",
    "task_to_consumer_waves",
    "wave_dep_count",
    "post_wave_index_by_task",
    "post_task_to_consumer_waves",
    "post_wave_dep_count",
)


async def step(ctx: object) -> None:
    pass


FUNCTION = task_func(step)


def declare(spec: dict[str, Any]) -> AsyncTask[Any]:
    phases = spec["phases"]
    return AsyncTask(
        spec["name"],
        pre_execute=FUNCTION if "p" in phases else None,
        execute=FUNCTION if "e" in phases else None,
        post_execute=FUNCTION if "c" in phases else None,
    )


def analyse(graph: dict[str, Any]) -> Any:
    how, tasks = graph["how"], graph["tasks"]
    if how == "levels":
        levels = AsyncTaskProcessor.builder()
        for spec in tasks:
            levels.add_task(declare(spec), spec["level"])
        return levels.build().analysis
    if how == "analyzer":
        analyzer = TaskAnalyzer()
        for spec in tasks:
            analyzer.add_task(declare(spec), depends_on=tuple(spec["deps"]))
        return analyzer.analyze()
    builder = AsyncDagTaskProcessor.builder()
    for spec in tasks:
        builder.add_task(declare(spec), depends_on=tuple(spec["deps"]))
    if how == "builder.taskAnalyzer":
        return builder.taskAnalyzer.analyze()
    return builder.build().analysis


def plain(value: Any) -> Any:
    """`value` as JSON data; keys that are not strings (join nodes) become their repr."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if hasattr(value, "items"):
        return sorted([[plain(k), plain(v)] for k, v in value.items()], key=repr)
    return repr(value)


def waves(graph: Any) -> list[list[Any]]:
    return [[w.wave_num, plain(w.tasks), plain(w.depends_on_tasks)] for w in graph.waves]


def describe(graph: dict[str, Any]) -> dict[str, Any]:
    try:
        analysis = analyse(graph)
    except ValueError as error:
        # The phrase before the first colon: both versions start with it.
        return {"error": str(error).split(":")[0]}
    found: dict[str, Any] = {
        "pre_waves": waves(analysis.pre_execute_graph),
        "post_waves": waves(analysis.post_execute_graph),
    }
    for name in ATTRIBUTES:
        found[name] = plain(getattr(analysis, name)) if hasattr(analysis, name) else "<missing>"
    return found


if __name__ == "__main__":
    json.dump([describe(graph) for graph in json.load(sys.stdin)], sys.stdout)
