"""The README's "many small runs" table: this project and sdax 0.7.2, each against hand-written.

Runs small_shapes.py in this project's venv and in an sdax 0.7.2 venv (both
from envs.py, cached under ~/.cache/sdax-bench) for each Python and loop, and
prints one markdown table of time ratios to the hand-written twin (measured
in the same process as each side) and memory per in-flight request.

    python benchmarks/small_table.py [--python 3.11 3.13] [--loop asyncio uvloop]
        [--sizes 1 100 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envs

SCRIPT = Path(__file__).resolve().parent / "small_shapes.py"


def run_side(python: str, loop: str, sizes: Sequence[int], rounds: int) -> dict[str, Any]:
    command = [python, str(SCRIPT), "--json", "--loop", loop, "--rounds", str(rounds)]
    command += ["--sizes", *map(str, sizes)]
    done = subprocess.run(
        command, cwd="/", env=envs.clean_env(), capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def table(columns: dict[str, dict[str, dict[str, Any]]], sizes: Sequence[int]) -> str:
    """One row per shape and size (and memory), one column per (Python, loop, side)."""
    heads = [f"{where} {side}" for where, sides in columns.items() for side in sides]
    lines = ["| shape | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    shapes = next(iter(next(iter(columns.values())).values()))
    results = [result for sides in columns.values() for result in sides.values()]

    def row(label: str, ratios: list[float]) -> str:
        return f"| {label} | " + " | ".join(f"{ratio:.2f}" for ratio in ratios) + " |"

    for shape in (name for name in shapes if isinstance(shapes[name], dict)):
        for n in sizes:
            ratios = [result[shape]["ratio"][str(n)] for result in results]
            lines.append(row(f"{shape}, {n:,} concurrent", ratios))
        memory = [result[shape]["memory_ratio"] for result in results]
        lines.append(row(f"{shape}, memory per in-flight request", memory))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--python", nargs="+", default=["3.11", "3.13"])
    loops = ("asyncio", "uvloop")
    parser.add_argument("--loop", nargs="+", choices=loops, default=list(loops))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 2000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-ref", action="store_true", help="measure this project only")
    args = parser.parse_args(argv)
    columns: dict[str, dict[str, dict[str, Any]]] = {}
    for spec in args.python:
        python = envs.resolve(spec)
        sides = {"sdax": envs.ours(python)}
        if not args.no_ref and (ref := envs.ref(python)):
            sides["0.7.2"] = ref
        version = envs.version_of(python)
        for loop in args.loop:
            where = f"{version} {loop}"
            columns[where] = {}
            for side, interpreter in sides.items():
                print(f"[small] {where}: {side}", file=sys.stderr)
                columns[where][side] = run_side(interpreter, loop, args.sizes, args.rounds)
    print("Time and memory per request, as a ratio to the same work written by hand")
    print("(asyncio.TaskGroup, asyncio.timeout, a retry loop, cleanup in finally):\n")
    print(table(columns, args.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
