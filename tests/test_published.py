"""Published values: the shipped file, its validation, logging to a real SQLite MLflow store,
and the comparison with our seed means."""

import csv
import io
import math
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from report_data import COSTS, synthetic_curves

from benchmark.published import (
    COLUMNS,
    DOLLARS_NOTE,
    NOT_STATED,
    PublishedError,
    compare_published,
    load_published,
    log_published,
    write_comparison,
)
from benchmark.report import (
    PAPER_BACKBONE,
    SUMMARY_METRICS,
    SUMMARY_PREFIX,
    no_counterpart_note,
    published_counterparts,
    published_metric_name,
    seed_summaries,
)

SHIPPED = Path(__file__).resolve().parents[1] / "results" / "published" / "asvp-tmlr2024.csv"

# Everything the project's paper note gives as exact (or marked approximate) for the revised
# Figure 2, and the price the figure's axes imply: nothing else is known.
KNOWN = {
    ("standard", "labelling_cost_usd", 8591.0),
    ("standard", "training_cost_usd", 161.0),
    ("standard", "total_cost_usd", 8752.0),
    ("svpp", "labelling_cost_usd", 9091.0),
    ("svpp", "training_cost_usd", 1.3),
    ("svpp", "total_cost_usd", 9092.0),
    ("asvp", "labelling_cost_usd", 8663.0),
    ("asvp", "training_cost_usd", 26.0),
    ("asvp", "total_cost_usd", 8689.0),
    ("all", "device_hour_price_usd", 3.0),
}
UNSTATED = ("dataset", "backbone", "strategy", "target", "label_price", "device_hour_price")


