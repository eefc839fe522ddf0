"""The grid's index of finished cells: one experiment tag per finished run key, so that ``status``
and ``run`` learn which cells are finished without reading every run in full
(:mod:`benchmark.tracking`).

Why: MLflow's ``search_runs`` answers with every param, tag and latest metric of each run. A
finished cell carries about 120 of them, so reading a 1,000-cell grid in full moves about 11 MB
and 120,000 rows through the server: 5 of the 7.5 seconds ``status`` took at 990 cells. A
finished run no longer changes, except by being superseded or deleted. What status and
resumption need of it (its id, start time, run key, attempts, job and log) is therefore kept in
the experiment tag ``asvp.finished.<run key>`` (:func:`record_finished`), and arrives with the
experiment in one small request.

The index is never ahead of the runs: an entry is written only after its run's ``state`` tag
says ``finished``. Readers (:func:`indexed_current_runs`) search the runs themselves for
everything an entry cannot vouch for:

- runs not finished (pending, running, failed, killed, superseded), read in full: a run
  overrules its own entry (a superseded run's entry no longer counts);
- finished runs without an entry (written before the index existed, or by a job that stopped
  between its two writes): the finished runs whose ids are not in the index;
- deleted runs (the MLflow UI's delete): their entries are dropped.

So the answer equals :func:`benchmark.tracking.current_runs`'s, from one experiment read and a
few searches (one more per 1,000 finished cells) that are small once a grid is finished. Runs
without a ``state`` tag (never written by asvp-bench) are not seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from mlflow.entities import Experiment, Run, RunData, RunInfo, RunTag, ViewType
from mlflow.tracking import MlflowClient

from benchmark.tracking.queries import newest_per_key, paged_runs, quoted_ids
from benchmark.tracking.states import STATE_FINISHED, STATE_SUPERSEDED, run_state

FINISHED_TAG_PREFIX = "asvp.finished."
"""The experiment tag of a finished cell is this prefix and the cell's run key."""
INDEXED_TAGS = ("run_key", "state", "attempts", "job_id", "log_path", "executor")
"""The run tags an entry keeps: what status shows of a finished cell."""
IDS_PER_FILTER = 1000
"""The most run ids one search filter excludes: MLflow parses a filter with sqlparse, which
refuses a group of more than 10,000 tokens (about 3,300 quoted ids)."""


def record_finished(client: MlflowClient, run_id: str) -> None:
    """Enter the run into its grid's index of finished cells if its ``state`` tag says
    finished (as stored: the index never runs ahead of the run); otherwise do nothing."""
    run = client.get_run(run_id)
    tags = run.data.tags
    if run_state(run) != STATE_FINISHED or "run_key" not in tags:
        return
    entry = {
        "run_id": run.info.run_id,
        "start_time": run.info.start_time,
        "tags": {key: tags[key] for key in INDEXED_TAGS if key in tags},
    }
    key = FINISHED_TAG_PREFIX + tags["run_key"]
    client.set_experiment_tag(run.info.experiment_id, key, json.dumps(entry, separators=(",", ":")))


def finished_entries(experiment: Experiment) -> dict[str, Run]:
    """By run id, the experiment's indexed finished runs, each as a :class:`~mlflow.entities.Run`
    holding only what its entry keeps: run id, start time, status FINISHED and the
    :data:`INDEXED_TAGS` (no params, no metrics). An entry that does not parse is skipped (the
    searches of :func:`indexed_current_runs` find its run)."""
    runs = {}
    for key, value in experiment.tags.items():
        if not key.startswith(FINISHED_TAG_PREFIX):
            continue
        try:
            entry = json.loads(value)
            run = _entry_run(experiment.experiment_id, entry)
        except (ValueError, KeyError, TypeError):
            continue
        runs[run.info.run_id] = run
    return runs


def _entry_run(experiment_id: str, entry: dict) -> Run:
    info = RunInfo(
        run_id=str(entry["run_id"]),
        experiment_id=experiment_id,
        user_id="",
        status="FINISHED",
        start_time=int(entry["start_time"]),
        end_time=None,
        lifecycle_stage="active",
    )
    tags = [RunTag(str(key), str(value)) for key, value in dict(entry["tags"]).items()]
    return Run(info, RunData(tags=tags))


def indexed_current_runs(client: MlflowClient, grid_name: str) -> dict[str, Run]:
    """Per run key, the run that status and resumption look at (the newest not superseded, as
    :func:`benchmark.tracking.current_runs`), read through the index of finished cells: a
    finished run comes as :func:`finished_entries` gives it (its indexed tags only), any other
    run in full."""
    experiment = client.get_experiment_by_name(grid_name)
    if experiment is None:
        return {}
    experiment_id = experiment.experiment_id
    indexed = finished_entries(experiment)
    unfinished = paged_runs(client, experiment_id, f"tags.state != '{STATE_FINISHED}'")
    deleted = paged_runs(client, experiment_id, view=ViewType.DELETED_ONLY)
    runs = dict(indexed)
    for run in deleted:
        runs.pop(run.info.run_id, None)
    for run in [*unfinished, *_finished_without_entry(client, experiment_id, indexed)]:
        runs[run.info.run_id] = run  # a run overrules its entry
    ordered = sorted(runs.values(), key=lambda run: (run.info.start_time, run.info.run_id))
    return newest_per_key(ordered, lambda run: run_state(run) != STATE_SUPERSEDED)


def _finished_without_entry(
    client: MlflowClient, experiment_id: str, indexed: dict[str, Run]
) -> Iterator[Run]:
    """The experiment's finished runs that have no entry. The indexed runs, by start time, are
    cut into groups of :data:`IDS_PER_FILTER`; each group's search covers the start times from
    its first run's to the next group's first (the first from the beginning, the last to the
    end) and excludes the group's ids. Every run's start time is in one window, so each run
    without an entry is found once; an indexed run whose start time ties with the next
    group's first is found too, and merely read in full."""
    ordered = sorted(indexed.values(), key=lambda run: run.info.start_time)
    groups = [ordered[i : i + IDS_PER_FILTER] for i in range(0, len(ordered), IDS_PER_FILTER)]
    for number, group in enumerate(groups or [[]]):
        query = [f"tags.state = '{STATE_FINISHED}'"]
        if number > 0:
            query.append(f"attributes.start_time >= {group[0].info.start_time}")
        if number + 1 < len(groups):
            query.append(f"attributes.start_time < {groups[number + 1][0].info.start_time}")
        if group:
            ids = quoted_ids(run.info.run_id for run in group)
            query.append(f"attributes.run_id NOT IN ({ids})")
        yield from paged_runs(client, experiment_id, " AND ".join(query))
