"""The ASVP feature-update rules (asvp.trigger.FeatureUpdateRule)."""

import dataclasses

import numpy as np
import pytest

from asvp.config import TriggerConfig
from asvp.trigger import (
    PED_DEFAULTS,
    SUBSAMPLE_REPEATS,
    TRIGGER_RULES,
    FeatureUpdateRule,
    PedSettings,
    check_ped_settings,
    logme,
    ped,
)


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


INDICATORS = {"logme": logme, "ped": ped}


@pytest.mark.parametrize("name", ["logme", "ped"])
def test_indicator_rule_updates_when_the_size_matched_value_drops_and_restarts_reference(name):
    rng = np.random.default_rng(0)
    rule = FeatureUpdateRule(TriggerConfig(rule=name, fraction=0.9), seed=1)
    good, y_good = _separable(20, rng, 0.5)
    first = rule.decide(20, False, good, y_good)
    assert not first.update and first.value == pytest.approx(INDICATORS[name](good, y_good))
    assert first.reference == first.value
    bad, y_bad = _separable(40, rng, 6.0)
    features = np.vstack([good, bad])
    second = rule.decide(40, False, features, np.concatenate([y_good, y_bad]))
    assert second.update and second.reason == "indicator: update"
    assert second.reference == first.value and second.value < 0.9 * first.value
    third = rule.decide(60, False, *_separable(60, rng, 6.0))
    assert third.reference == third.value  # reference restarted on the new features


def _replay_rows(seed, n, size):
    replay = np.random.default_rng(seed)
    return [replay.choice(n, size=size, replace=False) for _ in range(SUBSAMPLE_REPEATS)]


@pytest.mark.parametrize(
    ("name", "settings"), [("logme", {}), ("ped", {"nsigma": 1.5, "time_step": 0.3})]
)
def test_indicator_rule_value_is_the_mean_over_size_matched_subsets(name, settings):
    indicator = INDICATORS[name]
    rng = np.random.default_rng(0)
    rule = FeatureUpdateRule(TriggerConfig(rule=name, ped=settings), seed=5)
    rule.decide(10, False, *_separable(10, rng, 1.0))
    features, labels = _separable(30, rng, 1.0)
    value = rule.decide(30, False, features, labels).value
    rows = _replay_rows(5, 30, 10)
    assert value == pytest.approx(
        np.mean([indicator(features[r], labels[r], **settings) for r in rows])
    )
    if settings:  # the settings are used
        assert value != pytest.approx(np.mean([indicator(features[r], labels[r]) for r in rows]))


def test_logme_rule_with_a_negative_reference_needs_a_real_drop():
    rule = FeatureUpdateRule(TriggerConfig(rule="logme", fraction=0.9))
    rule.reference = -1.0
    assert not rule._rule_says_update(0, -1.05)
    assert rule._rule_says_update(0, -1.2)


def test_absolute_threshold():
    rule = FeatureUpdateRule(TriggerConfig(rule="logme", fraction=0.5, threshold=10.0))
    features, labels = _separable(20, np.random.default_rng(0), 0.5)
    assert rule.decide(20, False, features, labels).update


# -- the ped rule: the logme rule's logic with PED as the indicator ----------------------------


def test_only_the_indicator_rules_read_a_value():
    assert "ped" in TRIGGER_RULES and "logme" in TRIGGER_RULES
    for rule in TRIGGER_RULES:
        expected = rule in ("logme", "ped")
        assert FeatureUpdateRule(TriggerConfig(rule=rule)).needs_value() is expected


def test_the_ped_rule_reads_ped_not_logme():
    good, y_good = _separable(20, np.random.default_rng(0), 0.5)
    first = FeatureUpdateRule(TriggerConfig(rule="ped"), seed=1).decide(20, False, good, y_good)
    assert first.value != pytest.approx(logme(good, y_good))


