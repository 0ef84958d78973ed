"""The volume-level histogram detector: distances against scipy / slow loops, calibration, model file, phantoms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from mood_dpa.errors import MoodError
from mood_dpa.evaluation.metrics import roc_auc
from mood_dpa.inference.detector import Detector
from mood_dpa.methods.volume_histogram.features import VolumeFeatures, leave_one_out_knn, pair_distances, volume_features, wasserstein_matrix
from mood_dpa.methods.volume_histogram.model import VolumeHistogramDetector
from mood_dpa.methods.volume_histogram.features import noise_floor
from mood_dpa.volumes import write_volume


def _random_hists(rng, n, bins):
    h = rng.random((n, bins)) ** 3  # uneven, some near-empty bins
    return h / h.sum(axis=1, keepdims=True)


def _random_features(rng, n, bins=16):
    return [VolumeFeatures(h, float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.01, 0.05))) for h in _random_hists(rng, n, bins)]


def test_wasserstein_by_hand_and_against_scipy():
    bins = 8
    a = np.zeros(bins); a[0] = 1.0
    b = np.zeros(bins); b[3] = 1.0
    c = np.zeros(bins); c[[0, 3]] = 0.5
    # all mass moved 3 bins of width 1/8; half of it moved 3 bins
    assert wasserstein_matrix(a, b)[0, 0] == pytest.approx(3 / 8, abs=1e-15)
    assert wasserstein_matrix(a, c)[0, 0] == pytest.approx(1.5 / 8, abs=1e-15)
    rng = np.random.default_rng(0)
    for nbins in (8, 16, 128):
        ha, hb = _random_hists(rng, 4, nbins), _random_hists(rng, 3, nbins)
        centres = (np.arange(nbins) + 0.5) / nbins
        want = np.array([[wasserstein_distance(centres, centres, x, y) for y in hb] for x in ha])
        np.testing.assert_allclose(wasserstein_matrix(ha, hb), want, rtol=1e-12, atol=1e-15)


def test_volume_features_by_hand():
    data = np.zeros((4, 4, 4), np.float32)
    data[0, 0, :3] = [0.05, 0.3, 1.7]  # 1.7: above the range, counted in the last bin
    data[1, 1, 1] = -0.2  # negative: background
    f = volume_features(data, bins=10)
    want = np.zeros(10); want[[0, 3, 9]] = 1 / 3
    np.testing.assert_allclose(f.histogram, want)
    assert f.fraction == pytest.approx(3 / 64)
    assert volume_features(np.zeros((4, 4, 4)), bins=10).empty


def test_noise_floor_matches_direct_loop():
    rng = np.random.default_rng(1)
    data = np.zeros((9, 9, 9), np.float32)
    data[1:8, 1:8, 1:8] = 0.5 + 0.05 * rng.standard_normal((7, 7, 7))
    mask = data > 0
    inner = np.zeros_like(mask); inner[2:7, 2:7, 2:7] = True  # the foreground cube eroded once
    stds = []
    for i, j, k in zip(*np.nonzero(inner)):
        stds.append(np.std(data[i - 1 : i + 2, j - 1 : j + 2, k - 1 : k + 2].astype(np.float64), ddof=1))
    want = np.sqrt(np.percentile(np.square(stds), 10))
    assert noise_floor(data, mask) == pytest.approx(want, rel=1e-4)
    flat = np.where(mask, np.float32(0.5), np.float32(0.0))
    assert noise_floor(flat, mask) == pytest.approx(0.0, abs=1e-3)


def test_leave_one_out_knn_and_new_volume_against_slow_loop():
    rng = np.random.default_rng(2)
    feats = _random_features(rng, 7, bins=16)
    det = VolumeHistogramDetector.from_features(feats, k=3, combination="sum")
    centres = (np.arange(16) + 0.5) / 16
    hists = [f.histogram for f in feats]
    stats = [f.stats for f in feats]

    def pairwise(x, y):  # the unit-free scales, straight from their definition
        return [abs(x[j] - y[j]) for j in range(2)]

    n = len(feats)
    w_pairs = [wasserstein_distance(centres, centres, hists[i], hists[j]) for i in range(n) for j in range(n) if i != j]
    s_pairs = [pairwise(stats[i], stats[j]) for i in range(n) for j in range(n) if i != j]
    scales = [np.median(w_pairs), np.median([p[0] for p in s_pairs]), np.median([p[1] for p in s_pairs])]
    np.testing.assert_allclose(det.scales, scales, rtol=1e-12)

    def dist(h, s, i):
        w = wasserstein_distance(centres, centres, h, hists[i]) / scales[0]
        p = pairwise(s, stats[i])
        return w + p[0] / scales[1] + p[1] / scales[2]

    loo = [np.mean(sorted(dist(hists[i], stats[i], j) for j in range(n) if j != i)[:3]) for i in range(n)]
    np.testing.assert_allclose(det.reference, loo, rtol=1e-10)
    d = pair_distances(np.stack(hists), np.stack(stats), np.stack(hists), np.stack(stats), det.scales, det.weights)
    np.testing.assert_allclose(leave_one_out_knn(d, 3), loo, rtol=1e-10)
    # a new volume: its k nearest among ALL training volumes
    vol = np.zeros((6, 6, 6), np.float32)
    vol[1:5, 1:5, 1:5] = rng.uniform(0.2, 0.9, (4, 4, 4))
    f = volume_features(vol, bins=16)
    want = np.mean(sorted(dist(f.histogram, f.stats, j) for j in range(n))[:3])
    assert det.distance(vol) == pytest.approx(want, rel=1e-10)


def test_max_combination_against_slow_loop():
    """Default ``max``: per part, the kNN mean over the part's leave-one-out normal maximum; the max over parts."""
    rng = np.random.default_rng(12)
    feats = _random_features(rng, 8, bins=16)
    det = VolumeHistogramDetector.from_features(feats, k=3, noise_weight=2.0)
    assert det.combination == "max"
    centres = (np.arange(16) + 0.5) / 16
    n, k = len(feats), 3

    def parts(h, s, i):  # W1, fraction, log noise floor: each over its median pair spread
        f = feats[i]
        return np.array([wasserstein_distance(centres, centres, h, f.histogram) / det.scales[0],
                         abs(s[0] - f.stats[0]) / det.scales[1], abs(s[1] - f.stats[1]) / det.scales[2]])

    def knn_parts(h, s, others):
        d = np.array([parts(h, s, j) for j in others])  # (m, 3)
        return np.array([np.mean(np.sort(d[:, c])[:k]) for c in range(3)])  # neighbours chosen PER PART

    loo = np.array([knn_parts(feats[i].histogram, feats[i].stats, [j for j in range(n) if j != i]) for i in range(n)])
    part_max = loo.max(axis=0)
    np.testing.assert_allclose(det.part_max, part_max, rtol=1e-10)
    weights = np.array([1.0, 1.0, 2.0])
    np.testing.assert_allclose(det.reference, (weights * loo / part_max).max(axis=1), rtol=1e-10)
    assert det.reference.max() == pytest.approx(2.0)  # the noise part's own normal maximum, weighted 2
    vol = np.zeros((6, 6, 6), np.float32)
    vol[1:5, 1:5, 1:5] = rng.uniform(0.2, 0.9, (4, 4, 4))
    f = volume_features(vol, bins=16)
    want = (weights * knn_parts(f.histogram, f.stats, range(n)) / part_max).max()
    assert det.distance(vol) == pytest.approx(want, rel=1e-10)
    # the histogram alone: one part, so max == sum up to the part's normal maximum
    alone_max = VolumeHistogramDetector.from_features(feats, k=3, fraction_weight=0, noise_weight=0)
    alone_sum = VolumeHistogramDetector.from_features(feats, k=3, fraction_weight=0, noise_weight=0, combination="sum")
    assert alone_max.distance(vol) == pytest.approx(alone_sum.distance(vol) / alone_max.part_max[0], rel=1e-12)
    with pytest.raises(MoodError, match="combination"):
        VolumeHistogramDetector.from_features(feats, combination="mean")


