"""The segmenter's training-time anomaly generator: seeded, honest labels, factors in range, 2-D and 3-D."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mood_dpa.methods.segmenter.anomalies import FAMILIES, AnomalyGenerator, AnomalySettings, gaussian_smooth, region_weights
from mood_dpa.training.appearance import AppearanceSettings, change_appearance


def _batch(dim: int, b: int = 6, n: int = 32, seed: int = 0) -> torch.Tensor:
    """Textured discs / balls in [0.3, 1] on an exactly-zero background."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, n)] * dim, indexing="ij"))
    inside = (grid**2).sum(0) < 0.6
    tex = torch.rand((b, 1, *[n] * dim), generator=g)
    return torch.where(inside, 0.3 + 0.7 * tex, torch.zeros_like(tex))


@pytest.mark.parametrize("dim", [2, 3])
def test_same_seed_same_output_other_seed_other_output(dim):
    x = _batch(dim, n=32 if dim == 2 else 24)
    gen = AnomalyGenerator(AnomalySettings(normal_p=0.0))
    a = gen(x, torch.Generator().manual_seed(7))
    b = gen(x, torch.Generator().manual_seed(7))
    c = gen(x, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])
    assert a[0].shape == x.shape and a[1].shape == x.shape


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("family", ["fpi", "poisson", "intensity", "deform", "lesion"])
def test_label_marks_exactly_the_changed_voxels_and_factors_stay_in_range(dim, family):
    x = _batch(dim, b=8, n=32 if dim == 2 else 20, seed=1)
    s = AnomalySettings(normal_p=0.0, foreground_p=0.5, tube_p=0.3, difference_p=0.3, **{f: float(f == family) for f in FAMILIES})
    gen = AnomalyGenerator(s)
    changed_any = 0
    for seed in range(4):
        out, target = gen(x, torch.Generator().manual_seed(seed))
        diff = (out - x).abs()
        # label > 0 exactly where the image changed by more than eps; unchanged voxels are bit-identical
        assert torch.equal(target > 0, diff > s.eps)
        assert torch.equal(out[target == 0], x[target == 0])
        assert float(target.min()) >= 0.0 and float(target.max()) <= 1.0
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 and torch.isfinite(out).all()
        changed_any += int((target > 0).flatten(1).any(1).sum())
    assert changed_any >= 24  # nearly every image got an anomaly (regions may rarely miss all change)


def test_fpi_blends_another_image_of_the_batch_with_the_target_factor():
    # images of distinct constant levels: an FPI voxel must lie between its own and the donor's level,
    # at the position the target (blend factor) says, for exactly one other image of the batch
    levels = torch.tensor([0.2, 0.4, 0.6, 0.8]).reshape(4, 1, 1, 1)
    x = levels.expand(4, 1, 32, 32).clone()
    gen = AnomalyGenerator(AnomalySettings(normal_p=0.0, fpi=1.0, poisson=0.0, intensity=0.0, foreground_p=1.0))
    out, target = gen(x, torch.Generator().manual_seed(3))
    for i in range(4):
        m = target[i] > 0
        assert m.any()
        t, o = target[i][m].double(), out[i][m].double()
        donor = (o - (1 - t) * levels[i].item()) / t  # solve out = x + t (donor - x) for the donor level
        assert any(torch.allclose(donor, torch.full_like(donor, levels[j].item()), atol=1e-4) for j in range(4) if j != i)


def test_normal_images_stay_unchanged_and_background_stays_untouched_when_restricted():
    x = _batch(2, b=6, seed=2)
    out, target = AnomalyGenerator(AnomalySettings(normal_p=1.0))(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, x) and float(target.abs().max()) == 0.0
    out, target = AnomalyGenerator(AnomalySettings(normal_p=0.0, foreground_p=1.0))(x, torch.Generator().manual_seed(0))
    assert torch.equal(out[x == 0], x[x == 0]) and float(target[x == 0].max()) == 0.0
    assert float(target.max()) > 0


def test_region_weights_are_soft_bounded_and_centred_on_the_foreground():
    x = torch.zeros(16, 1, 48, 48)
    x[:, :, 30:44, 4:18] = 0.7  # foreground only in one corner square
    w = region_weights(x, torch.Generator().manual_seed(0), AnomalySettings(radius=(0.05, 0.1)))
    assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0
    assert ((w > 0) & (w < 1)).any()  # smoothed edges
    # every region grows from a foreground centre: its weight mass lies near the corner square
    ys, xs = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    mass = w[:, 0].sum((1, 2)).clamp_min(1e-9)
    cy, cx = (w[:, 0] * ys).sum((1, 2)) / mass, (w[:, 0] * xs).sum((1, 2)) / mass
    has = w[:, 0].sum((1, 2)) > 0
    assert has.sum() >= 12
    assert ((cy[has] > 22) & (cx[has] < 26)).all()


def test_gaussian_smooth_matches_scipy_per_image_sigma():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 20, 22)).astype(np.float32)
    out = gaussian_smooth(torch.from_numpy(x), torch.tensor([1.0, 2.0])).numpy()
    for i, s in enumerate((1.0, 2.0)):
        ref = gaussian_filter(x[i, 0].astype(np.float64), s, mode="nearest", truncate=float(np.ceil(3 * 2.0)) / s)
        np.testing.assert_allclose(out[i, 0], ref, atol=1e-5)


