"""PED (asvp.trigger.ped) against hand-computed motions and a plain loop re-implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asvp.trigger import PED_DEFAULTS, logme, ped, ped_features

# -- an independent, deliberately plain implementation of the simulated motion ----------------


def _plain_motion(x, labels, ref, nsigma, time_step, exit_ratio, num_step, constant, eps):
    """PED's motion written out sample by sample and pair by pair; returns (moved, steps).

    Unlike asvp.trigger, it moves every sample and recomputes the class centres and radii
    from the moved samples at every step, and it gets distances and directions from the
    differences of the centres.
    """
    mean = ref.mean(axis=0)
    std = np.maximum(ref.std(axis=0), eps)
    z = (x - mean) / std
    classes = sorted(set(labels.tolist()))
    first = None
    steps = 0
    for step in range(num_step):
        centre, radius = {}, {}
        for k in classes:
            rows = z[labels == k]
            centre[k] = rows.mean(axis=0)
            radius[k] = np.sqrt(np.mean([np.sum((row - centre[k]) ** 2) for row in rows]))
        move = {k: np.zeros(z.shape[1]) for k in classes}
        for i in classes:
            for j in classes:
                if i == j:
                    continue
                gap = centre[i] - centre[j]
                dist = np.sqrt(np.sum(gap**2))
                overlap = max(nsigma * radius[i] + nsigma * radius[j] - dist, 0.0)
                if overlap == 0.0 or dist == 0.0:
                    continue
                acceleration = constant * overlap
                length = min(0.5 * acceleration * time_step**2, overlap)
                move[i] = move[i] + length * gap / dist
        change = sum(np.sum(np.abs(v)) for v in move.values())
        if step == 0:
            first = change
        if first == 0.0 or change / first <= exit_ratio:
            break
        for row in range(z.shape[0]):
            z[row] = z[row] + move[labels[row]]
        steps += 1
    return z * std + mean, steps


def _clusters(n, d, classes, seed, shift=1.0, scale=1.0, offset=0.0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    centres = shift * rng.normal(size=(classes, d))
    x = offset + scale * (rng.normal(size=(n, d)) + centres[labels])
    return x, labels


# -- hand-computed 1-D motions --------------------------------------------------------------

# reference [-1, 1]: mean 0, std 1, so standardised = raw units. Class 0 = {-1, 1} (centre 0,
# sigma 1), class 1 = {2, 4} (centre 3, sigma 1); nsigma 2: overlap 2 (1 + 1) - 3 = 1.
_X = np.array([[-1.0], [1.0], [2.0], [4.0]])
_Y = np.array([0, 0, 1, 1])
_REF = np.array([[-1.0], [1.0]])


def test_one_step_moves_each_class_half_a_t_squared_away_then_stops():
    # a = constant x overlap = 1, l = 1/2 a t^2 = 0.5 for t = 1: centres 0 -> -0.5, 3 -> 3.5;
    # then 4 apart, no overlap: the second step moves nothing and the motion stops.
    moved = ped_features(_X, _Y, _REF, nsigma=2, time_step=1)
    np.testing.assert_allclose(moved.ravel(), [-1.5, 0.5, 2.5, 4.5], rtol=0, atol=1e-12)
    assert ped(_X, _Y, _REF, nsigma=2, time_step=1) == pytest.approx(logme(moved, _Y), rel=1e-12)


def test_the_displacement_is_capped_at_the_overlap():
    # t = 2: 1/2 a t^2 = 2 > overlap 1, so each class moves 1 (the gap grows by 2, past touching)
    moved = ped_features(_X, _Y, _REF, nsigma=2, time_step=2)
    np.testing.assert_allclose(moved.ravel(), [-2.0, 0.0, 3.0, 5.0], rtol=0, atol=1e-12)


def test_steps_continue_while_the_movement_ratio_exceeds_the_exit_ratio():
    # t = 0.5: each class moves l = overlap / 8, the overlap shrinks by 3/4 per step, and so
    # does the movement: ratios 1, 0.75, 0.5625 > 0.5 are applied, 0.421875 is not. Each class
    # moves (1 - 0.75^3) / 2 = 0.2890625 in total.
    moved = ped_features(_X, _Y, _REF, nsigma=2, time_step=0.5)
    np.testing.assert_allclose(
        moved.ravel(), [-1.2890625, 0.7109375, 2.2890625, 4.2890625], rtol=0, atol=1e-12
    )
    # num_step caps the number of steps: two steps move (1 - 0.75^2) / 2 = 0.21875
    moved = ped_features(_X, _Y, _REF, nsigma=2, time_step=0.5, num_step=2)
    np.testing.assert_allclose(
        moved.ravel(), [-1.21875, 0.78125, 2.21875, 4.21875], rtol=0, atol=1e-12
    )
    # exit_ratio 0.6 stops before the third step (0.5625 <= 0.6)
    assert np.allclose(
        ped_features(_X, _Y, _REF, nsigma=2, time_step=0.5, exit_ratio=0.6),
        ped_features(_X, _Y, _REF, nsigma=2, time_step=0.5, num_step=2),
    )


def test_the_motion_runs_in_reference_standardised_units():
    # the reference [-2, 2] has std 2: radii 0.5 and distance 1.5 in standardised units, so
    # nsigma 2 gives overlap 0.5, a move of 1/2 x 0.5 x 1 = 0.25 standardised = 0.5 raw
    moved = ped_features(_X, _Y, 2 * _REF, nsigma=2, time_step=1)
    np.testing.assert_allclose(moved.ravel(), [-1.5, 0.5, 2.5, 4.5], rtol=0, atol=1e-12)
    # constant multiplies the acceleration: constant 2 doubles the first move (0.5 -> 1 raw,
    # then the balls no longer overlap)
    moved = ped_features(_X, _Y, 2 * _REF, nsigma=2, time_step=1, constant=2)
    np.testing.assert_allclose(moved.ravel(), [-2.0, 0.0, 3.0, 5.0], rtol=0, atol=1e-12)


# -- against the plain implementation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d", "classes", "seed", "shift", "settings", "own_reference"),
    [
        (60, 5, 3, 0, 0.5, {"nsigma": 0.6}, True),  # stops at num_step
        (90, 8, 5, 1, 0.3, {"nsigma": 0.3, "time_step": 0.5}, False),  # 7 of 10 pairs overlap
        (40, 30, 4, 2, 0.7, {"nsigma": 0.6, "time_step": 2.0}, False),  # d > n; the cap binds
        (80, 6, 4, 3, 0.7, {"nsigma": 1.0, "time_step": 0.7, "exit_ratio": 0.2}, True),
        (50, 4, 3, 4, 0.5, {"nsigma": 0.8, "constant": 3.0, "eps": 1.0}, False),  # eps binds
        (240, 10, 40, 5, 0.8, {}, True),  # many classes, default settings
    ],
)
def test_ped_matches_a_plain_loop_implementation(
    n, d, classes, seed, shift, settings, own_reference
):
    x, labels = _clusters(n, d, classes, seed, shift=shift)
    rng = np.random.default_rng(seed + 100)
    ref = x if own_reference else 0.7 + rng.normal(size=(3 * n, d)) * rng.uniform(0.3, 2.0, d)
    full = {**PED_DEFAULTS, **settings}
    expected, steps = _plain_motion(x.copy(), labels, ref, **full)
    assert steps >= 1 and not np.allclose(expected, x)  # the cases exercise the motion
    got = ped_features(x, labels, None if own_reference else ref, **settings)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    value = ped(x, labels, None if own_reference else ref, **settings)
    assert value == pytest.approx(logme(expected, labels), rel=1e-9)


def test_several_steps_are_taken_with_the_default_settings():
    x, labels = _clusters(100, 12, 4, 5, shift=0.5)
    expected, steps = _plain_motion(x.copy(), labels, x, **PED_DEFAULTS)
    assert steps == PED_DEFAULTS["num_step"]  # slow decline: the step cap ends the motion
    np.testing.assert_allclose(ped_features(x, labels), expected, rtol=1e-10, atol=1e-10)


# -- properties --------------------------------------------------------------------------------


def test_a_single_class_does_not_move_and_ped_equals_logme():
    x, _ = _clusters(30, 6, 1, 6)
    labels = np.full(30, 4)
    assert np.array_equal(ped_features(x, labels), x)
    assert ped(x, labels) == logme(x, labels)


def test_separated_classes_do_not_move_and_ped_equals_logme():
    # the class radii are 0.6 x sqrt(6) ~ 1.5 standardised; the centres are much further apart
    x, labels = _clusters(60, 6, 3, 7, shift=40.0)
    assert np.array_equal(ped_features(x, labels), x)
    assert ped(x, labels) == logme(x, labels)


def test_coincident_class_centres_exert_no_force():
    # classes 0 and 1 hold the same samples: same centre, no direction to push them apart;
    # class 2 overlaps both and moves away from their common centre
    x, _ = _clusters(20, 4, 1, 8)
    far = x[:10] + 0.5
    features = np.vstack([x, x, far])
    labels = np.repeat([0, 1, 2], [20, 20, 10])
    moved = ped_features(features, labels)
    assert np.all(np.isfinite(moved))
    shift = moved - features
    assert np.allclose(shift[:20], shift[20:40])  # 0 and 1 move together (away from 2)
    centres = [moved[labels == k].mean(axis=0) for k in range(3)]
    assert np.allclose(centres[0], centres[1])
    before = np.linalg.norm(features[labels == 2].mean(axis=0) - x.mean(axis=0))
    assert np.linalg.norm(centres[2] - centres[0]) > before


def test_overlapping_classes_are_pushed_apart_and_the_score_rises():
    x, labels = _clusters(200, 16, 5, 9, shift=0.4)
    moved = ped_features(x, labels)
    before = np.array([x[labels == k].mean(axis=0) for k in range(5)])
    after = np.array([moved[labels == k].mean(axis=0) for k in range(5)])
    gaps_before = np.linalg.norm(before[:, None] - before[None], axis=-1)[np.triu_indices(5, 1)]
    gaps_after = np.linalg.norm(after[:, None] - after[None], axis=-1)[np.triu_indices(5, 1)]
    assert np.all(gaps_after > gaps_before)
    # each class is translated rigidly: within-class deviations are unchanged
    np.testing.assert_allclose(moved - after[labels], x - before[labels], atol=1e-10)
    assert ped(x, labels) > logme(x, labels) + 0.02


def test_two_overlapping_classes_move_apart_along_the_line_of_their_centres():
    x, labels = _clusters(80, 5, 2, 10, shift=0.3)
    moved = ped_features(x, labels)
    shift0 = (moved - x)[labels == 0][0]
    shift1 = (moved - x)[labels == 1][0]
    # standardised shifts are opposite and parallel to the centre difference
    std = x.std(axis=0)
    gap = (x[labels == 0].mean(axis=0) - x[labels == 1].mean(axis=0)) / std
    np.testing.assert_allclose(shift0 / std, -shift1 / std, atol=1e-12)
    cosine = (shift0 / std) @ gap / np.linalg.norm(shift0 / std) / np.linalg.norm(gap)
    assert cosine == pytest.approx(1.0, abs=1e-12)


def test_ped_is_deterministic_and_accepts_torch():
    x, labels = _clusters(70, 9, 4, 11)
    first = ped(x, labels)
    assert ped(x, labels) == first
    assert ped(torch.from_numpy(x), torch.from_numpy(labels)) == pytest.approx(first, rel=1e-12)
    ref = x[:20] * 2
    assert ped(x, labels, torch.from_numpy(ref)) == pytest.approx(ped(x, labels, ref), rel=1e-12)


def test_defaults_and_reference_default():
    assert PED_DEFAULTS == {
        "nsigma": 0.6,
        "time_step": 0.1,
        "exit_ratio": 0.5,
        "num_step": 6,
        "constant": 1.0,
        "eps": 1e-3,
    }
    x, labels = _clusters(50, 6, 3, 12)
    assert ped(x, labels) == ped(x, labels, x, **PED_DEFAULTS)
    assert ped(x, labels, x * 3 + 1) != ped(x, labels)  # the reference matters


def test_renaming_classes_and_permuting_rows_change_nothing():
    x, labels = _clusters(60, 7, 3, 13, shift=0.5)
    value = ped(x, labels)
    renamed = np.array([11, 3, 7])[labels]
    assert ped(x, renamed) == pytest.approx(value, rel=1e-12)
    perm = np.random.default_rng(0).permutation(60)
    assert ped(x[perm], labels[perm]) == pytest.approx(value, rel=1e-10)
    np.testing.assert_allclose(ped_features(x[perm], labels[perm]), ped_features(x, labels)[perm])


def test_the_motion_commutes_with_a_per_dimension_affine_map():
    x, labels = _clusters(60, 5, 3, 14, shift=0.5)
    ref = np.random.default_rng(1).normal(size=(100, 5))
    a = np.array([0.5, 2.0, 3.0, 1.0, 10.0])
    b = np.array([1.0, -4.0, 0.0, 7.0, 2.5])
    moved = ped_features(x, labels, ref)
    np.testing.assert_allclose(ped_features(a * x + b, labels, a * ref + b), a * moved + b)
    assert not np.allclose(moved, x)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "labels", "reference", "match"),
    [
        (np.zeros((5, 2)), np.zeros(4, dtype=int), None, "5 rows but labels has 4"),
        (np.zeros(5), np.zeros(5, dtype=int), None, "2-D"),
        (np.ones((5, 2)), np.zeros(5), None, "integer"),
        (np.full((5, 2), np.inf), np.zeros(5, dtype=int), None, "NaN or infinite"),
        (
            np.ones((5, 2)),
            np.zeros(5, dtype=int),
            np.ones((4, 3)),
            r"2 columns, got shape \(4, 3\)",
        ),
        (np.ones((5, 2)), np.zeros(5, dtype=int), np.ones(2), r"got shape \(2,\)"),
        (np.ones((5, 2)), np.zeros(5, dtype=int), np.ones((0, 2)), r"got shape \(0, 2\)"),
        (np.ones((5, 2)), np.zeros(5, dtype=int), np.full((3, 2), np.nan), "reference contains"),
    ],
)
def test_ped_rejects_bad_arrays(features, labels, reference, match):
    with pytest.raises(ValueError, match=match):
        ped(features, labels, reference)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"sigma": 0.6}, r"sigma: got 0.6; expected a known option; allowed: nsigma"),
        ({"time_step": 0.0}, r"time_step: got 0.0; expected a finite number > 0"),
        ({"time_step": -1}, "time_step: got -1"),
        ({"nsigma": -0.3}, "nsigma: got -0.3"),
        ({"exit_ratio": 1.0}, r"exit_ratio: got 1.0; expected a finite number in \[0, 1\)"),
        ({"num_step": 0}, "num_step: got 0; expected an integer >= 1"),
        ({"num_step": 2.5}, "num_step: got 2.5"),
        ({"constant": float("nan")}, "constant: got nan"),
        ({"eps": "small"}, "eps: got 'small'"),
        ({"time_step": True}, "time_step: got True"),
    ],
)
def test_ped_rejects_bad_settings(settings, match):
    x, labels = _clusters(20, 3, 2, 15)
    with pytest.raises(ValueError, match=match):
        ped(x, labels, **settings)