def test_k_is_capped_by_the_training_set_and_validated():
    rng = np.random.default_rng(3)
    assert VolumeHistogramDetector.from_features(_random_features(rng, 4), k=5).k == 3
    with pytest.raises(MoodError, match="at least 3"):
        VolumeHistogramDetector.from_features(_random_features(rng, 2))
    with pytest.raises(MoodError, match="k must"):
        VolumeHistogramDetector.from_features(_random_features(rng, 5), k=0)
    empty = VolumeFeatures(np.zeros(16), 0.0, 0.0)
    with pytest.raises(MoodError, match="no foreground"):
        VolumeHistogramDetector.from_features([*_random_features(rng, 4), empty])


def test_calibration_monotone_finite_in_unit_interval():
    rng = np.random.default_rng(4)
    det = VolumeHistogramDetector.from_features(_random_features(rng, 9), k=3)
    raw = np.concatenate([[0.0], np.sort(det.reference), np.geomspace(1e-3, 1e9, 200) + det.reference.max(), [np.inf, np.nan]])
    raw[:-2].sort()
    y = det.calibration.apply(raw)
    assert np.isfinite(y).all() and (y >= 0).all() and (y <= 1).all()
    assert (np.diff(y[:-1]) >= 0).all()  # non-decreasing up to +inf
    assert y[-2] == 1.0 and y[-1] == 1.0  # +inf and NaN: most abnormal
    assert det.calibration.apply(det.reference.max()) == pytest.approx(0.5)
    assert (det.calibration.apply(det.reference) <= 0.5).all()
    assert det.calibration.apply(det.reference.max() * 1.5) > 0.5
    assert det.volume_score(np.zeros((8, 8, 8), np.float32)) == 1.0  # a blank volume


