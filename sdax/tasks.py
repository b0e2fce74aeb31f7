"""Compatibility facade: the declarations and helpers, as `sdax.tasks` exported them."""

from sdax.actors.task_group import SdaxTaskGroup
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
from sdax.errors import RetryableException
from sdax.limits import Limit, LimitUse

__all__ = [
    "Limit",
    "LimitUse",
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
    "task_thread_func",
]
