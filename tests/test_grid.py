"""Grid files: loading, validation errors, expansion into cells and run keys (benchmark/grid/)."""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from pathlib import Path

import pytest
import yaml

from asvp.config import (
    ComputeConfig,
    FineTuneConfig,
    LinearProbeConfig,
    ProxyConfig,
    TransformConfig,
    TriggerConfig,
)
from asvp.data import available_datasets
from asvp.options import declared_options
from asvp.strategies import available_strategies
from benchmark.grid import (
    RESULTS_VERSION,
    Costs,
    DatasetSpec,
    ExecutorSettings,
    GridError,
    PipelineSpec,
    expand_cells,
    identity,
    load_grid,
    resolve_tracking_uri,
    run_key,
    scientific_config,
)

DEMO = textwrap.dedent(
    """\
    name: demo
    description: "the laptop demo"
    datasets:
      - name: mnist5k
        options: {test_size: 500, split_seed: 0}
        budgets: [20, 40, 60, 80, 100]
    backbone: efficientnet_lite0
    image_size: 48
    seeds: [0, 1]
    strategies: [random, margin, entropy]
    pipelines:
      - {pipeline: standard, train_method: ft}
      - {pipeline: svpp, train_method: lpft}
      - {pipeline: asvp, train_method: auto}
    baseline: {train_method: ft}
    finetune: {epochs: 15, batch_size: 16, weight_decay: 1e-4}
    trigger: {rule: logme, fraction: 0.9, max_updates: 1}
    costs:
      label_price: 0.05
      reviews_per_label: 1
      device_hour: {cpu: 0.10}
      note: "illustrative"
    executor:
      kind: local
      max_parallel: null
    tracking:
      uri: null
    feature_store: .asvp/features
    """
)


def write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def demo_data() -> dict:
    return yaml.safe_load(DEMO)


def write_data(tmp_path: Path, data: dict, name: str = "grid.yaml") -> Path:
    return write(tmp_path, yaml.safe_dump(data, sort_keys=False), name)


def keys_by_name(path: Path) -> dict[str, str]:
    return {cell.run_name: cell.run_key for cell in expand_cells(load_grid(path))}


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def test_example_grid_loads(tmp_path):
    path = write(tmp_path, DEMO)
    grid = load_grid(path)
    assert grid.name == "demo"
    assert grid.description == "the laptop demo"
    assert grid.path == path
    assert grid.datasets == [
        DatasetSpec("mnist5k", {"test_size": 500, "split_seed": 0}, (20, 40, 60, 80, 100))
    ]
    assert grid.backbone == "efficientnet_lite0"
    assert grid.transform == TransformConfig(size=48)
    assert grid.seeds == [0, 1]
    assert [s.label for s in grid.strategies] == ["random", "margin", "entropy"]
    assert grid.pipelines == [
        PipelineSpec("standard", "ft"),
        PipelineSpec("svpp", "lpft"),
        PipelineSpec("asvp", "auto"),
    ]
    assert grid.baseline_train_method == "ft"
    # given values override, the rest are the dataclass defaults; 1e-4 is a number (YAML 1.2)
    assert grid.finetune == FineTuneConfig(epochs=15, batch_size=16, weight_decay=1e-4)
    assert grid.linear_probe == LinearProbeConfig()
    assert grid.proxy == ProxyConfig()
    assert grid.trigger == TriggerConfig(rule="logme", fraction=0.9, max_updates=1)
    assert grid.compute == ComputeConfig(threads=1, deterministic=False)
    assert grid.costs == Costs(0.05, 1, {"cpu": 0.1}, "illustrative")
    assert grid.executor == ExecutorSettings("local", None)
    assert grid.tracking_uri is None
    assert grid.feature_store == ".asvp/features"


def test_minimal_grid_gets_defaults(tmp_path):
    data = {
        key: demo_data()[key]
        for key in ("name", "datasets", "backbone", "seeds", "strategies", "pipelines")
    }
    grid = load_grid(write_data(tmp_path, data))
    assert grid.description == ""
    assert grid.transform == TransformConfig()  # the backbone's own inputs, augmented
    assert grid.baseline_train_method == "ft"
    assert (grid.finetune, grid.linear_probe, grid.proxy, grid.trigger) == (
        FineTuneConfig(),
        LinearProbeConfig(),
        ProxyConfig(),
        TriggerConfig(),
    )
    assert grid.costs == Costs()
    assert grid.executor == ExecutorSettings()
    assert grid.tracking_uri is None
    assert grid.feature_store == ".asvp/features"


