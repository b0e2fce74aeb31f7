"""Command line: `python -m sdax demo` (also installed as the `sdax` script)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a realistic endpoint workflow, twice")
    demo.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from sdax.demo import main as demo_main

        if args.uvloop:
            import uvloop

            uvloop.run(demo_main())
        else:
            asyncio.run(demo_main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