def test_the_generator_records_each_images_family_and_never_draws_a_held_out_one():
    """A held-out-family run trains without the family it validates on: the generator's own record says so."""
    x = _batch(2, b=8, seed=4)
    held_out = "deform"
    s = AnomalySettings(normal_p=0.1, fpi=1.0, poisson=1.0, intensity=1.0, deform=0.0, lesion=1.0)
    gen = AnomalyGenerator(s)
    assert gen.families == ("fpi", "poisson", "intensity", "lesion")
    seen = set()
    for seed in range(25):
        out, target = gen(x, torch.Generator().manual_seed(seed))
        codes = gen.last_families.tolist()
        seen |= set(codes)
        for i, c in enumerate(codes):  # the record matches what happened to each image
            assert (c == -1) == bool(torch.equal(out[i], x[i]) and float(target[i].max()) == 0.0) or c != -1
    assert FAMILIES.index(held_out) not in seen and {0, 1, 2, 4} <= seen
    # the same draws with the family on do use it
    on = AnomalyGenerator(AnomalySettings(normal_p=0.0, deform=1.0, fpi=0.0, poisson=0.0, intensity=0.0))
    on(x, torch.Generator().manual_seed(0))
    assert set(on.last_families.tolist()) == {FAMILIES.index(held_out)}


def test_a_deformation_moves_content_radially_and_keeps_intensities():
    """sink / source: no new intensity appears, content moves (the label is the region where it moved)."""
    x = _batch(2, b=6, n=48, seed=5)
    s = AnomalySettings(normal_p=0.0, fpi=0.0, poisson=0.0, intensity=0.0, deform=1.0, foreground_p=1.0)
    out, target = AnomalyGenerator(s)(x, torch.Generator().manual_seed(1))
    assert (target > 0).any()
    # bilinear resampling of the same image: every new value lies within the image's own range
    assert float(out.max()) <= float(x.max()) + 1e-6 and float(out[x > 0].min()) >= 0.0


def test_new_shapes_make_tubes_and_cut_regions_and_are_off_by_default():
    x = torch.full((32, 1, 48, 48), 0.5)
    base = region_weights(x, torch.Generator().manual_seed(0), AnomalySettings())
    # off: the stream (and so every region) is what it was before tubes and differences existed
    again = region_weights(x, torch.Generator().manual_seed(0), AnomalySettings(tube_p=0.0, difference_p=0.0))
    assert torch.equal(base, again)
    tubes = region_weights(x, torch.Generator().manual_seed(0), AnomalySettings(tube_p=1.0, max_components=1, radius=(0.1, 0.2)))
    # a tube is long and thin: its second moments have a large ratio
    ys, xs = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    ratios = []
    for w in tubes[:, 0]:
        if w.sum() < 5:
            continue
        m = w / w.sum()
        cy, cx = (m * ys).sum(), (m * xs).sum()
        cov = torch.tensor([[(m * (ys - cy) ** 2).sum(), (m * (ys - cy) * (xs - cx)).sum()],
                            [(m * (ys - cy) * (xs - cx)).sum(), (m * (xs - cx) ** 2).sum()]])
        ev = torch.linalg.eigvalsh(cov)
        ratios.append(float(ev[1] / ev[0].clamp_min(1e-6)))
    assert len(ratios) >= 20 and np.median(ratios) > 8
    cut = region_weights(x, torch.Generator().manual_seed(0), AnomalySettings(difference_p=1.0))
    assert float((cut - base).max()) <= 1e-6 and float((base - cut).max()) > 0.5  # only ever removes weight


def test_a_new_appearance_leaves_the_anomaly_where_it_was():
    """The appearance change is global and applied after synthesis: applied the same way (same draws) to the
    normal and to the anomalous image, they differ exactly where the anomaly is; the background stays 0."""
    x = _batch(2, b=8, seed=6)
    s = AnomalySettings(normal_p=0.0, foreground_p=1.0)
    out, target = AnomalyGenerator(s)(x, torch.Generator().manual_seed(2))
    look = AppearanceSettings(p=1.0, gamma=0.4, contrast=0.4, bias=0.3)  # elementwise and monotone per image
    a = change_appearance(out, torch.Generator().manual_seed(9), look)
    n = change_appearance(x, torch.Generator().manual_seed(9), look)
    assert not torch.equal(a, out)
    moved = (a - n).abs() > 0
    assert not (moved & (target == 0)).any()  # nothing outside the anomaly tells the two apart
    assert float(moved.sum()) >= 0.95 * float((target > 0).sum())  # and the anomaly still does (bar values clipped alike)
    assert float(a[x == 0].abs().max()) == 0.0 and float(a.max()) <= 1.0
    off = change_appearance(out, torch.Generator().manual_seed(9), AppearanceSettings())
    assert torch.equal(off, out)


def test_with_the_new_families_off_the_draws_equal_those_before_they_existed(one_torch_thread):
    """The default generator's images and targets are those of the generator before the deform and lesion
    families existed (so today's default trainings equal the earlier ones): sums pinned from main at b7c5cac,
    where a 5-way draw with two zero weights had moved every later draw."""
    torch.manual_seed(0)
    x = torch.rand(16, 1, 64, 64) * (torch.rand(16, 1, 64, 64) > 0.3)
    g = torch.Generator().manual_seed(5)
    gen = AnomalyGenerator()
    before = [(22847.679056, 1056.264315), (22960.368355, 1132.6754), (22925.968724, 1592.689085)]
    for image_sum, target_sum in before:
        a, t = gen(x, g)
        assert round(float(a.double().sum()), 6) == pytest.approx(image_sum, abs=1e-5)
        assert round(float(t.double().sum()), 6) == pytest.approx(target_sum, abs=1e-5)
