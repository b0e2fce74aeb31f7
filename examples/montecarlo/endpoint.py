"""The README's endpoint, monte-carlo tested with sdax.testing.

Database's pre_execute opens a counted in-memory connection and its
post_execute closes it; Auth (timeout=2.0) and Flags (retries=2) run in
parallel after it; Fetch executes once both have succeeded. The one user
invariant: every connection opened during the run was closed again.

    python -m sdax.testing run examples.montecarlo.endpoint:montecarlo --runs 2000 --loop uvloop
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sdax import AsyncDagTaskProcessor, AsyncTask, task_func
from sdax.testing import CheckedRun, MonteCarlo


class Pool:
    """An in-memory resource that counts what was opened and what was closed."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0

    async def connect(self) -> Connection:
        await asyncio.sleep(0)
        self.opened += 1
        return Connection(self)


class Connection:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.open = True

    async def close(self) -> None:
        if self.open:
            self.open = False
            self.pool.closed += 1


@dataclass
class Request:
    user_id: int
    pool: Pool = field(default_factory=Pool)
    connection: Connection | None = None
    flags: dict[str, bool] = field(default_factory=dict)
    profile: dict[str, object] = field(default_factory=dict)


async def open_db(req: Request) -> None:
    req.connection = await req.pool.connect()


async def close_db(req: Request) -> None:
    if req.connection is not None:  # open_db may have failed before it connected
        await req.connection.close()


async def check_auth(req: Request) -> None:
    await asyncio.sleep(0)


async def load_flags(req: Request) -> None:
    req.flags = {"new_profile_page": True}


async def fetch_profile(req: Request) -> None:
    req.profile = {"id": req.user_id, "new_page": req.flags["new_profile_page"]}


def build_endpoint() -> AsyncDagTaskProcessor[Request]:
    return (
        AsyncDagTaskProcessor[Request].builder()
        .add_task(AsyncTask("Database", pre_execute=task_func(open_db),
                            post_execute=task_func(close_db)))
        .add_task(AsyncTask("Auth", pre_execute=task_func(check_auth, timeout=2.0)),
                  depends_on=("Database",))
        .add_task(AsyncTask("Flags", pre_execute=task_func(load_flags, retries=2)),
                  depends_on=("Database",))
        .add_task(AsyncTask("Fetch", execute=task_func(fetch_profile)),
                  depends_on=("Auth", "Flags"))
        .build()
    )  # fmt: skip


def every_connection_closed(run: CheckedRun) -> str | None:
    pool: Pool = run.ctx.pool
    if pool.opened != pool.closed:
        return f"{pool.opened} connection(s) opened, {pool.closed} closed"
    return None


endpoint = build_endpoint()
montecarlo = MonteCarlo(
    endpoint,
    make_ctx=lambda seed: Request(user_id=seed),
    invariants=[every_connection_closed],
    target="examples.montecarlo.endpoint:montecarlo",
)
