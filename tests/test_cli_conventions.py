"""The command line behaves as people expect of one: ``--version``, help on every argument,
``list`` of what a grid may name, ``KEY=VALUE`` overrides checked as the file is,
``status --json``, and a quiet exit when the reader of its output goes away."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from asvp.data import available_datasets
from asvp.models.backbones import available_backbones
from asvp.pipelines import available_pipelines, get_pipeline
from asvp.strategies.registry import available_strategies, declared_strategy_options
from benchmark.cli import build_parser, main
from benchmark.executors.kinds import EXECUTOR_KINDS
from benchmark.grid import GridError, expand_cells, load_grid

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "experiments" / "demo.yaml"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmark.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


# --- version and help ----------------------------------------------------------------------


def _light(*args: str) -> subprocess.CompletedProcess:
    """Run the command line with ``-X importtime``; assert it imported neither torch nor
    MLflow."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "benchmark.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    heavy = [line for line in out.stderr.splitlines() if "torch" in line or "mlflow" in line]
    assert not heavy, heavy[:3]
    return out


def test_version_names_the_installed_package_and_imports_nothing_heavy():
    out = _light("--version")
    assert out.stdout.startswith(f"asvp-bench {version('asvp-bench')}")
    if (ROOT / ".git").exists():
        assert "(git " in out.stdout


@pytest.mark.parametrize("command", ["list", "compare"])
def test_new_commands_answer_help_without_heavy_imports(command):
    assert f"usage: asvp-bench {command}" in _light(command, "--help").stdout


def test_every_command_and_argument_has_help():
    parser = build_parser()
    assert parser.description.splitlines()[0].endswith(".")  # not cut mid-sentence
    assert "``" not in parser.description and "examples:" in parser.epilog
    assert isinstance(parser.formatter_class, type)
    assert issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)
    commands = _subparsers(parser)
    assert {"list", "validate", "run", "status", "report", "preflight"} <= set(commands)
    for name, command in commands.items():
        assert command.description and "``" not in command.description, name
        for action in command._actions:
            assert action.help and action.help.strip(), f"{name}: {action.dest} has no help"
        text = command.format_help()
        assert "``" not in text, name
    for action in parser._actions:
        assert action.help, action.dest


@pytest.mark.parametrize("command", ["validate", "run", "preflight", "status", "report", "compare"])
def test_grid_commands_show_grid_and_overrides_in_their_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "GRID " in text and "path of the grid file" in text
    assert "KEY=VALUE" in text and "finetune.epochs=3" in text


# --- list ----------------------------------------------------------------------------------


