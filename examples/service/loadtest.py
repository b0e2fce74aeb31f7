"""Load driver for examples/service against a real uvicorn child process.

    python -m examples.service.loadtest [--loops uvloop asyncio] [--requests 3000] ...

For each loop it starts `uvicorn --loop LOOP` as a child on 127.0.0.1 on a
free port, then:

1. measures sdax vs the hand-written endpoint (no faults): requests/s,
   p50/p99 latency, and the server's CPU time per request (from
   /proc/<pid>/stat, so aiosqlite's threads count too);
2. bounded load with faults: REQUESTS requests, CONCURRENCY at a time, of
   which DISCONNECTS are clients that close their connection while the
   handler is in its slow fetch; every response is checked against the
   fault it asked for, and afterwards every opened connection is closed;
3. SIGTERM with IN_FLIGHT requests in their slow fetch (with a slow close):
   the server must exit by itself, and the counts it writes at shutdown,
   after the drain, must say opened == closed with no run in flight.

Exits 1 if any check failed. Every wait has a timeout, and every child is
stopped again, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from examples.service.app import FLAGS, USERS

HOST = "127.0.0.1"
GRACEFUL_SHUTDOWN = 2  # uvicorn --timeout-graceful-shutdown: then it cancels handlers
SLOW_FETCH_MS = 30_000  # what a disconnecting client's request would wait for
ENDPOINTS = {"sdax": "/profile", "handwritten": "/handwritten/profile"}


class CheckFailed(Exception):
    pass


@dataclass
class Checks:
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failures.append(what)


# The server child.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    loop: str
    workdir: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def stats_file(self) -> str:
        return os.path.join(self.workdir, f"stats-{self.loop}.json")

    @property
    def log_file(self) -> str:
        return os.path.join(self.workdir, f"uvicorn-{self.loop}.log")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        for _ in range(3):  # a free port can be taken between probe and bind: try another
            self.port = free_port()
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "examples.service.app:create_app",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--loop",
                self.loop,
                "--http",
                "httptools",
                "--timeout-graceful-shutdown",
                str(GRACEFUL_SHUTDOWN),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
            self.process = self.spawn(command)
            if await self.wait_ready(timeout=20):
                return
            self.stop()
        raise CheckFailed(f"uvicorn --loop {self.loop} did not start; see {self.log_file}")

    def spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        env = dict(os.environ, SDAX_SERVICE_STATS_FILE=self.stats_file)
        env.pop("SDAX_SERVICE_DB_DIR", None)  # each server its own temp database
        with open(self.log_file, "ab") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109
        assert self.process is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if (await client.get("/stats")).status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the child if it is still running: SIGTERM, then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


async def get_stats(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


async def wait_stats(
    client: httpx.AsyncClient,
    ready: Any,
    timeout: float,  # noqa: ASYNC109
) -> dict[str, Any]:
    """Poll /stats until `ready(stats)`; the last stats either way."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await get_stats(client)
        if ready(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.05)


# 1. The comparison table.


@dataclass
class Measured:
    requests: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)


