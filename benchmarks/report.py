"""Collecting the best values of every run, and showing them: one table and a JSON file."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = ("raw", "ours", "ref")
DIGITS = {"ms": 2, "KiB": 0, "MiB": 1}


@dataclass(frozen=True, slots=True)
class Info:
    """One scenario as the worker's catalog (`scenarios.py --list`) describes it."""

    name: str
    kind: str
    unit: str
    n: int
    smoke_n: int
    raw: str
    about: str


@dataclass
class Tally:
    """Best (lowest) value per (python, loop, scenario, column), and why any is missing."""

    best: dict[tuple[str, str, str, str], float] = field(default_factory=dict)
    errors: dict[tuple[str, str, str, str], str] = field(default_factory=dict)

    def add(self, python: str, loop: str, side: str, results: dict[str, dict[str, Any]]) -> None:
        """Fold one worker's results in; `side` is "ours" or "ref" (raw is either's)."""
        for name, entry in results.items():
            for key, column in (("sdax", side), ("raw", "raw")):
                if key in entry:
                    slot = (python, loop, name, column)
                    self.best[slot] = min(entry[key], self.best.get(slot, math.inf))
            if "error" in entry:
                self.errors[(python, loop, name, side)] = entry["error"]

    def row(self, python: str, loop: str, info: Info, smoke: bool) -> dict[str, Any]:
        values = {column: self.best.get((python, loop, info.name, column)) for column in COLUMNS}
        ours, ref, raw = values["ours"], values["ref"], values["raw"]
        return {
            "python": python,
            "loop": loop,
            "scenario": info.name,
            "n": info.smoke_n if smoke else info.n,
            "unit": info.unit,
            **values,
            "ours_over_ref": ours / ref if ours is not None and ref else None,
            "ours_over_raw": ours / raw if ours is not None and raw else None,
        }


def _cell(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def table(rows: list[dict[str, Any]], with_ref: bool = True) -> str:
    """The rows, aligned; without the ref columns when ref was not measured."""
    header = ("python", "loop", "scenario", "n", "unit", *COLUMNS, "ours/ref", "ours/raw")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        digits = DIGITS.get(row["unit"], 2)
        lines.append(
            (
                row["python"],
                row["loop"],
                row["scenario"],
                f"{row['n']:,}",
                row["unit"],
                *(_cell(row[column], digits) for column in COLUMNS),
                _cell(row["ours_over_ref"], 2),
                _cell(row["ours_over_raw"], 2),
            )
        )
    if not with_ref:
        lines = [(*line[:7], line[9]) for line in lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    left = 3  # python, loop and scenario are text: left-aligned; numbers right-aligned

    def render(line: tuple[str, ...]) -> str:
        cells = (
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    rule = "-" * len(render(lines[0]))
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def notes(tally: Tally, shown: Iterable[tuple[str, str, str]]) -> list[str]:
    """Why a cell says n/a: the first error line of each failed scenario, per side."""
    wanted = set(shown)
    return [
        f"n/a  {python} {loop} {name} [{side}]: {error}"
        for (python, loop, name, side), error in sorted(tally.errors.items())
        if (python, loop, name) in wanted
    ]


def write_json(
    path: Path, meta: dict[str, Any], rows: list[dict[str, Any]], errs: list[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "rows": rows, "errors": errs}
    path.write_text(json.dumps(document, indent=2) + "\n")


def catalog(listing: str) -> list[Info]:
    return [Info(**entry) for entry in json.loads(listing)]
