"""Compatibility facade: the names sdax 0.7.2 exported from `sdax.sdax_core`.

Three of them were 0.7.2 internals with no counterpart in this design, where
the coordinator actor runs the phases of a run and no phase objects exist:

- `AsyncTaskProcessorBuilder`: 0.7.2's abstract level builder, kept as an
  abstract base that `AsyncTaskProcessor.builder()`'s result is an instance of.
- `Phase`: 0.7.2's (phase id, function) record, kept as a plain record that
  nothing here creates or runs.
- `PhaseContext`: 0.7.2's state of one run between phases. Here that state is
  held by the phase runner, so the name refers to `AsyncPhaseRunner`; its
  0.7.2 fields (sets of started tasks and the like) have no equivalent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from msgspec import Struct

from sdax._generic import K, KeyDefault
from sdax.analysis import ExecutionWave, TaskAnalysis, TaskAnalyzer
from sdax.declarations import AsyncTask, TaskFunction, join
from sdax.errors import SdaxExecutionError, flatten_exceptions
from sdax.graph import LevelKey
from sdax.processor import (
    AsyncDagLevelAdapterBuilder,
    AsyncDagTaskProcessor,
    AsyncDagTaskProcessorBuilder,
    AsyncPhaseRunner,
    AsyncTaskProcessor,
)
from sdax.task_group import SdaxTaskGroup
from sdax.vocabulary import PhaseId

T = TypeVar("T")


class AsyncTaskProcessorBuilder(ABC, Generic[T, K]):
    """A builder that declares tasks by level (0.7.2's abstract base of the level builder).

    `AsyncDagLevelAdapterBuilder` is registered as one, so
    `isinstance(AsyncTaskProcessor.builder(), AsyncTaskProcessorBuilder)` holds.
    Generic in the context and key types, as in 0.7.2.
    """

    @abstractmethod
    def add_task(self, task: AsyncTask[T], level: int) -> AsyncTaskProcessorBuilder[T, K]: ...

    @abstractmethod
    def build(self) -> AsyncDagTaskProcessor[T]: ...


AsyncTaskProcessorBuilder.register(AsyncDagLevelAdapterBuilder)


class Phase(Struct, KeyDefault, Generic[T, K], frozen=True):
    """0.7.2's record of one phase of a run: its id and the function that runs it.

    Nothing in this project creates or runs one (the coordinator actor runs
    phases); it exists so code that imports or annotates with it still works,
    with 0.7.2's two type parameters (context, key).
    """

    phase_id: PhaseId
    run: Callable[[Any], Awaitable[PhaseId | None]]


PhaseContext = AsyncPhaseRunner
"""0.7.2's state of one run between phases; here the phase runner holds it."""

__all__ = [
    "AsyncDagLevelAdapterBuilder",
    "AsyncDagTaskProcessor",
    "AsyncDagTaskProcessorBuilder",
    "AsyncPhaseRunner",
    "AsyncTask",
    "AsyncTaskProcessor",
    "AsyncTaskProcessorBuilder",
    "ExecutionWave",
    "LevelKey",
    "Phase",
    "PhaseContext",
    "PhaseId",
    "SdaxExecutionError",
    "SdaxTaskGroup",
    "TaskAnalysis",
    "TaskAnalyzer",
    "TaskFunction",
    "flatten_exceptions",
    "join",
]