@pytest.mark.parametrize(
    ("key", "cls"),
    [
        ("finetune", FineTuneConfig),
        ("linear_probe", LinearProbeConfig),
        ("proxy", ProxyConfig),
        ("trigger", TriggerConfig),
        ("compute", ComputeConfig),
    ],
)
def test_section_schema_is_the_dataclass(tmp_path, key, cls):
    """Every field of the config dataclass is a grid key and accepts its own default, so a
    field added to asvp/config.py is a grid key without touching the harness."""
    data = demo_data()
    data[key] = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in dataclasses.asdict(cls()).items()
    }
    if key == "trigger":
        data[key]["rule"] = "schedule"
        data[key]["at_labels"] = [40]
    grid = load_grid(write_data(tmp_path, data))
    assert dataclasses.asdict(getattr(grid, key)) == {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in data[key].items()
    }


# Numeric fields that take any finite value (an absolute LogME threshold may be negative).
UNBOUNDED = {(TriggerConfig, "threshold")}


@pytest.mark.parametrize(
    "cls",
    [
        FineTuneConfig,
        LinearProbeConfig,
        ProxyConfig,
        TriggerConfig,
        ComputeConfig,
        Costs,
        ExecutorSettings,
    ],
)
def test_every_numeric_field_declares_its_range(cls):
    """Ranges are declared next to the field (asvp.options), never in the grid checker: a
    numeric field without one must be listed above as deliberately unbounded."""
    for option in declared_options(cls).values():
        annotation, origin = option.annotation, typing.get_origin(option.annotation)
        bare = typing.get_args(annotation) if origin is typing.Union else (annotation,)
        numeric = any(t in (int, float) for t in bare) or (
            origin is tuple and typing.get_args(annotation)[0] is int
        )
        if numeric and (cls, option.name) not in UNBOUNDED:
            assert option.constraints, (cls.__name__, option.name)


def test_integer_and_float_spellings_give_the_same_config(tmp_path):
    one = load_grid(write(tmp_path, DEMO + "proxy: {lr: 1}\n", "a.yaml"))
    other = load_grid(write(tmp_path, DEMO + "proxy: {lr: 1.0}\n", "b.yaml"))
    assert one.proxy.lr == other.proxy.lr == 1.0
    assert isinstance(one.proxy.lr, float)
    assert [c.run_key for c in expand_cells(one)] == [c.run_key for c in expand_cells(other)]


def test_validation_reads_no_data(tmp_path, monkeypatch):
    """Whether the data is there and the budgets fit its pool is the preflight's question
    (tests/test_preflight_data.py): loading a grid never loads a dataset."""

    def no_loading(*args, **kwargs):
        raise AssertionError("load_grid loaded a dataset")

    monkeypatch.setattr("asvp.data.load_dataset", no_loading)
    monkeypatch.setattr("asvp.data.base.load_dataset", no_loading)
    data = demo_data()
    data["datasets"][0]["budgets"] = [20, 6000]
    data["data_root"] = str(tmp_path / "nothing-here")
    assert load_grid(write_data(tmp_path, data)).datasets[0].budgets == (20, 6000)


# ---------------------------------------------------------------------------------------------
# Expansion and run names
# ---------------------------------------------------------------------------------------------


def test_expansion_count_and_order(tmp_path):
    cells = expand_cells(load_grid(write(tmp_path, DEMO)))
    # per seed: 1 random baseline + 3 pipelines x 2 non-random strategies
    assert len(cells) == 2 * (1 + 3 * 2)
    expected_seed0 = [
        "random-ft/random/s0 · mnist5k",
        "standard-ft/margin/s0 · mnist5k",
        "standard-ft/entropy/s0 · mnist5k",
        "svpp-lpft/margin/s0 · mnist5k",
        "svpp-lpft/entropy/s0 · mnist5k",
        "asvp-auto/margin/s0 · mnist5k",
        "asvp-auto/entropy/s0 · mnist5k",
    ]
    names = [cell.run_name for cell in cells]
    assert names[:7] == expected_seed0
    assert names[7:] == [name.replace("/s0", "/s1") for name in expected_seed0]
    randoms = [cell for cell in cells if cell.config.strategy == "random"]
    assert [(c.config.pipeline, c.config.seed) for c in randoms] == [("random", 0), ("random", 1)]
    assert len(set(names)) == len(names)
    assert len({cell.run_key for cell in cells}) == len(cells)


