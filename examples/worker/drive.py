"""Drive examples/worker/jobs.py on a real redis-server and check every job.

    PYTHONPATH=. python -m examples.worker.drive [--jobs 2000] [--seed 1]

Starts redis-server on 127.0.0.1 on a free port (its own temp dir, no
persistence), enqueues the jobs (some fail, time out, or hang past arq's
job_timeout), starts a worker, sends it SIGTERM while jobs are in flight,
starts a second worker, waits until the queue is empty, and then checks:
every job has a result and the outcome its kind calls for; no job's work
was committed twice; every connection a job opened was closed; both drains
found nothing left; the second worker's RSS stayed flat. Exits nonzero on
the first failed check. Every process it starts is stopped again, also on
failure; every wait has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job

from sdax import SdaxExecutionError

KINDS = {"ok": 0.86, "flaky": 0.03, "fail": 0.05, "timeout": 0.04, "hang": 0.02}
QUEUE = "arq:queue"
RSS_TOLERANCE_MIB = 8.0  # end of run vs after warm-up, for the worker that runs to the end
WAIT_ALL_S = 180.0


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass
class Worker:
    """One worker child process and its RSS, sampled as it runs."""

    name: str
    process: subprocess.Popen[bytes]
    rss: list[tuple[float, int, float]] = field(default_factory=list)  # (t, jobs done, MiB)


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL if it is still there after `timeout`; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


def start_redis(binary: str, workdir: Path, log: IO[bytes]) -> tuple[subprocess.Popen[bytes], int]:
    """A listening redis-server on a free port; a port taken meanwhile means another try."""
    for _ in range(3):
        port = free_port()
        server = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while server.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return server, port
            time.sleep(0.05)
        stop(server)
    raise CheckFailed(f"redis-server did not start: {(workdir / 'redis.log').read_text()}")


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    check(binary is not None, "redis-server is not installed (make integration-worker installs it)")
    assert binary is not None
    with open(workdir / "redis.log", "wb") as log:
        server, port = start_redis(binary, workdir, log)
        try:
            yield port
        finally:
            stop(server)


def start_worker(name: str, port: int, workdir: Path, completion_wait: int) -> Worker:
    env = {
        **os.environ,
        "SDAX_EXAMPLE_REDIS_PORT": str(port),
        "SDAX_EXAMPLE_LEDGER_DIR": str(workdir),
        "SDAX_EXAMPLE_COMPLETION_WAIT": str(completion_wait),
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - the child holds it
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.worker.jobs"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return Worker(name, process)


async def finished(redis: ArqRedis, total: int) -> int:
    return total - int(await redis.zcard(QUEUE))


async def watch(redis: ArqRedis, worker: Worker, total: int, until: int, limit_s: float) -> None:
    """Sample the worker's RSS until `until` jobs are finished (or fail after `limit_s` seconds)."""
    start = time.monotonic()
    while True:
        done = await finished(redis, total)
        mib = rss_mib(worker.process.pid)
        if mib is not None:
            worker.rss.append((time.monotonic() - start, done, mib))
        if done >= until:
            return
        check(
            worker.process.poll() is None,
            f"{worker.name} exited early ({worker.process.returncode})",
        )
        check(
            time.monotonic() - start < limit_s, f"{worker.name}: {done}/{until} jobs in {limit_s} s"
        )
        await asyncio.sleep(0.1)


async def enqueue(redis: ArqRedis, jobs: int, seed: int) -> dict[int, str]:
    rng = random.Random(seed)
    kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=jobs)
    plan = dict(enumerate(kinds))
    for n, kind in plan.items():
        job = await redis.enqueue_job("work", n, kind, _job_id=f"job-{n:05d}")
        check(job is not None, f"job {n} was not enqueued")
    return plan


def expected(kind: str, success: bool, result: object) -> str | None:
    """Why this outcome is wrong for `kind`, or None if it is right."""
    if kind in ("ok", "flaky"):  # the job's connection answered PING, or an earlier try did
        used = isinstance(result, dict) and (result.get("pong") or result.get("replayed"))
        return None if success and used else f"wanted success after a PONG, got {result!r}"
    if success:
        return f"wanted a failure, got success {result!r}"
    if kind == "hang":  # arq's job_timeout: its own TimeoutError, after sdax cleaned up
        ok = isinstance(result, TimeoutError) and not isinstance(result, SdaxExecutionError)
        return None if ok else f"wanted arq's TimeoutError, got {result!r}"
    leaf = {"fail": PermissionError, "timeout": TimeoutError}[kind]
    if isinstance(result, SdaxExecutionError) and all(
        isinstance(e, leaf) for e in result.leaf_exceptions()
    ):
        return None
    return f"wanted SdaxExecutionError of {leaf.__name__}, got {result!r}"


