"""One immutable processor, many runs at once (SPEC §6)."""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field

import pytest

from sdax import AsyncTask, AsyncTaskProcessor, SdaxExecutionError, task_func


@dataclass
class Request:
    user_id: int
    fail_in: str | None = None
    log: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)


def step(name: str):  # type: ignore[no-untyped-def]
    async def run(ctx: Request) -> None:
        await asyncio.sleep(0)  # yield like real I/O, so runs interleave
        ctx.log.append(f"{name}:{ctx.user_id}")
        if ctx.fail_in == name:
            raise ValueError(f"{name} failed for {ctx.user_id}")

    return task_func(run)


def cleanup(name: str):  # type: ignore[no-untyped-def]
    async def run(ctx: Request) -> None:
        ctx.cleaned.append(name)

    return task_func(run)


def request_processor() -> AsyncTaskProcessor[Request]:
    return (
        AsyncTaskProcessor[Request]
        .builder()
        .add_task(AsyncTask("db", pre_execute=step("db"), post_execute=cleanup("db")), level=0)
        .add_task(AsyncTask("auth", pre_execute=step("auth")), level=1)
        .add_task(AsyncTask("flags", pre_execute=step("flags")), level=1)
        .add_task(AsyncTask("fetch", execute=step("fetch"), post_execute=cleanup("fetch")), level=2)
        .build()
    )


async def test_a_thousand_concurrent_runs_with_random_failures_stay_isolated() -> None:
    processor = request_processor()
    rng = random.Random(1234)
    requests = [
        Request(user_id=i, fail_in=rng.choice([None, None, "auth", "fetch", "db"]))
        for i in range(1000)
    ]
    results = await asyncio.gather(
        *(processor.process_tasks(r) for r in requests), return_exceptions=True
    )
    for request, result in zip(requests, results, strict=True):
        assert all(entry.endswith(f":{request.user_id}") for entry in request.log)
        if request.fail_in is None:
            assert result is None
            assert sorted(request.cleaned) == ["db", "fetch"]
        else:
            assert isinstance(result, SdaxExecutionError)
            (leaf,) = result.leaf_exceptions()
            assert str(leaf) == f"{request.fail_in} failed for {request.user_id}"
            expected_cleanup = ["db", "fetch"] if request.fail_in == "fetch" else ["db"]
            assert sorted(request.cleaned) == expected_cleanup


def test_one_processor_serves_event_loops_in_several_threads() -> None:
    processor = request_processor()
    outcomes: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def serve(thread_id: int) -> None:
        async def many() -> None:
            requests = [Request(user_id=thread_id * 100 + i) for i in range(50)]
            await asyncio.gather(*(processor.process_tasks(r) for r in requests))
            outcomes[thread_id] = [entry for r in requests for entry in r.log]

        try:
            asyncio.run(many())
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(outcomes) == [0, 1, 2, 3]
    for thread_id, log in outcomes.items():
        assert len(log) == 50 * 4
        assert all(
            100 * thread_id <= int(entry.split(":")[1]) < 100 * (thread_id + 1) for entry in log
        )


@pytest.mark.parametrize("runs", [1, 25])
async def test_runs_started_together_do_not_share_cleanup_or_failures(runs: int) -> None:
    processor = request_processor()
    failing = Request(user_id=-1, fail_in="db")
    fine = [Request(user_id=i) for i in range(runs)]
    results = await asyncio.gather(
        processor.process_tasks(failing),
        *(processor.process_tasks(r) for r in fine),
        return_exceptions=True,
    )
    assert isinstance(results[0], SdaxExecutionError)
    assert results[1:] == [None] * runs
    assert failing.cleaned == ["db"]
    assert all(sorted(r.cleaned) == ["db", "fetch"] for r in fine)