def test_cell_config_carries_the_grid(tmp_path):
    grid = load_grid(write(tmp_path, DEMO))
    cell = expand_cells(grid)[5]  # asvp-auto/margin/s0
    config = cell.config
    assert (config.pipeline, config.train_method, config.strategy, config.seed) == (
        "asvp",
        "auto",
        "margin",
        0,
    )
    assert config.budgets == (20, 40, 60, 80, 100)
    assert config.dataset_options == {"test_size": 500, "split_seed": 0}
    assert config.dataset_options is not grid.datasets[0].options
    assert config.transform == TransformConfig(size=48)
    assert config.finetune == grid.finetune and config.trigger == grid.trigger


def test_baseline_train_method_names_the_random_cells(tmp_path):
    grid = load_grid(write(tmp_path, DEMO.replace("{train_method: ft}", "{train_method: lpft}")))
    cell = expand_cells(grid)[0]
    assert cell.run_name == "random-lpft/random/s0 · mnist5k"
    assert "linear_probe" in scientific_config(cell.config)


def test_params_are_flat_strings(tmp_path):
    cells = expand_cells(load_grid(write(tmp_path, DEMO)))
    svpp = next(c for c in cells if c.config.pipeline == "svpp").params()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in svpp.items())
    assert svpp["finetune.epochs"] == "15"
    assert svpp["finetune.milestones"] == "[30, 40]"
    assert svpp["budgets"] == "[20, 40, 60, 80, 100]"
    assert svpp["dataset_options.test_size"] == "500"
    assert svpp["proxy.hidden"] == "null"
    assert svpp["linear_probe.epochs"] == "10"
    assert svpp["results_version"] == str(RESULTS_VERSION)
    assert (svpp["compute.threads"], svpp["compute.deterministic"]) == ("1", "false")
    assert not any(key.startswith("trigger.") for key in svpp)
    standard = next(c for c in cells if c.config.pipeline == "standard").params()
    assert not any(key.startswith(("proxy.", "linear_probe.")) for key in standard)


# ---------------------------------------------------------------------------------------------
# Run keys
# ---------------------------------------------------------------------------------------------


def test_run_keys_are_stable_across_loads_and_key_order(tmp_path):
    first = keys_by_name(write(tmp_path, DEMO, "a.yaml"))
    assert first == keys_by_name(write(tmp_path, DEMO, "b.yaml"))
    assert all(len(key) == 16 and int(key, 16) >= 0 for key in first.values())

    def reverse(value):
        if isinstance(value, dict):
            return {k: reverse(v) for k, v in reversed(value.items())}
        if isinstance(value, list):
            return [reverse(v) for v in value]
        return value

    reordered = write(tmp_path, yaml.safe_dump(reverse(demo_data()), sort_keys=False), "c.yaml")
    assert reordered.read_text().startswith("feature_store")
    assert keys_by_name(reordered) == first


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["executor"].update(kind="debug", max_parallel=3),
        lambda d: d["tracking"].update(uri="http://mlflow.example:5000"),
        lambda d: d.update(feature_store="/scratch/features"),
        lambda d: d["costs"].update(label_price=1.5, device_hour={"gpu": 3.06}),
        lambda d: d.update(description="something else"),
        lambda d: d.update(name="another-name"),
    ],
    ids=["executor", "tracking", "feature_store", "costs", "description", "name"],
)
def test_run_key_ignores_non_scientific_settings(tmp_path, change):
    before = keys_by_name(write(tmp_path, DEMO, "a.yaml"))
    data = demo_data()
    change(data)
    assert keys_by_name(write_data(tmp_path, data, "b.yaml")) == before


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["finetune"].update(epochs=16),
        lambda d: d["datasets"][0].update(budgets=[20, 40, 60, 80, 120]),
        lambda d: d.update(image_size=64),
        lambda d: d.update(transform={"augment": "none"}),
        lambda d: d.update(transform={"interpolation": "bilinear"}),
        lambda d: d["datasets"][0]["options"].update(split_seed=1),
        lambda d: d.update(compute={"threads": 2}),
        lambda d: d.update(compute={"deterministic": True}),
    ],
    ids=[
        "finetune.epochs",
        "budgets",
        "image_size",
        "transform.augment",
        "transform.interpolation",
        "dataset_options",
        "compute.threads",
        "compute.deterministic",
    ],
)
def test_run_key_changes_with_shared_scientific_settings(tmp_path, change):
    before = keys_by_name(write(tmp_path, DEMO, "a.yaml"))
    data = demo_data()
    change(data)
    after = keys_by_name(write_data(tmp_path, data, "b.yaml"))
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in before)


