"""Command line: monte-carlo runs of your own processor.

  python -m sdax.testing run MODULE:ATTR [--runs N] [--seed S] [--loop asyncio|uvloop|both]
                                         [--concurrency K]
  python -m sdax.testing replay MODULE:ATTR --seed S [--loop asyncio|uvloop]

MODULE:ATTR names a `sdax.testing.MonteCarlo` (or a function of no
arguments returning one). Or it names a processor (or a builder, or a
function returning either) and `--ctx MODULE:ATTR` names `make_ctx(seed)`;
`--invariant MODULE:ATTR` (repeatable) adds an invariant, and `--faults
raise_error=0.2,cancel=0` overrides fields of its FaultRates. Each violation
is printed with a one-line replay command; then one summary line per loop.

Exit status: 0 if no run violated an invariant; 1 otherwise; 2 for bad
arguments or a target that cannot be used.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from sdax.processor import AsyncTaskProcessor
from sdax.testing.montecarlo import LOOPS, MonteCarlo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sdax.testing", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run N seeded runs and check every one")
    replay = commands.add_parser("replay", help="rerun one seed alone")
    for sub in (run, replay):
        sub.add_argument("target", metavar="MODULE:ATTR")
        sub.add_argument("--ctx", metavar="MODULE:ATTR", help="make_ctx(seed), for a processor")
        sub.add_argument(
            "--invariant", metavar="MODULE:ATTR", action="append", default=[],
            help="an invariant(run) to check too (repeatable)",
        )  # fmt: skip
        sub.add_argument(
            "--faults", metavar="NAME=RATE,...", type=_rates, default={},
            help="override FaultRates fields, e.g. raise_error=0.2,cancel=0",
        )  # fmt: skip
    run.add_argument("--runs", type=int, default=1000, help="number of runs (default 1000)")
    run.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    run.add_argument("--loop", choices=(*LOOPS, "both"), default="asyncio")
    run.add_argument("--concurrency", type=int, default=8, help="runs at once (default 8)")
    replay.add_argument("--seed", type=int, required=True)
    replay.add_argument("--loop", choices=LOOPS, default="asyncio")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        montecarlo = _montecarlo(args)
    except _Usage as problem:
        print(f"python -m sdax.testing {args.command}: {problem}", file=sys.stderr)
        return 2
    passed = True
    if args.command == "replay":
        loops: Sequence[str] = [args.loop]
    else:
        loops = LOOPS if args.loop == "both" else [args.loop]
    for loop in loops:
        if args.command == "replay":
            result = montecarlo.replay(args.seed, loop=loop, file=sys.stdout)
        else:
            result = montecarlo.run(
                args.runs, seed=args.seed, loop=loop, concurrency=args.concurrency,
                file=sys.stdout,
            )  # fmt: skip
        print(result.summary())
        passed = passed and result.passed
    return 0 if passed else 1


class _Usage(Exception):
    """A problem with the arguments: one line on stderr, exit status 2."""


def _montecarlo(args: argparse.Namespace) -> MonteCarlo[Any]:
    found = _load(args.target)
    if callable(found) and not isinstance(found, MonteCarlo | AsyncTaskProcessor):
        found = found()
    if hasattr(found, "build") and not isinstance(found, MonteCarlo | AsyncTaskProcessor):
        found = found.build()
    invariants = [_load(target) for target in args.invariant]
    if isinstance(found, MonteCarlo):
        if args.ctx:
            raise _Usage(f"{args.target} is a MonteCarlo, which has its make_ctx: drop --ctx")
        found.invariants += tuple(invariants)
    elif isinstance(found, AsyncTaskProcessor):
        if not args.ctx:
            raise _Usage(f"{args.target} is a processor: name its make_ctx(seed) with --ctx")
        found = MonteCarlo(found, _load(args.ctx), invariants=invariants)
    else:
        raise _Usage(f"{args.target} is neither a MonteCarlo nor a processor: {found!r}")
    if args.faults:
        try:
            found.faults = dataclasses.replace(found.faults, **args.faults)
        except (TypeError, ValueError) as error:
            raise _Usage(f"--faults: {error}") from None
    found.target = " ".join(
        [args.target]
        + ([f"--ctx {args.ctx}"] if args.ctx else [])
        + [f"--invariant {target}" for target in args.invariant]
        + ([f"--faults {_rates_text(args.faults)}"] if args.faults else [])
    )
    return found


def _rates(text: str) -> dict[str, float]:
    rates = {}
    for pair in filter(None, text.split(",")):
        name, equals, value = pair.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            equals = ""
        if not equals:
            raise argparse.ArgumentTypeError(f"expected NAME=RATE, got {pair!r}")
    return rates


def _rates_text(rates: dict[str, float]) -> str:
    return ",".join(f"{name}={value:g}" for name, value in rates.items())


def _load(target: str) -> Any:
    from sdax.__main__ import _import

    module_name, colon, attributes = target.partition(":")
    if not colon or not module_name or not attributes:
        raise _Usage(f"expected MODULE:ATTR (e.g. myapp.checks:montecarlo), got {target!r}")
    try:
        found: Any = _import(module_name)
    except Exception as error:  # sdax.__main__._Usage: its message says what went wrong
        raise _Usage(str(error)) from None
    for part in attributes.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise _Usage(f"{target}: no attribute {part!r}") from None
    return found


if __name__ == "__main__":
    sys.exit(main())
