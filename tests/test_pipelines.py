"""The round loops on a tiny real cell: determinism, shared initial sets, ASVP updates, costs."""

import dataclasses
import json

import numpy as np
import pytest

from asvp.features import FeatureStore
from asvp.pipelines import (
    PIPELINE_TRAIN_METHODS,
    Selector,
    available_pipelines,
    get_pipeline,
    run_cell,
)
from asvp.strategies import available_strategies, strategy_inputs


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "features")


def test_a_cell_is_deterministic(tiny_cell, store):
    first = run_cell(tiny_cell("svpp"), store)
    second = run_cell(tiny_cell("svpp"), store)
    assert first.labeled_order == second.labeled_order
    assert [r.test_acc for r in first.rounds] == [r.test_acc for r in second.rounds]


def test_cells_of_a_seed_share_the_initial_set_and_select_distinct_pool_indices(tiny_cell, store):
    standard = run_cell(tiny_cell("standard"), store)
    svpp = run_cell(tiny_cell("svpp"), store)
    rand = run_cell(tiny_cell("random", strategy="random"), store)
    assert standard.labeled_order[:10] == svpp.labeled_order[:10] == rand.labeled_order[:10]
    for result in (standard, svpp, rand):
        assert len(result.labeled_order) == len(set(result.labeled_order)) == 30
        assert [r.labels for r in result.rounds] == [10, 20, 30]
        assert [len(r.selected) for r in result.rounds] == [10, 10, 0]
        assert all(0 <= i < 200 for i in result.labeled_order)


def test_asvp_that_never_updates_equals_svpp(tiny_cell, store):
    svpp = run_cell(tiny_cell("svpp", train_method="lpft"), store)
    asvp = run_cell(tiny_cell("asvp", train_method="auto", rule="never"), store)
    assert asvp.labeled_order == svpp.labeled_order
    assert [r.test_acc for r in asvp.rounds] == [r.test_acc for r in svpp.rounds]
    assert [r.train_method for r in asvp.rounds] == ["lpft"] * 3


def test_asvp_update_replaces_features_and_switches_to_ft(tiny_cell, store):
    result = run_cell(tiny_cell("asvp", train_method="auto", rule="every", max_updates=1), store)
    updates = [r.indicator.update for r in result.rounds]
    assert updates == [True, False, False]
    assert [r.feature_version for r in result.rounds] == [1, 1, 1]
    assert [r.train_method for r in result.rounds] == ["ft", "ft", "ft"]
    first = result.rounds[0]
    assert first.seconds["update_extract"] > 0
    # the fine-tune that produced the new features is sampling compute in that round only
    assert first.sampling_seconds >= first.seconds["finetune"] + first.seconds["update_extract"]
    assert result.rounds[1].evaluation_seconds >= result.rounds[1].seconds["finetune"]
    svpp = run_cell(tiny_cell("svpp", train_method="ft"), store)
    assert result.labeled_order[10:20] != svpp.labeled_order[10:20]


def test_sampling_and_evaluation_compute_are_split_by_pipeline(tiny_cell, store):
    standard = run_cell(tiny_cell("standard"), store).rounds[0]
    svpp = run_cell(tiny_cell("svpp"), store).rounds[0]
    assert standard.sampling_seconds >= standard.seconds["finetune"]
    assert svpp.evaluation_seconds >= svpp.seconds["finetune"]
    assert svpp.sampling_seconds >= svpp.seconds["extract_features"] > 0


def test_feature_extraction_is_charged_even_when_cached(tiny_cell, store):
    first = run_cell(tiny_cell("svpp"), store).rounds[0].seconds["extract_features"]
    second = run_cell(tiny_cell("svpp"), store).rounds[0].seconds["extract_features"]
    assert first == second > 0