def test_compute_is_in_every_cells_run_key(tmp_path):
    """How a cell computes (its threads, determinism) changes its arithmetic: every cell's key
    holds it, whatever its pipeline, and the executor's settings never stand in for it."""
    data = demo_data()
    data["full_data"] = True
    cells = expand_cells(load_grid(write_data(tmp_path, data)))
    assert {c.config.pipeline for c in cells} == {"random", "full", "standard", "svpp", "asvp"}
    for cell in cells:
        assert scientific_config(cell.config)["compute"] == {"threads": 1, "deterministic": False}
        faster = dataclasses.replace(cell.config, compute=ComputeConfig(threads=4))
        assert run_key(faster) != cell.run_key


def test_a_dataset_may_not_override_compute(tmp_path):
    data = demo_data()
    data["datasets"][0]["compute"] = {"threads": 4}
    line = error_line(load_error(write_data(tmp_path, data)), "datasets[0].compute")
    assert "unknown key 'compute'" in line


def test_run_key_changes_with_seed_and_strategy(tmp_path):
    cell = expand_cells(load_grid(write(tmp_path, DEMO)))[1]
    config = cell.config
    assert run_key(config) == cell.run_key
    assert run_key(dataclasses.replace(config, seed=2)) != cell.run_key
    assert run_key(dataclasses.replace(config, strategy="entropy")) != cell.run_key
    assert run_key(dataclasses.replace(config, train_method="lpft")) != cell.run_key


def test_run_key_includes_results_version(tmp_path, monkeypatch):
    config = expand_cells(load_grid(write(tmp_path, DEMO)))[0].config
    before = run_key(config)
    monkeypatch.setattr(identity, "RESULTS_VERSION", RESULTS_VERSION + 1)
    assert run_key(config) != before


def test_trigger_changes_only_asvp_keys(tmp_path):
    before = keys_by_name(write(tmp_path, DEMO, "a.yaml"))
    data = demo_data()
    data["trigger"] = {"rule": "schedule", "at_labels": [60]}
    after = keys_by_name(write_data(tmp_path, data, "b.yaml"))
    for name in before:
        if name.startswith("asvp-"):
            assert after[name] != before[name], name
        else:
            assert after[name] == before[name], name


def test_linear_probe_changes_only_keys_that_use_it(tmp_path):
    before = keys_by_name(write(tmp_path, DEMO, "a.yaml"))
    data = demo_data()
    data["linear_probe"] = {"epochs": 3}
    after = keys_by_name(write_data(tmp_path, data, "b.yaml"))
    for name in before:
        uses_lp = "-lpft/" in name or "-auto/" in name
        assert (after[name] != before[name]) == uses_lp, name


def test_scientific_config_sections(tmp_path):
    cells = expand_cells(load_grid(write(tmp_path, DEMO)))
    sections = {
        (c.config.pipeline, c.config.train_method): set(scientific_config(c.config)) for c in cells
    }
    base = {
        "dataset",
        "dataset_options",
        "backbone",
        "transform",
        "pipeline",
        "strategy",
        "train_method",
        "seed",
        "budgets",
        "finetune",
        "compute",
    }
    assert sections[("random", "ft")] == base
    assert sections[("standard", "ft")] == base
    proxy = {"proxy", "discrepancy_analysis"}
    assert sections[("svpp", "lpft")] == base | {"linear_probe"} | proxy
    assert sections[("asvp", "auto")] == base | {"linear_probe", "trigger"} | proxy


def test_strategy_options_enter_label_run_key_and_cells(tmp_path):
    data = demo_data()
    data["strategies"] = [
        "random",
        "margin",
        {"name": "margin", "options": {"candidates": 50}},
    ]
    cells = [c for c in expand_cells(load_grid(write_data(tmp_path, data))) if c.config.seed == 0]
    svpp = [c for c in cells if c.config.pipeline == "svpp"]
    assert [c.config.strategy_options for c in svpp] == [{}, {"candidates": 50}]
    assert svpp[1].run_name == "svpp-lpft/margin[candidates=50]/s0 · mnist5k"
    assert svpp[0].run_key != svpp[1].run_key
    assert "strategy_options" not in scientific_config(svpp[0].config)
    assert scientific_config(svpp[1].config)["strategy_options"] == {"candidates": 50}


def test_discrepancy_analysis_switch_changes_proxy_cells_only(tmp_path):
    on = expand_cells(load_grid(write_data(tmp_path, demo_data())))
    data = demo_data()
    data["discrepancy_analysis"] = False
    off = expand_cells(load_grid(write_data(tmp_path, data)))
    for a, b in zip(on, off, strict=True):
        assert b.config.discrepancy_analysis is False
        changed = a.run_key != b.run_key
        assert changed == (a.config.pipeline in ("svpp", "asvp"))


