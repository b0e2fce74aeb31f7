"""The command line (sdax.__main__), run in-process through `main(argv)`.

Plain sync tests: each runs once, and `demo` runs its own event loop.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdax import AsyncTaskProcessor, ErrorInfo, PhaseReport, RunReport
from sdax.__main__ import main
from sdax.report import TaskReport
from sdax.timeline import LEGEND, render_gantt

TARGET = "sdax_cli_plan_target"  # a module the tests write to tmp_path

TARGET_SOURCE = """
from sdax import AsyncDagTaskProcessor, AsyncTask, task_func


async def step(ctx):
    pass


def make_builder():
    return (
        AsyncDagTaskProcessor.builder()
        .add_task(AsyncTask("Db", pre_execute=task_func(step), post_execute=task_func(step)))
        .add_task(AsyncTask("Auth", pre_execute=task_func(step)), depends_on=("Db",))
        .add_task(AsyncTask("Flags", pre_execute=task_func(step)), depends_on=("Db",))
        .add_task(AsyncTask("Fetch", execute=task_func(step)), depends_on=("Auth", "Flags"))
    )


builder = make_builder()
processor = builder.build()
make_processor = builder.build


class Holder:
    class Inner:
        processor = processor


number = 42


def make_number():
    return 42


cyclic = (
    AsyncDagTaskProcessor.builder()
    .add_task(AsyncTask("A", pre_execute=task_func(step)), depends_on=("B",))
    .add_task(AsyncTask("B", pre_execute=task_func(step)), depends_on=("A",))
)
"""

PLAN_TEXT = """\
4 tasks: 3 with pre_execute, 1 with execute, 1 with post_execute, 0 without phases
pre_execute waves (each starts once the pre_execute of the tasks it is after succeeded):
  wave 0: Db  (after nothing)
  wave 1: Auth, Flags  (after Db)
post_execute waves (each starts once the tasks it is after are cleaned up):
  wave 0: Db  (after nothing)