def test_a_corrupt_store_entry_is_rebuilt_not_used(tiny_cell, store):
    reference = run_cell(tiny_cell("svpp"), store)
    (entry,) = [p for p in store.root.iterdir() if p.is_dir()]
    array = entry / "features.npy"
    array.write_bytes(array.read_bytes()[: array.stat().st_size // 2])
    rebuilt = run_cell(tiny_cell("svpp"), store)
    assert rebuilt.labeled_order == reference.labeled_order
    assert np.load(array).shape == (200, 1280)


def test_discrepancy_analysis_records_what_the_fine_tuned_model_would_select(tiny_cell, store):
    svpp = run_cell(tiny_cell("svpp"), store)
    standard = run_cell(tiny_cell("standard"), store)
    # Round 0 starts from the shared initial set, so the svpp cell's evaluation fine-tune is the
    # standard cell's selecting model: what it "would have selected" is what standard selected.
    assert svpp.rounds[0].model_selected == standard.rounds[0].selected
    for record in svpp.rounds[:2]:
        d = record.discrepancy
        assert d.both + d.proxy_only == len(record.selected) == 10
        assert d.both + d.model_only == len(record.model_selected) == 10
        assert len(set(record.model_selected) & set(record.selected)) == d.both
        assert record.seconds["analysis"] > 0
        assert record.sampling_seconds + record.evaluation_seconds < sum(record.seconds.values())
    assert svpp.rounds[2].discrepancy is None  # nothing is selected at the last budget
    assert all(r.discrepancy is None for r in standard.rounds)


def test_discrepancy_analysis_can_be_switched_off_without_changing_selections(tiny_cell, store):
    on = run_cell(tiny_cell("svpp"), store)
    off = run_cell(dataclasses.replace(tiny_cell("svpp"), discrepancy_analysis=False), store)
    assert off.labeled_order == on.labeled_order
    assert all(r.discrepancy is None and "analysis" not in r.seconds for r in off.rounds)


# replay needs its order file: tested on its own below
@pytest.mark.parametrize("strategy", sorted(set(available_strategies()) - {"random", "replay"}))
def test_every_strategy_runs_in_a_proxy_cell(tiny_cell, store, strategy):
    config = dataclasses.replace(tiny_cell("svpp", strategy=strategy), budgets=(10, 20))
    result = run_cell(config, store)
    assert len(result.labeled_order) == len(set(result.labeled_order)) == 20
    reads_model = bool(strategy_inputs(strategy) & {"probs", "embeddings"})
    first = result.rounds[0]
    assert ("proxy_train" in first.seconds) == reads_model
    assert (first.discrepancy is not None) == reads_model


def test_standard_cell_with_a_feature_strategy_charges_extraction_not_fine_tuning(tiny_cell, store):
    record = run_cell(tiny_cell("standard", strategy="coreset_self"), store).rounds[0]
    assert record.seconds["extract_features"] > 0
    assert record.evaluation_seconds >= record.seconds["finetune"]
    assert "pool_score" not in record.seconds
    model = run_cell(tiny_cell("standard", strategy="coreset"), store).rounds[0]
    assert model.sampling_seconds >= model.seconds["finetune"] + model.seconds["pool_score"]
    assert "extract_features" not in model.seconds


def test_the_full_data_cell_fine_tunes_once_on_the_whole_pool(tiny_cell, store):
    result = run_cell(tiny_cell("full", strategy="all"), store)
    assert [r.labels for r in result.rounds] == [200]
    assert sorted(result.labeled_order) == list(range(200))
    assert result.rounds[0].selected == []
    assert result.rounds[0].sampling_seconds == 0.0  # an upper bound, not a selection


def test_replaying_a_cells_order_reproduces_its_labelled_sets_and_accuracy(
    tiny_cell, store, tmp_path
):
    original = run_cell(tiny_cell("standard"), store)
    order = tmp_path / "alidx.npy"
    np.save(order, np.array(original.labeled_order, dtype=np.int64))
    replayed = run_cell(
        dataclasses.replace(
            tiny_cell("standard", strategy="replay"), strategy_options={"order": str(order)}
        ),
        store,
    )
    assert replayed.labeled_order == original.labeled_order
    assert [r.test_acc for r in replayed.rounds] == [r.test_acc for r in original.rounds]


def test_a_replayed_order_shorter_than_the_budgets_is_an_error(tiny_cell, store, tmp_path):
    order = tmp_path / "short.npy"
    np.save(order, np.arange(15, dtype=np.int64))
    config = dataclasses.replace(
        tiny_cell("standard", strategy="replay"), strategy_options={"order": str(order)}
    )
    with pytest.raises(ValueError, match="15 indices, but the budgets need 20"):
        run_cell(config, store)


def _entry_kinds(store):
    manifests = [p / "manifest.json" for p in store.root.iterdir() if p.is_dir()]
    return sorted(json.loads(m.read_text())["key"].get("kind", "pretrained") for m in manifests)


def test_asvp_re_extractions_are_own_entries_removed_when_the_cell_ends(tiny_cell, store):
    config = tiny_cell("asvp", train_method="auto", rule="every", max_updates=2)
    removed = run_cell(config, store)
    assert _entry_kinds(store) == ["pretrained"]
    kept = run_cell(dataclasses.replace(config, keep_updated_features=True), store)
    assert _entry_kinds(store) == ["asvp_update", "asvp_update", "pretrained"]
    assert kept.labeled_order == removed.labeled_order


# -- the pipeline objects -------------------------------------------------------------------


def test_every_pipeline_is_registered_with_its_train_methods():
    assert available_pipelines() == ("asvp", "full", "random", "standard", "svpp")
    assert PIPELINE_TRAIN_METHODS == {
        "random": ("ft", "lpft"),
        "full": ("ft", "lpft"),
        "standard": ("ft", "lpft"),
        "svpp": ("ft", "lpft"),
        "asvp": ("ft", "lpft", "auto"),
    }
    assert [name for name in available_pipelines() if get_pipeline(name).in_grid] == [
        "asvp",
        "standard",
        "svpp",
    ]
    with pytest.raises(ValueError, match="unknown pipeline 'svp'; expected one of"):
        get_pipeline("svp")


def _sections_as_the_grid_decided_them(config):
    """The run-key rule benchmark.grid wrote with pipeline names (the reference)."""
    sections = {}
    if config.train_method in ("lpft", "auto"):
        sections["linear_probe"] = dataclasses.asdict(config.linear_probe)
    if config.pipeline in ("svpp", "asvp"):
        sections["proxy"] = dataclasses.asdict(config.proxy)
        sections["discrepancy_analysis"] = config.discrepancy_analysis
    if config.pipeline == "asvp":
        sections["trigger"] = dataclasses.asdict(config.trigger)
    return sections


@pytest.mark.parametrize(
    "pipeline, method", [(p, m) for p, methods in PIPELINE_TRAIN_METHODS.items() for m in methods]
)
def test_run_key_sections_are_those_the_grid_used(tiny_cell, pipeline, method):
    config = tiny_cell(pipeline, train_method=method)
    sections = get_pipeline(pipeline).scientific_sections(config)
    assert sections == _sections_as_the_grid_decided_them(config)


def test_which_model_selects_and_which_fine_tunes_are_sampling():
    selectors = {name: get_pipeline(name).selector for name in available_pipelines()}
    assert selectors == {
        "random": Selector.NONE,
        "full": Selector.NONE,
        "standard": Selector.FINE_TUNED,
        "svpp": Selector.PROXY,
        "asvp": Selector.PROXY,
    }
    assert [p for p in available_pipelines() if get_pipeline(p).uses_pretrained_features] == [
        "asvp",
        "svpp",
    ]
    assert [p for p in available_pipelines() if get_pipeline(p).updates_features] == ["asvp"]
    standard, svpp, asvp = (get_pipeline(p) for p in ("standard", "svpp", "asvp"))
    assert standard.finetune_is_sampling(model_selects=True, updating=False)
    assert not standard.finetune_is_sampling(model_selects=False, updating=False)
    assert not svpp.finetune_is_sampling(model_selects=True, updating=False)
    assert asvp.finetune_is_sampling(model_selects=True, updating=True)


def test_auto_is_lpft_before_the_first_update_and_ft_from_it_on(tiny_cell):
    asvp = get_pipeline("asvp")
    auto = tiny_cell("asvp", train_method="auto")
    assert asvp.train_method(auto, feature_version=0, updating=False) == "lpft"
    assert asvp.train_method(auto, feature_version=0, updating=True) == "ft"
    assert asvp.train_method(auto, feature_version=1, updating=False) == "ft"
    lpft = tiny_cell("asvp", train_method="lpft")
    assert asvp.train_method(lpft, feature_version=1, updating=True) == "lpft"


def test_a_pipeline_without_a_selecting_model_refuses_a_model_strategy(tiny_cell, store):
    with pytest.raises(ValueError, match="'margin' reads .*'probs'.* no model selects"):
        run_cell(tiny_cell("random", strategy="margin"), store)