@pytest.mark.parametrize(
    "entry, key, words",
    [
        (
            {"name": "margin", "options": {"candidate": 5}},
            "strategies[1].options.candidate",
            "got 5; expected a known option; allowed: candidates",
        ),
        (
            {"name": "margin", "options": {"candidates": "many"}},
            "strategies[1].options.candidates",
            "got 'many'; expected an integer >= 1 or null (strategy 'margin')",
        ),
        (
            {"name": "margin", "options": {"candidates": 0}},
            "strategies[1].options.candidates",
            "got 0; expected an integer >= 1",
        ),
        ({"name": "margn"}, "strategies[1].name", "'margn'"),
        ({"name": "margin", "opts": {}}, "strategies[1].opts", "unknown key 'opts'"),
        ({"name": "margin", "options": [1]}, "strategies[1].options", "a mapping"),
    ],
)
def test_bad_strategy_options(tmp_path, entry, key, words):
    data = demo_data()
    data["strategies"] = ["random", entry]
    line = error_line(load_error(write_data(tmp_path, data)), key)
    assert words in line


def test_same_strategy_with_same_options_twice_is_refused(tmp_path):
    data = demo_data()
    data["strategies"] = ["random", {"name": "margin", "options": {}}, "margin"]
    line = error_line(load_error(write_data(tmp_path, data)), "strategies[2]")
    assert "listed twice" in line


# ---------------------------------------------------------------------------------------------
# Errors: each names the file, the key, the value and what is expected
# ---------------------------------------------------------------------------------------------


def load_error(path: Path) -> GridError:
    with pytest.raises(GridError) as info:
        load_grid(path)
    assert str(path) in str(info.value)
    return info.value


def error_line(error: GridError, key: str) -> str:
    """The one error line about ``key``."""
    lines = [line for line in error.errors if f": {key}: " in line]
    assert len(lines) == 1, (key, error.errors)
    assert lines[0].startswith(f"{error.path}: {key}: ")
    return lines[0]


def test_misspelt_top_level_key(tmp_path):
    data = demo_data()
    data["strategy"] = data.pop("strategies")
    line = error_line(load_error(write_data(tmp_path, data)), "strategy")
    assert "unknown key 'strategy'" in line
    assert "['random', 'margin', 'entropy']" in line
    assert "did you mean 'strategies'" in line
    assert "allowed keys: backbone, baseline, compute, costs, data_root, datasets," in line
    # the required key it replaced is missing too
    missing = error_line(load_error(write_data(tmp_path, data)), "strategies")
    assert "missing required key" in missing


def test_misspelt_nested_key(tmp_path):
    data = demo_data()
    data["finetune"] = {"epoch": 3}
    line = error_line(load_error(write_data(tmp_path, data)), "finetune.epoch")
    assert "unknown key 'epoch' (value 3)" in line
    fields = sorted(f.name for f in dataclasses.fields(FineTuneConfig))
    assert "allowed keys: " + ", ".join(fields) in line


def test_unknown_strategy(tmp_path):
    data = demo_data()
    data["strategies"] = ["random", "margn"]
    line = error_line(load_error(write_data(tmp_path, data)), "strategies[1]")
    assert "got 'margn'" in line
    assert "one of: " + ", ".join(sorted(available_strategies())) in line


def test_unknown_dataset(tmp_path):
    data = demo_data()
    data["datasets"][0]["name"] = "cifar11"
    line = error_line(load_error(write_data(tmp_path, data)), "datasets[0].name")
    assert "got 'cifar11'" in line
    assert "one of: " + ", ".join(available_datasets()) in line


def test_unknown_dataset_option(tmp_path):
    data = demo_data()
    data["datasets"][0]["options"] = {"tset_size": 500}
    line = error_line(load_error(write_data(tmp_path, data)), "datasets[0].options.tset_size")
    assert "got 500;" in line
    assert "test_size" in line.split("expected", 1)[1] and "mnist5k" in line


