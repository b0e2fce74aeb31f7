"""Benchmark driver: raw asyncio, this project ("ours") and sdax 0.7.2 ("ref"), side by side.

For each Python and event loop it runs the worker (benchmarks/scenarios.py) in
the ours and ref venvs, alternating which goes first each round, keeps the best
value per scenario, prints one table and writes a JSON file.

    python -m benchmarks.run [--python X.Y|PATH]... [--loop asyncio|uvloop|both]
        [--rounds R] [--runs N] [--only SCENARIO...] [--smoke] [--no-ref] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import envs, report

WORKER = Path(__file__).resolve().parent / "scenarios.py"
Payload = dict[str, Any]  # the worker's JSON line: a header and "results"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def worker(
    python: str, names: list[str], loop: str, args: argparse.Namespace, what: str
) -> Payload:
    """One worker process; on failure, each scenario again on its own, so only it is n/a."""
    command = [python, str(WORKER), "--loop", loop, "--runs", str(args.runs), "--what", what]
    command += ["--smoke"] * args.smoke + ["--only", *names]
    try:
        done = subprocess.run(
            command,
            cwd="/",
            env=envs.clean_env(),
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
        if done.returncode == 0:
            payload: Payload = json.loads(done.stdout.strip().splitlines()[-1])
            return payload
        failure = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        failure = f"timed out after {args.timeout:g}s"
    if len(names) > 1:
        parts = [worker(python, [name], loop, args, what) for name in names]
        header = next((part for part in parts if "sdax_file" in part), {})
        return {**header, "results": {k: v for part in parts for k, v in part["results"].items()}}
    return {"results": {names[0]: {"error": failure[:300]}}}


def jobs(catalog: list[report.Info], first_round: bool) -> list[tuple[list[str], str]]:
    """(scenarios, what) per worker process of one side in one round.

    Timed scenarios share a process; build and memory ones get a fresh one each;
    memory is measured in the first round only (it is not a timing).
    """
    timed = [info.name for info in catalog if info.kind == "time"]
    out = [(timed, "both")] if timed else []
    for info in catalog:
        if info.kind == "build" or (info.kind == "memory" and first_round):
            out.append(([info.name], "sdax" if info.raw == "apart" else "both"))
    return out


def measure(
    label: str,
    sides: dict[str, str],
    loop: str,
    catalog: list[report.Info],
    args: argparse.Namespace,
    tally: report.Tally,
    meta: dict[str, Any],
) -> None:
    """All rounds for one Python and loop, folded into `tally`; worker headers into `meta`."""
    for number in range(args.rounds):
        order = list(sides.items())[:: 1 if number % 2 == 0 else -1]
        log(f"Python {label} {loop}: round {number + 1}/{args.rounds} ({', '.join(dict(order))})")
        for side, python in order:
            for names, what in jobs(catalog, number == 0):
                payload = worker(python, names, loop, args, what)
                tally.add(label, loop, side, payload["results"])
                if "sdax_file" in payload:
                    check_side(side, payload)
                    header = {key: value for key, value in payload.items() if key != "results"}
                    meta.setdefault(f"{label} {loop}", {})[side] = header
        if number == 0:  # raw RSS needs a process of its own: once, with ours' interpreter
            for info in catalog:
                if info.raw == "apart":
                    payload = worker(sides["ours"], [info.name], loop, args, "raw")
                    tally.add(label, loop, "ours", payload["results"])


def check_side(side: str, payload: dict[str, Any]) -> None:
    """Refuse to report a side that imported the wrong sdax."""
    inside = Path(payload["sdax_file"]).resolve().is_relative_to(envs.PROJECT)
    if inside != (side == "ours"):
        raise SystemExit(f"{side} imported sdax from {payload['sdax_file']}: refusing to report")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--python", action="append", help="X.Y or interpreter path (repeatable)")
    add("--loop", choices=("asyncio", "uvloop", "both"), default="both")
    add("--rounds", type=int, help="rounds per side, alternating (default 5; smoke 1)")
    add("--runs", type=int, help="best of N runs per scenario per round (default 10; smoke 1)")
    add("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios")
    add("--smoke", action="store_true", help="tiny sizes, 1 round, ours and raw only")
    add("--no-ref", action="store_true", help="skip sdax 0.7.2")
    add("--timeout", type=float, default=300.0, help="seconds per worker process")
    add("--json", type=Path, help="results file (default bench-results/latest.json)")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.smoke else 5)
    args.runs = args.runs or (1 if args.smoke else 10)
    args.no_ref = args.no_ref or args.smoke
    name = "smoke.json" if args.smoke else "latest.json"
    args.json = args.json or envs.PROJECT / "bench-results" / name
    return args


def interpreters(args: argparse.Namespace) -> list[str]:
    if args.python:
        return [envs.resolve(spec) for spec in args.python]
    if args.smoke:
        return [sys.executable]
    return envs.default_pythons() or [sys.executable]


def select(catalog: list[report.Info], only: list[str] | None) -> list[report.Info]:
    if not only:
        return catalog
    unknown = set(only) - {info.name for info in catalog}
    if unknown:
        raise SystemExit(
            f"unknown scenario(s) {sorted(unknown)}; known: {[i.name for i in catalog]}"
        )
    return [info for info in catalog if info.name in only]


def list_scenarios(python: str) -> list[report.Info]:
    """The worker's catalog, as that interpreter sees it."""
    command = [python, str(WORKER), "--list"]
    done = subprocess.run(command, cwd="/", env=envs.clean_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{python} cannot run the worker:\n{done.stderr}")
    return report.catalog(done.stdout)


def git_head() -> str:
    command = ["git", "-C", str(envs.PROJECT), "describe", "--always", "--dirty"]
    done = subprocess.run(command, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def show(
    args: argparse.Namespace, rows: list[dict[str, Any]], errors: list[str], meta: dict[str, Any]
) -> None:
    """Print the table (and why any cell is n/a), then write the JSON file."""
    head = git_head()
    print(f"sdax benchmarks at {head}: best of {args.rounds} round(s) x {args.runs} run(s)")
    print(report.table(rows, with_ref=not args.no_ref))
    for line in ["", *errors] if errors else []:
        print(line)
    print("ratio < 1: ours is faster (or smaller) than ref, or than the raw asyncio floor")
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    settings = {key: str(value) for key, value in vars(args).items()}
    report.write_json(
        args.json, {"when": when, "project": head, "args": settings, **meta}, rows, errors
    )
    print(f"results: {args.json}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    tally, meta, shown = report.Tally(), dict[str, Any](), list[tuple[str, str, str]]()
    rows: list[dict[str, Any]] = []
    for python in interpreters(args):
        label = envs.version_of(python) or python
        sides = {"ours": envs.ours(python)}
        if not args.no_ref and (ref := envs.ref(python)):
            sides["ref"] = ref
        catalog = select(list_scenarios(sides["ours"]), args.only)
        for loop in loops:
            measure(label, sides, loop, catalog, args, tally, meta)
            rows += [tally.row(label, loop, info, args.smoke) for info in catalog]
            shown += [(label, loop, info.name) for info in catalog]
    show(args, rows, report.notes(tally, shown), {"sides": meta})
    # ref may fail (that is its n/a); ours and the raw floor must not: CI relies on it.
    return 1 if any(side == "ours" for *_, side in tally.errors) else 0


if __name__ == "__main__":
    raise SystemExit(main())
