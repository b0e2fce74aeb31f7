"""The shape of the package: layers that only import downwards, and no import circle.

Every import counts: at the top of a module, inside a function, or under
TYPE_CHECKING. A new module must be given a layer here, which is the point:
where it sits is decided once, on purpose.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

SDAX = Path(__file__).resolve().parent.parent / "sdax"

# Bottom to top. A module may import modules of its own layer or of a lower one.
LAYERS: dict[str, set[str]] = {
    # Words and helpers that import nothing of sdax.
    "vocabulary": {"sdax._version", "sdax._generic", "sdax.vocabulary", "sdax.plan_data"},
    # What users declare and what a run reports: data, checks, exceptions.
    "declarations": {
        "sdax.limits",
        "sdax.observers",
        "sdax.report",
        "sdax.errors",
        "sdax.task_group",
        "sdax.declarations",
        "sdax.run_options",
        "sdax.inflight",
    },
    # The declared graph, validated and compiled, and what can be said about it.
    "graph": {"sdax.graph", "sdax.analysis", "sdax.diagrams"},
    # The runtime: a coordinator and its task actors.
    "actors": {"sdax.actors"},
    # The public face: builders, processors, the phase runner, 0.7.2's modules.
    "processor": {"sdax.processor", "sdax.sdax_core", "sdax.tasks", "sdax.sdax_task_analyser"},
    # What is built on all of it: observers for other systems, tools, the package.
    "observe": {
        "sdax",
        "sdax.__main__",
        "sdax.otel",
        "sdax.timeline",
        "sdax.demo",
        "sdax.testing",
        "sdax.integrations",
    },
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SDAX.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SDAX.rglob("*.py"))}


def module_imports(path: Path) -> set[str]:
    """The sdax modules `path` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from sdax.x import y` imports sdax.x, and sdax.x.y if that is a module.
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES and name != module_name(path)}


def layer_of(module: str) -> int:
    """The index of the layer of `module`: the longest listed name it is or is inside."""
    # `sdax`, the package, is on top, while `sdax.graph` is in its own layer.
    best, found = -1, -1
    for index, members in enumerate(LAYERS.values()):
        for member in members:
            if (module == member or module.startswith(f"{member}.")) and len(member) > best:
                best, found = len(member), index
    if found < 0:
        raise LookupError(module)
    return found


GRAPH = {name: module_imports(path) for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_alayer_of(module: str) -> None:
    layer_of(module)


def test_every_import_points_down_or_across() -> None:
    names = list(LAYERS)
    upward = [
        f"{module} ({names[layer_of(module)]}) imports {imported} ({names[layer_of(imported)]})"
        for module, imports in GRAPH.items()
        for imported in sorted(imports)
        if layer_of(imported) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_there_is_no_import_circle() -> None:
    graphlib.TopologicalSorter(GRAPH).prepare()  # raises CycleError naming the circle


def test_the_vocabulary_imports_nothing_of_sdax() -> None:
    assert GRAPH["sdax.vocabulary"] == set()
