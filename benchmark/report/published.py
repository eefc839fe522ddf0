"""Published numbers: load them with their provenance and log them to MLflow.

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
``superseded`` (kept, never deleted). Each run has the group's context as params, so MLflow's
runs table can filter and compare them like ours, and its dollars under a name that says whose
prices they are (:data:`SOURCE_PRICES_PREFIX`). The comparison with our seed means is
:mod:`benchmark.report.comparison`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.report.summary import SUMMARY_METRICS, SUMMARY_PREFIX
from benchmark.tracking import (
    STATE_FINISHED,
    STATE_SUPERSEDED,
    MlflowClient,
    create_finished_run,
    experiment_id,
    experiment_runs,
    supersede,
)

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

GROUP_CONTEXT = ("target", "label_price", "device_hour_price")
"""The context columns every row of a group shares: one accuracy target and one pair of prices
per :data:`GROUP_COLUMNS` group."""

_NUMBER_OR_NOT_STATED = ("label_price", "device_hour_price")

EXPERIMENT = "published"
PAPER = "Wen, Pizarro & Williams, TMLR 2024 (arXiv 2403.01101)"

SOURCE_PRICES_PREFIX = "source_prices/"
"""The MLflow metric-name prefix of a published value in dollars: it was measured at the
source's prices (mostly not stated), not at a grid's, so it is kept apart from our
``summary/*_usd`` metrics (MLflow's charts group metrics by this prefix) and never plotted on
the same chart as them; the other values go under :data:`~benchmark.report.SUMMARY_PREFIX`,
beside ours of the same name."""

_LOG_LAYOUT = 2
"""The layout of a published run (2: params, prefixed metric names); part of ``rows_hash``, so
a run logged in an older layout is superseded by one in this layout on the next report."""


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
        for column in GROUP_CONTEXT:
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
    ``how_read.<metric>``, ``unit.<metric>``, ``notes.<metric>``; params: the group's columns
    and context and ``prices`` (whose prices its dollars use); metrics: the values (step 0),
    named by :func:`published_metric_name`.
    A group whose current run has the same ``rows_hash`` is left alone; a changed group gets a
    new run and its older runs are tagged ``state=superseded`` with ``superseded_by``; a group no
    longer in the file has its runs tagged superseded too.
    """
    exp = experiment_id(client, EXPERIMENT)
    current: dict[str, list] = {}
    for run in experiment_runs(client, exp):
        tags = run.data.tags
        if tags.get("published_file") == file_name and tags.get("state") != STATE_SUPERSEDED:
            current.setdefault(tags.get("group_id", ""), []).append(run)
    log = PublishedLog()
    for group, rows in published.groupby(list(GROUP_COLUMNS), sort=False):
        values = dict(zip(GROUP_COLUMNS, group, strict=True))
        group_id = _hash(values)
        records = rows.sort_values("metric").to_dict("records")
        rows_hash = _hash([_LOG_LAYOUT, [{k: repr(v) for k, v in r.items()} for r in records]])
        name = _run_name(values)
        older = current.pop(group_id, [])
        if any(run.data.tags.get("rows_hash") == rows_hash for run in older):
            log.unchanged.append(name)
            continue
        identity = {"published_file": file_name, "group_id": group_id, "rows_hash": rows_hash}
        tags = _group_tags(values, records, identity)
        metrics = {published_metric_name(r["metric"]): r["value"] for r in records}
        run_id = create_finished_run(client, exp, name, tags, metrics)
        for key, value in _params(values, records).items():  # a finished run takes params
            client.log_param(run_id, key, value)
        log.created.append(name)
        for run in older:
            supersede(client, run.info.run_id, run_id)
            log.superseded.append(run.info.run_name)
    for runs in current.values():  # groups no longer in the file
        for run in runs:
            supersede(client, run.info.run_id, f"none: group removed from {file_name}")
            log.superseded.append(run.info.run_name)
    return log


def published_metric_name(metric: str) -> str:
    """The MLflow name of a published value: ``source_prices/<metric>`` for a dollar amount
    (its unit contains USD), ``summary/<metric>`` otherwise (beside our runs' values)."""
    prefix = SOURCE_PRICES_PREFIX if "USD" in METRIC_UNITS[metric] else SUMMARY_PREFIX
    return prefix + metric


def _params(values: dict[str, str], records: list[dict]) -> dict[str, str]:
    """A group's run params: its columns, its context and whose prices its dollars use."""
    first = records[0]
    prices = (
        f"the source's (label price: {first['label_price']}, device-hour price: "
        f"{first['device_hour_price']}), not a grid's: its dollars are not comparable with ours"
    )
    return {**values, **{c: str(first[c]) for c in GROUP_CONTEXT}, "prices": prices}


def _run_name(values: dict[str, str]) -> str:
    parts = [values["pipeline"], source_short(values["source"])]
    parts += [values[c] for c in ("dataset", "strategy") if values[c] != NOT_STATED]
    return "published/" + "/".join(parts)


def _group_tags(
    values: dict[str, str], records: list[dict], identity: dict[str, str]
) -> dict[str, str]:
    """A group's run tags: its columns and context, the provenance of each value, its
    identity (``identity``) and a description for ``mlflow ui``."""
    first = records[0]
    tags = {
        **values,
        **{c: first[c] for c in GROUP_CONTEXT},
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
    return tags


def _description(values: dict[str, str], records: list[dict]) -> str:
    """The run's description in ``mlflow ui``: the source and how each value was read."""
    lines = [f"Published values from {PAPER}: {values['source']}.", ""]
    lines += [f"- {r['metric']} = {r['value']:g} {r['unit']}: {r['how_read']}" for r in records]
    return "\n".join(lines)
