"""The volume scorer: exact agreement with a slow per-slice float64 loop, placement by slice index,
the combine rules, and batch-size invariance."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mood_dpa.data.slices import SliceRule
from mood_dpa.errors import MoodError
from mood_dpa.scoring.slice_inferer import AxisModel, axis_map
from mood_dpa.scoring.combine import score_raw
from mood_dpa.inference.pipeline import BackgroundWriter, shard_paths


def textured_volume(shape=(20, 24, 28), seed=0) -> np.ndarray:
    """Random texture inside a box, zero outside; one sparse slice per axis near the middle."""
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, np.float32)
    vol[2:-3, 3:-2, 4:-4] = rng.random((shape[0] - 5, shape[1] - 5, shape[2] - 8)) * 0.8 + 0.1
    return vol


def maps_fn(x):
    """A slice-dependent stand-in for a model: numerator (x - local mean)^2 + 0.1 x, denominator mean + 0.05."""
    blur = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return (x - blur) ** 2 + 0.1 * x, x.mean(dim=(1, 2, 3)) + 0.05


def reference_axis_map(vol: np.ndarray, axis: int, size: int, rule: SliceRule, normaliser: str) -> np.ndarray:
    """Slow, obvious version: one slice at a time in float64 (numpy rule, per-slice resize both ways)."""
    v = np.moveaxis(vol.astype(np.float64), axis, 0)
    n, h, w = v.shape
    out = np.zeros((n, h, w))
    nums, dens = {}, {}
    for i in range(n):
        frac = (v[i] > rule.threshold).mean()
        if frac < rule.min_fraction:
            continue
        x = torch.from_numpy(v[i])[None, None]
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        num, den = maps_fn(x.clamp(0, 1))
        nums[i], dens[i] = num, float(den)
    dbar = np.mean(list(dens.values())) if dens else 1.0
    for i, num in nums.items():
        m = num / (dens[i] if normaliser == "slice" else dbar)
        if (h, w) != (size, size):
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False, antialias=h < size or w < size)
        out[i] = m[0, 0].numpy()
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("normaliser", ["slice", "volume"])
def test_one_axis_equals_slow_float64_reference(axis, normaliser):
    vol = textured_volume()
    rule = SliceRule(min_fraction=0.3)
    model = AxisModel(axis=axis, size=16, maps_fn=maps_fn, rule=rule, normaliser=normaliser)
    got = score_raw(vol, [model], batch_size=7).numpy()
    want = reference_axis_map(vol, axis, 16, rule, normaliser)
    assert got.shape == vol.shape and got.dtype == np.float32
    assert (want > 0).sum() > 1000  # the comparison is not vacuous
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_skipped_middle_slice_does_not_shift_later_maps(axis):
    """Seed defect 1: maps after a skipped slice were put one slice too early."""
    rng = np.random.default_rng(1)
    vol = rng.random((12, 12, 12)).astype(np.float32) * 0.5 + 0.25
    sl = [slice(None)] * 3
    sl[axis] = 5
    sparse = np.zeros((12, 12), np.float32)
    sparse[0, :3] = 0.9  # 3 of 144 pixels: below the rule, but not empty
    vol[tuple(sl)] = sparse
    identity = lambda x: (x, torch.ones(x.shape[0]))  # noqa: E731  map = the slice itself
    model = AxisModel(axis=axis, size=12, maps_fn=identity, rule=SliceRule(min_fraction=0.1))
    out = score_raw(vol, [model]).numpy()
    m = np.moveaxis(out, axis, 0)
    v = np.moveaxis(vol, axis, 0)
    assert np.all(m[5] == 0)  # the skipped slice scores 0 ...
    for i in [0, 4, 6, 7, 11]:  # ... and every other map sits at its own index
        np.testing.assert_array_equal(m[i], v[i])


def test_combine_rules_over_models_that_saw_the_voxel():
    vol = np.full((10, 10, 10), 0.5, np.float32)
    vol[3] = 0.0  # slice 3 along axis 0 is empty: model A (axis 0) skips it; model B (axis 2) sees it
    const = lambda c: (lambda x: (torch.full_like(x, c), torch.ones(x.shape[0])))  # noqa: E731
    a = AxisModel(axis=0, size=10, maps_fn=const(2.0), weight=1.0)
    b = AxisModel(axis=2, size=10, maps_fn=const(6.0), weight=3.0)
    mean = score_raw(vol, [a, b], "mean").numpy()
    mx = score_raw(vol, [a, b], "max").numpy()
    cov = score_raw(vol, [a, b], "mean_covered").numpy()
    # a voxel both models saw: weighted mean (2*1 + 6*3)/4 = 5
    assert mean[5, 5, 5] == pytest.approx(5.0) and cov[5, 5, 5] == pytest.approx(5.0) and mx[5, 5, 5] == 6.0
    # a voxel only B saw (slice 3 of axis 0): mean counts A as 0, mean_covered ignores A
    assert mean[3, 5, 5] == pytest.approx(18.0 / 4) and cov[3, 5, 5] == pytest.approx(6.0) and mx[3, 5, 5] == 6.0
    # the mask of B's skipped slices: all slices along axis 2 of this volume are kept (column 3 is one empty
    # row per slice only), so nothing here is unseen by both
    assert np.isfinite(cov).all()
    with pytest.raises(MoodError):
        score_raw(vol, [a], "median")


def test_batch_size_does_not_change_scores():
    vol = textured_volume(seed=3)
    models = [AxisModel(axis=a, size=16, maps_fn=maps_fn, rule=SliceRule(0.2), normaliser="volume") for a in range(3)]
    ref = score_raw(vol, models, batch_size=1)
    for bs in (4, 1000):
        assert torch.allclose(score_raw(vol, models, batch_size=bs), ref, rtol=1e-6, atol=1e-7)


def test_no_kept_slice_gives_zeros_and_bad_inputs_are_refused():
    vol = np.zeros((8, 8, 8), np.float32)
    m, idx = axis_map(torch.from_numpy(vol), AxisModel(axis=1, size=8, maps_fn=maps_fn))
    assert idx.numel() == 0 and torch.count_nonzero(m) == 0
    with pytest.raises(MoodError):
        score_raw(np.zeros((4, 4)), [AxisModel(axis=0, size=8, maps_fn=maps_fn)])
    with pytest.raises(MoodError):
        AxisModel(axis=3, size=8, maps_fn=maps_fn)
    with pytest.raises(MoodError):
        AxisModel(axis=0, size=8, maps_fn=maps_fn, normaliser="batch")  # type: ignore[arg-type]


def test_shard_paths_covers_every_item_once(monkeypatch):
    items = list(range(11))
    shards = [shard_paths(items, r, 3) for r in range(3)]
    assert sorted(sum(shards, [])) == items
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert shard_paths(items) == [1, 3, 5, 7, 9]
    with pytest.raises(MoodError):
        shard_paths(items, 2, 2)


def test_background_writer_keeps_order_reports_errors_and_bounds_the_queue():
    import threading
    import time

    log, seen, gate = [], [], threading.Event()

    def write(k):
        if k == 0:
            gate.wait(5)  # the first write is slow: the caller must not block until the queue is full
        if k == 2:
            raise MoodError("disk full")
        log.append(k)
        return k

    with BackgroundWriter(max_pending=2) as w:
        w.submit(write, 0, done=lambda r, e: seen.append((r, e)))
        t = time.perf_counter()
        w.submit(write, 1, done=lambda r, e: seen.append((r, e)))
        assert time.perf_counter() - t < 1.0 and not seen  # queued, not waited for
        gate.set()
        for k in (2, 3):
            w.submit(write, k, done=lambda r, e: seen.append((r, e)))
    assert [r for r, _ in seen] == [0, 1, None, 3] and isinstance(seen[2][1], MoodError)
    assert log == [0, 1, 3]


def test_device_names_are_checked():
    from mood_dpa.scoring.device import device_for_rank

    assert device_for_rank("cpu").type == "cpu"
    with pytest.raises(MoodError):
        device_for_rank("tpu7")
    if not torch.cuda.is_available():
        with pytest.raises(MoodError, match="CUDA is not available"):
            device_for_rank("cuda")
