"""What the MLflow UI shows (issue 16): experiments declare themselves model-training
experiments, run names lead with what differs between cells (pipeline, strategy, seed) and
the dataset and backbone are tags; on a real SQLite store, through MLflow's API."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmark.grid import expand_cells, load_grid
from benchmark.grid.cells import RUN_NAME_SEPARATOR
from benchmark.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, experiment_id, open_run

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
KIND = "mlflow.experimentKind"


@pytest.fixture
def client(tmp_path):
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_the_kind_is_the_one_the_mlflow_ui_reads():
    assert (EXPERIMENT_KIND_TAG, EXPERIMENT_KIND) == (KIND, "custom_model_development")


def test_a_new_experiment_is_created_as_a_model_training_experiment(client):
    found = client.get_experiment(experiment_id(client, "fresh"))
    assert found.name == "fresh"
    assert found.tags[KIND] == "custom_model_development"


@pytest.mark.parametrize("before", [None, "genai_development"])
def test_an_existing_experiment_is_tagged_when_a_grid_uses_it(client, before):
    tags = {} if before is None else {KIND: before}
    made = client.create_experiment("older", tags=tags)
    assert client.get_experiment(made).tags.get(KIND) == before
    assert experiment_id(client, "older") == made
    assert client.get_experiment(made).tags[KIND] == "custom_model_development"
    assert experiment_id(client, "older") == made  # again: still one experiment, same tag
    assert len(client.search_experiments(filter_string="name = 'older'")) == 1


@pytest.mark.parametrize(
    "grid_file", ["demo.yaml", "strategies.yaml", "table2.yaml", "own-data.yaml"]
)
def test_run_names_lead_with_pipeline_strategy_seed_and_are_unique(grid_file):
    cells = expand_cells(load_grid(EXPERIMENTS / grid_file))
    names = [cell.run_name for cell in cells]
    assert len(set(names)) == len(names)
    for cell in cells:
        lead = f"{cell.pipeline_label}/{cell.strategy_label}/s{cell.config.seed}"
        assert cell.run_name == f"{lead}{RUN_NAME_SEPARATOR}{cell.dataset_label}"
        assert cell.config.backbone not in cell.run_name
    # what the runs table shows of a long name (its start) tells a dataset's cells apart
    for label in {cell.dataset_label for cell in cells}:
        leads = [c.run_name.split(RUN_NAME_SEPARATOR)[0] for c in cells if c.dataset_label == label]
        assert len(set(leads)) == len(leads)


def test_runs_carry_dataset_label_and_backbone_as_tags(client):
    grid = load_grid(EXPERIMENTS / "own-data.yaml")
    cells = [cell for cell in expand_cells(grid) if cell.config.seed == 0][:2]
    cells += [cell for cell in expand_cells(grid) if cell.dataset_label == "parts"][:1]
    ids = [open_run(client, grid.name, cell, None, fresh=False) for cell in cells]
    experiment = client.get_experiment_by_name(grid.name)
    assert experiment.tags[KIND] == "custom_model_development"
    for cell, run_id in zip(cells, ids, strict=True):
        run = client.get_run(run_id)
        assert run.info.run_name == cell.run_name
        tags = run.data.tags
        assert tags["dataset"] == "imagefolder"
        assert tags["dataset_label"] == cell.dataset_label
        assert tags["backbone"] == "efficientnet_lite0"
        assert (tags["pipeline"], tags["strategy"]) == (cell.config.pipeline, cell.config.strategy)
    parts = client.search_runs(
        [experiment.experiment_id], filter_string="tags.dataset_label = 'parts'"
    )
    assert [run.info.run_name for run in parts] == ["random-ft/random/s0 · parts"]


def test_a_run_is_scheduled_until_its_job_starts_and_records_the_overrides(tmp_path, client):
    path = tmp_path / "demo.yaml"
    path.write_text((EXPERIMENTS / "demo.yaml").read_text())
    grid = load_grid(path, ["seeds=[0]", "executor.max_parallel=1"])
    cell = expand_cells(grid)[0]
    run_id = open_run(client, grid.name, cell, None, fresh=False, overrides=grid.overrides)
    run = client.get_run(run_id)
    assert run.info.status == "SCHEDULED"  # not RUNNING: nothing computes it yet
    assert run.data.tags["overrides"] == "seeds=[0] executor.max_parallel=1"
    client.set_terminated(run_id, status="KILLED")
    again = open_run(client, grid.name, cell, client.get_run(run_id), fresh=False)
    assert again == run_id  # resumed, not duplicated
    run = client.get_run(run_id)
    assert run.info.status == "SCHEDULED" and run.data.tags["overrides"] == ""