def test_list_json_holds_every_registered_name_and_strategy_option(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    names = {kind: [entry["name"] for entry in entries] for kind, entries in listing.items()}
    assert names == {
        "strategies": available_strategies(),
        "datasets": available_datasets(),
        "backbones": available_backbones(),
        "pipelines": list(available_pipelines()),
        "executors": list(EXECUTOR_KINDS),
    }
    for entry in listing["strategies"]:
        declared = declared_strategy_options(entry["name"])
        assert [o["name"] for o in entry["options"]] == list(declared)
        for option in entry["options"]:
            assert option["type"] == declared[option["name"]].expected()
            assert option["required"] == declared[option["name"]].required
    typiclust = next(e for e in listing["strategies"] if e["name"] == "typiclust")
    max_clusters = next(o for o in typiclust["options"] if o["name"] == "max_clusters")
    assert (max_clusters["type"], max_clusters["default"]) == ("an integer >= 1", 500)
    for entry in listing["pipelines"]:
        assert entry["train_methods"] == list(get_pipeline(entry["name"]).train_methods)
    lite0 = next(e for e in listing["backbones"] if e["name"] == "efficientnet_lite0")
    assert lite0["input"]["size"] == 224 and lite0["input"]["mean"] == [0.5, 0.5, 0.5]
    mnist = next(e for e in listing["datasets"] if e["name"] == "mnist5k")
    assert "test_size" in [o["name"] for o in mnist["options"]]


def test_list_one_kind_as_text(capsys):
    assert main(["list", "strategies"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"strategies ({len(available_strategies())}):")
    for name in available_strategies():
        assert f"\n  {name}: " in text
        for option in declared_strategy_options(name).values():
            assert f"- {option.name}: {option.expected()}" in text
    assert "datasets (" not in text and "backbones (" not in text


# --- overrides -----------------------------------------------------------------------------


def _keys(grid) -> list[str]:
    return [cell.run_key for cell in expand_cells(grid)]


def test_an_override_expands_to_the_cells_of_the_same_edit_of_the_file(tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data["finetune"]["epochs"] = 3
    data["seeds"] = [0, 1]
    data["datasets"][0]["budgets"] = [20, 40]
    data["executor"] = {**(data.get("executor") or {}), "kind": "debug"}
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(data, sort_keys=False))
    overrides = [
        "finetune.epochs=3",
        "seeds=[0,1]",
        "datasets.0.budgets=[20,40]",
        "executor.kind=debug",
    ]
    overridden = load_grid(DEMO, overrides)
    assert overridden.overrides == tuple(overrides)
    assert load_grid(DEMO).overrides == ()
    assert _keys(overridden) == _keys(load_grid(edited))
    assert set(_keys(overridden)).isdisjoint(_keys(load_grid(DEMO)))  # scientific: new keys
    assert overridden.executor.kind == "debug" and overridden.finetune.epochs == 3


def test_an_override_adds_a_section_the_file_leaves_out(tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data.pop("linear_probe")
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_grid(bare, ["linear_probe.epochs=7"]).linear_probe.epochs == 7


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("finetune.epoch=3", "override finetune.epoch=3: finetune.epoch: unknown key 'epoch'"),
        ("finetune.epochs=0", "override finetune.epochs=0: finetune.epochs: got 0; expected"),
        ("bogus=1", "override bogus=1: bogus: unknown key 'bogus'"),
        ("datasets.3.budgets=[20]", "datasets has 1 entries: index 3 is out of range"),
        ("datasets.name=x", "datasets is a list: index it with a number"),
        ("strategies.0.options.candidates=5", "strategies[0] is 'random', which holds no keys"),
        ("seeds=[0,", "override 'seeds=[0,': not a YAML value"),
        ("no-equals-sign", "expected KEY=VALUE"),
    ],
)
def test_a_bad_override_names_itself_and_the_problem(override, message):
    with pytest.raises(GridError) as error:
        load_grid(DEMO, [override])
    assert str(DEMO) in str(error.value)
    assert message in str(error.value)


def test_a_bad_override_is_refused_before_anything_runs(tmp_path):
    store = tmp_path / "mlflow.db"
    out = _cli(
        "run", str(DEMO), "finetune.epoch=3", f"state_dir={tmp_path / 'state'}",
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"},
    )  # fmt: skip
    assert out.returncode == 2
    assert "override finetune.epoch=3: finetune.epoch: unknown key 'epoch'" in out.stderr
    assert "(did you mean 'epochs'?)" in out.stderr
    assert "Traceback" not in out.stderr
    assert not store.exists() and not (tmp_path / "state").exists()


def test_validate_reports_the_overridden_grid(capsys):
    assert main(["validate", str(DEMO), "seeds=[0]", "strategies=[random]"]) == 0
    # only the random baseline, one seed: one cell (the file's 21)
    assert "valid grid 'demo', 1 cells" in capsys.readouterr().out
    assert len(expand_cells(load_grid(DEMO))) == 21


# --- status --json -------------------------------------------------------------------------


def test_status_json_parses_and_agrees_with_the_plain_counts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    grid = [str(DEMO), "seeds=[0,1]"]
    assert main(["status", *grid]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert main(["status", *grid, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    cells = expand_cells(load_grid(DEMO, ["seeds=[0,1]"]))
    assert document["grid"] == "demo" and document["overrides"] == ["seeds=[0,1]"]
    assert document["total"] == len(cells) == len(document["cells"])
    assert sum(document["counts"].values()) == document["total"]
    summary = ", ".join(f"{n} {state}" for state, n in document["counts"].items())
    assert plain[0] == f"grid 'demo': {len(cells)} cells: {summary}"
    assert [c["run_key"] for c in document["cells"]] == [c.run_key for c in cells]
    assert [c["run_name"] for c in document["cells"]] == [c.run_name for c in cells]
    fields = {"run_name", "run_key", "state", "job_id", "detail", "log_path", "live", "run_id"}
    assert all(set(cell) == fields for cell in document["cells"])
    assert {cell["state"] for cell in document["cells"]} == {"pending"}


# --- a closed pipe -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["list"], ["status", str(DEMO)]])
def test_a_closed_pipe_ends_quietly(tmp_path, command):
    """As ``asvp-bench status GRID | head -0``: the reader is gone before anything is
    written, so the first write fails; no traceback, exit status 141 (128 + SIGPIPE)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )
    process.stdout.close()  # the only reader goes away
    _, stderr = process.communicate(timeout=300)
    assert "Traceback" not in stderr.decode() and "BrokenPipeError" not in stderr.decode()
    assert process.returncode == 141