def test_detector_protocol_and_zero_pixel_map():
    rng = np.random.default_rng(5)
    det = VolumeHistogramDetector.from_features(_random_features(rng, 6), k=2)
    vol = rng.uniform(0, 1, (6, 7, 8)).astype(np.float32)
    assert isinstance(det, Detector) and det.name == "volume-histogram"
    maps = det.score_volume(vol)
    assert maps.shape == vol.shape and maps.dtype == np.float32 and not maps.any()
    assert det.sample_score(vol, maps) == det.volume_score(vol)
    assert 0.0 <= det.volume_score(vol) <= 1.0


def test_model_file_round_trip_and_errors(tmp_path):
    vols = [np.pad(np.random.default_rng(i).uniform(0.1, 0.9, (6, 6, 6)).astype(np.float32), 1) for i in range(5)]
    paths = []
    for i, v in enumerate(vols):
        paths.append(tmp_path / f"train{i}.nii.gz")
        write_volume(paths[-1], v, affine=np.eye(4))
    det = VolumeHistogramDetector.fit(paths, bins=32, k=2, seed=7, progress=False)
    assert det.names == tuple(f"train{i}" for i in range(5)) and det.bins == 32 and det.seed == 7
    out = det.save(tmp_path / "models" / "volhist.npz")
    assert sorted(p.name for p in out.parent.iterdir()) == ["volhist.npz"]  # no temp file left
    back = VolumeHistogramDetector.load(out)
    probe = [v ** 0.5 for v in vols[:2]] + vols[2:]
    assert [back.volume_score(v) for v in probe] == [det.volume_score(v) for v in probe]
    np.testing.assert_array_equal(back.histograms, det.histograms)
    assert (back.k, back.scales, back.weights, back.calibration, back.names) == (det.k, det.scales, det.weights, det.calibration, det.names)
    assert (back.combination, back.part_max) == ("max", det.part_max)
    # a format-1 file (no combination, no part_max) is read as the sum it was fitted with
    old_det = VolumeHistogramDetector.fit(paths, bins=32, k=2, combination="sum", progress=False)
    with np.load(old_det.save(tmp_path / "old.npz")) as z:
        v1 = {key: z[key] for key in z.files if key not in ("combination", "part_max")}
    np.savez(tmp_path / "v1.npz", **{**v1, "version": np.array(1)})
    back1 = VolumeHistogramDetector.load(tmp_path / "v1.npz")
    assert back1.combination == "sum" and [back1.volume_score(v) for v in probe] == [old_det.volume_score(v) for v in probe]

    with np.load(out) as z:
        entries = {key: z[key] for key in z.files}
    for key, value, message in [
        ("version", np.array(99), "newer"),
        ("detector", np.array("histogram"), "not 'volume-histogram'"),
        ("calibration", np.array("{not json"), "JSON"),
    ]:
        bad = tmp_path / f"bad_{key}.npz"
        np.savez(bad, **{**entries, key: value})
        with pytest.raises(MoodError, match=message):
            VolumeHistogramDetector.load(bad)
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in entries.items() if k != "scales"})
    with pytest.raises(MoodError, match="lacks 'scales'"):
        VolumeHistogramDetector.load(missing)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MoodError, match="not a readable"):
        VolumeHistogramDetector.load(tmp_path / "junk.npz")
    with pytest.raises(MoodError, match="no such"):
        VolumeHistogramDetector.load(tmp_path / "absent.npz")
    with pytest.raises(MoodError, match="bins"):
        VolumeHistogramDetector.fit(paths, bins=4, progress=False)


