"""The names a cell's per-round metrics have in MLflow, grouped so that its UI reads right.

MLflow's chart view (3.17) puts every ``<section>/<name>`` into a collapsible section of its
own, the sections in alphabetical order, and the unprefixed metrics ("Model metrics") after all
of them. So the test accuracy, the curve every comparison is about, is ``accuracy/test_acc``:
its section comes first, alone (checked on the demo's store with headless Chromium). The wall
seconds (``time/``), what the round's fine-tune cost (``compute/``: training images per
second and, on CUDA, peak GPU memory; :func:`finetune_metrics`), the feature version and
ASVP's indicator (``features/``, ``indicator/``) and the selection-discrepancy counts
(``discrepancy/``) follow, each in its section; the report's one-point summaries are under
``summary/`` (:func:`benchmark.report.summary.log_summaries`). All are stepped by labels used.

Runs logged before this layout have flat names (``test_acc``, ``sampling_seconds``,
``time_<phase>``, ``feature_version``, ``indicator_value``, ``discrepancy_<name>``);
:func:`logged_name` finds what a run holds, so reports of older stores still read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names stay importable without torch (the CLI's fast paths)
    from asvp.finetune_scale import FineTuneStats

TEST_ACC = "accuracy/test_acc"
SAMPLING_SECONDS = "time/sampling_seconds"
EVALUATION_SECONDS = "time/evaluation_seconds"
FEATURE_VERSION = "features/version"
INDICATOR_VALUE = "indicator/value"
INDICATOR_REFERENCE = "indicator/reference"
INDICATOR_UPDATE = "indicator/update"
FINETUNE_IMAGES_PER_SECOND = "compute/finetune_images_per_second"
"""Training images per second of the round's fine-tune (its epochs; the LP probe excluded)."""
FINETUNE_PEAK_GPU_MEMORY_GIB = "compute/finetune_peak_gpu_memory_gib"
"""Peak GPU memory allocated by the round's fine-tune, GiB (CUDA only: absent elsewhere)."""
SUMMARY_PREFIX = "summary/"
"""The prefix of the report's one-point values (:data:`benchmark.report.SUMMARY_METRICS`)."""


MEASUREMENT_SECTIONS = ("time/", "compute/")
"""Sections of what a run measured about how it ran (wall seconds, throughput, memory), as
opposed to what it computed: they differ between two runs of the same cell."""


def is_measurement(name: str) -> bool:
    """Whether metric ``name`` measures how the run ran (:data:`MEASUREMENT_SECTIONS`, or an
    old flat ``time_*`` name), not what it computed."""
    return name.startswith(MEASUREMENT_SECTIONS) or name.startswith("time_")


def phase_seconds(phase: str) -> str:
    """The wall seconds of one phase of a round (``extract_features``, ``finetune``, ...)."""
    return f"time/{phase}_seconds"


def finetune_metrics(stats: FineTuneStats | None) -> dict[str, float]:
    """The ``compute/`` metrics of a round's fine-tune: its images/s and, when measured (CUDA),
    its peak GPU memory; a value that was not measured is left out, never logged as zero."""
    if stats is None:
        return {}
    values = {
        FINETUNE_IMAGES_PER_SECOND: stats.images_per_second,
        FINETUNE_PEAK_GPU_MEMORY_GIB: stats.peak_gpu_memory_gib,
    }
    return {name: float(value) for name, value in values.items() if value is not None}


def discrepancy(region: str) -> str:
    """One field of :class:`asvp.discrepancy.SelectionDiscrepancy` (``both``, ``overlap``...)."""
    return f"discrepancy/{region}"


def flat_name(name: str) -> str:
    """The flat name ``name`` had before the sections."""
    section, _, rest = name.partition("/")
    if section == "accuracy":
        return rest
    if section == "time" and rest in ("sampling_seconds", "evaluation_seconds"):
        return rest
    if section == "time":
        return "time_" + rest.removesuffix("_seconds")
    if section == "features":
        return "feature_" + rest
    return f"{section}_{rest}" if rest else name


def logged_name(name: str, logged: Mapping[str, float]) -> str:
    """``name`` as the run whose latest metrics are ``logged`` holds it: the sectioned name, or
    the flat one of a run logged before the sections (``name`` itself if it holds neither)."""
    if name in logged:
        return name
    legacy = flat_name(name)
    return legacy if legacy in logged else name
