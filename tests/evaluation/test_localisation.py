"""Best Dice over float16 thresholds and the per-case hit rate, checked against slow direct computations."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from mood_dpa.evaluation.evaluate import evaluate_folder
from mood_dpa.evaluation.metrics import ScoreHistogram, case_hit, histogram_best_dice


def mood_read(scores) -> np.ndarray:
    return np.clip(np.asarray(scores).astype(np.float16), 0, 1).astype(np.float64)


def direct_best_dice(scores, labels) -> tuple[float, float]:
    """Loop over every distinct float16 value: segment score >= v, Dice in float64; ties -> highest v."""
    s, y = mood_read(scores).ravel(), np.asarray(labels).ravel().astype(bool)
    if not y.any():
        return math.nan, math.nan
    best, where = 0.0, math.nan
    for v in np.unique(s):
        seg = s >= v
        tp = np.sum(seg & y)
        d = 2.0 * tp / (seg.sum() + y.sum())
        if d >= best and d > 0:
            best, where = d, float(v)
    return best, where


def direct_hit(scores, labels) -> bool | None:
    """The documented rule, written out on the whole volume with a full sort."""
    s, y = mood_read(scores), np.asarray(labels) > 0
    if not y.any():
        return None
    m = s.max()
    if m == 0:
        return False
    k = math.ceil(1e-3 * s.size)
    small = [v for v in np.unique(s) if np.sum(s >= v) <= k]  # thresholds keeping at most k voxels
    kth = min(small) if small else m
    comp, _ = ndimage.label(s >= max(kth, 0.5 * m), structure=np.ones((3, 3, 3)))
    ids = set(np.unique(comp[s == m]).tolist()) - {0}
    return bool(any(i in ids for i in np.unique(comp[y]).tolist()))


# ---------------------------------------------------------------- best Dice


@pytest.mark.parametrize("seed", range(8))
def test_best_dice_equals_the_direct_loop_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 4000))
    labels = rng.random(n) < rng.uniform(0.005, 0.6)
    labels[0] = True
    scores = rng.normal(0.4, 0.4, n) + labels * rng.uniform(0, 0.6)  # outside [0, 1] too
    if seed % 2:
        scores = np.round(scores, int(rng.integers(1, 3)))  # heavy ties
    hist = ScoreHistogram().add(scores, labels)
    dice, threshold = histogram_best_dice(hist.pos, hist.neg)
    ref, ref_t = direct_best_dice(scores, labels)
    assert dice == pytest.approx(ref, abs=1e-12) and hist.best_dice() == dice
    assert threshold == ref_t


@pytest.mark.parametrize(
    "scores, labels, expected",
    [
        ([0.9, 0.8, 0.1, 0.1], [1, 1, 0, 0], 1.0),  # perfect separation
        ([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0], 2 * 1 / (4 + 1)),  # one tie: all-or-nothing
        ([0.0, 0.0, 0.0], [1, 0, 0], 2 * 1 / (3 + 1)),  # all zeros: only "everything" segments
        ([0.1, 0.9, 0.2, 0.3], [1, 0, 0, 0], 2 * 1 / (4 + 1)),  # the positive is the lowest score
        ([7.0, 1.0, 0.99996, -3.0], [1, 0, 0, 1], 2 * 2 / (4 + 2)),  # clipping merges 7, 1, 0.99996: >= 1 gives 0.4
        ([0.3, 0.2], [1, 1], 1.0),
    ],
)
def test_best_dice_adversarial_cases_by_hand(scores, labels, expected):
    hist = ScoreHistogram().add(np.array(scores), np.array(labels))
    assert hist.best_dice() == pytest.approx(expected, abs=1e-12)
    assert hist.best_dice() == pytest.approx(direct_best_dice(scores, labels)[0], abs=1e-12)


def test_best_dice_is_undefined_without_positives_and_zero_threshold_is_reported():
    hist = ScoreHistogram().add(np.array([0.1, 0.7]), np.array([0, 0]))
    assert all(math.isnan(v) for v in histogram_best_dice(hist.pos, hist.neg))
    h = ScoreHistogram().add(np.array([0.9, 0.25, 0.25]), np.array([0, 1, 1]))
    dice, t = histogram_best_dice(h.pos, h.neg)
    assert dice == pytest.approx(2 * 2 / (3 + 2)) and t == 0.25  # segment >= 0.25 takes all three voxels (0.8 > 2/3)


# ---------------------------------------------------------------- hit rate


def test_hit_by_hand():
    shape = (10, 10, 10)
    lab = np.zeros(shape, np.uint8)
    lab[1:3, 1:3, 1:3] = 1
    s = np.full(shape, 0.1, np.float32)
    s[7, 7, 7] = 0.9  # hottest voxel far from the lesion
    assert case_hit(s, lab) is False
    s[2, 2, 2] = 0.9  # tied maximum inside the lesion: any region holding the maximum counts
    assert case_hit(s, lab) is True
    s[2, 2, 2] = 0.6  # above half the peak but in another component
    assert case_hit(s, lab) is False
    # 26-connectivity: a diagonal chain of hot voxels joins the peak to the lesion
    for i in range(3, 8):
        s[i, i, i] = 0.5
    assert case_hit(s, lab) is True
    assert case_hit(np.zeros(shape), lab) is False  # an all-zero map finds nothing
    assert case_hit(s, np.zeros(shape)) is None  # no anomaly: not counted


def test_hit_region_is_capped_to_the_top_voxels():
    """A plateau at 0.6 of the peak touching both the peak and the lesion: beyond the top 0.1 %, so a miss."""
    shape = (20, 20, 20)
    lab = np.zeros(shape, np.uint8)
    lab[0:2, 0:2, 0:2] = 1
    s = np.full(shape, 0.6, np.float32)
    s[15, 15, 15] = 1.0
    assert case_hit(s, lab) is False  # 8,000 voxels: k = 8; the 7,999 plateau voxels would exceed it
    s[lab > 0] = 0.95
    assert case_hit(s, lab) is False  # the lesion is the second hottest region, not the hottest


@pytest.mark.parametrize("seed", range(10))
def test_hit_equals_the_direct_rule_on_random_and_adversarial_maps(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(8, 24, size=3))
    lab = np.zeros(shape, np.uint8)
    c = [int(rng.integers(0, n)) for n in shape]
    lab[c[0] : c[0] + 3, c[1] : c[1] + 3, c[2] : c[2] + 3] = 1
    s = ndimage.gaussian_filter(rng.random(shape), 1.0) + lab * rng.uniform(0, 0.3)
    if seed % 3 == 1:
        s = np.round(s * rng.uniform(0.5, 3), 1)  # coarse: ties at the maximum, values above 1
    if seed % 3 == 2:
        s = np.where(rng.random(shape) < 0.02, 1.0, s * 0.4)  # scattered saturated voxels
    assert case_hit(s, lab) == direct_hit(s, lab)


# ---------------------------------------------------------------- on folders


def save(path: Path, arr, dtype):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(arr).astype(dtype), np.eye(4))
    img.set_data_dtype(dtype)
    nib.save(img, str(path))


def test_evaluate_reports_best_dice_and_hit_rate_overall_per_kind_and_in_json(tmp_path):
    rng = np.random.default_rng(3)
    shape = (12, 11, 10)
    labels, preds, kinds = {}, {}, {}
    for i in range(7):
        lab = np.zeros(shape, np.uint8)
        if i >= 2:
            lab[i : i + 3, 2:6, 3:6] = 1
        pred = ndimage.gaussian_filter(rng.random(shape), 1) * 0.5 + 0.5 * lab * (rng.random(shape) < 0.6)
        if i == 4:
            pred[9, 9, 9] = 1.0  # hottest voxel away from the lesion: a miss
        name = f"c{i}.nii.gz"
        save(tmp_path / "toy_label" / "pixel" / name, lab, np.uint8)
        save(tmp_path / "pred" / name, pred, np.float32)
        labels[name], preds[name] = lab, pred
        kinds[f"c{i}"] = "normal" if i < 2 else ("a" if i < 5 else "b")
    (tmp_path / "manifest.csv").write_text("case,kind\n" + "".join(f"{c},{k}\n" for c, k in kinds.items()))
    res = evaluate_folder(tmp_path / "pred", tmp_path, "pixel", manifest=tmp_path / "manifest.csv", on_warning=None, progress=False)

    def pooled(names):
        return direct_best_dice(np.concatenate([preds[n].ravel() for n in names]), np.concatenate([labels[n].ravel() for n in names]))

    hits = {n: direct_hit(preds[n], labels[n]) for n in labels}
    assert hits["c4.nii.gz"] is False and sum(bool(h) for h in hits.values()) >= 3
    assert res.best_dice == pytest.approx(pooled(sorted(labels))[0], abs=1e-12)
    assert res.best_dice_threshold == pooled(sorted(labels))[1]
    assert res.hit_cases == 5 and res.hit_rate == pytest.approx(np.mean([h for h in hits.values() if h is not None]))
    for kind in ("a", "b"):
        names = [f"{c}.nii.gz" for c, k in kinds.items() if k in (kind, "normal")]
        m = res.per_kind[kind]
        assert m["best_dice"] == pytest.approx(pooled(names)[0], abs=1e-12)
        own = [hits[f"{c}.nii.gz"] for c, k in kinds.items() if k == kind]
        assert m["hit_cases"] == len(own) and m["hit_rate"] == pytest.approx(np.mean(own))
        assert m["scope"] == "local"
    assert set(res.per_scope) == {"local"} and res.per_scope["local"]["best_dice"] == pytest.approx(res.best_dice)
    d = res.to_dict()
    assert d["best_dice"] == pytest.approx(res.best_dice) and d["hit_rate"] == pytest.approx(res.hit_rate)
    assert d["per_kind"]["a"]["hit_rate"] == pytest.approx(res.per_kind["a"]["hit_rate"])
    # a missing prediction is an all-zero map: its case misses
    (tmp_path / "pred" / "c5.nii.gz").unlink()
    res2 = evaluate_folder(tmp_path / "pred", tmp_path, "pixel", on_warning=None, progress=False)
    assert res2.hit_rate == pytest.approx(np.mean([h for n, h in hits.items() if h is not None and n != "c5.nii.gz"] + [False]))