def read_ledger(workdir: Path) -> tuple[collections.Counter[str], list[str]]:
    counts: collections.Counter[str] = collections.Counter()
    unmatched: collections.Counter[tuple[str, str]] = collections.Counter()
    for path in workdir.glob("ledger-*.log"):
        for line in path.read_text().splitlines():
            what, n, job_try = line.split()
            counts[what] += 1
            unmatched[(n, job_try)] += 1 if what == "open" else -1
    return counts, [f"job {n} try {t}: {c:+d}" for (n, t), c in unmatched.items() if c]


def rss_verdict(worker: Worker) -> tuple[float, float, float]:
    """(after warm-up, end, peak) MiB: warm-up is the first quarter of the jobs it did."""
    samples = worker.rss
    first_done, last_done = samples[0][1], samples[-1][1]
    warm = first_done + (last_done - first_done) // 4
    start = next(mib for _, done, mib in samples if done >= warm)
    return start, samples[-1][2], max(mib for _, _, mib in samples)


Rows = list[tuple[str, str]]  # the summary table, filled in as the run goes


async def run_the_workers(
    args: argparse.Namespace,
    redis: ArqRedis,
    total: int,
    workdir: Path,
    port: int,
    workers: list[Worker],
    rows: Rows,
) -> None:
    """Worker-1 until 40% of the jobs are done, SIGTERM, worker-2 until all are."""
    began = time.monotonic()
    first = start_worker("worker-1", port, workdir, args.completion_wait)
    workers.append(first)
    await watch(redis, first, total, until=int(total * 0.4), limit_s=120)
    in_flight = len([key async for key in redis.scan_iter("arq:in-progress:*")])
    check(in_flight > 0, "no job was in flight at the SIGTERM: the run tested nothing")
    sigterm_at = time.monotonic()
    first_exit = await asyncio.to_thread(stop, first.process, 30.0)
    stopped_in = time.monotonic() - sigterm_at
    rows.append(("SIGTERM to worker-1", f"with {in_flight} jobs in flight"))
    rows.append(("worker-1 exit after SIGTERM", f"code {first_exit} in {stopped_in:.1f} s"))
    check(first_exit == 0, f"worker-1 exited with {first_exit} after SIGTERM")
    log = (workdir / "worker-1.log").read_text(errors="replace")
    check("shutdown on SIGTERM" in log, "worker-1 did not log arq's SIGTERM shutdown")
    rows.append(("jobs done when worker-1 had stopped", str(await finished(redis, total))))
    cancelled = log.count("cancelled, will be run again")
    rows.append(("jobs arq cancelled at that shutdown (re-queued)", str(cancelled)))
    rescued = "finishing the shutdown" in log
    rows.append(("worker-1 shutdown finished by SdaxWorker.run_worker", "yes" if rescued else "no"))

    second = start_worker("worker-2", port, workdir, args.completion_wait)
    workers.append(second)
    await watch(redis, second, total, until=total, limit_s=WAIT_ALL_S)
    elapsed = time.monotonic() - began
    rate = f"{elapsed:.1f} s ({total / elapsed:.0f} jobs/s)"
    rows.append(("wall time, first worker start to last result", rate))
    second_exit = await asyncio.to_thread(stop, second.process, 30.0)
    check(second_exit == 0, f"worker-2 exited with {second_exit} after SIGTERM")


