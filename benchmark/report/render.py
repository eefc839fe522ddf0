"""Writing the report's tables: Table 2 as CSV, Markdown and LaTeX (booktabs) with its caption
(the hardware its runs came from, prices, reference accuracies, the definitions note), and the
selection-discrepancy table.

Input is the output of :mod:`benchmark.report.summary`; nothing here computes a metric.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.grid import RESULTS_VERSION, Grid
from benchmark.report.summary import ReportTable

DEFINITIONS_NOTE = (
    "Definitions are asvp-bench's own (the paper's formulas are not public): SSR = 1 - n/B, "
    "n = labels at which the curve first reaches the seed-mean random accuracy at B "
    "(piecewise-linear); total cost = n x label price x reviews + sampling device-hours up to n "
    "x device-hour price; evaluation-only fine-tuning (all budgets) is excluded and shown apart. "
    'Saving vs random (USD), ours: the paper\'s "equivalent saving amount" in dollars = the '
    "random baseline's seed-mean total cost at B minus this row's total cost to reach a* "
    "(cost saving vs random = that saving / random's cost); n/a where a seed never reached a*. "
    "The random row is the reference: a* is its seed-mean accuracy at B, its total cost is its "
    "own at B, and it has no ratio to itself."
)

DISCREPANCY_NOTE = (
    "Seed means. At each budget where the proxy selected, the model just fine-tuned on the same "
    "labelled set selected with the same strategy and random stream: both = picked by both, "
    "proxy_only / model_only = by one of them; *_proxy_correct = how many of those the proxy "
    "classifies correctly; overlap = both / batch size (the paper's Figures 4-5).\n"
)


def hardware_note(hardware: dict[str, int]) -> str:
    """The line under a table saying which hardware its runs came from, ``Hardware: <label>
    (N runs); <label> (M runs)``, and, when more than one, a warning that differences between
    its cells may come from the kernels (docs/design.md, "Numbers that mean one thing"); "" for no
    runs. ``hardware``: runs per hardware label (:attr:`ReportTable.hardware`)."""
    if not hardware:
        return ""
    counts = "; ".join(f"{label} ({n} run{'s' * (n != 1)})" for label, n in hardware.items())
    note = f"Hardware: {counts}."
    if len(hardware) > 1:
        note += (
            f"\n\nWarning: cells of this table ran on different hardware: "
            f"{', '.join(hardware)}; their differences may come from the kernels, not the method."
        )
    return note


STATISTICS_NOTE = (
    "Cells: mean ± std over seeds and, in brackets, the 95% confidence interval of the mean "
    "(Student t, n-1 degrees of freedom; none when a seed never reached, or for one seed)."
)

PAIRED_NOTE = (
    "vs X: this row's test accuracy against pipeline X's for the same strategy and seeds, at "
    "each budget after the first (two-sided paired t-test over seeds, 95%, uncorrected): "
    "▲ k/L = higher at k of the L budgets, ▼ = lower, ≈ 0/L = no budget differs (within noise)."
)


def significance_note(table: ReportTable) -> str:
    """The paragraphs under a table saying how to read its intervals and paired markers, and
    which of its differences are within noise (:attr:`ReportTable.within_noise`,
    :attr:`ReportTable.ssr_within_noise`)."""
    paragraphs = [STATISTICS_NOTE]
    if any(str(column).startswith("vs ") for column in table.rows.columns):
        paragraphs.append(PAIRED_NOTE)
    if table.within_noise:
        paragraphs.append(
            "Within noise (no budget's paired difference is significant): "
            + "; ".join(table.within_noise)
            + "."
        )
    if table.ssr_within_noise:
        paragraphs.append(
            "SSR interval includes 0 (labels saved vs random not distinguishable from none): "
            + "; ".join(table.ssr_within_noise)
            + "."
        )
    return "\n\n".join(paragraphs)


def caption(grid: Grid, table: ReportTable) -> str:
    """The table's caption (Markdown): its warnings first (:attr:`ReportTable.warnings`), the
    hardware its runs came from (:func:`hardware_note`), how to read its statistics
    (:func:`significance_note`), prices, reference accuracies, the definitions note."""
    costs = grid.costs
    prices = ", ".join(f"{k}: ${v}/device-hour" for k, v in sorted(costs.device_hour.items()))
    note = f" {costs.note}" if costs.note else ""
    machines = hardware_note(table.hardware)
    return (
        "".join(f"{warning}\n\n" for warning in table.warnings)
        + (f"{machines}\n\n" if machines else "")
        + f"{significance_note(table)}\n\n"
        + f"Grid `{grid.name}`, results version {RESULTS_VERSION}. "
        f"Prices: ${costs.label_price} per label x {costs.reviews_per_label} review(s); "
        f"{prices}.{note}\n\nReference (a*): {'; '.join(table.references)}.\n\n"
        f"{DEFINITIONS_NOTE}"
    )


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "$": r"\$",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


_LATEX_SYMBOLS = {
    "±": r"$\pm$",
    "▲": r"$\blacktriangle$",
    "▼": r"$\blacktriangledown$",
    "≈": r"$\approx$",
}


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX text mode: the special characters escaped, ``±``, ``▲``, ``▼``
    and ``≈`` as math symbols (``▲``/``▼`` need amssymb), Markdown code quotes dropped."""
    escaped = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text.replace("`", ""))
    for symbol, command in _LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, command)
    return escaped


