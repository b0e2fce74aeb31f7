"""Compatibility facade: what 0.7.2's `sdax.tasks` exported, and only that.

Names added since (limits, `task_thread_func`) are imported from `sdax`.
"""

from sdax.declarations import (
    AsyncTask,
    TaskFunction,
    join,
    task,
    task_func,
    task_group_func,
    task_group_task,
    task_sync_func,
)
from sdax.errors import RetryableException
from sdax.task_group import SdaxTaskGroup

__all__ = [
    "AsyncTask",
    "RetryableException",
    "SdaxTaskGroup",
    "TaskFunction",
    "join",
    "task",
    "task_func",
    "task_group_func",
    "task_group_task",
    "task_sync_func",
]
