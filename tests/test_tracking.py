"""MLflow tracking against a real SQLite store, written and read back through MLflow's API."""

import multiprocessing

from mlflow.tracking import MlflowClient

from benchmark.tracking import experiment_id


def _create(uri, barrier, results):
    import os

    os.environ["MLFLOW_TRACKING_URI"] = uri
    client = MlflowClient()
    client.search_experiments()  # connect (and migrate) before the race starts
    barrier.wait()
    results.put(experiment_id(client, "raced"))


def test_processes_racing_to_create_an_experiment_all_get_the_same_one(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # the tables exist, the experiment does not
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_create, args=(uri, barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    ids = {results.get(timeout=5) for _ in workers}
    assert ids == {MlflowClient(uri).get_experiment_by_name("raced").experiment_id}
