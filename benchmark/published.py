"""Published numbers: load them with their provenance, log them to MLflow, compare with ours.

A published-values file (``results/published/*.csv``) holds ONE ROW PER PUBLISHED VALUE with
where it comes from (``source``, ``how_read``) and the context it was measured in (dataset,
backbone, strategy, accuracy target, prices). Context a source does not state is written
``not stated``, never guessed; an inference goes in ``notes``. Metric names are those of the
per-seed metrics the report logs for our runs (:data:`benchmark.report.SUMMARY_METRICS`), plus
``device_hour_price_usd`` for a price read off a figure. ``results/published/README.md`` says
how to add a value.

:func:`log_published` writes the values into the MLflow experiment ``published``: one run per
(source, dataset, backbone, strategy, pipeline) group, identified by a hash of the group's rows,
so logging again creates nothing and a changed group gets a new run while the old one is tagged
``superseded`` (kept, never deleted). :func:`compare_published` sets them against our seed
means: value by value where the published context matches a cell of the grid, and as ratios
between pipelines (ASVP/standard, SVPp/standard, ASVP/SVPp) where it does not, because dollar
amounts measured under unstated prices and targets cannot be compared.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from benchmark.report import SUMMARY_METRICS, markdown_table
from benchmark.tracking import STATE_FINISHED, STATE_SUPERSEDED, experiment_id

COLUMNS = (
    "source",
    "how_read",
    "dataset",
    "backbone",
    "strategy",
    "pipeline",
    "metric",
    "value",
    "unit",
    "target",
    "label_price",
    "device_hour_price",
    "notes",
)
"""The columns of a published-values file, each required (``notes`` may be empty)."""

NOT_STATED = "not stated"
"""What a context column holds when the source does not state it."""

PRICE_METRIC = "device_hour_price_usd"
_FRACTION_METRICS = ("ssr", "aubc", "final_acc", "cost_saving_vs_random")
METRIC_UNITS: dict[str, str] = {
    **{name: "USD" for name in SUMMARY_METRICS if name.endswith("_usd")},
    "sampling_hours": "device-hours",
    **{name: "fraction" for name in _FRACTION_METRICS},
    PRICE_METRIC: "USD per device-hour",
}
"""Every metric a published value may have, with the unit it must be written in."""

PIPELINE_FAMILIES = ("standard", "svpp", "asvp", "random", "full", "all")
"""Our pipeline families (the part of a pipeline label before ``-``); ``all``: a value about the
whole figure or table, such as a price."""

GROUP_COLUMNS = ("source", "dataset", "backbone", "strategy", "pipeline")
"""One MLflow run per group of rows with these values."""

_SAME_IN_GROUP = ("target", "label_price", "device_hour_price")
_NUMBER_OR_NOT_STATED = ("label_price", "device_hour_price")

EXPERIMENT = "published"
PAPER = "Wen, Pizarro & Williams, TMLR 2024 (arXiv 2403.01101)"

RATIO_PAIRS = (("asvp", "standard"), ("svpp", "standard"), ("asvp", "svpp"))
RATIO_METRICS = ("total_cost_usd", "training_cost_usd")

DOLLARS_NOTE = (
    "Dollar amounts are compared only where a source states its dataset and strategy. The "
    "revised Figure 2 states neither, nor its accuracy target or prices (`not stated` in the "
    "published-values file): its dollars are not comparable with this grid's, so the ratios "
    "between pipelines are compared instead. They still depend on the unstated prices and "
    "target: read them as a sanity check, not a replication. `unknown`: no value is available "
    "(the source's context is not stated or matches no cell, our cells never reached the "
    "target, or the grid lacks a pipeline)."
)


class PublishedError(ValueError):
    """A malformed published-values file: every problem, one line each, with file, line and
    column."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_published(path: str | Path) -> pd.DataFrame:
    """The published values of the CSV file at ``path``, validated: one row per value, the
    :data:`COLUMNS` (``value`` as float). :class:`PublishedError` names the file, line, column
    and what is expected for every problem found."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            records = _numbered_rows(handle)
    except OSError as error:
        raise PublishedError(
            [f"{path}: cannot read the published-values file ({error})"]
        ) from error
    errors: list[str] = []
    if not records:
        raise PublishedError([f"{path}: empty; expected a header line with {', '.join(COLUMNS)}"])
    _, header = records[0]
    header = [name.strip() for name in header]
    for name in COLUMNS:
        if name not in header:
            errors.append(f"{path}, line 1, column {name!r}: missing; expected {list(COLUMNS)}")
    for name in header:
        if name not in COLUMNS:
            errors.append(f"{path}, line 1, column {name!r}: unknown; expected {list(COLUMNS)}")
    if errors:
        raise PublishedError(errors)
    rows = []
    for line, fields in records[1:]:
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            errors.append(f"{path}, line {line}: {len(fields)} fields; expected {len(header)}")
            continue
        row = {name: value.strip() for name, value in zip(header, fields, strict=True)}
        errors += [f"{path}, line {line}, {problem}" for problem in _row_problems(row)]
        rows.append((line, row))
    if not rows:
        errors.append(f"{path}: no values; expected one row per published value")
    errors += _group_problems(path, rows)
    if errors:
        raise PublishedError(errors)
    table = pd.DataFrame([row for _, row in rows], columns=list(COLUMNS))
    table["value"] = table["value"].astype(float)
    return table


def _numbered_rows(handle) -> list[tuple[int, list[str]]]:
    """The CSV records with the line each starts on (a quoted field may span lines)."""
    reader = csv.reader(handle)
    rows, start = [], 1
    for fields in reader:
        rows.append((start, fields))
        start = reader.line_num + 1
    return rows


def _row_problems(row: dict[str, str]) -> list[str]:
    """What is wrong with one row, each as ``column 'name': problem; expected ...``."""
    problems = []

    def bad(column: str, problem: str, expected: str) -> None:
        problems.append(f"column {column!r}: {problem}; expected {expected}")

    for name in COLUMNS:
        if name != "notes" and not row[name]:
            bad(name, "empty", f"text (write {NOT_STATED!r} where the source does not say)")
    if row["metric"] and row["metric"] not in METRIC_UNITS:
        bad("metric", f"unknown {row['metric']!r}", f"one of {sorted(METRIC_UNITS)}")
    elif row["metric"] and row["unit"] and row["unit"] != METRIC_UNITS[row["metric"]]:
        bad("unit", f"{row['unit']!r}", f"{METRIC_UNITS[row['metric']]!r} for {row['metric']}")
    if row["pipeline"] and row["pipeline"] not in PIPELINE_FAMILIES:
        bad("pipeline", f"unknown {row['pipeline']!r}", f"one of {list(PIPELINE_FAMILIES)}")
    if row["value"] and not _is_number(row["value"]):
        bad("value", f"{row['value']!r} is not a finite number", "a number such as 8752 or 1.3")
    for name in _NUMBER_OR_NOT_STATED:
        if row[name] and row[name] != NOT_STATED and not _is_number(row[name]):
            bad(name, f"{row[name]!r}", f"a number (USD) or {NOT_STATED!r}")
    return problems


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _group_problems(path: Path, rows: list[tuple[int, dict[str, str]]]) -> list[str]:
    """A metric given twice in one group, or a group whose rows disagree on their context."""
    problems = []
    first_of: dict[tuple[str, ...], int] = {}
    group_line: dict[tuple[str, ...], tuple[int, dict[str, str]]] = {}
    for line, row in rows:
        group = tuple(row[c] for c in GROUP_COLUMNS)
        key = (*group, row["metric"])
        if key in first_of:
            problems.append(
                f"{path}, line {line}, column 'metric': {row['metric']!r} again for the same "
                f"{', '.join(GROUP_COLUMNS)} as line {first_of[key]}; expected one value each"
            )
        first_of.setdefault(key, line)
        seen_line, seen = group_line.setdefault(group, (line, row))
        for column in _SAME_IN_GROUP:
            if row[column] != seen[column]:
                problems.append(
                    f"{path}, line {line}, column {column!r}: {row[column]!r} differs from "
                    f"{seen[column]!r} on line {seen_line} of the same group; expected one "
                    f"{column} per {', '.join(GROUP_COLUMNS)}"
                )
                break
    return problems


# --------------------------------------------------------------------------------------------
# Logging to MLflow
# --------------------------------------------------------------------------------------------


@dataclass
class PublishedLog:
    """What :func:`log_published` did, by run name."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"published values in MLflow experiment {EXPERIMENT!r}: {len(self.created)} new "
            f"run(s), {len(self.unchanged)} unchanged, {len(self.superseded)} superseded"
        )


