"""Worker: analyse graphs with whichever sdax is importable and print the plans as JSON.

Run by compare_analysis.py under this project and under sdax 0.7.2 in turn, so
it uses only the API the two share. Reads a JSON list of graph specs on stdin:
`{"how": "builder" | "analyzer" | "builder.taskAnalyzer" | "levels", "tasks":
[{"name": str, "phases": "pec"-letters, "deps": [str], "level": int}]}`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from sdax import AsyncDagTaskProcessor, AsyncTask, AsyncTaskProcessor, task_func
from sdax.sdax_task_analyser import TaskAnalyzer

# The serialisation is sdax/plan_data.py, the one `sdax plan --format json`
# prints. It needs only the standard library, so it is loaded by path here:
# under 0.7.2 this repository's sdax package is not importable.
_spec = importlib.util.spec_from_file_location(
    "sdax_plan_data", Path(__file__).resolve().parent.parent / "sdax" / "plan_data.py"
)
assert _spec is not None
assert _spec.loader is not None
plan_data_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan_data_module)


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


def describe(graph: dict[str, Any]) -> dict[str, Any]:
    try:
        analysis = analyse(graph)
    except ValueError as error:
        # The phrase before the first colon: both versions start with it.
        return {"error": str(error).split(":")[0]}
    return dict(plan_data_module.plan_data(analysis))


if __name__ == "__main__":
    json.dump([describe(graph) for graph in json.load(sys.stdin)], sys.stdout)
