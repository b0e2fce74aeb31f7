"""Helpers for testing code that uses sdax (and sdax itself).

`shuffled_release(seed)` makes every run started inside it release each
batch of ready tasks in a seeded random order, so that tests cannot come to
rely on an order sdax never promised (the tasks of one wave, the executes,
a batch of cleanups) while a failing seed still replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

from sdax.actors.coordinator import release_shuffle


@contextmanager
def shuffled_release(seed: int) -> Iterator[random.Random]:
    """Within the block (and tasks started from it), shuffle every released batch."""
    shuffler = random.Random(seed)
    token = release_shuffle.set(shuffler)
    try:
        yield shuffler
    finally:
        release_shuffle.reset(token)