@pytest.mark.parametrize(
    ("change", "key", "value", "expected"),
    [
        (lambda d: d["finetune"].update(epochs="ten"), "finetune.epochs", "'ten'", "an integer"),
        (lambda d: d.update(seeds=[0, True]), "seeds[1]", "True", "an integer"),
        (lambda d: d.update(image_size=2.5), "image_size", "2.5", "an integer"),
        (lambda d: d["proxy"].update(lr="fast"), "proxy.lr", "'fast'", "a finite number"),
        (
            lambda d: d["proxy"].update(hidden="big"),
            "proxy.hidden",
            "'big'",
            "integer >= 1 or null",
        ),
        (lambda d: d["finetune"].update(milestones=5), "finetune.milestones", "5", "a list of"),
        (lambda d: d["finetune"].update(epochs=0), "finetune.epochs", "0", ">= 1"),
        (lambda d: d["trigger"].update(fraction=1.5), "trigger.fraction", "1.5", "(0, 1]"),
        (lambda d: d["trigger"].update(rule="ped2"), "trigger.rule", "'ped2'", "every, logme"),
        (lambda d: d["trigger"].update(rule="schedule"), "trigger.at_labels", "[]", "non-empty"),
        (lambda d: d["trigger"].update(max_updates=-1), "trigger.max_updates", "-1", ">= 0"),
        (lambda d: d["executor"].update(kind="pbs"), "executor.kind", "'pbs'", "local, slurm"),
        (lambda d: d["executor"].update(time_min=0), "executor.time_min", "0", "an integer >= 1"),
        (
            lambda d: d["executor"].update(sbatch={"exclude": 7}),
            "executor.sbatch.exclude",
            "7",
            "a string",
        ),
        (
            lambda d: d["baseline"].update(train_method="auto"),
            "baseline.train_method",
            "'auto'",
            "ft, lpft",
        ),
        (lambda d: d["costs"].update(reviews_per_label=0), "costs.reviews_per_label", "0", ">= 1"),
        (lambda d: d.update(compute={"threads": 0}), "compute.threads", "0", "an integer >= 1"),
        (
            lambda d: d.update(compute={"deterministic": "yes"}),
            "compute.deterministic",
            "'yes'",
            "true or false",
        ),
        (
            lambda d: d["costs"].update(device_hour={"gpu": "3$"}),
            "costs.device_hour.gpu",
            "'3$'",
            "a finite number",
        ),
        (lambda d: d.update(seeds=[0, -1]), "seeds[1]", "-1", ">= 0"),
        (lambda d: d.update(seeds=[0, 0]), "seeds[1]", "0", "distinct"),
        (lambda d: d.update(seeds=[]), "seeds", "[]", "non-empty list"),
        (lambda d: d.update(name="my grid"), "name", "'my grid'", "letters, digits"),
        (lambda d: d.update(backbone="resnet50"), "backbone", "'resnet50'", "efficientnet_lite0"),
        (
            lambda d: d.update(strategies=["random", "margin", "margin"]),
            "strategies[2]",
            "'margin'",
            "distinct",
        ),
    ],
)
def test_wrong_values(tmp_path, change, key, value, expected):
    data = demo_data()
    data.update(proxy={}, linear_probe={})
    change(data)
    line = error_line(load_error(write_data(tmp_path, data)), key)
    assert f"got {value};" in line
    assert expected in line.split("expected", 1)[1]


def test_train_method_not_allowed_for_pipeline(tmp_path):
    data = demo_data()
    data["pipelines"][0] = {"pipeline": "standard", "train_method": "auto"}
    line = error_line(load_error(write_data(tmp_path, data)), "pipelines[0].train_method")
    assert "got 'auto'" in line
    assert "one of: ft, lpft (for pipeline 'standard')" in line


@pytest.mark.parametrize("pipeline", ["random", "proxy"])
def test_unknown_pipeline(tmp_path, pipeline):
    data = demo_data()
    data["pipelines"][1]["pipeline"] = pipeline
    line = error_line(load_error(write_data(tmp_path, data)), "pipelines[1].pipeline")
    assert f"got {pipeline!r}" in line
    assert "one of: asvp, standard, svpp" in line


def test_missing_random_baseline(tmp_path):
    data = demo_data()
    data["strategies"] = ["margin", "entropy"]
    line = error_line(load_error(write_data(tmp_path, data)), "strategies")
    assert "['margin', 'entropy']" in line
    assert "'random'" in line and "required" in line


def test_budgets_not_increasing(tmp_path):
    data = demo_data()
    data["datasets"][0]["budgets"] = [20, 40, 40, 80]
    line = error_line(load_error(write_data(tmp_path, data)), "datasets[0].budgets[2]")
    assert "got 40;" in line
    assert "> 40" in line and "increasing" in line


