"""Calibration: monotone, deterministic, in [0, 1], finite on anything, tail kept apart in float16;
the sample rules against independent numpy/scipy computations; the rule choice."""

import math

import numpy as np
import pytest
import torch
import yaml

from mood_dpa.errors import MoodError
from mood_dpa.scoring.sample_rules import CANDIDATE_RULES, SampleRule, gaussian_blur3d
from mood_dpa.scoring.calibration import UNCALIBRATED, Calibration, fit_calibration, sample_raw_scores
from mood_dpa.inference.tuning import choose_sample_rule


@pytest.fixture(scope="module")
def normals() -> np.ndarray:
    return np.random.default_rng(0).gamma(2.0, 0.05, size=50_000)


def test_monotone_in_unit_interval_and_finite_on_extremes(normals):
    cal = fit_calibration(normals)
    grid = np.sort(np.concatenate([[-np.inf, -1e300, -1.0, 0.0], np.linspace(0, 2, 20_001), np.logspace(0, 300, 301), [np.inf]]))
    y = cal.apply(grid)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert (np.diff(y.astype(np.float64)) >= 0).all()  # monotone non-decreasing over the whole line
    # strictly increasing from the lowest knot on (computed in float64 before the float32 cast)
    inside = np.linspace(cal.xs[0], cal.xs[-1] * 50, 5000)
    assert (np.diff(cal.apply_torch(torch.from_numpy(inside)).double().numpy()) >= 0).all()
    assert cal.apply(np.array([np.nan]))[0] == 1.0  # NaN never passes through: most abnormal
    assert cal.apply(np.array([np.inf]))[0] == 1.0


def test_body_follows_the_normal_quantiles(normals):
    cal = fit_calibration(normals)
    y = cal.apply(normals)
    # the map is the CDF-like knot map: each knot level p_j = 1 - 2^-j goes to y_top * j / (J + 1)
    for j, level in [(1, 0.5), (2, 0.75), (4, 0.9375)]:
        q = np.quantile(normals, level)
        assert cal.apply(np.array([q]))[0] == pytest.approx(cal.ys[j], abs=1e-6)
        assert np.mean(y <= cal.ys[j] + 1e-9) == pytest.approx(level, abs=2e-3)
    assert y.max() == pytest.approx(cal.y_top) and cal.y_top == pytest.approx(0.5)


def test_deterministic_fit_and_sampling(normals):
    a = fit_calibration(normals)
    b = fit_calibration(normals.copy())
    assert a == b
    raw = np.random.default_rng(5).random((30, 30, 30))
    mask = raw > 0.2
    s1 = sample_raw_scores(raw, mask, 1000, seed=7)
    s2 = sample_raw_scores(torch.from_numpy(raw), torch.from_numpy(mask), 1000, seed=7)
    np.testing.assert_array_equal(s1, s2)
    assert s1.size == 1000 and (s1 > 0.2).all()
    assert not np.array_equal(s1, sample_raw_scores(raw, mask, 1000, seed=8))
    assert sample_raw_scores(raw, None, 10**9, seed=0).size == raw.size


def test_tail_keeps_anomalies_apart_in_float16(normals):
    cal = fit_calibration(normals)
    x_top, s = cal.xs[-1], cal.tail_scale
    raw = x_top + s * np.array([0.01, 0.05, 0.2, 0.5, 1, 2, 5, 10, 50, 100, 1e3, 1e4, 1e6, 1e9, 1e15])
    y16 = cal.apply(raw).astype(np.float16)
    assert (np.diff(y16.astype(np.float64)) > 0).all()  # distinct and ordered after the evaluator's float16 read
    assert (y16 < 1).all() and (y16 > cal.y_top).all()
    # the seed's /100 rule would have tied everything above 100 at 1.0
    assert len(set(np.clip(raw * 1e3 / 100, 0, 1).astype(np.float16).tolist())) < len(raw)


