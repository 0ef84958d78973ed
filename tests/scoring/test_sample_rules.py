"""The FPI slice rule and the above-normal volume rule: hand-computed values, SampleRule round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mood_dpa.errors import MoodError
from mood_dpa.scoring.sample_rules import CANDIDATE_RULES, SampleRule, above_normal_volume, slice_mean_smoothed
from mood_dpa.scoring.calibration import DEFAULT_Y_TOP
from mood_dpa.inference.tuning import choose_sample_rule


def one_bright_slice() -> np.ndarray:
    v = np.zeros((5, 2, 3), np.float32)
    v[2] = 1.0  # slice means along axis 0: 0, 0, 1, 0, 0
    return v


def test_slice_mean_smoothed_by_hand():
    w = [math.exp(-0.5 * d * d) for d in range(4)]  # sigma 1: kernel truncated at 3 slices
    centre = 1 / (w[0] + 2 * w[1] + 2 * w[2])  # slice 2 sees slices 0..4 only (renormalised)
    beside = w[1] / (w[1] + w[0] + w[1] + w[2] + w[3])  # slice 1 sees slices 0..4 = offsets -1..3
    edge = w[2] / (w[0] + w[1] + w[2] + w[3])  # slice 0 sees offsets 0..3
    v = one_bright_slice()
    assert slice_mean_smoothed(v, 0, 1.0, 0.4) == pytest.approx((centre + beside) / 2, abs=1e-12)  # top 2 of 5
    assert slice_mean_smoothed(v, 0, 1.0, 0.01) == pytest.approx(centre, abs=1e-12)  # at least one slice
    assert slice_mean_smoothed(v, 0, 1.0, 1.0) == pytest.approx((centre + 2 * beside + 2 * edge) / 5, abs=1e-12)
    # the same along another axis; along a crossing axis every slice mean is 1/5
    assert slice_mean_smoothed(np.moveaxis(v, 0, 2), 2, 1.0, 0.4) == pytest.approx((centre + beside) / 2, abs=1e-12)
    assert slice_mean_smoothed(v, 1, 1.0, 0.5) == pytest.approx(0.2, abs=1e-12)
    # half of one slice at 0.6: its mean is 0.3; a wide sigma spreads it over every slice
    h = np.zeros((4, 2, 2))
    h[1, 0] = 0.6
    assert slice_mean_smoothed(h, 0, 0.01, 0.25) == pytest.approx(0.3)
    assert slice_mean_smoothed(h, 0, 50.0, 0.25) == pytest.approx(0.3 / 4, rel=1e-3)


def test_above_normal_volume_by_hand():
    v = np.zeros((4, 4, 4), np.float32)
    fg = np.zeros_like(v, bool)
    fg.flat[:10] = True
    v.flat[:10] = [0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.99, 1e-3]  # 0.5 itself is the normal maximum
    assert above_normal_volume(v, 0.5) == pytest.approx(3 / 10)
    assert above_normal_volume(v, 0.5, mask=fg | (v == 0)) == pytest.approx(3 / 64)
    assert above_normal_volume(v, 0.05) == pytest.approx(9 / 10)  # all but 1e-3
    assert above_normal_volume(np.zeros((3, 3, 3)), 0.5) == 0.0


def test_new_rules_are_sample_rules_with_round_trips():
    v = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32) * 0.8
    kinds = {r.kind for r in CANDIDATE_RULES}
    assert {"slice_mean_smoothed", "above_normal_volume"} <= kinds
    for rule in CANDIDATE_RULES:
        assert SampleRule.from_dict(rule.to_dict()) == rule
        s = rule.score(torch.from_numpy(v))
        assert 0.0 <= s <= 1.0 and s == rule.score(v)
    r = SampleRule("slice_mean_smoothed", sigma=1.5, fraction=0.25, axis=2)
    assert r.score(v) == pytest.approx(slice_mean_smoothed(v, 2, 1.5, 0.25), rel=1e-6)
    assert r.describe() == "slice_mean_smoothed(axis=2, sigma=1.5, fraction=0.25)"
    a = SampleRule("above_normal_volume", level=0.4)
    assert a.score(v) == pytest.approx(above_normal_volume(v, 0.4)) and a.describe() == "above_normal_volume(level=0.4)"
    assert SampleRule.from_dict({"kind": "above_normal_volume"}).level == DEFAULT_Y_TOP  # old files: defaults
    assert set(SampleRule("topk", fraction=0.01).to_dict()) == {"kind", "fraction", "sigma"}  # the keys older readers know
    with pytest.raises(MoodError, match="axis"):
        SampleRule("slice_mean_smoothed", axis=3)
    with pytest.raises(MoodError, match="level"):
        SampleRule("above_normal_volume", level=1.0)


def test_above_normal_volume_wins_on_a_volume_wide_change():
    """Every volume has one hot voxel (max is useless); the anomalous ones have 5 % of the body above normal."""
    rng = np.random.default_rng(1)
    rules = (SampleRule("max"), SampleRule("above_normal_volume"))
    rows, labels = [], []
    for i in range(10):
        v = rng.uniform(0.05, 0.5, (12, 12, 12)).astype(np.float32)
        v[rng.integers(12), rng.integers(12), rng.integers(12)] = 0.95
        if i % 2:
            v[rng.random(v.shape) < 0.05] = 0.55
        rows.append([r.score(v) for r in rules])
        labels.append(i % 2)
    rule, aps = choose_sample_rule(np.array(rows), labels, rules)
    assert rule.kind == "above_normal_volume" and aps[1] == 1.0 and aps[0] < 1.0
