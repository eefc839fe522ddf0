"""What can be exact, is: a cell's results do not depend on how many cells run beside it.

The same tiny grid (MNIST-5k, 200-image pool, 32 px EfficientNet-Lite0, one fine-tuning epoch:
a random, an svpp and an asvp cell) is run by `asvp-bench run` in a fresh process with the local
executor, once one cell at a time (``max_parallel: 1``) and once two at a time
(``max_parallel: 2``), each into its own SQLite store and feature store. Every cell computes
with the grid's ``compute.threads`` whichever way it runs, so the per-round selections and the
test accuracies must be bit-identical; with ``compute: {deterministic: true}`` too. No timing
is asserted.
"""

import pytest
from launching import cli, outcome, runs_of, write_grid
from mlflow.tracking import MlflowClient

GRID_NAME = "exact"


def run_grid(root, max_parallel, compute=""):
    """Run the tiny grid under ``root`` with the local executor; each cell's outcome (labelled
    order, test accuracy by round, per-round selections) and its run's params and tags, by run
    name."""
    root.mkdir()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    grid = write_grid(root, GRID_NAME, executor=f"{{kind: local, max_parallel: {max_parallel}}}")
    if compute:
        grid.write_text(grid.read_text() + f"compute: {compute}\n")
    done = cli("run", grid, "--tracking-uri", uri)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = runs_of(uri, GRID_NAME)
    client = MlflowClient(uri)
    return {
        name: (outcome(uri, run_id), client.get_run(run_id).data)
        for name, run_id in zip(runs["tags.mlflow.runName"], runs["run_id"], strict=True)
    }


@pytest.mark.parametrize(
    ("compute", "deterministic"),
    [("", "false"), ("{deterministic: true}", "true")],
    ids=["default", "deterministic"],
)
def test_a_cell_alone_and_beside_another_gives_identical_results(tmp_path, compute, deterministic):
    alone = run_grid(tmp_path / "alone", 1, compute)
    beside = run_grid(tmp_path / "beside", 2, compute)
    assert len(alone) == 3 and alone.keys() == beside.keys()
    for name, ((order, curve, rounds), data) in alone.items():
        assert data.params["compute.threads"] == "1"
        assert data.params["compute.deterministic"] == deterministic
        assert data.tags["run_key"] == beside[name][1].tags["run_key"]
        assert len(curve) == 3 and len(rounds) == 3, name
        assert (order, curve, rounds) == beside[name][0], name
