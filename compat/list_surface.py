"""Worker: list the public surface of the sdax that is importable, as JSON on stdout.

Run by surface.py under sdax 0.7.2 (stdlib only, so it runs in a bare venv).
For each module: the names it defines or re-exports from sdax itself (imports
from elsewhere, such as typing, and TypeVars are left out), and for each public
class its public methods, properties, class attributes and instance
attributes (dataclass fields, slots, and `self.x = ...` in its methods),
including what it inherits from other sdax classes, and how many type
parameters it takes (`AsyncTask[Ctx, str]`).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import sys
from typing import Any

MODULES = ("sdax", "sdax.sdax_core", "sdax.sdax_task_analyser", "sdax.tasks")


def public(name: str) -> bool:
    return not name.startswith("_")


def module_names(module: Any) -> list[str]:
    """Public names bound at the top of `module`'s source, other than foreign imports."""
    tree = ast.parse(inspect.getsource(module))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            value = node.value
            if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "TypeVar":
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.extend(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom) and (node.level or "sdax" in (node.module or "")):
            names.extend(alias.asname or alias.name for alias in node.names)
    return sorted({name for name in names if public(name) or name == "__version__"})


def self_assignments(cls: type) -> set[str]:
    """Attributes the methods of `cls` (not of classes nested in it) set on `self`."""
    try:
        tree = ast.parse(inspect.getsource(cls).strip())
    except (OSError, TypeError, SyntaxError):
        return set()
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    methods = [node for node in body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    found = set()
    for node in (inner for method in methods for inner in ast.walk(method)):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign | ast.AugAssign)
            else []
        )
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                found.add(target.attr)
    return found


def class_members(cls: type) -> list[str]:
    members: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("sdax"):
            continue
        members.update(vars(klass))
        members.update(getattr(klass, "__slots__", ()))
        if dataclasses.is_dataclass(klass):
            members.update(f.name for f in dataclasses.fields(klass))
        members.update(self_assignments(klass))
    return sorted(name for name in members if public(name))


def surface() -> dict[str, dict[str, dict[str, Any] | None]]:
    found: dict[str, dict[str, dict[str, Any] | None]] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        entries: dict[str, dict[str, Any] | None] = {}
        for name in module_names(module):
            value = getattr(module, name)
            if inspect.isclass(value) and value.__module__.startswith("sdax"):
                entries[name] = {
                    "members": class_members(value),
                    "type_parameters": len(getattr(value, "__parameters__", ())),
                }
            else:
                entries[name] = None
        found[module_name] = entries
    return found


if __name__ == "__main__":
    json.dump([surface()], sys.stdout, indent=1)
