"""Per-volume intensity standardisation (Nyul-Udupa landmarks), checked against a slow direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from mood_dpa.errors import MoodError
from mood_dpa.scoring.standardise import FLOOR, Standardiser, landmarks


def _volume(seed: int, gamma: float = 1.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((20, 20, 20), np.float32)
    x[3:17, 3:17, 3:17] = rng.uniform(0.05, 0.9, (14, 14, 14))
    fg = x > 0
    x[fg] = np.clip(scale * x[fg] ** gamma, 1e-3, 1.0)
    return x


def _slow_map(x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Voxel by voxel: find the landmark segment, interpolate (or extend the outer segment)."""
    out = np.zeros_like(x, dtype=np.float64)
    for idx in zip(*np.nonzero(x > 0)):
        v = float(x[idx])
        k = int(np.clip(np.searchsorted(src, v) - 1, 0, len(src) - 2))
        t = (v - src[k]) / (src[k + 1] - src[k])
        out[idx] = min(max(dst[k] + t * (dst[k + 1] - dst[k]), FLOOR), 1.0)
    return out


def test_apply_matches_a_voxel_by_voxel_piecewise_linear_map():
    train = [_volume(s) for s in range(4)]
    std = Standardiser.fit(train)
    np.testing.assert_allclose(std.landmarks, np.mean([landmarks(v) for v in train], axis=0), atol=2e-5)
    test = _volume(9, gamma=1.6, scale=0.8)
    got = std.apply(test)
    src = landmarks(test) + np.arange(len(std.percentiles)) * 1e-9
    np.testing.assert_allclose(got, _slow_map(test, src, np.asarray(std.landmarks)), atol=1e-6)
    assert np.array_equal(got == 0, test == 0) and got.dtype == np.float32  # background stays background
    assert got[test > 0].min() >= FLOOR and got.max() <= 1.0


def test_a_global_gamma_and_contrast_change_is_undone():
    """Another 'scanner' (gamma 1.6, x0.8) of the same voxels: after standardisation both volumes are (nearly)
    the same image; without it they differ by up to a third of the range. Voxel order is kept (monotone)."""
    train = [_volume(s) for s in range(6)]
    std = Standardiser.fit(train)
    plain, shifted = _volume(11), _volume(11, gamma=1.6, scale=0.8)
    before = np.abs(plain - shifted).max()
    after = np.abs(std.apply(plain) - std.apply(shifted)).max()
    assert before > 0.2 and after < 0.02, (before, after)
    fg = plain > 0
    order = np.argsort(shifted[fg], kind="stable")
    assert np.all(np.diff(std.apply(shifted)[fg][order]) >= 0)


def test_round_trip_and_bad_input():
    std = Standardiser.fit([_volume(1), _volume(2)])
    assert Standardiser.from_dict(std.to_dict()) == std
    with pytest.raises(MoodError):
        Standardiser((1.0, 50.0), (0.5, 0.2))  # landmarks must increase
    with pytest.raises(MoodError):
        Standardiser.from_dict({"percentiles": [1, 99]})  # no landmarks
    with pytest.raises(MoodError):
        Standardiser.fit([np.zeros((4, 4, 4))])  # no foreground
    assert np.array_equal(std.apply(np.zeros((3, 3, 3))), np.zeros((3, 3, 3)))
