"""Monte-carlo testing of a user's processor (sdax.testing.MonteCarlo), on each test loop.

The async tests run the monte-carlo runs on the running loop (`arun`), so
the suite's parametrisation covers asyncio and uvloop. A processor whose
cleanup leaks under a fault must be caught, with a replay command that
reproduces the same violation; a clean one must give none; a seed must
give the same faults every time; and each built-in invariant must report
a run record altered to break it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sdax import (
    AsyncDagTaskProcessor,
    AsyncTaskProcessor,
    Limit,
    PhaseFinished,
    PhaseId,
    PhaseOutcome,
    PhaseStarted,
    SdaxTaskGroup,
    task_func,
    task_group_func,
    task_sync_func,
    task_thread_func,
)
from sdax import AsyncTask as Task
from sdax.testing import (
    CheckedRun,
    Fault,
    FaultRates,
    InjectedFault,
    MonteCarlo,
    MonteCarloResult,
    ShuffledLoop,
    shuffled_release,
)
from sdax.testing.checks import BUILT_IN
from sdax.testing.faults import RunLog
from sdax.vocabulary import CancelReason

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Resource:
    """A counted stand-in for a connection: what was opened, what was closed."""

    user: int
    opened: int = 0
    closed: int = 0
    fetched: bool = False


async def open_resource(ctx: Resource) -> None:
    await asyncio.sleep(0)
    ctx.opened += 1


async def close_resource(ctx: Resource) -> None:
    if ctx.opened > ctx.closed:
        ctx.closed += 1


async def close_only_after_fetch(ctx: Resource) -> None:
    """The bug under test: a cleanup that trusts the happy path (leaks whenever it failed)."""
    if ctx.fetched:
        ctx.closed += 1


async def step(ctx: Resource) -> None:
    await asyncio.sleep(0)


async def fetch(ctx: Resource) -> None:
    ctx.fetched = True


def endpoint(close: object = close_resource) -> AsyncTaskProcessor[Resource]:
    """The README's endpoint, with timeouts and retry delays small enough for a test."""
    return (
        AsyncDagTaskProcessor[Resource].builder()
        .add_task(Task("Database", pre_execute=task_func(open_resource),
                       post_execute=task_func(close)))  # type: ignore[arg-type]
        .add_task(Task("Auth", pre_execute=task_func(step, timeout=0.01)),
                  depends_on=("Database",))
        .add_task(Task("Flags", pre_execute=task_func(step, retries=2, initial_delay=0)),
                  depends_on=("Database",))
        .add_task(Task("Fetch", execute=task_func(fetch)), depends_on=("Auth", "Flags"))
        .build()
    )  # fmt: skip


def every_connection_closed(run: CheckedRun) -> str | None:
    ctx: Resource = run.ctx
    if ctx.opened != ctx.closed:
        return f"{ctx.opened} opened, {ctx.closed} closed"
    return None


CLEAN = MonteCarlo(
    endpoint(), Resource, invariants=[every_connection_closed], target="tests.test_montecarlo:CLEAN"
)
LEAKY = MonteCarlo(
    endpoint(close_only_after_fetch),
    Resource,
    invariants=[every_connection_closed],
    # Raises only: whether a run leaks then depends on its seed alone, never on timing,
    # so a replay must reproduce every violation.
    faults=FaultRates(raise_error=0.2, hang=0, slow=0, cancel=0),
    target="tests.test_montecarlo:LEAKY",
)


def loop_name() -> str:
    return "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"


# ------------------------------------------------------------------ whole sessions


async def test_a_clean_processor_gives_no_violations_and_counts_its_faults() -> None:
    out = io.StringIO()
    result = await CLEAN.arun(300, seed=11, concurrency=16, file=out)
    assert result.violations == [], out.getvalue()
    assert out.getvalue() == ""
    assert result.runs == 300
    assert sum(result.outcomes.values()) == 300
    for kind in ("raise", "raise_retryable", "slow"):
        assert result.faults[kind] > 0
    assert result.summary().startswith(f"sdax.testing: 300 runs (seeds 11..310, {loop_name()},")
    assert " 0 violations in 0 seeds;" in result.summary()


