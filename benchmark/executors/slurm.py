"""The ``slurm`` executor: the cells as SLURM job arrays through submitit, one array per set of
resources (datasets may set their own: ``datasets[i].executor``), split into arrays the cluster
accepts (its ``MaxArraySize``: :func:`array_chunks`), each throttled to ``array_parallelism``
tasks at once; ``submit`` returns once the arrays are queued. Jobs log to
``<state_dir>/<grid>/slurm/``.

What only SLURM needs lives here too: its sbatch parameters, its preflight (``sbatch`` on this
machine, the partitions known to ``sinfo``, no SQLite store shared by nodes unless the grid
allows it) and how a cell's job stands (``squeue`` while queued or running, ``sacct`` once it
ended).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

import submitit

from benchmark.executors.base import Executor, LaunchError, Liveness, Problem, Submission
from benchmark.tracking import STATE_PENDING, record_submission

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from benchmark.executors.job import CellJob
    from benchmark.executors.settings import ExecutorSettings

__all__ = ["SlurmExecutor", "array_chunks", "job_states", "max_array_size"]

_T = TypeVar("_T")

# SLURM job states (squeue %T, sacct State) that still lead to the cell being run
_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
_WAITING |= {"CONFIGURING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT"}
_RUNNING = {"RUNNING", "COMPLETING"}


class SlurmExecutor(Executor):
    """SLURM job arrays through submitit, one per set of resources (datasets may set their
    own: ``datasets[i].executor``); returns once the arrays are queued."""

    kind = "slurm"
    scheduler = "SLURM"

    def submit(
        self, client: MlflowClient, jobs: list[CellJob], report: Callable[[Submission], None]
    ) -> list[Submission]:
        groups: dict[str, tuple[ExecutorSettings, list[CellJob]]] = {}
        for job in jobs:
            settings = self.grid.executor_for(job.cell.dataset_label, self.settings)
            groups.setdefault(repr(settings), (settings, []))[1].append(job)
        largest = max_array_size()
        submissions = []
        for settings, members in groups.values():
            for chunk in array_chunks(members, largest):
                submissions += self._submit_array(client, settings, chunk, report)
        return submissions

    def _submit_array(
        self,
        client: MlflowClient,
        settings: ExecutorSettings,
        jobs: list[CellJob],
        report: Callable[[Submission], None],
    ) -> list[Submission]:
        """Queue ``jobs`` as one array (a single job when there is one), throttled by submitit
        to ``array_parallelism`` tasks at once (sbatch's ``--array=0-<n-1>%<N>``)."""
        folder = self.grid.cell_state_dir.resolve() / "slurm" / "%j"
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=settings.max_requeues)
        executor.update_parameters(**self.sbatch_parameters(settings))
        with executor.batch():
            handles = [executor.submit(job) for job in jobs]
        submissions = []
        for job, handle in zip(jobs, handles, strict=True):
            log = str(handle.paths.stdout)
            record_submission(client, job.run_id, self.kind, handle.job_id, log)
            submissions.append(Submission(job.cell, job.run_id, handle.job_id, log, STATE_PENDING))
            report(submissions[-1])
        return submissions

    def sbatch_parameters(self, settings: ExecutorSettings | None = None) -> dict[str, object]:
        """submitit's SlurmExecutor parameters from executor settings (default: the grid's)."""
        s = settings or self.settings
        parameters: dict[str, object] = {
            "job_name": f"asvp-{self.grid.name}",
            "time": s.time_min,
            "cpus_per_task": s.cpus_per_task,
            "array_parallelism": s.array_parallelism,
            "signal_delay_s": s.signal_delay_s,
            "setup": list(s.setup),
            "additional_parameters": dict(s.sbatch),
        }
        optional = {
            "partition": s.partition,
            "account": s.account,
            "qos": s.qos,
            "constraint": s.constraint,
            "gpus_per_node": s.gpus_per_node,
            "mem": f"{round(s.mem_gb * 1024)}M" if s.mem_gb is not None else None,
        }
        parameters.update({k: v for k, v in optional.items() if v is not None})
        return parameters

    # ----------------------------------------------------------------------------------------
    # Preflight
    # ----------------------------------------------------------------------------------------

    @classmethod
    def check_tracking(cls, tracking_uri: str, allow_sqlite: bool) -> None:
        """Refuse a SQLite store unless the grid allows it (``docs/design.md``): one SQLite file
        written by jobs on many nodes over a network file system corrupts or locks."""
        if tracking_uri.startswith("sqlite:") and not allow_sqlite:
            raise LaunchError(
                "the slurm executor needs an MLflow server, not the SQLite store "
                f"{tracking_uri!r}: start one with `asvp-bench mlflow-server --store <shared "
                "dir>` and set MLFLOW_TRACKING_URI (or tracking.uri) to its address; on a "
                "single-node cluster set tracking.allow_sqlite: true in the grid"
            )

    def problems(self) -> list[Problem]:
        """``sbatch`` on this machine's PATH, every partition the grid names known to
        ``sinfo``, and jobs given at least the cells' ``compute.threads`` CPUs."""
        problems = self._thread_problems()
        if shutil.which("sbatch") is None:
            return [
                Problem(
                    "SLURM's sbatch is not on this machine's PATH",
                    "PATH",
                    "run from a SLURM submit host, or on one machine with EXECUTOR=local "
                    "(asvp-bench run --executor local)",
                ),
                *problems,
            ]
        for partition in sorted({s.partition for s in self._dataset_settings().values()} - {None}):
            found = subprocess.run(
                ["sinfo", "-h", "-p", partition, "-o", "%P"], capture_output=True, text=True
            )
            if not found.stdout.strip():
                problems.append(
                    Problem(
                        f"SLURM partition {partition!r} is unknown to this cluster",
                        "sinfo",
                        "set executor.partition (or the dataset's executor.partition) to one "
                        "of `sinfo -h -o %P`",
                    )
                )
        return problems

    def _thread_problems(self) -> list[Problem]:
        """The datasets whose jobs get fewer CPUs than the cells' ``compute.threads``: those
        cells would fail at start, since a cell never computes with more threads than the CPUs
        it is given (:func:`asvp.compute.compute_settings`), and never silently with fewer
        (the thread count is part of its run key)."""
        threads = self.grid.compute.threads
        short = {
            name: s.cpus_per_task
            for name, s in self._dataset_settings().items()
            if s.cpus_per_task < threads
        }
        if not short:
            return []
        return [
            Problem(
                f"compute.threads is {threads} but SLURM CPUs per task are "
                + ", ".join(f"{k} {v}" for k, v in short.items())
                + ": those cells would fail at start",
                "executor.cpus_per_task",
                "raise executor.cpus_per_task (or the dataset's) to at least compute.threads",
            )
        ]

    def notes(self) -> list[str]:
        """The GPUs each dataset's jobs ask for."""
        gpus = {name: s.gpus_per_node or 0 for name, s in self._dataset_settings().items()}
        return ["SLURM GPUs per job: " + ", ".join(f"{k} {v}" for k, v in gpus.items())]

    def _dataset_settings(self) -> dict[str, ExecutorSettings]:
        """Each dataset's settings (by label): the grid's, with what the dataset sets for itself."""
        return {
            spec.label: self.grid.executor_for(spec.label, self.settings)
            for spec in self.grid.datasets
        }

    # ----------------------------------------------------------------------------------------
    # Liveness
    # ----------------------------------------------------------------------------------------

    @classmethod
    def liveness(cls, runs: Sequence[Run]) -> dict[str, Liveness]:
        """A cell is alive while SLURM still holds its job (queued, requeued, running); a run
        with no job id yet (its driver is submitting it) is alive while the driver is."""
        queued = [run for run in runs if run.data.tags.get("job_id")]
        found = super().liveness([run for run in runs if not run.data.tags.get("job_id")])
        states = job_states(run.data.tags["job_id"] for run in queued)
        for run in queued:
            found[run.info.run_id] = _job_liveness(run.data.tags["job_id"], states)
        return found


