"""Compatibility facade: the names sdax 0.7.2 exported from `sdax.sdax_core`.

0.7.2's internal `Phase`, `PhaseContext` and abstract `AsyncTaskProcessorBuilder`
have no counterpart here: phases are run by the coordinator actor, not by
phase objects, and the two builders share no base class.
"""

from sdax.actors.task_group import SdaxTaskGroup
from sdax.analysis import ExecutionWave, TaskAnalysis, TaskAnalyzer
from sdax.builders import AsyncDagLevelAdapterBuilder, AsyncDagTaskProcessorBuilder, LevelKey
from sdax.declarations import AsyncTask, PhaseId, TaskFunction, join
from sdax.errors import SdaxExecutionError, flatten_exceptions
from sdax.processor import AsyncDagTaskProcessor, AsyncPhaseRunner, AsyncTaskProcessor

__all__ = [
    "AsyncDagLevelAdapterBuilder",
    "AsyncDagTaskProcessor",
    "AsyncDagTaskProcessorBuilder",
    "AsyncPhaseRunner",
    "AsyncTask",
    "AsyncTaskProcessor",
    "ExecutionWave",
    "LevelKey",
    "PhaseId",
    "SdaxExecutionError",
    "SdaxTaskGroup",
    "TaskAnalysis",
    "TaskAnalyzer",
    "TaskFunction",
    "flatten_exceptions",
    "join",
]
