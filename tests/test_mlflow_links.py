"""The MLflow UI link printed by ``run`` and ``report`` opens the runs table (MLflow 3.17 opens
experiments in its GenAI view unless the link asks for the model-training one)."""

from __future__ import annotations

from benchmark.mlflow_links import browse_hint, experiment_link


def test_a_local_store_is_browsed_with_mlflow_ui():
    hint = browse_hint("sqlite:////work/mlflow.db", "3")
    assert "mlflow ui --backend-store-uri sqlite:////work/mlflow.db" in hint
    assert hint.endswith("http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning")


def test_a_tracking_server_is_linked_directly():
    link = experiment_link("http://head-node:5000/", "12")
    assert link == "http://head-node:5000/#/experiments/12?workflowType=machine_learning"
    assert browse_hint("http://head-node:5000", "12") == f"MLflow: {link}"
