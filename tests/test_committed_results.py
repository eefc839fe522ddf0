"""Committed results are current: every ``results/<grid>/table2.csv`` in the repository was made
by this code's :data:`~benchmark.grid.RESULTS_VERSION` (the report writes it into the CSV), so a
reader never sees tables that the current code would not produce."""

from pathlib import Path

import pandas as pd
import pytest

from benchmark.grid import RESULTS_VERSION

RESULTS = Path(__file__).resolve().parents[1] / "results"
TABLES = sorted(RESULTS.glob("*/table2.csv"))


def test_the_repository_commits_results():
    assert TABLES, f"no results/*/table2.csv under {RESULTS}"


@pytest.mark.parametrize("table", TABLES, ids=[t.parent.name for t in TABLES])
def test_each_committed_table_was_made_by_this_results_version(table):
    versions = pd.read_csv(table).get("results_version")
    assert versions is not None, f"{table}: no results_version column (made before it existed)"
    assert set(versions) == {RESULTS_VERSION}, (
        f"{table}: made with results version(s) {sorted(set(versions))}, the code is at "
        f"{RESULTS_VERSION}: re-run the grid and its report"
    )
