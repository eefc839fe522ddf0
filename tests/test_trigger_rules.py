"""The ASVP feature-update rules (asvp.trigger.FeatureUpdateRule)."""

import numpy as np
import pytest

from asvp.config import TriggerConfig
from asvp.trigger import SUBSAMPLE_REPEATS, FeatureUpdateRule, logme


def _decide_all(rule, budgets):
    """Decisions of a rule that reads no features, at each budget in turn."""
    return [
        rule.decide(labels, i == len(budgets) - 1, None, np.zeros(labels, dtype=np.int64)).update
        for i, labels in enumerate(budgets)
    ]


def test_schedule_updates_at_the_first_budget_at_or_above_each_count():
    rule = FeatureUpdateRule(TriggerConfig(rule="schedule", at_labels=(25, 30, 100)))
    assert _decide_all(rule, [10, 20, 30, 40, 50]) == [False, False, True, False, False]


def test_every_respects_max_updates_and_never_updates_at_the_last_budget():
    rule = FeatureUpdateRule(TriggerConfig(rule="every", max_updates=2))
    assert _decide_all(rule, [10, 20, 30, 40]) == [True, True, False, False]
    rule = FeatureUpdateRule(TriggerConfig(rule="every"))
    assert _decide_all(rule, [10, 20]) == [True, False]


def test_never_never_updates():
    assert _decide_all(FeatureUpdateRule(TriggerConfig(rule="never")), [1, 2, 3]) == [False] * 3


def _separable(n, rng, noise):
    labels = np.arange(n) % 4
    centres = np.eye(4, 16) * 5
    return centres[labels] + noise * rng.standard_normal((n, 16)), labels


def test_logme_rule_updates_when_the_size_matched_value_drops_and_restarts_reference():
    rng = np.random.default_rng(0)
    rule = FeatureUpdateRule(TriggerConfig(rule="logme", fraction=0.9), seed=1)
    good, y_good = _separable(20, rng, 0.5)
    first = rule.decide(20, False, good, y_good)
    assert not first.update and first.value == pytest.approx(logme(good, y_good))
    assert first.reference == first.value
    bad, y_bad = _separable(40, rng, 6.0)
    features = np.vstack([good, bad])
    second = rule.decide(40, False, features, np.concatenate([y_good, y_bad]))
    assert second.update and second.value < 0.9 * first.value
    third = rule.decide(60, False, *_separable(60, rng, 6.0))
    assert third.reference == third.value  # reference restarted on the new features


def test_logme_rule_value_is_the_mean_over_size_matched_subsets():
    rng = np.random.default_rng(0)
    rule = FeatureUpdateRule(TriggerConfig(rule="logme"), seed=5)
    rule.decide(10, False, *_separable(10, rng, 1.0))
    features, labels = _separable(30, rng, 1.0)
    value = rule.decide(30, False, features, labels).value
    replay = np.random.default_rng(5)
    expected = []
    for _ in range(SUBSAMPLE_REPEATS):
        rows = replay.choice(30, size=10, replace=False)
        expected.append(logme(features[rows], labels[rows]))
    assert value == pytest.approx(np.mean(expected))


def test_logme_rule_with_a_negative_reference_needs_a_real_drop():
    rule = FeatureUpdateRule(TriggerConfig(rule="logme", fraction=0.9))
    rule.reference = -1.0
    assert not rule._rule_says_update(0, -1.05)
    assert rule._rule_says_update(0, -1.2)


def test_absolute_threshold():
    rule = FeatureUpdateRule(TriggerConfig(rule="logme", fraction=0.5, threshold=10.0))
    features, labels = _separable(20, np.random.default_rng(0), 0.5)
    assert rule.decide(20, False, features, labels).update
