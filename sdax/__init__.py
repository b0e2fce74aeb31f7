"""sdax: tiered, parallel asyncio work with guaranteed cleanup, on an actor runtime.

Public names only; each lives in the module named beside it.
"""

from sdax._version import __version__
from sdax.analysis import ExecutionGraph, ExecutionWave, TaskAnalysis, TaskAnalyzer
from sdax.declarations import (
    AsyncTask,
    TaskFunction,
    join,
    task,
    task_func,
    task_group_func,
    task_group_task,
    task_sync_func,
    task_thread_func,
)
from sdax.errors import (
    CleanupAbandonedError,
    DependencyCycleError,
    PhaseCancelledError,
    RetryableException,
    RunTimeoutError,
    SdaxExecutionError,
    TaskFailure,
    flatten_exceptions,
)
from sdax.graph import LevelBarrier
from sdax.limits import Limit, LimitUse
from sdax.observers import (
    LoggingObserver,
    PhaseFinished,
    PhaseRetried,
    PhaseStarted,
    RunFinished,
    RunObserver,
    RunStarted,
)
from sdax.processor import (
    AsyncDagLevelAdapterBuilder,
    AsyncDagTaskProcessor,
    AsyncDagTaskProcessorBuilder,
    AsyncPhaseRunner,
    AsyncTaskProcessor,
)
from sdax.report import (
    ErrorInfo,
    PhaseReport,
    ReportRecorder,
    RetryReport,
    RunReport,
    TaskReport,
)
from sdax.task_group import SdaxTaskGroup
from sdax.vocabulary import CancelReason, PhaseId, PhaseOutcome, RunOutcome

# Integrations and tools, imported on first use so `import sdax` stays light
# (sdax.otel needs the `sdax[otel]` extra only when it is touched).
_SUBMODULES = frozenset({"timeline", "otel", "testing", "diagrams", "report", "demo"})


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"sdax.{name}")
    raise AttributeError(f"module 'sdax' has no attribute {name!r}")


__all__ = [
    "LoggingObserver",
    "PhaseFinished",
    "PhaseOutcome",
    "PhaseRetried",
    "PhaseStarted",
    "RunFinished",
    "RunObserver",
    "RunOutcome",
    "RunStarted",
    "ErrorInfo",
    "PhaseReport",
    "ReportRecorder",
    "RetryReport",
    "RunReport",
    "TaskReport",
    "Limit",
    "LimitUse",
    "AsyncDagLevelAdapterBuilder",
    "AsyncDagTaskProcessor",
    "AsyncDagTaskProcessorBuilder",
    "AsyncPhaseRunner",
    "AsyncTask",
    "CancelReason",
    "AsyncTaskProcessor",
    "CleanupAbandonedError",
    "DependencyCycleError",
    "ExecutionGraph",
    "ExecutionWave",
    "LevelBarrier",
    "PhaseCancelledError",
    "PhaseId",
    "RetryableException",
    "RunTimeoutError",
    "SdaxExecutionError",
    "SdaxTaskGroup",
    "TaskAnalysis",
    "TaskAnalyzer",
    "TaskFailure",
    "TaskFunction",
    "__version__",
    "flatten_exceptions",
    "join",
    "task",
    "task_func",
    "task_group_func",
    "task_group_task",
    "task_sync_func",
    "task_thread_func",
]
