"""Compatibility facade: the names sdax 0.7.2 exported from `sdax.sdax_task_analyser`."""

from sdax.analysis import ExecutionGraph, ExecutionWave, TaskAnalysis, TaskAnalyzer
from sdax.declarations import AsyncTask

__all__ = ["AsyncTask", "ExecutionGraph", "ExecutionWave", "TaskAnalysis", "TaskAnalyzer"]