"""


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a module in tmp_path, importable for this test only."""
    (tmp_path / f"{TARGET}.py").write_text(TARGET_SOURCE, encoding="utf-8")
    (tmp_path / "sdax_cli_broken.py").write_text("import sdax_cli_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield TARGET
    for name in (TARGET, "sdax_cli_broken"):
        sys.modules.pop(name, None)


def test_demo_prints_a_gantt_per_request_and_writes_the_failing_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo-trace.json"
    assert main(["demo", "--trace", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count(LEGEND) == 2
    assert ": ok in " in out
    assert ": failed in " in out
    assert "first error: Flags pre_execute: ConnectionError" in out
    assert f"written to {path}" in out
    trace = json.loads(path.read_text(encoding="utf-8"))
    slices = [event for event in trace["traceEvents"] if event["ph"] == "X"]
    assert {"pre_execute", "post_execute"} <= {event["name"] for event in slices}
    assert slices[0]["args"]["outcome"] == "failed"  # the run: the failing request
    retries = [event for event in trace["traceEvents"] if event["ph"] == "i"]
    assert [event["args"]["error_type"] for event in retries] == ["ConnectionError"]


@pytest.mark.parametrize(
    "attribute",
    ["processor", "builder", "make_builder", "make_processor", "Holder.Inner.processor"],
)
def test_plan_text_shows_waves_and_counts(
    target: str, attribute: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", f"{target}:{attribute}"]) == 0
    assert capsys.readouterr().out == PLAN_TEXT


def test_plan_json_is_the_data_the_compat_check_compares(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", f"{target}:processor", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pre_waves"] == [[0, ["Db"], []], [1, ["Auth", "Flags"], ["Db"]]]
    assert data["post_waves"] == [[0, ["Db"], []]]
    assert data["total_tasks"] == 4
    assert data["wave_index_by_task"] == [["Auth", 1], ["Db", 0], ["Flags", 1]]
    assert "<missing>" not in data.values()


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_plan_diagrams_come_from_the_processor(
    target: str, fmt: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stub, so this checks the call path whether or not sdax.diagrams exists yet.
    def stub(self: AsyncTaskProcessor[object]) -> str:
        return f"{fmt} of {self!r}"

    monkeypatch.setattr(AsyncTaskProcessor, f"to_{fmt}", stub)
    assert main(["plan", f"{target}:make_builder", "--format", fmt]) == 0
    assert capsys.readouterr().out == f"{fmt} of <AsyncDagTaskProcessor of 4 tasks>\n"


@pytest.mark.skipif(
    importlib.util.find_spec("sdax.diagrams") is None, reason="sdax.diagrams not written yet"
)
@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_plan_diagrams_are_printed_as_the_processor_draws_them(
    target: str, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    processor = importlib.import_module(target).processor
    assert main(["plan", f"{target}:processor", "--format", fmt]) == 0
    assert capsys.readouterr().out.rstrip("\n") == getattr(processor, f"to_{fmt}")().rstrip("\n")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{t}", "expected MODULE:ATTR (e.g. myapp.endpoints:processor), got '{t}'"),
        ("{t}:", "expected MODULE:ATTR"),
        (":processor", "expected MODULE:ATTR"),
        ("sdax_cli_no_such_module:x", "module 'sdax_cli_no_such_module' not found"),
        ("sdax.no_such_module:x", "module 'sdax.no_such_module' not found\n"),
        ("sdax_cli_nothing.sub:x", "module 'sdax_cli_nothing' not found (importing 'sdax_cli_n"),
        ("sdax_cli_broken:x", "importing 'sdax_cli_broken' failed: ModuleNotFoundError: No mod"),
        ("{t}:nope", "module '{t}' has no attribute 'nope'"),
        ("{t}:Holder.Inner.nope", "{t}:Holder.Inner has no attribute 'nope'"),
        ("{t}:number", "{t}:number is of type int: expected a processor (with .analysis)"),
        ("{t}:make_number", "{t}:make_number() returned a value of type int, not a processor"),
        ("{t}:cyclic", "building {t}:cyclic failed: DependencyCycleError: "),
        ("sdax:AsyncTaskProcessor", "calling sdax:AsyncTaskProcessor() failed: TypeError: "),
    ],
)
def test_plan_explains_a_target_it_cannot_use(
    target: str, spec: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", spec.format(t=target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"sdax plan: {message.format(t=target)}")
    assert captured.err.count("\n") == 1  # one line, no traceback


def saved_report() -> RunReport:
    failed = ErrorInfo(type="ValueError", message="bad token")
    return RunReport(
        run_id=3,
        outcome="failed",
        start=10.0,
        end=10.5,
        tasks=[
            TaskReport(
                task="Db",
                phases=[
                    PhaseReport(phase="pre_execute", outcome="ok", start=10.0, end=10.25),
                    PhaseReport(phase="post_execute", outcome="ok", start=10.375, end=10.5),
                ],
            ),
            TaskReport(
                task="Auth",
                phases=[
                    PhaseReport(
                        phase="pre_execute", outcome="failed", start=10.25, end=10.375, error=failed
                    )
                ],
            ),
        ],
    )


def test_trace_draws_a_saved_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(saved_report().to_json())
    assert main(["trace", str(path), "--width", "8"]) == 0
    expected = textwrap.dedent(
        """\
        Db   |====  ~~|
        Auth |    xx  |
             +--------+
             0 500.0 ms
        """
    )
    out = capsys.readouterr().out
    assert out.startswith(expected)
    assert out == render_gantt(saved_report(), width=8) + "\n"
    assert out.endswith("first error: Auth pre_execute: ValueError: bad token\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read {path}: No such file or directory"),
        (b"not json", "{path} is not a saved RunReport: JSON is malformed"),
        (b'{"tasks": []}', "{path} is not a saved RunReport: Object missing required field"),
    ],
)
def test_trace_explains_a_file_it_cannot_use(
    tmp_path: Path, content: bytes | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_bytes(content)
    assert main(["trace", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"sdax trace: {message.format(path=path)}")
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    "argv", [["plan"], ["trace", "r.json", "--width", "0"], ["plan", "m:a", "--format", "svg"]]
)
def test_bad_arguments_exit_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "usage: sdax" in capsys.readouterr().err


def test_a_bare_sdax_prints_the_help_and_exits_with_status_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sdax")
    assert "sdax demo" in out


def test_version_prints_the_version_of_this_package(capsys: pytest.CaptureFixture[str]) -> None:
    from sdax import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"sdax {__version__}\n"


def test_trace_recognises_a_chrome_trace_and_says_what_opens_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trace.json"
    path.write_bytes(b'{"traceEvents": [], "displayTimeUnit": "ms"}')
    assert main(["trace", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is a Chrome trace, not a saved RunReport" in err
    assert "https://ui.perfetto.dev" in err


def test_demo_report_writes_a_report_that_trace_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo-report.json"
    assert main(["demo", "--report", str(path)]) == 0
    capsys.readouterr()
    assert main(["trace", str(path)]) == 0
    assert "Database" in capsys.readouterr().out


def test_help_exits_with_status_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "sdax plan MODULE:ATTR" in capsys.readouterr().out


def test_demo_shows_the_whole_plan_the_retry_and_the_error_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "then post_execute waves" in out
    assert "wave 0: Audit  (after nothing)" in out  # the post-only step, named as its task
    assert "Flags     pre_execute: attempt 1 failed (ConnectionError), retrying in " in out
    assert "request failed after cleanup: 1 task failed\n" in out
    assert out.count("feature-flag service refused the connection") == 1  # the chart's footer


@pytest.mark.parametrize(
    "command",
    [["-m", "benchmarks.floor"], ["benchmarks/floor.py"]],
    ids=["module", "script"],
)
def test_the_floor_benchmark_starts_as_a_module_and_as_a_script(command: list[str]) -> None:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, *command, "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "floor" in done.stdout
