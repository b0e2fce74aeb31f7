"""Compatibility facade: the names sdax 0.7.2 exported from `sdax.sdax_task_analyser`."""

from sdax.analysis import ExecutionGraph, ExecutionWave, TaskAnalysis, TaskAnalyzer

__all__ = ["ExecutionGraph", "ExecutionWave", "TaskAnalysis", "TaskAnalyzer"]
