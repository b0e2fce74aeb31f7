"""Suite-wide setup: every async test runs on each selected event loop, with
a shuffled (seeded, printed) release order and a check for leaked tasks."""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import zlib
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from sdax.testing import shuffled_release

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,
}
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dev dependency
    pass
else:
    LOOPS["uvloop"] = uvloop.new_event_loop


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sdax")
    group.addoption(
        "--loop",
        choices=["asyncio", "uvloop", "all"],
        default=os.environ.get("SDAX_TEST_LOOP", "all"),
        help="event loop(s) to run async tests on (env SDAX_TEST_LOOP; default all)",
    )
    group.addoption(
        "--sdax-seed",
        type=int,
        default=None,
        help="seed for the shuffled release order (default: random, printed in the header)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--sdax-seed") is None:
        config.option.sdax_seed = random.randrange(2**32)
    choice = config.getoption("--loop")
    if choice == "uvloop" and "uvloop" not in LOOPS:
        raise pytest.UsageError("--loop=uvloop but uvloop is not installed")


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"sdax: loops={config.getoption('--loop')}, "
        f"release-order seed={config.getoption('--sdax-seed')} (replay with --sdax-seed)"
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    choice = config.getoption("--loop")
    return dict(LOOPS) if choice == "all" else {choice: LOOPS[choice]}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.add_marker(pytest.mark.usefixtures("no_leaked_tasks"))


@pytest.fixture(autouse=True)
def release_order_seed(request: pytest.FixtureRequest) -> Iterator[int]:
    """Shuffle released batches with a per-test seed derived from the session seed."""
    seed = request.config.getoption("--sdax-seed") ^ zlib.crc32(request.node.nodeid.encode())
    with shuffled_release(seed):
        yield seed


@pytest_asyncio.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    leaked = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in leaked:
        task.cancel()
    assert not leaked, f"tasks still pending after the test: {leaked}"
