"""Compatibility facade: the names sdax 0.7.2 exported from `sdax.sdax_core`."""

from sdax.builders import AsyncDagLevelAdapterBuilder, AsyncDagTaskProcessorBuilder, LevelKey
from sdax.declarations import AsyncTask, PhaseId, TaskFunction
from sdax.errors import SdaxExecutionError, flatten_exceptions
from sdax.processor import AsyncDagTaskProcessor, AsyncPhaseRunner, AsyncTaskProcessor

__all__ = [
    "AsyncDagLevelAdapterBuilder",
    "AsyncDagTaskProcessor",
    "AsyncDagTaskProcessorBuilder",
    "AsyncPhaseRunner",
    "AsyncTask",
    "AsyncTaskProcessor",
    "LevelKey",
    "PhaseId",
    "SdaxExecutionError",
    "TaskFunction",
    "flatten_exceptions",
]
