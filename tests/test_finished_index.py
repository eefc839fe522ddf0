"""The grid's index of finished cells (:mod:`benchmark.tracking.finished_index`): what status and
resumption read through it equals the full read of every run, whatever the runs went through
(never indexed, superseded, re-run, deleted), and a finished grid is answered without reading
any run in full."""

import json
import uuid

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.search_utils import SearchUtils

from benchmark.grid import expand_cells, load_grid
from benchmark.status import cell_statuses
from benchmark.tracking import (
    FINISHED_TAG_PREFIX,
    STATE_FAILED,
    STATE_FINISHED,
    STATE_PENDING,
    current_runs,
    finished_index,
    indexed_current_runs,
    record_finished,
    supersede,
)
from benchmark.tracking.queries import quoted_ids
from perf.harness_grid import write_grid
from perf.harness_load import generate

GRID = "indexed"


class _Runs:
    """Runs of one experiment, made one after another (start times strictly increase)."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.experiment = client.create_experiment(GRID)
        self.clock = 1_000

    def make(
        self, key: str, state: str, indexed: bool = False, same_time: bool = False, **tags: str
    ) -> str:
        self.clock += 0 if same_time else 1
        all_tags = {"run_key": key, "state": state, **tags}
        run = self.client.create_run(self.experiment, start_time=self.clock, tags=all_tags)
        run_id = run.info.run_id
        self.client.log_param(run_id, "lr", "0.1")  # what a full read carries, the index not
        if indexed:
            record_finished(self.client, run_id)
        return run_id


def _by_key(runs):
    return {key: (run.info.run_id, run.data.tags["state"]) for key, run in runs.items()}


@pytest.fixture
def client(tmp_path):
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_the_index_answers_as_reading_every_run_does(client):
    runs = _Runs(client)
    done = {"attempts": "2", "job_id": "77_3", "log_path": "/logs/a.log", "executor": "slurm"}
    finished = runs.make("a", STATE_FINISHED, indexed=True, **done)
    runs.make("b", STATE_FINISHED)  # finished before the index existed: never entered
    runs.make("c", STATE_PENDING)
    runs.make("d", STATE_FINISHED, indexed=True)
    forced = runs.make("d", STATE_PENDING)  # run --force: the newer run is the current one
    old = runs.make("e", STATE_FINISHED, indexed=True)
    runs.make("e", STATE_FINISHED)  # finished, but stopped before entering itself
    supersede(client, old, "newer")  # the entry of "e" still names the superseded run
    deleted = runs.make("f", STATE_FINISHED, indexed=True)
    client.delete_run(deleted)  # the MLflow UI's delete: the cell is to run again
    runs.make("g", STATE_FAILED)
    runs.make("g", STATE_FINISHED, indexed=True)
    runs.make("h", STATE_FINISHED, indexed=True)
    runs.make("h", STATE_FAILED)  # a later attempt failed: the cell is failed

    indexed = indexed_current_runs(client, GRID)
    assert _by_key(indexed) == _by_key(current_runs(client, GRID))
    assert sorted(indexed) == ["a", "b", "c", "d", "e", "g", "h"]
    assert indexed["d"].info.run_id == forced
    assert indexed["a"].info.run_id == finished
    assert {k: indexed["a"].data.tags[k] for k in done} == done
    assert indexed["a"].data.params == {}  # from the index: its tags only
    assert indexed["c"].data.params == {"lr": "0.1"}  # not finished: read in full


def test_a_large_index_is_searched_a_group_of_ids_at_a_time(client, monkeypatch):
    """Groups of 2 ids (as of 1,000 in a real grid), start times shared across groups: each
    finished run without an entry is still found, and the answer is the full read's."""
    monkeypatch.setattr(finished_index, "IDS_PER_FILTER", 2)
    runs = _Runs(client)
    missing = []
    for number in range(9):
        same_time = number % 3 != 0  # three runs per start time
        runs.make(f"i{number}", STATE_FINISHED, indexed=True, same_time=same_time)
        missing.append(runs.make(f"m{number}", STATE_FINISHED, same_time=True))
    indexed = indexed_current_runs(client, GRID)
    assert _by_key(indexed) == _by_key(current_runs(client, GRID))
    assert len(indexed) == 18
    assert {indexed[f"m{n}"].info.run_id for n in range(9)} == set(missing)


def test_a_group_of_ids_is_a_filter_mlflow_parses():
    ids = quoted_ids(uuid.uuid4().hex for _ in range(finished_index.IDS_PER_FILTER))
    query = f"tags.state = 'finished' AND attributes.run_id NOT IN ({ids})"
    assert len(SearchUtils.parse_search_filter(query)) == 2


def test_only_a_finished_run_is_entered(client):
    runs = _Runs(client)
    pending = runs.make("a", STATE_PENDING)
    record_finished(client, pending)
    finished = runs.make("b", STATE_FINISHED, indexed=True)
    tags = client.get_experiment(runs.experiment).tags
    entries = {k: json.loads(v) for k, v in tags.items() if k.startswith(FINISHED_TAG_PREFIX)}
    assert list(entries) == [f"{FINISHED_TAG_PREFIX}b"]
    assert entries[f"{FINISHED_TAG_PREFIX}b"]["run_id"] == finished


def test_an_entry_that_does_not_parse_is_left_to_the_searches(client):
    runs = _Runs(client)
    run_id = runs.make("a", STATE_FINISHED)
    client.set_experiment_tag(runs.experiment, f"{FINISHED_TAG_PREFIX}a", "{not json")
    assert _by_key(indexed_current_runs(client, GRID)) == {"a": (run_id, STATE_FINISHED)}


class _CountingClient(MlflowClient):
    """Counts the runs that searches answered with in full."""

    read_in_full = 0

    def search_runs(self, *args, **kwargs):
        page = super().search_runs(*args, **kwargs)
        self.read_in_full += len(page)
        return page


def test_a_finished_grid_is_answered_without_reading_a_run_in_full(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid_path = write_grid(tmp_path, datasets=1, seeds=1, strategies=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert generate(grid_path, uri) == 6  # through CellLogger, as real cells finish
    grid = load_grid(grid_path)
    client = _CountingClient(uri)
    statuses = cell_statuses(client, grid, expand_cells(grid))
    assert [s.state for s in statuses] == ["finished"] * 6
    assert all(s.log_path for s in statuses)
    assert client.read_in_full == 0
    assert len(current_runs(client, grid.name)) == 6
    assert client.read_in_full == 6
