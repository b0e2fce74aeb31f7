"""CI check: every public name of sdax 0.7.2 exists here too.

    python -m compat.surface [--reference PYTHON]

Lists 0.7.2's public surface with list_surface.py, run in 0.7.2's own venv
(compat/reference.py makes it on first use), then looks each item up in this
project: every module name, and for every public class its methods,
properties, class attributes and instance attributes, and that it takes as
many type arguments (code written for 0.7.2 says `AsyncTask[Ctx, str]`). Imports from outside
sdax (typing and the like) and TypeVars are not part of the surface. Prints
what is missing and exits 1 if anything is. One 0.7.2 internal (INTERNALS)
is checked by name and type parameters only.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

from compat.reference import reference_python, run_json

WORKER = Path(__file__).resolve().parent / "list_surface.py"

# 0.7.2 internals with no counterpart in this design: the name must import and take
# as many type arguments, its members (0.7.2's per-run state) are not looked for
# (sdax/sdax_core.py says what stands in for it).
INTERNALS = {"sdax.sdax_core.PhaseContext"}


def instance_attributes(cls: type) -> set[str]:
    """What instances of `cls` carry without the class itself having the name."""
    found: set[str] = set()
    for klass in cls.__mro__:
        own = vars(klass)
        for listed in ("__slots__", "__struct_fields__", "__annotations__"):
            names = own.get(listed, ())
            if isinstance(names, str):
                found.add(names)
            elif isinstance(names, tuple | list | dict):
                found.update(names)
        if dataclasses.is_dataclass(klass):
            found.update(field.name for field in dataclasses.fields(klass))
        found.update(_self_assignments(klass))
    return found


def _self_assignments(cls: type) -> set[str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return set()
    return {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }


Surface = dict[str, dict[str, dict[str, Any] | None]]


def missing(reference: Surface) -> list[str]:
    lacking: list[str] = []
    for module_name, entries in reference.items():
        module = importlib.import_module(module_name)
        for name, details in entries.items():
            where = f"{module_name}.{name}"
            if not hasattr(module, name):
                lacking.append(where)
            elif details is not None:
                if where in INTERNALS:
                    details = {**details, "members": []}
                lacking.extend(_class_lacks(where, getattr(module, name), details))
    return lacking


def _class_lacks(where: str, ours: Any, details: dict[str, Any]) -> list[str]:
    if not inspect.isclass(ours):
        return [f"{where} (a {type(ours).__name__} here, a class in 0.7.2)"]
    carried = instance_attributes(ours)
    lacking = [
        f"{where}.{member}"
        for member in details["members"]
        if not hasattr(ours, member) and member not in carried
    ]
    arity = details["type_parameters"]
    if arity:
        try:
            ours[(Any,) * arity]
        except TypeError as error:
            lacking.append(f"{where}[...] with {arity} type arguments ({error})")
    return lacking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", help="a Python with sdax 0.7.2 (default: made on demand)")
    args = parser.parse_args(argv)
    reference = run_json(args.reference or reference_python(), WORKER, None, ours=False)
    [surface] = reference
    lacking = missing(surface)
    total = sum(
        1 + len(details["members"]) + bool(details["type_parameters"]) if details else 1
        for entries in surface.values()
        for details in entries.values()
    )
    for item in lacking:
        print(f"missing: {item}")
    print(f"sdax 0.7.2 surface: {total} names checked, {len(lacking)} missing")
    return 1 if lacking else 0


if __name__ == "__main__":
    sys.exit(main())
