"""Each synthetic anomaly kind and region shape on its own."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blob_volume

from mood_dpa.data.synth import (
    KINDS,
    MIN_CHANGE,
    apply_anomaly,
    changed_mask,
    make_region,
    sample_region,
    seed_ellipsoid_region,
)
from mood_dpa.errors import MoodError

N = 32


@pytest.fixture(scope="module")
def vol():
    return blob_volume((N, N, N), seed=0)


@pytest.fixture(scope="module")
def donor():
    return blob_volume((N, N, N), seed=1)


def central_region(shape="ellipsoid", soft=False, seed=0):
    rng = np.random.default_rng(seed)
    return make_region((N, N, N), (15.5, 16.0, 14.5), (5.0, 4.0, 4.5), rotation=np.eye(3), shape=shape, soft=soft, rng=rng)


def run_kind(kind, data, region, seed, donor=None):
    extra = {"donor": donor} if kind == "patch" else {}
    return KINDS[kind](data, region, np.random.default_rng(seed), **extra)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("soft", [False, True])
def test_kind_stays_in_range_changes_only_its_box_and_is_seeded(kind, soft, vol, donor):
    region = central_region(soft=soft)
    before = vol.copy()
    out, params = run_kind(kind, vol, region, 5, donor)
    assert np.array_equal(vol, before), "input must not be modified"
    assert out.dtype == np.float32 and out.shape == vol.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    outside = np.ones(vol.shape, bool)
    outside[region.slices] = False
    assert np.array_equal(out[outside], vol[outside])
    # changes are confined to where the region weight is positive
    weight = region.mask(vol.shape)
    assert np.all(out[weight == 0] == vol[weight == 0])
    label = changed_mask(vol, out)
    assert label.dtype == np.uint8
    assert np.array_equal(label.astype(bool), np.abs(out - vol) > MIN_CHANGE)
    assert label.sum() > 0, f"{kind} changed nothing on a textured volume"
    again, params2 = run_kind(kind, vol, region, 5, donor)
    assert np.array_equal(out, again) and params == params2
    other, _ = run_kind(kind, vol, region, 6, donor)
    assert not np.array_equal(out, other)


@pytest.mark.parametrize("kind", ["sink", "source", "shift", "reflect", "patch"])
def test_moving_nothing_marks_nothing(kind):
    flat = np.full((N, N, N), 0.6, np.float32)  # content that looks the same wherever it comes from
    out, _ = run_kind(kind, flat, central_region(), 3, donor=flat)
    assert np.allclose(out, flat, atol=1e-6)
    assert changed_mask(flat, out).sum() == 0


def test_uniform_offset_is_exact_inside_a_hard_region_and_clipped(vol):
    region = central_region()
    out, params = KINDS["uniform"](vol, region, np.random.default_rng(0), offset=0.25)
    inside = region.mask(vol.shape) == 1
    assert params["offset"] == 0.25
    assert np.allclose(out[inside], np.clip(vol[inside] + 0.25, 0, 1), atol=1e-6)
    bright = np.full((N, N, N), 0.9, np.float32)
    out, _ = KINDS["uniform"](bright, region, np.random.default_rng(0), offset=0.3)
    assert out.max() == 1.0
    # 0.9 -> 1.0 is a real change of 0.1: labelled
    assert changed_mask(bright, out)[inside].all()


def test_sink_and_source_move_content_radially():
    # intensity = distance from the region centre: a source magnifies the middle (values drop),
    # a sink pulls the surroundings in (values rise)
    grid = np.stack(np.meshgrid(*[np.arange(N, dtype=np.float32)] * 3, indexing="ij"))
    region = make_region((N, N, N), (16.0, 16.0, 16.0), (8.0, 8.0, 8.0), shape="sphere")
    dist = np.sqrt(((grid - 16.0) ** 2).sum(0)) / 20.0
    inside = region.mask(dist.shape) > 0
    src, _ = KINDS["source"](dist, region, np.random.default_rng(0), strength=2.0)
    snk, _ = KINDS["sink"](dist, region, np.random.default_rng(0), strength=0.5)
    assert np.all(src[inside] <= dist[inside] + 1e-5) and (src[inside] < dist[inside] - 0.02).sum() > 100
    assert np.all(snk[inside] >= dist[inside] - 1e-5) and (snk[inside] > dist[inside] + 0.02).sum() > 100


def test_shift_and_reflect_follow_their_parameters():
    ramp = np.broadcast_to(np.linspace(0, 1, N, dtype=np.float32)[:, None, None], (N, N, N)).copy()
    region = central_region()
    inside = region.mask(ramp.shape) == 1
    out, _ = KINDS["shift"](ramp, region, np.random.default_rng(0), vector=(3.0, 0.0, 0.0))
    assert np.allclose(out[inside], (ramp - 3.0 / (N - 1))[inside], atol=1e-5)
    out, _ = KINDS["reflect"](ramp, region, np.random.default_rng(0), normal=(0.0, 1.0, 0.0))
    assert np.allclose(out, ramp), "mirroring across a plane the ramp does not vary over moves nothing"
    out, _ = KINDS["reflect"](ramp, region, np.random.default_rng(0), normal=(1.0, 0.0, 0.0))
    assert changed_mask(ramp, out).sum() > 0


def test_patch_blends_the_donor_and_needs_one(vol, donor):
    region = central_region()
    out, params = KINDS["patch"](vol, region, np.random.default_rng(0), donor=donor, alpha=1.0)
    inside = region.mask(vol.shape) == 1
    assert np.allclose(out[inside], donor[inside])
    with pytest.raises(MoodError, match="donor"):
        KINDS["patch"](vol, region, np.random.default_rng(0))


@pytest.mark.parametrize("shape", ["sphere", "ellipsoid", "smooth"])
@pytest.mark.parametrize("soft", [False, True])
def test_region_shapes_weights_and_border(shape, soft):
    rng = np.random.default_rng(2)
    region = make_region((N, N, N), (16, 16, 16), (6, 5, 4), rotation=np.eye(3), shape=shape, soft=soft, rng=rng)
    w = region.weight
    assert w.min() >= 0 and w.max() == pytest.approx(1.0) and region.weight.shape == region.rho.shape
    assert w[tuple(np.array(w.shape) // 2)] == pytest.approx(1.0)
    if not soft:
        assert set(np.unique(w)) <= {0.0, 1.0}
    else:
        assert ((w > 0) & (w < 1)).any()
    # a region at the corner is clipped, not a crash
    corner = make_region((N, N, N), (0.0, 31.0, 1.0), (6, 6, 6), shape=shape, soft=soft, rng=rng)
    assert corner.mask((N, N, N)).sum() > 0
    with pytest.raises(MoodError, match="outside"):
        make_region((N, N, N), (-40.0, 5.0, 5.0), (3, 3, 3))


def test_sampled_regions_are_sized_per_protocol_and_mostly_in_foreground():
    vol = np.zeros((N, N, N), np.float32)
    vol[4:14, 6:26, 6:26] = 0.5  # foreground off-centre
    rng = np.random.default_rng(0)
    for _ in range(30):
        region = sample_region(vol, rng)
        assert all(2.0 <= r <= 0.13 * N + 1e-9 for r in region.radii)
        w = region.weight
        assert (w * (vol[region.slices] > 0)).sum() / w.sum() >= 0.5
    with pytest.raises(MoodError, match="no foreground"):
        sample_region(np.zeros((N, N, N), np.float32), rng)


def test_seed_ellipsoid_uses_the_right_axis_order_and_survives_the_border():
    vol = np.zeros((40, 40, 40), np.float32)
    vol[1:12, 5:35, 5:35] = 0.5  # foreground extent: axis 0 centre 6, others centre 19.5
    rng = np.random.default_rng(0)
    centres = np.array([seed_ellipsoid_region(vol, rng).centre for _ in range(80)])
    assert abs(centres[:, 0].mean() - 6.0) < 2.0 and abs(centres[:, 1].mean() - 19.5) < 2.0
    region = seed_ellipsoid_region(vol, rng)
    assert min(region.radii) >= 5.0 and not region.soft


@pytest.mark.parametrize("kind", list(KINDS))
def test_apply_anomaly_labels_exactly_the_changed_voxels(kind, vol, donor):
    out, label, record = apply_anomaly(vol, kind, np.random.default_rng(4), n_regions=2, donor=donor)
    assert np.array_equal(label, changed_mask(vol, out))
    assert record["voxels"] == int(label.sum()) > 0 and len(record["regions"]) == 2
    out2, label2, record2 = apply_anomaly(vol, kind, np.random.default_rng(4), n_regions=2, donor=donor)
    assert np.array_equal(out, out2) and record == record2


def test_unknown_kind_is_a_clear_error(vol):
    with pytest.raises(MoodError, match="unknown anomaly kind 'smear'"):
        apply_anomaly(vol, "smear", np.random.default_rng(0))