async def check_results(redis: ArqRedis, plan: dict[int, str], rows: Rows) -> None:
    """Every job has a result with its kind's outcome; successes committed exactly once."""
    outcomes: collections.Counter[str] = collections.Counter()
    wrong: list[str] = []
    retried = 0
    for n, kind in plan.items():
        info = await Job(f"job-{n:05d}", redis).result_info()
        if info is None:
            wrong.append(f"job {n} ({kind}): no result")
            continue
        problem = expected(kind, info.success, info.result)
        if problem:
            wrong.append(f"job {n} ({kind}): {problem}")
        outcomes[f"{kind} {'ok' if info.success else 'failed'}"] += 1
        retried += info.job_try > (2 if kind == "flaky" else 1)
    rows.extend((f"outcome: {name}", str(count)) for name, count in sorted(outcomes.items()))
    rows.append(("jobs run again after the SIGTERM", str(retried)))
    check(not wrong, f"{len(wrong)} job(s) lost or wrong: {wrong[:10]}")

    successes = {int(k): int(v) for k, v in (await redis.hgetall("example:successes")).items()}
    replays = int(await redis.get("example:replays") or 0)
    rows.append(("later tries that found the work committed", str(replays)))
    twice = {n: count for n, count in successes.items() if count != 1}
    check(not twice, f"work committed more than once: {twice}")
    should = {n for n, kind in plan.items() if kind in ("ok", "flaky")}
    check(set(successes) == should, "committed successes differ from the jobs that succeed")


def check_ledger(workdir: Path, total: int, rows: Rows) -> None:
    """Every connection a job opened was closed: in all, and per job and try."""
    counts, unmatched = read_ledger(workdir)
    rows.append(("connections opened / closed", f"{counts['open']} / {counts['close']}"))
    check(counts["open"] == counts["close"], f"opened {counts['open']} != closed {counts['close']}")
    check(not unmatched, f"connections not closed: {unmatched[:10]}")
    check(counts["open"] >= total, f"only {counts['open']} connections opened for {total} jobs")


async def check_drains(redis: ArqRedis, rows: Rows) -> None:
    """Both workers reached on_shutdown, and their drains found no run left."""
    drains = {k.decode(): v.decode() for k, v in (await redis.hgetall("example:drain")).items()}
    for pid, verdict in sorted(drains.items()):
        drained, left = verdict.split()
        rows.append((f"drain of worker pid {pid}", f"drained={drained} left={left}"))
    check(len(drains) == 2, f"each worker reports its drain: {drains}")
    check(all(v == "True 0" for v in drains.values()), f"a drain left runs behind: {drains}")


def check_rss(workers: list[Worker], rows: Rows) -> None:
    """Worker-2, which runs to the end, grows at most RSS_TOLERANCE_MIB after warm-up."""
    for worker in workers:
        warm, end, peak = rss_verdict(worker)
        figures = f"{warm:.1f} / {end:.1f} / {peak:.1f} MiB ({len(worker.rss)} samples)"
        rows.append((f"{worker.name} RSS after warm-up / end / peak", figures))
    rows.append(("RSS tolerance (worker-2, end - after warm-up)", f"<= {RSS_TOLERANCE_MIB} MiB"))
    warm, end, _ = rss_verdict(workers[1])
    check(end - warm <= RSS_TOLERANCE_MIB, f"worker-2 RSS grew {end - warm:.1f} MiB after warm-up")


async def drive(args: argparse.Namespace, workdir: Path, port: int, rows: Rows) -> None:
    redis = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    workers: list[Worker] = []
    try:
        await redis.flushdb()
        plan = await enqueue(redis, args.jobs, args.seed)
        setting = f"seed {args.seed}, job_completion_wait={args.completion_wait}"
        rows.append(("jobs", f"{len(plan)} ({setting})"))
        await run_the_workers(args, redis, len(plan), workdir, port, workers, rows)
        await check_results(redis, plan, rows)
        check_ledger(workdir, len(plan), rows)
        await check_drains(redis, rows)
        check_rss(workers, rows)
    finally:
        for worker in workers:
            stop(worker.process)
        await redis.aclose()


def print_rows(rows: Rows) -> None:
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--completion-wait", type=int, default=1, help="arq job_completion_wait (0: cancel at once)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, ledgers)")
    args = parser.parse_args()
    # A driver stopped from outside still stops its children (the finally blocks below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix="sdax-worker-"))
    rows: Rows = []
    try:
        with redis_server(workdir) as port:
            asyncio.run(drive(args, workdir, port, rows))
        print_rows(rows)
        print("all checks passed")
        return 0
    except CheckFailed as failed:
        print_rows(rows)
        print(f"FAILED: {failed}", file=sys.stderr)
        for log in sorted(workdir.glob("worker-*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- last lines of {log.name}:", *tail, sep="\n", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