def worker_client(server: Server) -> httpx.AsyncClient:
    """One client per concurrent worker, one keep-alive connection each: a single
    shared httpx pool of 50 connections costs the driver far more CPU per request."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits)


async def measure(server: Server, path: str, requests: int, concurrency: int) -> Measured:
    latencies: list[float] = []
    bad: list[int] = []
    users = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in users:
            start = time.perf_counter()
            response = await client.get(f"{path}/{i % USERS + 1}")
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                bad.append(response.status_code)

    clients = [worker_client(server) for _ in range(concurrency)]
    try:
        # Clients made and connected before the clock starts: making 50 httpx
        # clients costs the driver about a second of CPU, which is not the server's.
        async with asyncio.timeout(60):
            await asyncio.gather(*(client.get("/stats") for client in clients))
        cpu_before = cpu_seconds(server.pid)
        start = time.perf_counter()
        async with asyncio.timeout(120):
            await asyncio.gather(*(worker(client) for client in clients))
        seconds = time.perf_counter() - start
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    if bad:
        raise CheckFailed(f"{path}: {len(bad)} non-200 answers without faults: {Counter(bad)}")
    return Measured(requests, seconds, cpu, latencies)


async def compare(
    server: Server, requests: int, concurrency: int, rounds: int
) -> dict[str, Measured]:
    totals = {name: Measured() for name in ENDPOINTS}
    for path in ENDPOINTS.values():  # warm-up, not counted
        await measure(server, path, min(requests, 100), concurrency)
    for round_ in range(rounds):
        order = list(ENDPOINTS.items())
        if round_ % 2:
            order.reverse()
        for name, path in order:
            one = await measure(server, path, requests, concurrency)
            total = totals[name]
            total.requests += one.requests
            total.seconds += one.seconds
            total.cpu += one.cpu
            total.latencies += one.latencies
    return totals


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# 2. Bounded load with faults.


@dataclass
class Job:
    request_id: str
    user: int
    query: dict[str, str | int]
    status: int
    disconnect: bool = False


def plan(requests: int, disconnects: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    leavers = set(rng.sample(range(requests), disconnects))
    jobs = []
    for i in range(requests):
        rid = f"load-{seed}-{i}"
        user = rng.randint(1, USERS)
        if i in leavers:
            jobs.append(Job(rid, user, {"fetch_ms": SLOW_FETCH_MS}, 0, disconnect=True))
            continue
        roll = rng.random()
        query: dict[str, str | int]
        if roll < 0.55:
            query, status = {}, 200
        elif roll < 0.65:
            query, status = {"auth": "deny"}, 403
        elif roll < 0.67:
            query, status = {"auth": "slow"}, 504
        elif roll < 0.77:
            query, status = {"flags_fail": 1}, 200
        elif roll < 0.82:
            query, status = {"flags_fail": 2}, 200
        elif roll < 0.87:
            query, status = {"flags_fail": rng.choice([3, 5])}, 503
        elif roll < 0.92:
            user, query, status = USERS + rng.randint(1, 100), {}, 404
        else:
            query, status = {"fetch_ms": rng.choice([5, 20, 50])}, 200
        jobs.append(Job(rid, user, query, status))
    return jobs


def expected_body(job: Job) -> dict[str, Any]:
    if job.status == 200:
        flags_fail = int(job.query.get("flags_fail", 0))
        return {
            "request_id": job.request_id,
            "user": {"id": job.user, "name": f"user {job.user}", "bio": f"bio of user {job.user}"},
            "flags": FLAGS,
            "flags_attempts": flags_fail + 1,
        }
    message = {403: "forbidden", 504: "timed out", 503: "flags unavailable", 404: "not found"}
    return {"error": message[job.status], "request_id": job.request_id}


async def run_job(server: Server, client: httpx.AsyncClient, job: Job) -> str | None:
    """Run one job; a description of what was wrong, or None."""
    path = f"{ENDPOINTS['sdax']}/{job.user}"
    if not job.disconnect:
        response = await client.get(
            path, params=job.query, headers={"x-request-id": job.request_id}
        )
        body = response.json()
        if response.status_code != job.status or body != expected_body(job):
            return f"{job}: got {response.status_code} {body}"
        return None
    # A client that leaves: send the request on a connection of its own, wait
    # until the server says its handler is in the slow fetch, then close.
    _, writer = await asyncio.open_connection(HOST, server.port)
    try:
        writer.write(
            f"GET {path}?fetch_ms={SLOW_FETCH_MS} HTTP/1.1\r\nHost: {HOST}\r\n"
            f"x-request-id: {job.request_id}\r\n\r\n".encode()
        )
        await writer.drain()
        waited = await client.get(f"/debug/in-fetch/{job.request_id}", params={"timeout": 20})
        if waited.status_code != 200:
            return f"{job}: never reached its fetch ({waited.status_code})"
    finally:
        writer.close()
        await writer.wait_closed()
    return None


async def bounded_load(
    server: Server,
    client: httpx.AsyncClient,
    checks: Checks,
    requests: int,
    concurrency: int,
    disconnects: int,
    seed: int,
) -> None:
    jobs = plan(requests, disconnects, seed)
    before = await get_stats(client)
    wrong: list[str] = []
    queue = iter(jobs)

    async def worker() -> None:
        async with worker_client(server) as own:
            for job in queue:
                try:
                    problem = await run_job(server, own, job)
                except (httpx.HTTPError, OSError) as error:
                    problem = f"{job}: {error!r}"
                if problem is not None:
                    wrong.append(problem)

    start = time.perf_counter()
    async with asyncio.timeout(180):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    after = await wait_stats(
        client, lambda s: s["in_flight"] == 0 and s["fetching"] == 0, timeout=30
    )
    expected = Counter(f"sdax {job.status}" for job in jobs if not job.disconnect)
    expected["sdax cancelled"] = disconnects
    outcomes = Counter(after["outcomes"]) - Counter(before["outcomes"])
    opened = after["opened"].get("sdax", 0) - before["opened"].get("sdax", 0)
    closed = after["closed"].get("sdax", 0) - before["closed"].get("sdax", 0)
    print(f"  {requests} requests ({disconnects} leave mid-fetch) in {seconds:.1f} s")
    print(f"  outcomes: {dict(sorted(outcomes.items()))}")
    for problem in wrong[:10]:
        print(f"    {problem}")
    checks.check(not wrong, f"every answer matches its fault ({len(wrong)} wrong)")
    checks.check(outcomes == expected, "server outcomes == planned (incl. every disconnect)")
    checks.check(
        opened == closed == requests,
        f"connections opened {opened} == closed {closed} == requests {requests}",
    )
    checks.check(after["in_flight"] == 0, f"no run in flight afterwards ({after['in_flight']})")


# 3. SIGTERM with requests in flight.


async def sigterm_in_flight(
    server: Server, client: httpx.AsyncClient, checks: Checks, in_flight: int
) -> None:
    assert server.process is not None
    before = await get_stats(client)
    by_hand = in_flight // 5
    paths = [ENDPOINTS["handwritten"]] * by_hand + [ENDPOINTS["sdax"]] * (in_flight - by_hand)
    limits = httpx.Limits(max_connections=in_flight + 10)
    async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as hanging:
        query = {"fetch_ms": SLOW_FETCH_MS, "close_ms": 200}  # a cleanup that takes a while
        requests = [
            asyncio.create_task(hanging.get(f"{path}/{i + 1}", params=query))
            for i, path in enumerate(paths)
        ]
        try:
            stats = await wait_stats(client, lambda s: s["fetching"] == in_flight, timeout=30)
            checks.check(stats["fetching"] == in_flight, f"{stats['fetching']} requests in fetch")
            started = time.perf_counter()
            server.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(wait_exit, server.process, 60)
            took = time.perf_counter() - started
            # uvicorn re-raises the signal it caught once its shutdown is done: -15.
            checks.check(
                code in (0, -signal.SIGTERM),
                f"server exited by itself, code {code}, {took:.1f} s after SIGTERM",
            )
        finally:
            for request in requests:
                request.cancel()
            await asyncio.gather(*requests, return_exceptions=True)
    try:
        final = read_json(server.stats_file)
    except (OSError, ValueError) as error:
        checks.check(False, f"shutdown stats written: {error!r}")
        return
    cancelled = Counter(final["outcomes"]) - Counter(before["outcomes"])
    print(f"  written at shutdown: opened {final['opened']} closed {final['closed']}")
    checks.check(final["shutdown_in_flight"] == 0, "no run in flight when lifespan shutdown ran")
    checks.check(final["opened"] == final["closed"], "opened == closed at exit, both endpoints")
    checks.check(
        cancelled
        == Counter({"sdax cancelled": in_flight - by_hand, "handwritten cancelled": by_hand}),
        f"every in-flight request was cancelled and cleaned up: {dict(cancelled)}",
    )


def read_json(path: str) -> Any:
    with open(path) as file:
        return json.load(file)


def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# Everything, per loop.


async def run_loop(loop: str, args: argparse.Namespace, workdir: str, checks: Checks) -> Any:
    server = Server(loop, workdir)
    print(f"\n== uvicorn --loop {loop} ==", flush=True)
    try:
        await server.start()
        limits = httpx.Limits(max_connections=args.concurrency + 20)
        async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as client:
            print(f"  server pid {server.pid} on {server.base}")
            table = await compare(server, args.table_requests, args.concurrency, args.rounds)
            for name, measured in table.items():
                print(f"  {name}: {row(measured)}")
            await bounded_load(
                server, client, checks, args.requests, args.concurrency, args.disconnects, args.seed
            )
            await sigterm_in_flight(server, client, checks, args.in_flight)
        return table
    except CheckFailed as error:
        checks.check(False, str(error))
        return None
    finally:
        server.stop()


def row(measured: Measured) -> str:
    return (
        f"{measured.requests / measured.seconds:,.0f} req/s, "
        f"p50 {percentile(measured.latencies, 50) * 1000:.1f} ms, "
        f"p99 {percentile(measured.latencies, 99) * 1000:.1f} ms, "
        f"server CPU {measured.cpu / measured.requests * 1e6:,.0f} us/request"
    )


def markdown(tables: dict[str, dict[str, Measured]]) -> str:
    lines = [
        "| loop | endpoint | requests/s | p50 | p99 | server CPU per request |",
        "|---|---|---|---|---|---|",
    ]
    for loop, table in tables.items():
        for name, m in table.items():
            lines.append(
                f"| {loop} | {name} | {m.requests / m.seconds:,.0f} "
                f"| {percentile(m.latencies, 50) * 1000:.1f} ms "
                f"| {percentile(m.latencies, 99) * 1000:.1f} ms "
                f"| {m.cpu / m.requests * 1e6:,.0f} us |"
            )
    return "\n".join(lines)


@contextmanager
def workdir(keep: bool) -> Iterator[str]:
    if keep:
        path = tempfile.mkdtemp(prefix="sdax-loadtest-")
        print(f"logs and stats in {path}")
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="sdax-loadtest-") as path:
            yield path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", nargs="+", default=["uvloop", "asyncio"])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--disconnects", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--table-requests", type=int, default=1000, help="per endpoint and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--keep", action="store_true", help="keep the server logs")
    args = parser.parse_args(argv)
    checks = Checks()
    tables: dict[str, dict[str, Measured]] = {}
    started = time.perf_counter()
    with workdir(args.keep) as path:
        for loop in args.loops:
            table = asyncio.run(run_loop(loop, args, path, checks))
            if table is not None:
                tables[loop] = table
        if checks.failures:
            for name in os.listdir(path):
                if name.startswith("uvicorn-"):
                    with open(os.path.join(path, name)) as log:
                        print(f"\n--- {name} (last lines) ---\n" + "".join(log.readlines()[-30:]))
    print(f"\n{markdown(tables)}\n")
    print(
        f"{args.table_requests * args.rounds} requests per cell, concurrency {args.concurrency}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        f"whole run {time.perf_counter() - started:.0f} s"
    )
    if checks.failures:
        print(f"\n{len(checks.failures)} check(s) FAILED:")
        for failure in checks.failures:
            print(f"  {failure}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
