"""A plan (a `TaskAnalysis`) as plain data and as lines of text.

The one place that turns an analysis into something to print or compare:
`sdax plan --format json` and `--format text`, the demo, and
compat/dump_analysis.py, which analyses the same graphs under sdax 0.7.2 and
under this project and compares the results. For that last use the module
imports nothing but the standard library and reads only attribute names the
two versions share, so the compat worker can load this file by path inside
0.7.2's own venv.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The TaskAnalysis attributes 0.7.2 and this project share, besides the waves.
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


def plain(value: Any) -> Any:
    """`value` as JSON data: tuples become lists, mappings sorted [key, value] pairs,
    and anything else that is not a str, number, bool or None its repr (join nodes)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if hasattr(value, "items"):
        return sorted(([plain(k), plain(v)] for k, v in value.items()), key=repr)
    return repr(value)


def waves_data(graph: Any) -> list[list[Any]]:
    """The waves of an ExecutionGraph as [wave_num, tasks, depends_on_tasks] lists."""
    return [[w.wave_num, plain(w.tasks), plain(w.depends_on_tasks)] for w in graph.waves]


def plan_data(analysis: Any) -> dict[str, Any]:
    """Waves and every shared attribute of `analysis` as JSON data ("<missing>" if absent)."""
    found: dict[str, Any] = {
        "pre_waves": waves_data(analysis.pre_execute_graph),
        "post_waves": waves_data(analysis.post_execute_graph),
    }
    for name in ATTRIBUTES:
        found[name] = plain(getattr(analysis, name)) if hasattr(analysis, name) else "<missing>"
    return found


def wave_lines(graph: Any) -> list[str]:
    """One line per wave of an ExecutionGraph: its number, its tasks, what it is after."""
    if not graph.waves:
        return ["  (none)"]
    return [
        f"  wave {wave.wave_num}: {_keys(wave.tasks)}  (after {_keys(wave.depends_on_tasks)})"
        for wave in graph.waves
    ]


def _keys(keys: Sequence[object]) -> str:
    return ", ".join(key if isinstance(key, str) else repr(key) for key in keys) or "nothing"