def test_numpy_and_torch_agree_and_round_trip_through_yaml(normals):
    cal = fit_calibration(normals)
    x = np.random.default_rng(2).gamma(2.0, 0.1, 1000)
    np.testing.assert_array_equal(cal.apply(x), cal.apply_torch(torch.from_numpy(x)).numpy())
    again = Calibration.from_dict(yaml.safe_load(yaml.safe_dump(cal.to_dict())))
    assert again == cal


def test_degenerate_and_bad_inputs():
    const = fit_calibration(np.full(1000, 0.3))  # all normal scores equal: still a valid map
    y = const.apply(np.array([0.0, 0.3, 0.31, 10.0]))
    assert y[0] == 0 and y[1] == pytest.approx(0.5) and 0.5 < y[2] < y[3] < 1
    with pytest.raises(MoodError):
        fit_calibration(np.array([1.0]))
    with pytest.raises(MoodError):
        fit_calibration(np.array([np.nan, np.inf, 2.0]))
    with pytest.raises(MoodError):
        Calibration(xs=(0.0, 0.0), ys=(0.0, 0.5), tail_scale=1.0)
    with pytest.raises(MoodError):
        Calibration.from_dict({"xs": [0, 1]})
    u = UNCALIBRATED.apply(np.array([-1.0, 0.0, 1.0, 100.0, np.inf]))
    assert (np.diff(u) >= 0).all() and u[0] == 0 and u[-1] == 1 and 0 < u[2] < u[3] < 1


def test_sample_rules_against_independent_computations():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    v = rng.random((20, 21, 22)).astype(np.float32) * 0.5
    assert SampleRule("max").score(v) == pytest.approx(float(v.max()))
    k = max(1, round(1e-3 * v.size))
    assert SampleRule("topk", fraction=1e-3).score(v) == pytest.approx(float(np.sort(v.ravel())[-k:].mean()), rel=1e-6)
    ref = gaussian_filter(v.astype(np.float64), 1.5, mode="constant", truncate=3.0)
    blur = gaussian_blur3d(torch.from_numpy(v), 1.5).numpy()
    np.testing.assert_allclose(blur, ref, atol=1e-5)
    assert SampleRule("smoothed_max", sigma=1.5).score(v) == pytest.approx(float(ref.max()), abs=1e-5)
    # one hot voxel: max jumps to 1, top-k and smoothing barely move
    hot = v.copy()
    hot[10, 10, 10] = 1.0
    assert SampleRule("max").score(hot) == 1.0
    assert SampleRule("topk", fraction=1e-2).score(hot) < 0.6
    for r in CANDIDATE_RULES:
        s = r.score(np.full((5, 5, 5), np.nan, np.float32))
        assert 0.0 <= s <= 1.0 and math.isfinite(s)
    with pytest.raises(MoodError):
        SampleRule("mean")  # type: ignore[arg-type]
    with pytest.raises(MoodError):
        SampleRule("topk", fraction=0.0)


def test_choose_sample_rule_prefers_the_rule_that_separates():
    rng = np.random.default_rng(4)
    rules = (SampleRule("max"), SampleRule("topk", fraction=0.01))
    vols, labels = [], []
    for i in range(12):
        v = rng.random((16, 16, 16)).astype(np.float32) * 0.3
        v[rng.integers(16), rng.integers(16), rng.integers(16)] = 1.0  # noise: one hot voxel in every volume
        if i % 2:
            v[4:8, 4:8, 4:8] += 0.4  # a real anomaly: many moderately high voxels
            labels.append(1)
        else:
            labels.append(0)
        vols.append([r.score(v) for r in rules])
    best, aps = choose_sample_rule(np.array(vols), labels, rules)
    assert best == rules[1] and aps[1] == 1.0 and aps[0] < 1.0
    with pytest.raises(MoodError):
        choose_sample_rule(np.array(vols), [0] * 12, rules)
