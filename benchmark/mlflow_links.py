"""Where to look at a grid's runs in the MLflow UI, printed by ``run`` and ``report``.

Experiments are tagged as model-training experiments (:data:`benchmark.tracking.EXPERIMENT_KIND`),
but MLflow 3.17's UI opens every experiment in its GenAI view (a "Traces" overview) whatever the
tag says: the view follows a GenAI / Model training switch that the browser stores, GenAI by
default. A link with ``?workflowType=machine_learning`` opens the experiment on its runs table
(and flips the switch for later visits), so that is the link we print.
"""

from __future__ import annotations

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def _served(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def experiment_link(tracking_uri: str, experiment_id: str) -> str:
    """The UI address of an experiment's runs table: on the tracking server itself when the
    store is one, else where ``mlflow ui`` serves a local store."""
    base = tracking_uri.rstrip("/") if _served(tracking_uri) else LOCAL_UI
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"


def browse_hint(tracking_uri: str, experiment_id: str) -> str:
    """One line: how to open the grid's runs in the MLflow UI."""
    link = experiment_link(tracking_uri, experiment_id)
    if _served(tracking_uri):
        return f"MLflow: {link}"
    return f"MLflow: mlflow ui --backend-store-uri {tracking_uri}, then open {link}"