def _on_foreground(vol, change):
    out = vol.copy()
    fg = vol > 0
    out[fg] = np.clip(change(vol[fg]), 0.0, 1.0)
    return out


def test_phantoms_global_changes_score_above_normals_local_near_chance():
    from mood_dpa.data.phantoms import make_phantom

    size = 32
    train = [make_phantom("brain", size, 0, i) for i in range(10)]
    held = [make_phantom("brain", size, 0, 100 + i) for i in range(6)]
    det = VolumeHistogramDetector.from_volumes(train)
    rng = np.random.default_rng(0)
    changes = {
        "gamma 0.6": lambda v: _on_foreground(v, lambda x: x**0.6),
        "gamma 1.6": lambda v: _on_foreground(v, lambda x: x**1.6),
        "noise 0.05": lambda v: _on_foreground(v, lambda x: x + rng.normal(0.0, 0.05, x.shape)),
        "inversion": lambda v: _on_foreground(v, lambda x: 1.0 - x),
    }
    normal = [det.volume_score(v) for v in held]
    changed = {name: [det.volume_score(f(v)) for v in held] for name, f in changes.items()}
    pooled = np.concatenate([normal, *changed.values()])
    labels = np.r_[np.zeros(len(normal)), np.ones(pooled.size - len(normal))]
    # measured 0.896 (the default max; 0.91 with the sum): gamma and inversion 1.0 each, noise 0.58 (sum:
    # 0.64) at 32^3 (texture and partial-volume edges dominate the noise floor at this size; see
    # benchmarks/bench_volume_histogram.py at 64^3)
    assert roc_auc(pooled, labels) >= 0.88
    for name in ("gamma 0.6", "gamma 1.6", "inversion"):  # measured 1.0 each at 32^3
        assert roc_auc(np.r_[normal, changed[name]], np.r_[np.zeros(6), np.ones(6)]) == 1.0, name
    # a small LOCAL blob (r = 3 voxels, bright): the histogram barely moves; measured ROC-AUC 0.64 at 32^3
    grid = np.indices((size,) * 3)
    blob = np.sqrt(((grid - np.array([16, 18, 16])[:, None, None, None]) ** 2).sum(0)) < 3
    local = [np.where(blob & (v > 0), np.float32(0.95), v) for v in held]
    local_auc = roc_auc(np.r_[normal, [det.volume_score(v) for v in local]], np.r_[np.zeros(6), np.ones(6)])
    assert 0.3 <= local_auc <= 0.8  # near chance: this detector is not for small local anomalies
