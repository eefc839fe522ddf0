"""Pipelines: one registered object per pipeline, and the AL round loop that runs a cell.

- :mod:`~asvp.pipelines.base`: :class:`Pipeline` (train methods, which model selects, feature
  updates, run-key sections, which fine-tunes are sampling compute) and :class:`Selector`.
- :mod:`~asvp.pipelines.registry`: :func:`get_pipeline`, :func:`available_pipelines`.
- One module per pipeline: ``random`` (the baseline), ``full`` (the upper bound), ``standard``,
  ``svpp``, ``asvp``.
- :mod:`~asvp.pipelines.loop`: :func:`run_cell` and :class:`CellRunner`, the round loop;
  :mod:`~asvp.pipelines.models` (fine-tunes), :mod:`~asvp.pipelines.selection` (scoring,
  requests, discrepancy), :mod:`~asvp.pipelines.cell_features` (the proxy's features) and
  :mod:`~asvp.pipelines.records` (round records, seeds) are its phases.
"""

from asvp.features.keys import cell_digest
from asvp.pipelines import asvp, full, random, standard, svpp  # noqa: F401  (register)
from asvp.pipelines.base import LINEAR_PROBE_METHODS, Pipeline, Selector
from asvp.pipelines.loop import CellRunner, run_cell
from asvp.pipelines.records import (
    ALWAYS_SAMPLING,
    ANALYSIS_PHASES,
    CellResult,
    RoundRecord,
    derive_seed,
    initial_labeled_set,
    round_record,
)
from asvp.pipelines.registry import available_pipelines, get_pipeline, register_pipeline
from asvp.pipelines.selection import MODEL_INPUTS

PIPELINES: tuple[str, ...] = available_pipelines()
"""Every pipeline's name."""
PIPELINE_TRAIN_METHODS: dict[str, tuple[str, ...]] = {
    name: get_pipeline(name).train_methods for name in PIPELINES
}
"""The train methods each pipeline accepts (``asvp`` also ``auto``)."""

__all__ = [
    "ALWAYS_SAMPLING",
    "ANALYSIS_PHASES",
    "LINEAR_PROBE_METHODS",
    "MODEL_INPUTS",
    "PIPELINES",
    "PIPELINE_TRAIN_METHODS",
    "CellResult",
    "CellRunner",
    "Pipeline",
    "RoundRecord",
    "Selector",
    "available_pipelines",
    "cell_digest",
    "derive_seed",
    "get_pipeline",
    "initial_labeled_set",
    "register_pipeline",
    "round_record",
    "run_cell",
]
