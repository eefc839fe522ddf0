"""The executors' old home, kept so that ``benchmark.launch`` names still import: the code is
in :mod:`benchmark.executors` (``base``, ``job``, ``debug``, ``local``, ``slurm``,
``registry``)."""

from benchmark.executors.base import Executor, LaunchError, Submission
from benchmark.executors.debug import DebugExecutor
from benchmark.executors.job import (
    CellJob,
    checkpoint_dir,
    cpu_count,
    device_kind,
    prepare_jobs,
    submission_lock,
)
from benchmark.executors.local import LocalExecutor
from benchmark.executors.registry import EXECUTOR_CLASSES, check_tracking, make_executor
from benchmark.executors.settings import EXECUTOR_KINDS, ExecutorSettings
from benchmark.executors.slurm import SlurmExecutor

__all__ = [
    "EXECUTOR_CLASSES",
    "EXECUTOR_KINDS",
    "CellJob",
    "DebugExecutor",
    "Executor",
    "ExecutorSettings",
    "LaunchError",
    "LocalExecutor",
    "SlurmExecutor",
    "Submission",
    "check_tracking",
    "checkpoint_dir",
    "cpu_count",
    "device_kind",
    "make_executor",
    "prepare_jobs",
    "submission_lock",
]