@pytest.fixture(scope="module")
def shipped():
    return load_published(SHIPPED)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One SQLite MLflow store for the module (creating one takes seconds)."""
    return MlflowClient(f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")


@pytest.fixture(scope="module")
def summaries():
    return seed_summaries(synthetic_curves(never_reaching="badge"), COSTS)


def test_the_shipped_file_holds_exactly_the_known_values(shipped):
    assert list(shipped.columns) == list(COLUMNS)
    assert set(zip(shipped["pipeline"], shipped["metric"], shipped["value"], strict=True)) == KNOWN
    assert len(shipped) == len(KNOWN)
    assert set(shipped["metric"]) - {"device_hour_price_usd"} <= set(SUMMARY_METRICS)


def test_every_shipped_value_has_provenance_and_no_guessed_context(shipped):
    for row in shipped.to_dict("records"):
        assert "revised Figure 2" in row["source"] and "savings_img_new.pdf" in row["source"]
        assert row["how_read"]
        assert all(row[column] == NOT_STATED for column in UNSTATED), row
    keys = zip(shipped["pipeline"], shipped["metric"], strict=True)
    how = dict(zip(keys, shipped["how_read"], strict=True))
    assert how[("svpp", "total_cost_usd")].startswith("approximate")
    assert (
        how[("standard", "labelling_cost_usd")]
        == "vector coordinates of the plotted point decoded exactly"
    )
    price = how[("all", "device_hour_price_usd")]
    assert "tick alignment" in price and "not a stated price" in price
    notes = " ".join(shipped["notes"])
    assert "ImageNet" in notes and "an inference, not a stated fact" in notes


def _variant(tmp_path, edit) -> Path:
    """The shipped file with ``edit(rows)`` applied to its records (header included)."""
    rows = list(csv.reader(io.StringIO(SHIPPED.read_text())))
    edit(rows)
    path = tmp_path / "variant.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _set(row: int, column: str, value: str):
    def edit(rows):
        rows[row - 1][COLUMNS.index(column)] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set(3, "metric", "labeling_cost"), "line 3, column 'metric': unknown 'labeling_cost'"),
        (_set(4, "value", "about 8752"), "line 4, column 'value': 'about 8752' is not a finite"),
        (_set(2, "unit", "EUR"), "line 2, column 'unit': 'EUR'; expected 'USD'"),
        (_set(5, "pipeline", "proxy"), "line 5, column 'pipeline': unknown 'proxy'"),
        (
            _set(6, "dataset", ""),
            "line 6, column 'dataset': empty; expected text (write 'not stated'",
        ),
        (
            _set(7, "label_price", "cheap"),
            "line 7, column 'label_price': 'cheap'; expected a number",
        ),
        (
            _set(9, "target", "80%"),
            "line 9, column 'target': '80%' differs from 'not stated' on line 8",
        ),
        (lambda rows: rows.append(rows[1]), "line 12, column 'metric': 'labelling_cost_usd' again"),
        (lambda rows: rows[2].pop(), "line 3: 12 fields; expected 13"),
        (lambda rows: rows[0].__setitem__(12, "note"), "line 1, column 'notes': missing"),
    ],
)
def test_a_malformed_line_names_file_line_and_column(tmp_path, edit, message):
    path = _variant(tmp_path, edit)
    with pytest.raises(PublishedError) as error:
        load_published(path)
    assert f"{path}, {message}" in str(error.value)


def test_line_numbers_count_a_quoted_multi_line_note(tmp_path):
    path = _variant(
        tmp_path, lambda rows: (_set(2, "notes", "two\nlines")(rows), _set(3, "unit", "h")(rows))
    )
    with pytest.raises(PublishedError, match=r"line 4, column 'unit'"):
        load_published(path)


def _runs_all(client, file_name):
    experiment = client.get_experiment_by_name("published")
    return client.search_runs([experiment.experiment_id], f"tags.published_file = '{file_name}'")


def _runs(client, file_name):
    return {run.info.run_name: run for run in _runs_all(client, file_name)}


def test_logging_twice_creates_one_run_per_group(client, shipped):
    first = log_published(client, shipped, "twice.csv")
    assert sorted(first.created) == [
        "published/all/revised-figure-2",
        "published/asvp/revised-figure-2",
        "published/standard/revised-figure-2",
        "published/svpp/revised-figure-2",
    ]
    again = log_published(client, shipped, "twice.csv")
    assert again.created == [] and again.superseded == [] and len(again.unchanged) == 4
    runs = _runs(client, "twice.csv")
    assert len(runs) == 4
    asvp = runs["published/asvp/revised-figure-2"]
    assert asvp.data.metrics == {  # dollars at the source's prices, apart from ours
        "source_prices/labelling_cost_usd": 8663.0,
        "source_prices/training_cost_usd": 26.0,
        "source_prices/total_cost_usd": 8689.0,
    }
    params = asvp.data.params
    assert params["pipeline"] == "asvp" and params["dataset"] == NOT_STATED
    assert params["backbone"] == NOT_STATED and "savings_img_new.pdf" in params["source"]
    assert params["prices"].startswith("the source's (label price: not stated")
    assert "not comparable" in params["prices"]
    tags = asvp.data.tags
    assert tags["pipeline"] == "asvp" and tags["dataset"] == NOT_STATED
    assert tags["state"] == "finished" and "savings_img_new.pdf" in tags["source"]
    assert tags["how_read.total_cost_usd"].startswith("vector coordinates decoded exactly")
    assert tags["unit.total_cost_usd"] == "USD" and "TMLR 2024" in tags["paper"]
    history = client.get_metric_history(asvp.info.run_id, "source_prices/total_cost_usd")
    assert [m.step for m in history] == [0]


def test_a_changed_group_gets_a_new_run_and_supersedes_the_old(client, shipped, tmp_path):
    log_published(client, shipped, "changing.csv")
    old = _runs(client, "changing.csv")["published/asvp/revised-figure-2"]
    changed = load_published(_variant(tmp_path, _set(10, "value", "8690")))
    log = log_published(client, changed, "changing.csv")
    assert log.created == log.superseded == ["published/asvp/revised-figure-2"]
    assert len(log.unchanged) == 3
    runs = _runs_all(client, "changing.csv")
    assert len(runs) == 5  # nothing deleted
    old = client.get_run(old.info.run_id)
    assert old.data.tags["state"] == "superseded"
    new = [
        r
        for r in runs
        if r.data.tags.get("state") == "finished"
        and r.info.run_name == "published/asvp/revised-figure-2"
    ]
    assert len(new) == 1 and new[0].data.metrics["source_prices/total_cost_usd"] == 8690.0
    assert old.data.tags["superseded_by"] == new[0].info.run_id

    without_price = changed[changed["pipeline"] != "all"]
    log = log_published(client, without_price, "changing.csv")
    assert log.created == [] and log.superseded == ["published/all/revised-figure-2"]


def _ratio(comparison, metric, quantity, pipeline, strategy="margin"):
    rows = comparison[
        (comparison["comparison"] == "ratio")
        & (comparison["metric"] == metric)
        & (comparison["quantity"] == quantity)
        & (comparison["pipeline"] == pipeline)
        & (comparison["strategy"] == strategy)
    ]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _mean(summaries, pipeline, metric, strategy="margin"):
    mine = summaries[(summaries["pipeline"] == pipeline) & (summaries["strategy"] == strategy)]
    return mine[metric].mean()


def test_ratios_between_pipelines_published_and_ours(shipped, summaries):
    comparison = compare_published(shipped, summaries)
    row = _ratio(comparison, "total_cost_usd", "asvp/standard", "asvp-auto/standard-ft")
    assert row["published"] == pytest.approx(8689 / 8752)
    assert row["published_detail"] == "8689 / 8752"
    ours = _mean(summaries, "asvp-auto", "total_cost_usd") / _mean(
        summaries, "standard-ft", "total_cost_usd"
    )
    assert row["ours"] == pytest.approx(ours)
    assert row["difference"] == pytest.approx(ours - 8689 / 8752)
    row = _ratio(comparison, "training_cost_usd", "svpp/standard", "svpp-lpft/standard-lpft")
    assert row["published"] == pytest.approx(1.3 / 161)
    row = _ratio(comparison, "total_cost_usd", "asvp/svpp", "asvp-auto/svpp-lpft")
    assert row["published"] == pytest.approx(8689 / 9092)
    # every label of a family is compared: two standard labels x two strategies
    asvp_standard = comparison[
        (comparison["quantity"] == "asvp/standard") & (comparison["metric"] == "total_cost_usd")
    ]
    assert len(asvp_standard) == 4
    never = _ratio(comparison, "total_cost_usd", "svpp/standard", "svpp-lpft/standard-ft", "badge")
    assert math.isnan(never["ours"]) and "svpp-lpft never reached the target" in never["note"]


def test_figure_2_dollars_are_unknown_and_the_price_is_compared(shipped, summaries):
    values = compare_published(shipped, summaries)
    values = values[values["comparison"] == "value"]
    dollars = values[values["metric"] != "device_hour_price_usd"]
    assert len(dollars) == 9 and dollars["ours"].isna().all()
    assert dollars["note"].str.startswith("not comparable in dollars").all()
    (price,) = values[values["metric"] == "device_hour_price_usd"].to_dict("records")
    assert price["ours"] == 3.0 and price["difference"] == 0.0


def test_a_grid_without_svpp_gives_unknown_ratios(shipped, summaries):
    comparison = compare_published(shipped, summaries[summaries["family"] != "svpp"])
    ratios = comparison[comparison["comparison"] == "ratio"]
    assert len(ratios) == 6  # 3 pairs x 2 metrics, each once, ours unknown
    assert ratios["ours"].isna().all()
    assert ratios["note"].str.contains("all three pipelines").all()


def test_a_stated_context_is_compared_value_by_value(shipped, summaries):
    stated = pd.DataFrame(
        [
            {
                **shipped.iloc[0].to_dict(),
                "dataset": "cifar10",
                "strategy": "margin",
                "pipeline": "asvp",
                "metric": "ssr",
                "value": 0.2,
                "unit": "fraction",
                "source": "Table 9 (hypothetical, for the test)",
            }
        ]
    )
    comparison = compare_published(stated, summaries)
    (row,) = comparison.to_dict("records")
    assert row["pipeline"] == "asvp-auto" and row["dataset"] == "cifar10"
    ours = _mean(summaries, "asvp-auto", "ssr")
    assert row["ours"] == pytest.approx(ours)
    assert row["difference"] == pytest.approx(ours - 0.2)
    assert "does not state its target, label_price, device_hour_price" in row["note"]


def test_the_comparison_files_say_unknown_and_why(tmp_path, shipped, summaries):
    markdown = write_comparison(compare_published(shipped, summaries), tmp_path)
    assert DOLLARS_NOTE in markdown
    assert "## Ratios between pipelines" in markdown and "## Published values" in markdown
    table = pd.read_csv(tmp_path / "published_comparison.csv", dtype=str, keep_default_na=False)
    dollars = table[(table["comparison"] == "value") & (table["metric"] != "device_hour_price_usd")]
    assert set(dollars["ours"]) == {"unknown"} and set(dollars["difference"]) == {"unknown"}
    ratio = table[(table["quantity"] == "asvp/standard") & (table["metric"] == "total_cost_usd")]
    assert set(ratio["published"]) == {f"{8689 / 8752:.4f}"}
    assert (tmp_path / "published_comparison.md").read_text() == markdown + "\n"


def test_unstated_values_are_the_counterpart_of_a_grid_in_the_papers_setting_only(shipped):
    paper_like = published_counterparts(shipped, {"cifar10", "imagenet"}, {PAPER_BACKBONE})
    assert len(paper_like) == len(shipped)  # table2-like: every value is comparable
    demo = published_counterparts(shipped, {"mnist5k"}, {"efficientnet_lite0"})
    assert demo.empty
    note = no_counterpart_note({"mnist5k"}, {"efficientnet_lite0"})
    assert "no published counterpart" in note and "mnist5k" in note and PAPER_BACKBONE in note


def test_a_stated_dataset_or_backbone_must_match_the_grid(shipped):
    stated = shipped.copy()
    stated.loc[0, "dataset"] = "cifar10"
    stated.loc[1, "backbone"] = "efficientnet_lite0"
    demo = published_counterparts(stated, {"mnist5k"}, {"efficientnet_lite0"})
    assert list(demo.index) == [1]  # its backbone is the grid's, its dataset unstated
    cifar = published_counterparts(stated, {"cifar10"}, {"resnet50"})
    assert list(cifar.index) == [0]
    paper = published_counterparts(stated, {"pets"}, {PAPER_BACKBONE})
    assert 0 not in paper.index and 1 not in paper.index and len(paper) == len(stated) - 2


def test_published_dollars_are_named_apart_from_ours_and_fractions_beside_ours():
    assert published_metric_name("total_cost_usd") == "source_prices/total_cost_usd"
    assert published_metric_name("device_hour_price_usd") == "source_prices/device_hour_price_usd"
    assert published_metric_name("ssr") == f"{SUMMARY_PREFIX}ssr"  # where our runs log theirs