def source_short(source: str) -> str:
    """A source's short name for run names: the text before its first `` (``, as a slug
    (``revised Figure 2 (author homepage, ...)`` -> ``revised-figure-2``)."""
    head = source.split(" (", 1)[0]
    return re.sub(r"[^a-z0-9]+", "-", head.lower()).strip("-") or "source"


def _hash(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def log_published(client: MlflowClient, published: pd.DataFrame, file_name: str) -> PublishedLog:
    """Log the values of one published-values file (``file_name`` tags its runs) into the
    experiment ``published``, once.

    One run per group (:data:`GROUP_COLUMNS`), named
    ``published/<pipeline>/<source short>[/<dataset>][/<strategy>]`` (stated parts only); tags:
    the group's columns and context, ``paper``, ``published_file``, ``group_id`` (hash of the
    group's columns), ``rows_hash`` (hash of its rows), ``state``, and per metric
    ``how_read.<metric>``, ``unit.<metric>``, ``notes.<metric>``; metrics: the values (step 0).
    A group whose current run has the same ``rows_hash`` is left alone; a changed group gets a
    new run and its older runs are tagged ``state=superseded`` with ``superseded_by``; a group no
    longer in the file has its runs tagged superseded too.
    """
    exp = experiment_id(client, EXPERIMENT)
    current: dict[str, list] = {}
    for run in _all_runs(client, exp):
        tags = run.data.tags
        if tags.get("published_file") == file_name and tags.get("state") != STATE_SUPERSEDED:
            current.setdefault(tags.get("group_id", ""), []).append(run)
    log = PublishedLog()
    for group, rows in published.groupby(list(GROUP_COLUMNS), sort=False):
        values = dict(zip(GROUP_COLUMNS, group, strict=True))
        group_id = _hash(values)
        records = rows.sort_values("metric").to_dict("records")
        rows_hash = _hash([{k: repr(v) for k, v in r.items()} for r in records])
        name = _run_name(values)
        older = current.pop(group_id, [])
        if any(run.data.tags.get("rows_hash") == rows_hash for run in older):
            log.unchanged.append(name)
            continue
        identity = {"published_file": file_name, "group_id": group_id, "rows_hash": rows_hash}
        run_id = _create_group_run(client, exp, name, values, records, identity)
        log.created.append(name)
        for run in older:
            _supersede(client, run.info.run_id, run_id)
            log.superseded.append(run.info.run_name)
    for runs in current.values():  # groups no longer in the file
        for run in runs:
            _supersede(client, run.info.run_id, f"none: group removed from {file_name}")
            log.superseded.append(run.info.run_name)
    return log


def _all_runs(client: MlflowClient, exp: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([exp], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _run_name(values: dict[str, str]) -> str:
    parts = [values["pipeline"], source_short(values["source"])]
    parts += [values[c] for c in ("dataset", "strategy") if values[c] != NOT_STATED]
    return "published/" + "/".join(parts)


def _create_group_run(
    client: MlflowClient,
    exp: str,
    name: str,
    values: dict[str, str],
    records: list[dict],
    identity: dict[str, str],
) -> str:
    first = records[0]
    tags = {
        **values,
        **{c: first[c] for c in _SAME_IN_GROUP},
        "source_short": source_short(values["source"]),
        **identity,
        "paper": PAPER,
        "state": STATE_FINISHED,
    }
    for r in records:
        tags[f"how_read.{r['metric']}"] = r["how_read"]
        tags[f"unit.{r['metric']}"] = r["unit"]
        if r["notes"]:
            tags[f"notes.{r['metric']}"] = r["notes"]
    tags["mlflow.note.content"] = _description(values, records)
    run_id = client.create_run(exp, run_name=name, tags=tags).info.run_id
    stamp = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(r["metric"], r["value"], stamp, 0) for r in records])
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _description(values: dict[str, str], records: list[dict]) -> str:
    """The run's description in ``mlflow ui``: the source and how each value was read."""
    lines = [f"Published values from {PAPER}: {values['source']}.", ""]
    lines += [f"- {r['metric']} = {r['value']:g} {r['unit']}: {r['how_read']}" for r in records]
    return "\n".join(lines)


def _supersede(client: MlflowClient, run_id: str, by: str) -> None:
    client.set_tag(run_id, "state", STATE_SUPERSEDED)
    client.set_tag(run_id, "superseded_by", by)


# --------------------------------------------------------------------------------------------
# Comparison with our runs
# --------------------------------------------------------------------------------------------


def compare_published(published: pd.DataFrame, summaries: pd.DataFrame) -> pd.DataFrame:
    """Published values against our seed means (``summaries``:
    :func:`benchmark.report.seed_summaries`), one row per comparison.

    ``comparison = "ratio"`` rows: for each published setting (source, dataset, backbone,
    strategy) that has both pipelines of a :data:`RATIO_PAIRS` pair for a :data:`RATIO_METRICS`
    metric, the published ratio against ours for every dataset x strategy of the grid that has
    all three families (standard, svpp, asvp) and matches the setting's stated dataset and
    strategy, for every pair of our labels of the two families (ratio of seed means over the
    seeds that reached the target). ``comparison = "value"`` rows: each published value against
    our cells of the same dataset, strategy and family, only where the source states the dataset
    and strategy; a price against the one device-hour price our runs used. NaN (``unknown``)
    where either side has no value; ``note`` says why.
    """
    means = _our_means(summaries)
    rows = _ratio_rows(published, means) + [
        row
        for record in published.to_dict("records")
        for row in _value_rows(record, means, summaries)
    ]
    return pd.DataFrame(rows, columns=_COMPARISON_COLUMNS)


_COMPARISON_COLUMNS = [
    "comparison",
    "metric",
    "quantity",
    "source",
    "published_dataset",
    "published_strategy",
    "published",
    "published_detail",
    "dataset",
    "strategy",
    "pipeline",
    "ours",
    "ours_detail",
    "difference",
    "note",
]


def _our_means(summaries: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x strategy x pipeline label: family, seeds, and the mean of each metric over
    the seeds where it is defined (NaN if none)."""
    keys = ["dataset", "strategy", "pipeline", "family"]
    grouped = summaries.groupby(keys, sort=False)
    means = grouped[list(SUMMARY_METRICS)].mean()  # pandas skips NaN
    means["seeds"] = grouped.size()
    return means.reset_index()


def _matches(stated: str, ours: str) -> bool:
    return stated in (NOT_STATED, ours)


def _ratio_rows(published: pd.DataFrame, means: pd.DataFrame) -> list[dict]:
    rows = []
    setting_columns = ["source", "dataset", "backbone", "strategy"]
    for setting, values in published.groupby(setting_columns, sort=False):
        source, dataset, _, strategy = setting
        by_family = {(r["pipeline"], r["metric"]): r["value"] for r in values.to_dict("records")}
        complete = _complete_settings(means, dataset, strategy)
        for metric in RATIO_METRICS:
            for num, den in RATIO_PAIRS:
                if (num, metric) not in by_family or (den, metric) not in by_family:
                    continue
                base = {
                    "comparison": "ratio",
                    "metric": metric,
                    "quantity": f"{num}/{den}",
                    "source": source,
                    "published_dataset": dataset,
                    "published_strategy": strategy,
                    "published": by_family[(num, metric)] / by_family[(den, metric)],
                    "published_detail": f"{by_family[(num, metric)]:g} / "
                    f"{by_family[(den, metric)]:g}",
                }
                rows += _our_ratios(base, complete, metric, num, den)
    return rows


def _complete_settings(means: pd.DataFrame, dataset: str, strategy: str) -> pd.DataFrame:
    """Our rows of the dataset x strategy pairs (matching the stated ones) that have all three
    families standard, svpp and asvp."""
    if means.empty:
        return means
    families = means.groupby(["dataset", "strategy"])["family"].agg(set)
    complete = [
        key
        for key, present in families.items()
        if {"standard", "svpp", "asvp"} <= present
        and _matches(dataset, key[0])
        and _matches(strategy, key[1])
    ]
    keys = pd.MultiIndex.from_frame(means[["dataset", "strategy"]])
    return means[keys.isin(complete)]


def _our_ratios(base: dict, complete: pd.DataFrame, metric: str, num: str, den: str) -> list[dict]:
    if complete.empty:
        note = "no dataset x strategy of this grid has all three pipelines (standard, svpp, asvp)"
        return [_with_ours(base, "", "", "", math.nan, "", note)]
    rows = []
    for (dataset, strategy), ours in complete.groupby(["dataset", "strategy"], sort=False):
        for n in ours[ours["family"] == num].to_dict("records"):
            for d in ours[ours["family"] == den].to_dict("records"):
                top, bottom = n[metric], d[metric]
                defined = math.isfinite(top) and math.isfinite(bottom) and bottom != 0
                ratio = top / bottom if defined else math.nan
                missing = [r["pipeline"] for r in (n, d) if not math.isfinite(r[metric])]
                note = (
                    f"our value undefined: {', '.join(missing)} never reached the target"
                    if missing
                    else ("" if defined else "our denominator is 0")
                )
                label = f"{n['pipeline']}/{d['pipeline']}"
                detail = f"{top:.6g} / {bottom:.6g}"
                rows.append(_with_ours(base, dataset, strategy, label, ratio, detail, note))
    return rows


def _with_ours(
    base: dict, dataset: str, strategy: str, pipeline: str, ours: float, detail: str, note: str
) -> dict:
    published = base["published"]
    return {
        **base,
        "dataset": dataset,
        "strategy": strategy,
        "pipeline": pipeline,
        "ours": ours,
        "ours_detail": detail,
        "difference": ours - published if math.isfinite(ours) else math.nan,
        "note": note,
    }


def _value_rows(record: dict, means: pd.DataFrame, summaries: pd.DataFrame) -> list[dict]:
    base = {
        "comparison": "value",
        "metric": record["metric"],
        "quantity": record["pipeline"],
        "source": record["source"],
        "published_dataset": record["dataset"],
        "published_strategy": record["strategy"],
        "published": record["value"],
        "published_detail": f"{record['value']:g} {record['unit']}",
    }
    if record["metric"] == PRICE_METRIC:
        prices = sorted(set(summaries["device_hour_price"])) if not summaries.empty else []
        if len(prices) == 1:
            devices = ", ".join(sorted(set(summaries["device"])))
            return [_with_ours(base, "", "", "", prices[0], f"grid price ({devices})", "")]
        note = f"our runs used {len(prices)} device-hour prices: {prices}"
        return [_with_ours(base, "", "", "", math.nan, "", note)]
    unstated = [c for c in ("dataset", "strategy") if record[c] == NOT_STATED]
    if unstated:
        note = (
            f"not comparable in dollars: the source does not state its {' or '.join(unstated)}; "
            "see the ratios"
        )
        return [_with_ours(base, "", "", "", math.nan, "", note)]
    mine = means[
        (means["dataset"] == record["dataset"])
        & (means["strategy"] == record["strategy"])
        & (means["family"] == record["pipeline"])
    ]
    if mine.empty:
        note = (
            f"no cell of this grid has dataset {record['dataset']}, strategy "
            f"{record['strategy']}, pipeline family {record['pipeline']}"
        )
        return [_with_ours(base, "", "", "", math.nan, "", note)]
    context = [c for c in _SAME_IN_GROUP if record[c] == NOT_STATED]
    caveat = f"the source does not state its {', '.join(context)}" if context else ""
    rows = []
    for ours in mine.to_dict("records"):
        value = ours[record["metric"]]
        note = caveat if np.isfinite(value) else "our value undefined (target never reached)"
        detail = f"seed mean over {ours['seeds']} seed(s)"
        rows.append(
            _with_ours(
                base, ours["dataset"], ours["strategy"], ours["pipeline"], value, detail, note
            )
        )
    return rows


def write_comparison(comparison: pd.DataFrame, out_dir: Path) -> str:
    """Write ``published_comparison.csv`` and ``published_comparison.md`` (``unknown`` for a
    missing value) into ``out_dir``; return the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = comparison.copy()
    for column in ("published", "ours", "difference"):
        digits = shown["comparison"].map({"ratio": ".4f", "value": ".6g"})
        shown[column] = [
            format(v, d) if math.isfinite(v) else "unknown"
            for v, d in zip(shown[column], digits, strict=True)
        ]
    shown.to_csv(out_dir / "published_comparison.csv", index=False)
    sources = sorted(set(shown["source"]))
    shown["source"] = shown["source"].map(source_short)  # the full names are listed above
    ratios = shown[shown["comparison"] == "ratio"].drop(columns="comparison")
    values = shown[shown["comparison"] == "value"].drop(columns="comparison")
    markdown = "\n\n".join(
        [
            f"# Ours vs published: {PAPER}",
            DOLLARS_NOTE,
            "Sources: " + "; ".join(f"`{source_short(s)}` = {s}" for s in sources) + ".",
            "## Ratios between pipelines",
            markdown_table(ratios) if not ratios.empty else "(no published ratio)",
            "## Published values",
            markdown_table(values) if not values.empty else "(no published value)",
        ]
    )
    (out_dir / "published_comparison.md").write_text(markdown + "\n")
    return markdown
