"""Command line: `python -m stress --runs N --seed S [--loop asyncio|uvloop] [--concurrency C]`.

  --soak                one long-lived processor; samples memory, tasks and fds
  --replay SEED:INDEX   run only run INDEX of master seed SEED (printed with each violation);
                        --with-batch reruns it alongside the runs of its concurrent batch
  --replay-check K      every K-th run is also replayed twice on a deterministic loop
                        (stress.virtual) and the two event orders must be the same

Exit status: 0 only if no run violated an invariant (and, with --soak, the
samples are flat); 1 otherwise; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from sdax.testing import new_loop
from stress.report import Progress, print_report
from stress.runner import StressConfig, run_stress


def _replay(text: str) -> tuple[int, int]:
    seed, colon, index = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"expected SEED:INDEX, got {text!r}")
    return int(seed), int(index)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stress", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=2000, help="number of runs (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--concurrency", type=int, default=4, help="runs per concurrent batch")
    parser.add_argument("--max-tasks", type=int, default=30, help="largest processor (tasks)")
    parser.add_argument("--soak", action="store_true", help="one processor, resource sampling")
    parser.add_argument("--sample-every", type=int, default=10_000, help="soak sample interval")
    parser.add_argument("--replay", type=_replay, metavar="SEED:INDEX", help="replay one run")
    parser.add_argument(
        "--with-batch", action="store_true", help="replay it with its concurrent batch-mates"
    )
    parser.add_argument(
        "--replay-check", type=int, default=StressConfig.replay_check, metavar="K",
        help="replay every K-th run twice on a deterministic loop, compare event orders "
        "(0: never; default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--progress", type=float, default=5.0, help="seconds between lines")
    return parser


def _config(args: argparse.Namespace) -> StressConfig:
    config = StressConfig(
        runs=args.runs, seed=args.seed, concurrency=max(1, args.concurrency),
        max_tasks=max(1, args.max_tasks), soak=args.soak, sample_every=max(1, args.sample_every),
        loop_name=args.loop, replay_check=max(0, args.replay_check),
    )  # fmt: skip
    if args.replay is not None:
        config.seed, config.replay = args.replay
        config.runs = max(config.runs, config.replay + 1)
        config.with_batch = args.with_batch
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = _config(args)
    loop = new_loop(config.loop_name)
    started = time.perf_counter()
    # run_stress awaits every run in a task that catches whatever the run raises,
    # so nothing escapes the loop (InjectedFatal is not KeyboardInterrupt/SystemExit).
    summary = loop.run_until_complete(run_stress(config, Progress(args.progress)))
    summary.elapsed = time.perf_counter() - started
    print_report(summary)
    if summary.hung:  # stuck tasks would hang the loop's shutdown: leave now
        sys.stdout.flush()
        os._exit(1)
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
