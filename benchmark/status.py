"""Where each cell of a grid stands: pending, running, finished or failed, with job and log.

Two sources are combined: the cell's current MLflow run (:func:`benchmark.tracking.current_runs`:
its ``state`` tag, and the ``job_id``, ``log_path``, ``host``, ``pid`` and ``driver`` tags) and
the process that should be running it: the SLURM job (``squeue`` while it is queued or running,
``sacct`` once it ended) or, for the local executors, the process on this host.

=====================  ==============================  ====================================
run state              job or process                  status
=====================  ==============================  ====================================
no run                 -                               pending (never submitted)
finished               -                               finished
failed                 -                               failed (the error's last line)
pending or running     queued, requeued, held          pending (live)
pending or running     running                         running (live)
pending or running     ended, gone or cancelled        failed (what happened to the job)
=====================  ==============================  ====================================

A cell is *live* while a job or process exists that will run it: ``run`` never submits a live
cell again, so a grid re-submitted while its jobs are queued does not duplicate them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from benchmark.grid import Cell, Grid
from benchmark.tracking import (
    STATE_FAILED,
    STATE_FINISHED,
    STATE_RUNNING,
    current_runs,
    run_state,
)

STATES = ("pending", "running", "finished", "failed")
# SLURM job states (squeue %T, sacct State) that still lead to the cell being run
_SLURM_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
_SLURM_WAITING |= {"CONFIGURING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT"}
_SLURM_RUNNING = {"RUNNING", "COMPLETING"}
_ENDED = (STATE_FINISHED, STATE_FAILED)  # run states after which the job no longer matters


@dataclass(frozen=True)
class CellStatus:
    """One cell's state, its current run (None: never submitted) and whether a job or process
    exists that will run it (``live``); ``detail`` says why, in words."""

    cell: Cell
    state: str
    run: Run | None
    job_id: str | None
    log_path: str | None
    live: bool
    detail: str

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run is not None else None


def cell_statuses(client: MlflowClient, grid: Grid, cells: list[Cell]) -> list[CellStatus]:
    """The status of every cell, in the order given (one MLflow query, one per scheduler)."""
    runs = current_runs(client, grid.name)
    slurm_ids = [
        run.data.tags.get("job_id", "")
        for run in runs.values()
        if run.data.tags.get("executor") == "slurm" and run_state(run) not in _ENDED
    ]
    jobs = slurm_job_states(filter(None, slurm_ids))
    return [_status(cell, runs.get(cell.run_key), jobs) for cell in cells]


def _status(cell: Cell, run: Run | None, jobs: dict[str, str] | None) -> CellStatus:
    if run is None:
        return CellStatus(cell, "pending", None, None, None, False, "never submitted")
    tags = run.data.tags
    job_id, log_path = tags.get("job_id") or None, tags.get("log_path") or None

    def status(state: str, live: bool, detail: str) -> CellStatus:
        return CellStatus(cell, state, run, job_id, log_path, live, detail)

    state = run_state(run)
    if state == STATE_FINISHED:
        return status("finished", False, f"attempts: {tags.get('attempts', '1')}")
    if state == STATE_FAILED:
        return status("failed", False, tags.get("error", "failed"))
    if tags.get("executor") == "slurm" and job_id:
        return _slurm_status(status, job_id, jobs)
    return _local_status(status, tags)


def _slurm_status(
    status: Callable[[str, bool, str], CellStatus], job_id: str, jobs: dict[str, str] | None
) -> CellStatus:
    if jobs is None:
        return status("pending", False, "SLURM not reachable here (squeue/sacct missing)")
    job_state = jobs.get(job_id)
    if job_state in _SLURM_WAITING:
        return status("pending", True, f"job {job_state.lower()}")
    if job_state in _SLURM_RUNNING:
        return status("running", True, f"job {job_state.lower()}")
    if job_state is None:
        return status("failed", False, "job unknown to SLURM and the run did not finish")
    return status("failed", False, f"job {job_state.lower()} before the run finished")


def _local_status(status: Callable[[str, bool, str], CellStatus], tags: dict) -> CellStatus:
    """A cell of the local or debug executor: live while its process (running) or the driver
    that will start it (pending) is alive on this host."""
    running = tags.get("state") == STATE_RUNNING
    if running:
        host, pid = tags.get("host", ""), tags.get("pid", "")
    else:
        host, _, pid = tags.get("driver", "").partition(":")
    if host != socket.gethostname():
        return status(tags.get("state", "pending"), False, f"on host {host or 'unknown'}")
    if pid.isdigit() and _process_alive(int(pid)):
        return status("running" if running else "pending", True, f"pid {pid}")
    if running:
        return status("failed", False, f"process {pid} is gone and the run did not finish")
    return status("pending", False, "submitted, but its driver is gone")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def slurm_job_states(job_ids: Iterable[str]) -> dict[str, str] | None:
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


def count_states(statuses: Iterable[CellStatus]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for status in statuses:
        counts[status.state] += 1
    return counts


def wait_until_done(
    client: MlflowClient,
    grid: Grid,
    cells: list[Cell],
    poll_seconds: float,
    on_change: Callable[[CellStatus], None],
) -> list[CellStatus]:
    """Poll until no cell of ``cells`` is live; ``on_change`` gets each change of state."""
    seen: dict[str, str] = {}
    while True:
        statuses = cell_statuses(client, grid, cells)
        for status in statuses:
            if seen.get(status.cell.run_key) != status.state:
                seen[status.cell.run_key] = status.state
                on_change(status)
        if not any(status.live for status in statuses):
            return statuses
        time.sleep(poll_seconds)
