"""``asvp-bench validate`` refuses bad options before anything is submitted: each kind of
option (a strategy's, a dataset loader's, an indicator setting) is checked against its own
declaration, and the message names the file, the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.cli import main

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"


def _validate(tmp_path: Path, change, capsys) -> tuple[int, str, Path]:
    data = yaml.safe_load(DEMO.read_text())
    change(data)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(path)])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err, path


def _strategy(entry: dict):
    return lambda data: data.update(strategies=["random", entry])


@pytest.mark.parametrize(
    ("change", "key", "value", "allowed"),
    [
        (
            _strategy({"name": "typiclust", "options": {"max_clusters": 0}}),
            "strategies[1].options.max_clusters",
            "0",
            "an integer >= 1",
        ),
        (
            _strategy({"name": "probcover", "options": {"purity": 7.0}}),
            "strategies[1].options.purity",
            "7.0",
            "a finite number in (0, 1]",
        ),
        (
            _strategy({"name": "badge", "options": {"candidates": -1}}),
            "strategies[1].options.candidates",
            "-1",
            "an integer >= 1 or null",
        ),
    ],
    ids=["typiclust-max_clusters", "probcover-purity", "badge-candidates"],
)
def test_a_strategy_option_out_of_range(tmp_path, capsys, change, key, value, allowed):
    code, output, path = _validate(tmp_path, change, capsys)
    assert code != 0
    assert f"{path}: {key}: got {value}; expected {allowed}" in output


def test_a_dataset_option_of_the_wrong_type(tmp_path, capsys):
    def change(data):
        data["datasets"][0]["options"]["test_size"] = "many"

    code, output, path = _validate(tmp_path, change, capsys)
    assert code != 0
    line = next(line for line in output.splitlines() if "test_size" in line)
    key = "datasets[0].options.test_size"
    assert f"{path}: {key}: got 'many'; expected an integer in [1, 4999]" in line
    assert "mnist5k" in line


@pytest.mark.parametrize(
    ("trigger", "key", "value", "allowed"),
    [
        ({"fraction": 1.5}, "trigger.fraction", "1.5", "a finite number in (0, 1]"),
        ({"max_updates": -1}, "trigger.max_updates", "-1", "an integer >= 0 or null"),
        ({"rule": "ped", "ped": {"nsigma": 0}}, "trigger.ped.nsigma", "0.0", "a finite number > 0"),
    ],
    ids=["fraction", "max_updates", "ped-nsigma"],
)
def test_a_trigger_setting_out_of_range(tmp_path, capsys, trigger, key, value, allowed):
    code, output, path = _validate(tmp_path, lambda data: data["trigger"].update(trigger), capsys)
    assert code != 0
    assert f"{path}: {key}: got {value}; expected {allowed}" in output


def test_a_well_formed_grid_is_valid_without_its_data(tmp_path, capsys, monkeypatch):
    """Data is the preflight's question: validate answers for a grid whose data root is empty."""
    monkeypatch.setenv("ASVP_DATA", str(tmp_path / "empty"))
    table2 = DEMO.parent / "table2.yaml"
    assert main(["validate", str(table2)]) == 0
    assert "valid grid 'table2'" in capsys.readouterr().out