def table2_latex(table: pd.DataFrame, caption_text: str, label: str) -> str:
    """A booktabs ``table`` environment: text columns left, numbers right, a rule between
    datasets, the caption (paragraphs joined: a caption cannot hold a blank line). Needs
    ``\\usepackage{booktabs,graphicx,amssymb}``; the tabular is scaled to the text width."""
    text_columns = {"dataset", "pipeline", "strategy", "feature updates at"}
    spec = "".join(
        "l" if c in text_columns or str(c).startswith("vs ") else "r" for c in table.columns
    )
    lines = [
        "% asvp-bench Table 2; needs \\usepackage{booktabs,graphicx,amssymb}",
        "\\begin{table}[t]",
        "\\centering",
        "\\resizebox{\\textwidth}{!}{%",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(str(c)) for c in table.columns) + " \\\\",
        "\\midrule",
    ]
    previous = None
    for row in table.itertuples(index=False):
        if previous is not None and row[0] != previous:
            lines.append("\\midrule")
        previous = row[0]
        lines.append(" & ".join(latex_escape(str(v)) for v in row) + " \\\\")
    caption_line = " ".join(p.strip() for p in caption_text.split("\n\n") if p.strip())
    lines += [
        "\\bottomrule",
        "\\end{tabular}}",
        f"\\caption{{{latex_escape(caption_line)}}}",
        f"\\label{{{latex_escape(label)}}}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_report(
    grid: Grid,
    table: ReportTable,
    out_dir: Path,
    discrepancy: pd.DataFrame | None = None,
    paired: pd.DataFrame | None = None,
    discrepancy_hardware: dict[str, int] | None = None,
) -> str:
    """Write ``table2.csv`` (the table's text columns, then the numbers behind its
    reach-dependent cells, :attr:`ReportTable.numbers`, then the :data:`RESULTS_VERSION` that
    made it),
    ``table2.md`` and ``table2.tex`` (and, when given and not empty,
    ``discrepancy.csv`` and ``discrepancy.md`` with the hardware of its runs,
    ``discrepancy_hardware``, under it, and ``paired.csv``: every budget's paired test,
    :func:`~benchmark.report.significance.paired_tests`) into ``out_dir``; return the Table 2
    Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = table.rows.fillna("")
    machine = pd.concat(
        [shown.reset_index(drop=True), table.numbers.reset_index(drop=True)], axis=1
    )
    machine.assign(results_version=RESULTS_VERSION).to_csv(out_dir / "table2.csv", index=False)
    text = caption(grid, table)
    markdown = markdown_table(shown) + "\n\n" + text + "\n"
    (out_dir / "table2.md").write_text(markdown)
    (out_dir / "table2.tex").write_text(table2_latex(shown, text, f"tab:table2-{grid.name}"))
    if discrepancy is not None and not discrepancy.empty:
        discrepancy.to_csv(out_dir / "discrepancy.csv", index=False)
        machines = hardware_note(discrepancy_hardware or {})
        (out_dir / "discrepancy.md").write_text(
            markdown_table(discrepancy)
            + "\n\n"
            + (f"{machines}\n\n" if machines else "")
            + DISCREPANCY_NOTE
        )
    if paired is not None and not paired.empty:
        paired.to_csv(out_dir / "paired.csv", index=False)
    return markdown


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``table``'s columns and rows, values as text."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])