def test_ped_rule_respects_max_updates_and_the_last_budget():
    rng = np.random.default_rng(0)
    good, y_good = _separable(20, rng, 0.5)
    bad, y_bad = _separable(20, rng, 6.0)

    def drop(rule, labels_used, is_last):
        rule.decide(labels_used, False, good, y_good)  # reference on good features
        return rule.decide(labels_used + 20, is_last, bad, y_bad)

    rule = FeatureUpdateRule(TriggerConfig(rule="ped", max_updates=1))
    assert drop(rule, 20, False).update
    capped = drop(rule, 60, False)
    assert not capped.update and capped.reason == "max_updates reached"
    last = drop(FeatureUpdateRule(TriggerConfig(rule="ped")), 20, True)
    assert not last.update and last.reason == "last budget: nothing to select"


def test_ped_rule_absolute_threshold_and_missing_features():
    features, labels = _separable(20, np.random.default_rng(0), 0.5)
    rule = FeatureUpdateRule(TriggerConfig(rule="ped", fraction=0.5, threshold=10.0))
    assert rule.decide(20, False, features, labels).update
    with pytest.raises(ValueError, match="the ped rule needs the labelled set's features"):
        FeatureUpdateRule(TriggerConfig(rule="ped")).decide(20, False, None, labels)


def test_ped_rule_checks_its_settings_when_built():
    with pytest.raises(ValueError, match="time_step: got -0.1; expected a finite number > 0"):
        FeatureUpdateRule(TriggerConfig(rule="ped", ped={"time_step": -0.1}))
    with pytest.raises(ValueError, match="steps: got 3; expected a known option"):
        FeatureUpdateRule(TriggerConfig(rule="ped", ped={"steps": 3}))


# -- check_ped_settings ------------------------------------------------------------------------


def test_check_ped_settings_returns_the_given_settings_as_numbers():
    assert check_ped_settings({}) == {}
    checked = check_ped_settings({"nsigma": 1, "num_step": 4.0, "exit_ratio": 0, "eps": 1e-4})
    assert checked == {"nsigma": 1.0, "num_step": 4, "exit_ratio": 0.0, "eps": 1e-4}
    assert type(checked["nsigma"]) is float and type(checked["num_step"]) is int
    assert check_ped_settings(PED_DEFAULTS) == PED_DEFAULTS
    assert check_ped_settings({"constant": np.float32(2.0)}) == {"constant": 2.0}


def test_check_ped_settings_names_the_allowed_settings_and_their_defaults():
    with pytest.raises(ValueError) as error:
        check_ped_settings({"time step": 0.1})
    message = str(error.value)
    assert "time step: got 0.1; expected a known option" in message
    for name, default in PED_DEFAULTS.items():
        assert f"{name} (default {default})" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("nsigma", 0, "a finite number > 0"),
        ("time_step", -0.5, "a finite number > 0"),
        ("exit_ratio", 1.5, "a finite number in [0, 1)"),
        ("exit_ratio", -0.1, "a finite number in [0, 1)"),
        ("num_step", 0, "an integer >= 1"),
        ("num_step", 1.5, "an integer >= 1"),
        ("constant", float("inf"), "a finite number > 0"),
        ("eps", None, "a finite number > 0"),
        ("nsigma", "0.6", "a finite number > 0"),
        ("num_step", False, "an integer >= 1"),
    ],
)
def test_check_ped_settings_rejects_bad_values(key, value, expected):
    with pytest.raises(ValueError) as error:
        check_ped_settings({key: value})
    assert str(error.value) == f"PED settings: {key}: got {value!r}; expected {expected}"


def test_check_ped_settings_reports_every_bad_setting_and_is_declared_once():
    with pytest.raises(ValueError, match=r"nsigma: got -1; .*; num_step: got 0; "):
        check_ped_settings({"nsigma": -1, "num_step": 0})
    assert dataclasses.asdict(PedSettings()) == PED_DEFAULTS
    assert check_ped_settings({"num_step": np.int64(3)}) == {"num_step": 3}


def test_check_ped_settings_rejects_a_non_mapping():
    with pytest.raises(ValueError, match="must be a mapping"):
        check_ped_settings([("nsigma", 0.6)])  # type: ignore[arg-type]