async def test_a_cleanup_that_leaks_under_a_fault_is_found_with_its_seed() -> None:
    out = io.StringIO()
    result = await LEAKY.arun(60, seed=1, concurrency=8, file=out)
    assert not result.passed
    assert {violation.invariant for violation in result.violations} == {"every_connection_closed"}
    for violation in result.violations:
        assert violation.message == "1 opened, 0 closed"
        assert violation.replay == (
            f"python -m sdax.testing replay tests.test_montecarlo:LEAKY --seed {violation.seed} "
            f"--loop {loop_name()}"
        )
        assert f"violation: seed {violation.seed}: every_connection_closed: " in out.getvalue()
        assert f"replay: {violation.replay}\n" in out.getvalue()


async def test_the_printed_replay_line_reproduces_the_same_violation() -> None:
    out = io.StringIO()
    result = await LEAKY.arun(60, seed=1, concurrency=8, file=out)
    first = result.violations[0]
    line = next(text for text in out.getvalue().splitlines() if text.startswith("replay: "))
    assert line == f"replay: {first.replay}"

    # In-process: the same seed alone, on this loop.
    again = await LEAKY.arun(1, seed=first.seed, concurrency=1)
    assert [(v.seed, v.invariant, v.message) for v in again.violations] == [
        (first.seed, first.invariant, first.message)
    ]
    # As printed: a fresh interpreter runs the command line.
    argv = line.removeprefix("replay: ").split()
    assert argv[:3] == ["python", "-m", "sdax.testing"]
    replayed = await asyncio.to_thread(
        subprocess.run, [sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert replayed.returncode == 1, replayed.stderr
    assert f"violation: seed {first.seed}: {first.invariant}: {first.message}\n" in replayed.stdout
    assert " 1 violation in 1 seed;" in replayed.stdout


async def test_a_broken_user_invariant_is_reported_whichever_way_it_says_no() -> None:
    def every_run_succeeds(run: CheckedRun) -> None:  # broken: faults make runs fail
        assert run.outcome == "ok", f"outcome {run.outcome}"

    def says_false(run: CheckedRun) -> bool:
        return run.outcome == "ok"

    def crashes(run: CheckedRun) -> None:
        if run.outcome != "ok":
            raise KeyError("no such thing")

    montecarlo = MonteCarlo(
        endpoint(), Resource, invariants=[every_run_succeeds, says_false, crashes],
        faults=FaultRates(raise_error=0.3, hang=0, slow=0, cancel=0),
    )  # fmt: skip
    result = await montecarlo.arun(40, seed=3, concurrency=4, file=io.StringIO())
    seeds = set(result.failing_seeds)
    assert seeds
    by_invariant = {
        name: {v.seed for v in result.violations if v.invariant == name}
        for name in ("every_run_succeeds", "says_false", "crashes")
    }
    assert by_invariant == dict.fromkeys(by_invariant, seeds)
    messages = {v.invariant: v.message for v in result.violations}
    assert messages["every_run_succeeds"] == "AssertionError: outcome failed"
    assert messages["says_false"] == "returned False"
    assert messages["crashes"] == "KeyError: 'no such thing'"
    assert result.violations[0].replay == f"MonteCarlo(...).replay({result.violations[0].seed}, " \
        f"loop={loop_name()!r})"  # fmt: skip


# ------------------------------------------------------------------ seeds


def chain(timeout: float = 0.01) -> AsyncTaskProcessor[Resource]:
    """No parallel siblings: which phases run depends on the faults only, not on the loop.

    (And on B's timeout being long enough that only a hang ever reaches it.)
    """
    return (
        AsyncDagTaskProcessor[Resource].builder()
        .add_task(Task("A", pre_execute=task_func(open_resource),
                       post_execute=task_func(close_resource)))
        .add_task(Task("B", pre_execute=task_func(step, timeout=timeout, retries=3,
                                                  initial_delay=0),
                       post_execute=task_func(step)), depends_on=("A",))
        .add_task(Task("C", execute=task_func(step, retries=2, initial_delay=0)),
                  depends_on=("B",))
        .build()
    )  # fmt: skip


async def test_the_same_seed_gives_the_same_fault_sequence() -> None:
    rates = FaultRates(raise_error=0.2, hang=0.1, slow=0.2, cancel=0)
    montecarlo = MonteCarlo(chain(timeout=0.25), Resource, faults=rates)
    sequences = {}
    for seed in range(30):
        first, problems = await montecarlo.run_one(seed)
        second, _ = await montecarlo.run_one(seed)
        assert problems == []
        assert first.faults == second.faults
        assert first.log.entries == second.log.entries
        sequences[seed] = first.faults
    assert len(set(sequences.values())) > 10  # and different seeds differ


def test_a_fault_plan_depends_only_on_seed_task_phase_and_attempt() -> None:
    rates = FaultRates(raise_error=0.3, hang=0.3, slow=0.3)
    one, two = RunLog(5, rates, False, False), RunLog(5, rates, False, False)
    keys = [(key, phase, attempt) for key in "ABC" for phase in PhaseId for attempt in (1, 2, 3)]
    assert [one.plan(*k, timed=True) for k in keys] == [
        two.plan(*k, timed=True) for k in reversed(keys)
    ][::-1]
    other = RunLog(6, rates, False, False)
    assert [one.plan(*k, timed=True) for k in keys] != [other.plan(*k, timed=True) for k in keys]


def test_hangs_go_only_where_something_will_end_them() -> None:
    rates = FaultRates(raise_error=0, hang=1, slow=0, post_hang=1)
    free = RunLog(1, rates, run_timeout=False, cleanup_bound=False)
    assert free.plan("A", PhaseId.PRE_EXEC, 1, timed=False) is None
    assert free.plan("A", PhaseId.POST_EXEC, 1, timed=True) is None
    assert free.plan("A", PhaseId.PRE_EXEC, 1, timed=True) == Fault(
        "hang",
        "A",
        PhaseId.PRE_EXEC,
        1,
        free.plan("A", PhaseId.PRE_EXEC, 1, True).before,  # type: ignore[union-attr]
    )
    bounded = RunLog(1, rates, run_timeout=True, cleanup_bound=True)
    assert bounded.plan("A", PhaseId.EXECUTE, 1, timed=False) is not None
    post = bounded.plan("A", PhaseId.POST_EXEC, 1, timed=False)
    assert post is not None
    assert post.kind == "hang"
    assert not post.before  # a post's own function always runs first


def test_fault_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="raise_error"):
        FaultRates(raise_error=1.5)
    with pytest.raises(ValueError, match="at most 1"):
        FaultRates(raise_error=0.5, hang=0.5, slow=0.5)
    assert FaultRates.none().cancel == 0


async def test_without_a_monte_carlo_run_the_wrapped_processor_just_runs() -> None:
    ctx = Resource(1)
    await CLEAN.faulty.process_tasks(ctx)
    assert (ctx.opened, ctx.closed, ctx.fetched) == (1, 1, True)


# ------------------------------------------------------------------ the built-in checks


async def clean_run() -> tuple[CheckedRun, MonteCarlo[Resource]]:
    montecarlo = MonteCarlo(chain(), Resource, faults=FaultRates.none())
    run, problems = await montecarlo.run_one(0)
    assert problems == []
    assert run.outcome == "ok"
    return run, montecarlo


def broken(montecarlo: MonteCarlo[Resource], run: CheckedRun) -> dict[str, list[str]]:
    graph = montecarlo.faulty._graph
    found = {name: check(run, graph) for name, check in BUILT_IN}
    return {name: problems for name, problems in found.items() if problems}


async def test_a_post_that_never_started_breaks_cleanup_once() -> None:
    run, montecarlo = await clean_run()
    run.events = [
        e for e in run.events
        if not (isinstance(e, PhaseStarted) and e.task == "A" and e.phase is PhaseId.POST_EXEC)
    ]  # fmt: skip
    assert broken(montecarlo, run) == {
        "cleanup_once": [
            "pre_execute of 'A' was entered, but its post_execute started 0 times "
            "(owed exactly once)"
        ]
    }


async def test_a_post_before_its_dependents_post_breaks_cleanup_order() -> None:
    run, montecarlo = await clean_run()
    entries = run.log.entries
    a_post = next(i for i, e in enumerate(entries) if e[1] == "A" and e[2] is PhaseId.POST_EXEC)
    b_post = next(i for i, e in enumerate(entries) if e[1] == "B" and e[2] is PhaseId.POST_EXEC)
    entries.insert(b_post, entries.pop(a_post))  # A's cleanup now begins before B's
    assert broken(montecarlo, run) == {
        "cleanup_order": [
            "post_execute of 'A' started before the post_execute of 'B', which depends on it, "
            "had ended"
        ]
    }


async def test_work_started_after_the_callers_cancel_breaks_nothing_after_cancel() -> None:
    run, montecarlo = await clean_run()
    run.log.late.append(("C", PhaseId.EXECUTE, 1))
    run.events += [
        PhaseFinished(run_id=0, task="B", phase=PhaseId.PRE_EXEC, outcome=PhaseOutcome.CANCELLED,
                      attempts=1, at=0.0, cancel_reason=CancelReason.CALLER_CANCELLED),
        PhaseStarted(run_id=0, task="C", phase=PhaseId.EXECUTE, at=0.0),
        PhaseStarted(run_id=0, task="A", phase=PhaseId.POST_EXEC, at=0.0),  # cleanup may start
    ]  # fmt: skip
    run.cancelled = True  # and the run returned normally: the cancel was swallowed
    problems = broken(montecarlo, run)
    problems.pop("cleanup_once")  # A's post now started twice: not what this test is about
    assert problems == {
        "nothing_after_cancel": [
            "execute of 'C' (attempt 1) started after the caller's cancellation",
            "execute of 'C' started after sdax stopped work for the caller's cancellation",
            "the caller was cancelled, but the run ended in ok instead of CancelledError "
            "(the cancellation was swallowed)",
        ]
    }


async def test_an_injected_failure_nobody_reported_breaks_failures_reported() -> None:
    run, montecarlo = await clean_run()
    fault = Fault("raise", "B", PhaseId.PRE_EXEC, 1, True)
    run.log.raised.append((InjectedFault("boom"), fault))
    run.faults += (Fault("hang", "C", PhaseId.EXECUTE, 1, True),)
    assert broken(montecarlo, run) == {
        "failures_reported": [
            "injected raise in 'B' pre_execute attempt 1 was not reported: boom",
            "execute of 'C' hung in attempt 1, yet that attempt was reported ok",
        ]
    }


async def test_a_raised_failure_missing_from_the_report_breaks_failures_reported() -> None:
    montecarlo = MonteCarlo(
        chain(timeout=1.0), Resource, faults=FaultRates(raise_error=1, hang=0, slow=0, cancel=0)
    )
    run, problems = await montecarlo.run_one(0)  # A's pre raises, and then its post
    assert problems == []
    (error, fault), _ = run.log.raised
    assert (fault.task, fault.phase) == ("A", PhaseId.PRE_EXEC)
    assert error in run.failures()
    assert run.report is not None
    run.report.phase(fault.task, fault.phase).error = None
    assert broken(montecarlo, run) == {
        "failures_reported": [
            f"injected {fault.kind} in 'A' pre_execute attempt 1 was raised but is not the "
            "error in the run's report"
        ]
    }


async def test_a_silent_abandoned_cleanup_breaks_abandoned_reported() -> None:
    run, montecarlo = await clean_run()
    run.events.append(
        PhaseFinished(run_id=0, task="A", phase=PhaseId.POST_EXEC,
                      outcome=PhaseOutcome.ABANDONED, attempts=0, at=0.0)
    )  # fmt: skip
    assert broken(montecarlo, run)["abandoned_reported"] == [
        "cleanup of 'A' was abandoned but no CleanupAbandonedError reports it"
    ]


async def test_real_runs_of_a_graph_that_forgets_an_owed_cleanup_break_cleanup_once() -> None:
    montecarlo = MonteCarlo(chain(), Resource, faults=FaultRates.none())
    graph = montecarlo.faulty._graph  # as a buggy sdax would see it: A owes nothing
    buggy = dataclasses.replace(graph, has_post=(False, *graph.has_post[1:]))
    montecarlo.faulty = AsyncDagTaskProcessor(buggy)
    result = await montecarlo.arun(10, seed=0, concurrency=2, file=io.StringIO())
    assert {(v.invariant, v.message) for v in result.violations} == {
        ("cleanup_once", "pre_execute of 'A' was entered, but its post_execute started 0 times "
                         "(owed exactly once)")
    }  # fmt: skip
    assert result.failing_seeds == list(range(10))


async def test_budgets_deadlines_and_post_hangs_keep_the_built_in_invariants() -> None:
    rates = FaultRates(raise_error=0.2, hang=0.1, slow=0.1, cancel=0.3, post_hang=0.3)
    for options in ({"timeout": 0.05}, {"cleanup_budget": 0.01}, {"cleanup_timeout": 0.01}):
        montecarlo = MonteCarlo(chain(), Resource, faults=rates, **options)  # type: ignore[arg-type]
        result = await montecarlo.arun(100, seed=7, concurrency=16, file=io.StringIO())
        assert result.violations == [], options
        assert result.faults["hang"] > 0


async def group_step(ctx: Resource, group: SdaxTaskGroup) -> None:
    group.create_task(asyncio.sleep(0))
    await asyncio.sleep(0)


def count(ctx: Resource) -> None:
    ctx.opened += 0  # a quick plain function: nothing to acquire


def varied() -> AsyncTaskProcessor[Resource]:
    """Every kind of phase function, a limit, a run cap, a post-only task in the middle."""
    limit = Limit("db", 2)
    return (
        AsyncDagTaskProcessor[Resource].builder()
        .add_task(Task("R", pre_execute=task_func(open_resource, timeout=0.05, retries=2,
                                                  initial_delay=0),
                       post_execute=task_func(close_resource)))
        .add_task(Task("G", pre_execute=task_group_func(group_step, timeout=0.05, retries=1,
                                                        initial_delay=0),
                       execute=task_func(step, limits=[limit]),
                       post_execute=task_func(step, retries=1, initial_delay=0)),
                  depends_on=("R",))
        .add_task(Task("S", pre_execute=task_sync_func(count), post_execute=task_sync_func(count)),
                  depends_on=("R",))
        .add_task(Task("T", pre_execute=task_thread_func(count, timeout=0.5),
                       execute=task_func(step, timeout=0.05)), depends_on=("S",))
        .add_task(Task("P", post_execute=task_func(step)), depends_on=("G", "T"))
        .add_task(Task("Q", pre_execute=task_func(step, timeout=0.05),
                       post_execute=task_func(step)), depends_on=("P",))
        .build(max_concurrency=3)
    )  # fmt: skip


@pytest.mark.parametrize(
    "options", [{}, {"timeout": 0.1, "cleanup_budget": 0.03, "cleanup_timeout": 0.01}]
)
async def test_every_kind_of_phase_function_keeps_the_built_in_invariants(
    options: dict[str, float],
) -> None:
    rates = FaultRates(raise_error=0.1, hang=0.1, slow=0.1, cancel=0.3, post_hang=0.1)
    montecarlo = MonteCarlo(varied(), Resource, faults=rates, **options)  # type: ignore[arg-type]
    result = await montecarlo.arun(200, seed=100, concurrency=20, file=io.StringIO())
    assert result.violations == []
    assert all(result.faults[kind] > 0 for kind in ("raise", "hang", "slow", "cancel"))


# ------------------------------------------------------------------ the command line


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdax.testing", *argv], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_the_command_line_passes_a_clean_processor_on_both_loops() -> None:
    done = run_cli("run", "tests.test_montecarlo:CLEAN", "--runs", "50", "--loop", "both")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert re.match(r"sdax\.testing: 50 runs \(seeds 0\.\.49, asyncio, concurrency 8, ", lines[0])
    assert re.match(r"sdax\.testing: 50 runs \(seeds 0\.\.49, uvloop, concurrency 8, ", lines[1])


def test_the_command_line_takes_a_processor_with_its_ctx_factory_invariants_and_rates() -> None:
    done = run_cli(
        "run", "tests.test_montecarlo:leaky_endpoint", "--ctx", "tests.test_montecarlo:Resource",
        "--invariant", "tests.test_montecarlo:every_connection_closed", "--runs", "100",
        "--faults", "raise_error=0.2,hang=0,slow=0,cancel=0",
    )  # fmt: skip
    assert done.returncode == 1
    found = re.search(r"^violation: seed (\d+): every_connection_closed: (.*)$", done.stdout, re.M)
    assert found is not None
    seed, message = found.groups()
    replay = (
        f"python -m sdax.testing replay tests.test_montecarlo:leaky_endpoint "
        f"--ctx tests.test_montecarlo:Resource "
        f"--invariant tests.test_montecarlo:every_connection_closed "
        f"--faults raise_error=0.2,hang=0,slow=0,cancel=0 --seed {seed} --loop asyncio"
    )
    assert f"replay: {replay}\n" in done.stdout
    again = run_cli(*replay.split()[3:])
    assert again.returncode == 1
    assert f"violation: seed {seed}: every_connection_closed: {message}\n" in again.stdout


def leaky_endpoint() -> AsyncTaskProcessor[Resource]:
    return endpoint(close_only_after_fetch)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "nowhere_at_all:x"], "module 'nowhere_at_all' not found"),
        (["run", "tests.test_montecarlo:nothing"], "no attribute 'nothing'"),
        (["run", "tests.test_montecarlo:leaky_endpoint"], "name its make_ctx(seed) with --ctx"),
        (["run", "tests.test_montecarlo"], "expected MODULE:ATTR"),
        (["run", "tests.test_montecarlo:CLEAN", "--faults", "bogus=1"], "unexpected keyword"),
        (["run", "tests.test_montecarlo:CLEAN", "--faults", "hang=2"], "is a probability"),
        (["run", "tests.test_montecarlo:CLEAN", "--faults", "hang"], "expected NAME=RATE"),
    ],
)
def test_the_command_line_says_what_is_wrong_with_a_target(argv: list[str], message: str) -> None:
    done = run_cli(*argv)
    assert done.returncode == 2
    assert message in done.stderr


def test_run_makes_its_own_loop_and_replay_reruns_one_seed() -> None:
    result = CLEAN.run(20, seed=4, concurrency=4, file=io.StringIO())
    assert isinstance(result, MonteCarloResult)
    assert (result.runs, result.loop, result.passed) == (20, "asyncio", True)
    assert CLEAN.replay(9).summary().startswith("sdax.testing: 1 run (seeds 9..9, asyncio, ")


def test_the_shuffles_are_still_importable_from_sdax_testing() -> None:
    assert callable(shuffled_release)
    loop = ShuffledLoop(1)
    loop.close()
    assert dataclasses.is_dataclass(FaultRates)
