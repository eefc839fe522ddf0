"""The names the command line needs before anything is imported: executor kinds and cell
states. Standard library only, so that ``asvp-bench --help`` lists them at once."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["CELL_STATES", "EXECUTOR_KINDS", "ExecutorKind"]

ExecutorKind = Literal["debug", "local", "slurm"]
"""The executor kinds: in-process (``debug``), local processes (``local``), SLURM (``slurm``)."""

EXECUTOR_KINDS: tuple[str, ...] = get_args(ExecutorKind)

CELL_STATES = ("pending", "running", "finished", "failed", "killed")
"""Where a cell can stand (``asvp-bench status``); ``killed``: stopped by a signal (Ctrl-C,
SIGTERM) with its round checkpoint kept, resumed by the next ``run``."""
