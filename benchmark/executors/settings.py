"""How a grid's cells are run: :class:`ExecutorSettings`, the ``executor`` section of a grid file.

The settings live here, beside the executors that read them, with each field's range declared
next to it (:mod:`asvp.options`), so that the grid checker refuses a bad value with its range
before anything is submitted. This module imports nothing from the rest of the harness but
:mod:`benchmark.executors.kinds` (the standard library only): ``benchmark.grid`` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from asvp.options import Range
from benchmark.executors.kinds import EXECUTOR_KINDS, ExecutorKind

__all__ = ["EXECUTOR_KINDS", "ExecutorKind", "ExecutorSettings"]


@dataclass(frozen=True)
class ExecutorSettings:
    """How cells are run (``benchmark/executors/``); never part of a run key.

    ``max_parallel`` (local): cells run at once; None means the number of CPU cores. The other
    fields are the slurm executor's sbatch settings (None: not requested, the cluster's
    default); ``sbatch`` passes any other option by its long name without ``--``.
    ``array_parallelism``: the most tasks of one job array that SLURM runs at once (sbatch's
    ``--array=...%N``); a grid with more cells than the cluster's ``MaxArraySize`` is queued as
    several arrays, each throttled to it on its own.
    """

    kind: ExecutorKind = "local"
    max_parallel: Annotated[int | None, Range(ge=1)] = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: Annotated[int | None, Range(ge=0)] = None
    cpus_per_task: Annotated[int, Range(ge=1)] = 1
    mem_gb: Annotated[float | None, Range(gt=0)] = None
    time_min: Annotated[int, Range(ge=1)] = 60
    array_parallelism: Annotated[int, Range(ge=1)] = 256
    max_requeues: Annotated[int, Range(ge=0)] = 3
    signal_delay_s: Annotated[int, Range(ge=0)] = 120
    setup: tuple[str, ...] = ()
    sbatch: dict[str, str] = field(default_factory=dict)
