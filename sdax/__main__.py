"""Command line of sdax (`python -m sdax`, also installed as the `sdax` script).

  sdax demo [--trace FILE] [--report FILE] [--uvloop]
                                        a realistic endpoint, served twice, drawn as Gantt charts
  sdax plan MODULE:ATTR [--format F]    the plan of a processor or builder: text, json, mermaid
                                        or dot
  sdax trace REPORT.json [--width N]    the Gantt chart of a saved RunReport

Exit status: 0 on success; 2 for bad arguments or a target/file that
cannot be used, with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

import msgspec

from sdax._version import __version__
from sdax.analysis import TaskAnalysis
from sdax.errors import count_noun
from sdax.plan_data import plan_data, wave_lines
from sdax.report import RunReport
from sdax.timeline import render_gantt, write_chrome_trace


class _Usage(Exception):
    """A problem the user can fix: reported on stderr as one line, exit status 2."""


class _Plan(Protocol):
    @property
    def analysis(self) -> TaskAnalysis: ...
    def to_mermaid(self) -> str: ...
    def to_dot(self) -> str: ...


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); return the exit status."""
    parser = _parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    if not arguments:  # a bare `sdax` is a request for help, not a mistake
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(arguments)
    except SystemExit as stop:  # argparse exits on --help, --version and bad arguments
        return stop.code if isinstance(stop.code, int) else 2
    command = {"demo": _demo, "plan": _plan, "trace": _trace}[args.command]
    try:
        command(args)
    except _Usage as problem:
        print(f"sdax {args.command}: {problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left early (`sdax plan x:y | head`): no traceback. Python's
        # recipe: point stdout at devnull so the flush at exit does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"sdax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a realistic endpoint workflow, twice")
    demo.add_argument(
        "--trace",
        metavar="FILE",
        help="write the Chrome trace of the failing request (the second) to FILE",
    )
    demo.add_argument(
        "--report",
        metavar="FILE",
        help="write the RunReport of the failing request to FILE (read it with `sdax trace`)",
    )
    demo.add_argument("--uvloop", action="store_true", help="run on uvloop")
    plan = commands.add_parser("plan", help="show the plan of a processor or builder")
    plan.add_argument(
        "target",
        metavar="MODULE:ATTR",
        help="a processor, a builder, or a function of no arguments returning one",
    )
    plan.add_argument("--format", choices=("text", "json", "mermaid", "dot"), default="text")
    trace = commands.add_parser("trace", help="draw a saved RunReport as a Gantt chart")
    trace.add_argument("report", metavar="REPORT.json", help="written by RunReport.to_json()")
    trace.add_argument("--width", type=_positive, default=60, help="bar columns (default 60)")
    return parser


def _positive(text: str) -> int:
    value = int(text)  # a ValueError is reported by argparse as an invalid value
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# --------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> None:
    from sdax.demo import main as demo_main

    if args.uvloop:
        import uvloop

        reports = uvloop.run(demo_main())
    else:
        reports = asyncio.run(demo_main())
    failing = next((report for report in reports if report.outcome != "ok"), reports[-1])
    if args.report:
        try:
            Path(args.report).write_bytes(failing.to_json())
        except OSError as error:
            raise _Usage(f"cannot write the report to {args.report}: {error}") from None
        print(
            f"\nRunReport of run {failing.run_id} ({failing.outcome}) written to {args.report}:"
            f" draw it with `sdax trace {args.report}`"
        )
    if args.trace:
        try:
            path = write_chrome_trace(failing, args.trace)
        except OSError as error:
            raise _Usage(f"cannot write the trace to {args.trace}: {error}") from None
        print(
            f"\nChrome trace of run {failing.run_id} ({failing.outcome}) written to {path}:"
            " open it in https://ui.perfetto.dev or chrome://tracing"
        )


# --------------------------------------------------------------------------- plan


def _plan(args: argparse.Namespace) -> None:
    processor = _load_plan(args.target)
    if args.format == "mermaid":
        text = processor.to_mermaid()
    elif args.format == "dot":
        text = processor.to_dot()
    elif args.format == "json":
        text = json.dumps(plan_data(processor.analysis), indent=1)
    else:
        text = plan_text(processor.analysis)
    print(text, end="" if text.endswith("\n") else "\n")  # exactly one final newline


def plan_text(analysis: TaskAnalysis) -> str:
    """The waves (pre_execute and post_execute) and counts of a plan, as text."""
    lines = [
        f"{count_noun(analysis.total_tasks, 'task')}: "
        f"{analysis.tasks_with_pre_execute} with pre_execute, "
        f"{analysis.tasks_with_execute} with execute, "
        f"{analysis.tasks_with_post_execute} with post_execute, "
        f"{analysis.nodes} without phases",
        "pre_execute waves (each starts once the pre_execute of the tasks it is after succeeded):",
        *wave_lines(analysis.pre_execute_graph),
        "post_execute waves (each starts once the tasks it is after are cleaned up):",
        *wave_lines(analysis.post_execute_graph),
    ]
    return "\n".join(lines)


def _load_plan(target: str) -> _Plan:
    """The processor `target` (MODULE:ATTR) names, building or calling it as needed."""
    module_name, colon, attributes = target.partition(":")
    if not colon or not module_name or not attributes:
        raise _Usage(f"expected MODULE:ATTR (e.g. myapp.endpoints:processor), got {target!r}")
    found: object = _import(module_name)
    walked: list[str] = []
    for part in attributes.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            owner = f"{module_name}:{'.'.join(walked)}" if walked else f"module {module_name!r}"
            raise _Usage(f"{owner} has no attribute {part!r}") from None
        walked.append(part)
    return _as_processor(found, target)


def _import(module_name: str) -> ModuleType:
    # What `python -m` does: modules in the current directory are importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            context = "" if missing == module_name else f" (importing {module_name!r})"
            raise _Usage(f"module {missing!r} not found{context}") from None
        raise _Usage(f"importing {module_name!r} failed: {_one_line(error)}") from None
    except Exception as error:
        raise _Usage(f"importing {module_name!r} failed: {_one_line(error)}") from None


def _as_processor(found: object, target: str) -> _Plan:
    """A processor as is; a builder built; a callable called once, then either of those."""
    plan = _plan_of(found, target)
    if plan is not None:
        return plan
    if callable(found):
        try:
            made = found()
        except Exception as error:
            raise _Usage(f"calling {target}() failed: {_one_line(error)}") from None
        plan = _plan_of(made, f"{target}()")
        if plan is not None:
            return plan
        raise _Usage(f"{target}() returned a value {_kind(made)}, not a processor or builder")
    raise _Usage(
        f"{target} is {_kind(found)}: expected a processor (with .analysis), "
        "a builder (with .build()), or a function of no arguments returning one"
    )


def _plan_of(found: object, target: str) -> _Plan | None:
    # Classes have these attributes too (unbound), but only instances are plans.
    if isinstance(found, type | ModuleType):
        return None
    if hasattr(found, "analysis"):
        return cast(_Plan, found)
    build = getattr(found, "build", None)
    if not callable(build):
        return None
    try:
        built: Any = build()
    except Exception as error:
        raise _Usage(f"building {target} failed: {_one_line(error)}") from None
    if not hasattr(built, "analysis"):
        raise _Usage(f"{target}.build() returned a value {_kind(built)}, not a processor")
    return cast(_Plan, built)


def _kind(value: object) -> str:
    kind = type(value)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"of type {module}{kind.__qualname__}"


def _one_line(error: BaseException) -> str:
    message = str(error).splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


# --------------------------------------------------------------------------- trace


def _trace(args: argparse.Namespace) -> None:
    try:
        data = Path(args.report).read_bytes()
    except OSError as error:
        raise _Usage(f"cannot read {args.report}: {error.strerror or error}") from None
    try:
        report = RunReport.from_json(data)
    except msgspec.DecodeError as error:  # also ValidationError: valid JSON, not a report
        if _is_chrome_trace(data):
            raise _Usage(
                f"{args.report} is a Chrome trace, not a saved RunReport: open it in "
                "https://ui.perfetto.dev or chrome://tracing (`sdax demo --report FILE` "
                "saves a report this command draws)"
            ) from None
        raise _Usage(f"{args.report} is not a saved RunReport: {error}") from None
    print(render_gantt(report, width=args.width))


def _is_chrome_trace(data: bytes) -> bool:
    try:
        decoded = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False
    return (isinstance(decoded, dict) and "traceEvents" in decoded) or isinstance(decoded, list)


if __name__ == "__main__":
    sys.exit(main())
