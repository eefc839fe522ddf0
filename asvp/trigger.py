"""The feature-update rules that decide when ASVP replaces the proxy's features (``docs/design.md``,
"asvp"), and the indicators they read.

:class:`FeatureUpdateRule` implements the rules ``logme``, ``ped``, ``schedule``, ``never`` and
``every``. The indicators live in their own modules and are re-exported here: LogME
(:func:`logme`, :mod:`asvp.logme`) and PED (:func:`ped`, :func:`ped_features`,
:func:`check_ped_settings`, :class:`PedSettings`, :mod:`asvp.ped`). The paper's exact rule is not
public: these rules are this project's reading of it.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from asvp.config import TriggerConfig, TriggerRule
from asvp.logme import logme
from asvp.ped import PED_DEFAULTS, PedSettings, check_ped_settings, ped, ped_features

__all__ = [
    "PED_DEFAULTS",
    "SUBSAMPLE_REPEATS",
    "TRIGGER_RULES",
    "FeatureUpdateRule",
    "PedSettings",
    "UpdateDecision",
    "check_ped_settings",
    "logme",
    "ped",
    "ped_features",
]

TRIGGER_RULES: tuple[str, ...] = typing.get_args(TriggerRule)
SUBSAMPLE_REPEATS = 8


@dataclass(frozen=True)
class UpdateDecision:
    """One round's indicator reading: its value (NaN for rules without one) and the decision."""

    value: float
    reference: float
    update: bool
    reason: str


def _ped_indicator(config: TriggerConfig) -> Callable[[np.ndarray, np.ndarray], float]:
    settings = check_ped_settings(config.ped)
    return lambda features, labels: ped(features, labels, **settings)


# Rules that read a value on the labelled set's features: rule name -> indicator factory.
_INDICATORS: dict[str, Callable[[TriggerConfig], Callable[[np.ndarray, np.ndarray], float]]] = {
    "logme": lambda config: logme,
    "ped": _ped_indicator,
}


class FeatureUpdateRule:
    """Decides, at each evaluation budget, whether ASVP re-extracts the proxy's features.

    ``logme``: LogME of the current features of the labelled set; the reference is its value
    on the first round with these features (it restarts after each update); update when the
    value drops by more than ``1 - fraction`` of ``|reference|`` (that is, below
    ``fraction x reference`` for a positive reference; LogME can be negative, where a plain
    product would raise the bar), or below the absolute ``threshold``. LogME's per-sample
    evidence grows with the number of samples (measured on MNIST-5k with EfficientNet-Lite0
    features and margin selection: -0.137 at 20 labels, -0.020 at 80), so values of growing
    labelled sets are not comparable; the value is therefore the mean LogME over
    ``SUBSAMPLE_REPEATS`` seeded random subsets of the labelled set, each of the size the
    labelled set had when the rule first read it (on the same run: -0.137 at 20, -0.190 at
    40: the features separate the proxy's picks worse than the random initial set).

    ``ped``: the same with :func:`ped` (settings ``config.ped``, checked when the rule is
    built) in place of LogME; each subset is standardised by its own features (``ped``'s
    default ``reference``: the rule sees no ImageNet features).

    ``schedule``: update at the first evaluation budget at or above each count of
    ``at_labels``. ``every``: at every budget. ``never``: never (ASVP then equals SVPp).
    All rules respect ``max_updates`` and never update at the last budget, whose features
    would select nothing.
    """

    def __init__(self, config: TriggerConfig, seed: int = 0) -> None:
        if config.rule not in TRIGGER_RULES:
            raise ValueError(
                f"unknown trigger rule {config.rule!r}; expected one of {TRIGGER_RULES}"
            )
        self.config = config
        self.updates = 0
        self.reference = float("nan")
        self._pending_schedule = sorted(config.at_labels)
        self._rng = np.random.default_rng(seed)
        self._subset_size: int | None = None
        factory = _INDICATORS.get(config.rule)
        self._indicator = factory(config) if factory is not None else None

    def needs_value(self) -> bool:
        return self._indicator is not None

    def state_dict(self) -> dict[str, Any]:
        """What the rule carries from round to round (JSON-ready), for round checkpoints."""
        return {
            "updates": self.updates,
            "reference": self.reference,
            "pending_schedule": list(self._pending_schedule),
            "rng": self._rng.bit_generator.state,
            "subset_size": self._subset_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output: later decisions equal an uninterrupted
        rule's, including the random subsets of the size-matched indicator."""
        self.updates = int(state["updates"])
        self.reference = float(state["reference"])
        self._pending_schedule = list(state["pending_schedule"])
        self._rng.bit_generator.state = state["rng"]
        self._subset_size = state["subset_size"]

    def decide(
        self, labels_used: int, is_last: bool, features: np.ndarray | None, targets: np.ndarray
    ) -> UpdateDecision:
        """Read the indicator on the labelled set's current ``features`` and decide."""
        value = self._size_matched_value(features, targets) if self.needs_value() else float("nan")
        if self.needs_value() and np.isnan(self.reference):
            self.reference = value
        due = self._rule_says_update(labels_used, value)
        capped = self.config.max_updates is not None and self.updates >= self.config.max_updates
        if not due:
            return UpdateDecision(value, self.reference, False, "indicator: keep")
        if is_last:
            return UpdateDecision(value, self.reference, False, "last budget: nothing to select")
        if capped:
            return UpdateDecision(value, self.reference, False, "max_updates reached")
        self.updates += 1
        reference, self.reference = self.reference, float("nan")
        return UpdateDecision(value, reference, True, "indicator: update")

    def _size_matched_value(self, features: np.ndarray | None, targets: np.ndarray) -> float:
        """The indicator on the labelled set, or its mean over size-matched random subsets."""
        assert self._indicator is not None
        if features is None:
            raise ValueError(f"the {self.config.rule} rule needs the labelled set's features")
        if self._subset_size is None:
            self._subset_size = len(targets)
        if len(targets) <= self._subset_size:
            return self._indicator(features, targets)
        values = []
        for _ in range(SUBSAMPLE_REPEATS):
            rows = self._rng.choice(len(targets), size=self._subset_size, replace=False)
            values.append(self._indicator(features[rows], targets[rows]))
        return float(np.mean(values))

    def _rule_says_update(self, labels_used: int, value: float) -> bool:
        rule = self.config.rule
        if rule == "every":
            return True
        if rule == "never":
            return False
        if rule == "schedule":
            due = [count for count in self._pending_schedule if labels_used >= count]
            self._pending_schedule = [c for c in self._pending_schedule if c not in due]
            return bool(due)
        drop = value < self.reference - (1.0 - self.config.fraction) * abs(self.reference)
        below = self.config.threshold is not None and value < self.config.threshold
        return bool(drop or below)