def max_array_size(config: str | None = None) -> int | None:
    """The cluster's ``MaxArraySize`` from ``scontrol show config`` (its text, or asked here);
    None when ``scontrol`` is missing or fails, or its output does not say."""
    if config is None:
        try:
            out = subprocess.run(
                ["scontrol", "show", "config"], capture_output=True, text=True, timeout=60
            )
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return None
        if out.returncode != 0:
            return None
        config = out.stdout
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)\s*$", config, re.MULTILINE)
    return int(found.group(1)) if found else None


def array_chunks(items: Sequence[_T], max_size: int | None) -> list[list[_T]]:
    """``items`` in order, cut into consecutive arrays that SLURM accepts. An array's task
    indices run from 0 and must be below ``MaxArraySize`` (``max_size``), so an array holds
    at most ``max_size`` tasks; 0 (job arrays disabled) gives one job per item, None (the
    limit is unknown) one array."""
    if not items:
        return []
    size = len(items) if max_size is None else max(max_size, 1)
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def _job_liveness(job_id: str, states: dict[str, str] | None) -> Liveness:
    if states is None:
        return Liveness("pending", False, "SLURM not reachable here (squeue/sacct missing)")
    state = states.get(job_id)
    if state in _WAITING:
        return Liveness("pending", True, f"job {state.lower()}")
    if state in _RUNNING:
        return Liveness("running", True, f"job {state.lower()}")
    if state is None:
        return Liveness("failed", False, "job unknown to SLURM and the run did not finish")
    return Liveness("failed", False, f"job {state.lower()} before the run finished")


def job_states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """SLURM's state of each job id (``123`` or array task ``123_4``): ``squeue`` for jobs it
    still holds, ``sacct`` (the latest record: a requeued job has one per start) for the rest.
    None when neither command exists on this machine."""
    wanted = set(job_ids)
    if not wanted:
        return {}
    parents = sorted({job_id.split("_")[0] for job_id in wanted})
    states: dict[str, str] = {}
    found_any_command = False
    for command in (
        ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(parents)],
        ["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(parents)],
    ):  # squeue last: it is the more current for jobs that are still queued or running
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            continue
        found_any_command = True
        if out.returncode != 0:
            continue
        for line in out.stdout.splitlines():
            job_id, _, state = line.partition("|")
            if job_id in wanted and state:
                states[job_id] = state.split()[0].rstrip("+")
    return states if found_any_command else None