def test_all_errors_are_reported_together(tmp_path):
    data = demo_data()
    data["strategy"] = data.pop("strategies")
    data["finetune"]["epochs"] = "ten"
    data["seeds"] = [0, True]
    data["pipelines"][0]["train_method"] = "auto"
    error = load_error(write_data(tmp_path, data))
    keys = ("strategy", "strategies", "finetune.epochs", "seeds[1]", "pipelines[0].train_method")
    for key in keys:
        error_line(error, key)
    assert str(error) == "\n".join(error.errors)
    assert isinstance(error, ValueError)


def test_duplicate_yaml_key_is_refused(tmp_path):
    path = write(tmp_path, DEMO + "image_size: 64\n")
    error = load_error(path)
    assert "image_size" in str(error) and "twice" in str(error)


@pytest.mark.parametrize("text", ["- just\n- a list\n", "name: [unclosed\n", ""])
def test_not_a_grid(tmp_path, text):
    load_error(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(GridError, match="cannot read"):
        load_grid(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------
# Environment variables and precedence
# ---------------------------------------------------------------------------------------------


def test_env_expansion_with_default_and_set(tmp_path, monkeypatch):
    monkeypatch.delenv("ASVP_TEST_STORE", raising=False)
    monkeypatch.delenv("ASVP_TEST_EPOCHS", raising=False)
    text = DEMO.replace(".asvp/features", "${ASVP_TEST_STORE:-/tmp/f}")
    text = text.replace("epochs: 15", 'epochs: "${ASVP_TEST_EPOCHS:-7}"')
    path = write(tmp_path, text)
    grid = load_grid(path)
    assert grid.feature_store == "/tmp/f"
    assert grid.finetune.epochs == 7  # a non-string field reads the expanded text as YAML

    monkeypatch.setenv("ASVP_TEST_STORE", "/data/features")
    monkeypatch.setenv("ASVP_TEST_EPOCHS", "12")
    grid = load_grid(path)
    assert grid.feature_store == "/data/features"
    assert grid.finetune.epochs == 12
    assert type(grid.feature_store) is str


def test_env_expansion_inside_text(tmp_path, monkeypatch):
    monkeypatch.setenv("ASVP_TEST_HOST", "mlflow.example")
    text = DEMO.replace("uri: null", 'uri: "http://${ASVP_TEST_HOST}:${ASVP_TEST_PORT:-5000}"')
    assert load_grid(write(tmp_path, text)).tracking_uri == "http://mlflow.example:5000"


def test_env_expansion_undefined(tmp_path, monkeypatch):
    monkeypatch.delenv("ASVP_TEST_UNDEFINED", raising=False)
    text = DEMO.replace("uri: null", "uri: ${ASVP_TEST_UNDEFINED}/mlruns")
    line = error_line(load_error(write(tmp_path, text)), "tracking.uri")
    assert "'${ASVP_TEST_UNDEFINED}/mlruns'" in line
    assert "ASVP_TEST_UNDEFINED is not set" in line


def test_env_expansion_wrong_type(tmp_path, monkeypatch):
    monkeypatch.setenv("ASVP_TEST_EPOCHS", "many")
    text = DEMO.replace("epochs: 15", 'epochs: "${ASVP_TEST_EPOCHS}"')
    line = error_line(load_error(write(tmp_path, text)), "finetune.epochs")
    assert "got 'many'; expected an integer" in line


def test_resolve_tracking_uri_precedence(tmp_path, monkeypatch):
    text = DEMO.replace("uri: null", "uri: sqlite:///grid.db")
    grid = load_grid(write(tmp_path, text))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(grid, None) == "sqlite:///grid.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(grid, None) == "http://env:5000"
    assert resolve_tracking_uri(grid, "http://cli:5000") == "http://cli:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(load_grid(write(tmp_path, DEMO, "b.yaml")), None) is None


def test_pipeline_entries_override_trigger_and_restrict_strategies(tmp_path):
    data = demo_data()
    data["pipelines"] = [
        {"pipeline": "svpp", "train_method": "lpft"},
        {"pipeline": "asvp", "train_method": "auto"},
        {
            "pipeline": "asvp",
            "train_method": "auto",
            "trigger": {"rule": "schedule", "at_labels": [40]},
            "strategies": ["margin"],
        },
    ]
    cells = [c for c in expand_cells(load_grid(write_data(tmp_path, data))) if c.config.seed == 0]
    labels = [(c.pipeline_label, c.strategy_label) for c in cells]
    assert labels == [
        ("random-ft", "random"),
        ("svpp-lpft", "margin"),
        ("svpp-lpft", "entropy"),
        ("asvp-auto", "margin"),
        ("asvp-auto", "entropy"),
        ('asvp-auto[at_labels=[40],rule="schedule"]', "margin"),
    ]
    scheduled = cells[-1]
    assert scheduled.config.trigger.rule == "schedule"
    assert scheduled.config.trigger.at_labels == (40,)
    assert scheduled.config.trigger.max_updates == 1  # the grid's trigger section, merged
    assert cells[3].config.trigger.rule == "logme"
    assert scheduled.run_name.startswith("asvp-auto[at_labels=[40]")
    assert len({c.run_name for c in cells}) == len({c.run_key for c in cells}) == len(cells)


@pytest.mark.parametrize(
    "entry, key, words",
    [
        (
            {"pipeline": "svpp", "train_method": "ft", "trigger": {"rule": "every"}},
            "pipelines[1].trigger",
            "only asvp",
        ),
        (
            {"pipeline": "asvp", "train_method": "auto", "trigger": {"rule": "sometimes"}},
            "pipelines[1].trigger.rule",
            "'sometimes'",
        ),
        (
            {"pipeline": "asvp", "train_method": "auto", "trigger": {"rule": "schedule"}},
            "pipelines[1].trigger.at_labels",
            "non-empty list of label counts",
        ),
        (
            {"pipeline": "asvp", "train_method": "auto", "strategies": ["badge"]},
            "pipelines[1].strategies[0]",
            "'badge'",
        ),
        (
            {"pipeline": "asvp", "train_method": "auto", "strategies": []},
            "pipelines[1].strategies",
            "non-empty list",
        ),
    ],
)
def test_bad_pipeline_entries(tmp_path, entry, key, words):
    data = demo_data()
    data["pipelines"] = [{"pipeline": "svpp", "train_method": "lpft"}, entry]
    line = error_line(load_error(write_data(tmp_path, data)), key)
    assert words in line


def test_ped_settings_are_checked(tmp_path):
    data = demo_data()
    data["trigger"] = {"rule": "ped", "ped": {"nsigma": 0.3, "time_step": 0.2}}
    grid = load_grid(write_data(tmp_path, data))
    assert grid.trigger.ped == {"nsigma": 0.3, "time_step": 0.2}
    data["trigger"]["ped"] = {"n_sigma": 0.3}
    line = error_line(load_error(write_data(tmp_path, data)), "trigger.ped.n_sigma")
    assert "got 0.3;" in line and "nsigma" in line.split("expected", 1)[1]
    data["trigger"]["ped"] = {"time_step": -1.0}
    line = error_line(load_error(write_data(tmp_path, data)), "trigger.ped.time_step")
    assert "got -1.0;" in line and "> 0" in line.split("expected", 1)[1]


def test_image_size_is_short_for_transform_size_and_given_once(tmp_path):
    data = demo_data()
    data.pop("image_size")
    data["transform"] = {"size": 48}
    same = expand_cells(load_grid(write_data(tmp_path, data, "a.yaml")))
    shorthand = expand_cells(load_grid(write(tmp_path, DEMO, "b.yaml")))
    assert [c.run_key for c in same] == [c.run_key for c in shorthand]
    data["image_size"] = 48
    error = load_error(write_data(tmp_path, data, "c.yaml"))
    assert "image_size: got 48" in str(error) and "transform.size" in str(error)
    data.pop("image_size")
    data["datasets"][0] |= {"image_size": 32, "transform": {"size": 40}}
    error = load_error(write_data(tmp_path, data, "d.yaml"))
    assert "datasets[0].image_size: got 32" in str(error)


def test_a_dataset_overrides_the_grids_transform(tmp_path):
    data = demo_data()
    data["transform"] = {"augment": "none", "interpolation": "bilinear"}
    data["datasets"][0]["transform"] = {"augment": "official"}
    config = expand_cells(load_grid(write_data(tmp_path, data)))[0].config
    assert config.transform == TransformConfig(
        augment="official", size=48, interpolation="bilinear"
    )


@pytest.mark.parametrize(
    ("transform", "key", "expected"),
    [
        ({"augment": "random"}, "transform.augment", "one of: none, official"),
        ({"interpolation": "nearest"}, "transform.interpolation", "bicubic, bilinear or null"),
        ({"mean": [0.5, 0.5]}, "transform.mean", "of 3 items"),
        ({"std": [0.5, 0.0, 0.5]}, "transform.std", "> 0"),
        ({"crop_pct": 1.5}, "transform.crop_pct", "(0, 1]"),
    ],
)
def test_a_bad_transform_names_the_key_and_what_is_allowed(tmp_path, transform, key, expected):
    data = demo_data()
    data["transform"] = transform
    error = str(load_error(write_data(tmp_path, data)))
    assert key in error and expected in error
