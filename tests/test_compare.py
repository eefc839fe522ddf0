"""``asvp-bench compare``: two SQLite MLflow stores holding the same tiny grid's finished runs,
written through the project's own tracking code (:func:`benchmark.tracking.open_run`,
:class:`benchmark.tracking.CellLogger`) from synthetic round records, nothing trained."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from asvp.pipelines import CellResult, RoundRecord
from benchmark.cli import main
from benchmark.compare import CellRun, RoundPicks, compare_cell
from benchmark.grid import expand_cells, load_grid
from benchmark.tracking import CellLogger, open_run

ROOT = Path(__file__).resolve().parents[1]
CHANGED_ACC = 0.0125  # store B's changed cell: accuracy after its different round-2 picks


def _round(cell, index: int, labels: int, changed: bool) -> RoundRecord:
    """A synthetic round: ten picks a seed and round apart (none at the last budget)."""
    budgets = cell.config.budgets
    seed = cell.config.seed
    selected = [] if index == len(budgets) - 1 else [100 * seed + 10 * index + k for k in range(10)]
    acc = 0.5 + 0.1 * index + 0.01 * seed
    if changed and index == 2:
        selected[:3] = [190, 191, 192]
    if changed and index == 3:
        acc += CHANGED_ACC
    return RoundRecord(
        round=index,
        labels=labels,
        test_acc=acc,
        train_method="ft",
        seconds={"finetune": 1.0},
        sampling_seconds=1.0,
        evaluation_seconds=0.0,
        selected=selected,
        feature_version=0,
        finished_at_ms=1000 + index,
    )


def _record(uri: str, grid, cells, changed: str | None = None) -> None:
    """Finish a run of each cell (a new one, superseding any earlier) as a job would; the cell
    with run key ``changed`` picks differently in round 2 and so scores differently after."""
    client = MlflowClient(uri)
    for cell in cells:
        run_id = open_run(client, grid.name, cell, None, fresh=True)
        logger = CellLogger(client, grid.name, run_id, "cpu")
        rounds = [
            _round(cell, index, labels, cell.run_key == changed)
            for index, labels in enumerate(cell.config.budgets)
        ]
        for record in rounds:
            logger.log_round(record)
        order = [pick for record in rounds for pick in record.selected]
        logger.finish(CellResult(rounds=rounds, labeled_order=order))


def _grid_file(folder: Path) -> Path:
    """The demo grid cut down to four cells: the random baseline and standard AL (margin),
    two seeds, four budgets."""
    grid = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    grid |= {
        "name": "compared",
        "seeds": [0, 1],
        "strategies": ["random", "margin"],
        "pipelines": [{"pipeline": "standard", "train_method": "ft"}],
    }
    grid["datasets"][0]["budgets"] = [10, 20, 30, 40]
    path = folder / "compared.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def _compare(grid_path: Path, uri_a: str, uri_b: str, capsys) -> tuple[int, str]:
    status = main(["compare", str(grid_path), "--tracking-uri", uri_a, "--other", uri_b])
    return status, capsys.readouterr().out


def test_compare_names_the_differing_cell_and_its_first_differing_round(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # restored after the test
    grid_path = _grid_file(tmp_path)
    grid = load_grid(grid_path)
    cells = sorted(expand_cells(grid), key=lambda cell: cell.run_name)
    assert len(cells) == 4
    uri_a, uri_b = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db"))
    _record(uri_a, grid, cells)
    _record(uri_b, grid, cells[1:])  # one cell not finished in B

    status, out = _compare(grid_path, uri_a, uri_b, capsys)
    assert status == 0, out  # a cell in one store only has nothing to differ from
    assert f"only in A  {cells[0].run_name}" in out
    assert out.splitlines()[-1] == "3 identical, 0 differ, 1 missing"

    _record(uri_b, grid, cells[:1])
    status, out = _compare(grid_path, uri_a, uri_b, capsys)
    assert status == 0, out
    assert out.splitlines()[-1] == "4 identical, 0 differ, 0 missing"
    assert all(f"identical  {cell.run_name}" in out for cell in cells)

    changed = cells[2]
    _record(uri_b, grid, [changed], changed=changed.run_key)  # a re-run that parted at round 2
    status, out = _compare(grid_path, uri_a, uri_b, capsys)
    assert status == 1, out
    lines = out.splitlines()
    assert lines[-1] == "3 identical, 1 differ, 0 missing"
    at = lines.index(f"  differs    {changed.run_name}")
    assert lines[at + 1].strip() == (
        "first differing selection: round 2 (30 labels): 3 of 10 picks differ"
    )
    assert lines[at + 2].strip() == f"test_acc: largest |A - B| = {CHANGED_ACC:.4f} at 40 labels"
    others = [cell for cell in cells if cell is not changed]
    assert all(f"identical  {cell.run_name}" in out for cell in others)


def test_a_cell_can_differ_by_pick_order_a_missing_round_or_its_curve_alone():
    def run(*rounds: tuple[int, ...], acc: float = 0.5) -> CellRun:
        picks = tuple(RoundPicks(i, 10 * (i + 1), s) for i, s in enumerate(rounds))
        return CellRun("cell", picks, {10 * (i + 1): acc for i in range(len(rounds))})

    reordered = compare_cell("k", run((1, 2), (3, 4)), run((1, 2), (4, 3)))
    assert reordered.first_round.round == 1 and reordered.same_picks_reordered
    assert reordered.largest_gap is None and not reordered.identical
    shorter = compare_cell("k", run((1, 2), (3, 4)), run((1, 2)))
    assert shorter.first_round.round == 1 and shorter.labels_in_one_curve == (20,)
    curve_only = compare_cell("k", run((1, 2)), run((1, 2), acc=0.75))
    assert curve_only.first_round is None and curve_only.largest_gap == (0.25, 10)
    assert not curve_only.identical
    nan = float("nan")
    assert compare_cell("k", run((1,), acc=nan), run((1,), acc=nan)).identical


def test_compare_help_imports_neither_torch_nor_mlflow():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "benchmark.cli", "compare", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "usage: asvp-bench compare" in out.stdout and "--other" in out.stdout
    assert "1 when any differs" in " ".join(out.stdout.split())
    heavy = [line for line in out.stderr.splitlines() if "torch" in line or "mlflow" in line]
    assert not heavy, heavy[:3]


@pytest.mark.parametrize("missing", [["compare"], ["compare", "grid.yaml"]])
def test_compare_needs_a_grid_and_the_other_store(missing, capsys):
    with pytest.raises(SystemExit) as exited:
        main(missing)
    assert exited.value.code == 2
