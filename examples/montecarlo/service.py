"""The example service's own processor, monte-carlo tested on a real sqlite file.

`examples/service/app.py` builds the processor that serves `/profile/{id}`:
Database opens an aiosqlite connection in its pre_execute and closes it in
its post_execute; Auth (timeout=2.0) and Flags (retries=2) query it; Fetch
reads the profile. Here that same processor runs without the web server,
each run one request with its own user (some unknown: a LookupError) and
its own number of Flags failures, under sdax.testing's seeded faults and
caller cancellations. The user invariant: the run's connection was closed.

    python -m sdax.testing run examples.montecarlo.service:montecarlo --runs 2000 --loop both
"""

from __future__ import annotations

import atexit

from examples.service.app import USERS, Call, Faults, Service, build_processor
from sdax.testing import CheckedRun, MonteCarlo

SERVICE = Service()  # the database file in a temp dir, shared by every run
atexit.register(SERVICE.close)


def make_call(seed: int) -> Call:
    return Call(
        service=SERVICE,
        endpoint="montecarlo",
        request_id=f"seed {seed}",
        user_id=1 + seed % (USERS + 50),  # ids above USERS have no profile
        faults=Faults(flags_fail=seed % 3),  # within Flags' two retries
    )


def connection_closed(run: CheckedRun) -> str | None:
    call: Call = run.ctx
    if call.connection is not None:
        return f"request {call.request_id!r}: its aiosqlite connection was left open"
    return None


montecarlo = MonteCarlo(
    build_processor(),
    make_ctx=make_call,
    invariants=[connection_closed],
    target="examples.montecarlo.service:montecarlo",
)
