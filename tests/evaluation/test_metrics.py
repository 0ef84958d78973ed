"""The streaming float16-histogram metrics equal scikit-learn exactly (ties and edge cases included)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mood_dpa.errors import MoodError
from mood_dpa.evaluation import metrics
from mood_dpa.evaluation.metrics import (
    N_CODES,
    ScoreHistogram,
    average_precision,
    float16_codes,
    histogram_ap,
    histogram_roc_auc,
    roc_auc,
)


def mood_read(scores) -> np.ndarray:
    """What the official script feeds to sklearn: float16, clipped to [0, 1]."""
    return np.clip(np.asarray(scores).astype(np.float16), 0, 1)


def check(scores, labels, auc=True):
    h = ScoreHistogram().add(scores, labels)
    ref = mood_read(scores)
    assert h.ap() == pytest.approx(average_precision_score(labels, ref), abs=1e-12, rel=0)
    if auc:
        assert h.roc_auc() == pytest.approx(roc_auc_score(labels, ref), abs=1e-12, rel=0)
    assert h.positives == int(np.sum(labels)) and h.negatives == int(np.size(labels) - np.sum(labels))


def test_codes_cover_unit_interval_in_order():
    assert N_CODES == 15361
    values = np.array([-1.0, -0.0, 0.0, 1e-8, 6e-8, 0.5, 0.99990, 0.99995, 1.0, 7.0, np.inf, -np.inf], np.float32)
    codes = float16_codes(values)
    assert codes.tolist()[:3] == [0, 0, 0]
    assert codes[-4] == codes[-3] == codes[-2] == N_CODES - 1  # 0.9999x and above read as 1.0
    assert codes[-1] == 0
    assert np.all(np.diff(codes[:-1].astype(int)) >= 0)
    all_codes = np.arange(N_CODES, dtype=np.uint16).view(np.float16)
    assert np.all(np.diff(all_codes.astype(np.float64)) > 0) and all_codes[0] == 0 and all_codes[-1] == 1


@pytest.mark.parametrize("seed", range(6))
def test_random_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 20000))
    labels = rng.random(n) < rng.uniform(0.001, 0.5)
    labels[rng.integers(n)] = True
    labels[rng.integers(n)] = False
    scores = rng.normal(0.5, 0.4, n) + labels * rng.uniform(0, 0.5)  # outside [0,1] too
    check(scores, labels)


@pytest.mark.parametrize("levels", [2, 3, 17, 1000])
def test_heavy_ties_match_sklearn(levels):
    rng = np.random.default_rng(levels)
    n = 30000
    labels = rng.random(n) < 0.1
    scores = rng.integers(0, levels, n) / (levels - 1) + labels * (rng.random(n) < 0.5) / levels
    check(scores, labels)


def test_values_that_collide_only_in_float16():
    rng = np.random.default_rng(1)
    labels = rng.random(5000) < 0.3
    scores = 0.9999 + 1e-4 * rng.random(5000)  # all read as 0.9999 or 1.0 in float16
    check(scores, labels)
    scores = 0.5 + 1e-5 * rng.random(5000) * labels  # float32-distinct, float16-equal
    check(scores, labels)
    assert ScoreHistogram().add(scores, labels).ap() == pytest.approx(labels.mean(), abs=1e-12)


def test_all_equal_scores_give_the_positive_rate():
    labels = np.zeros(1000, bool)
    labels[:37] = True
    check(np.full(1000, 0.3), labels)
    assert ScoreHistogram().add(np.full(1000, 0.3), labels).ap() == pytest.approx(0.037, abs=1e-15)
    assert ScoreHistogram().add(np.full(1000, 0.3), labels).roc_auc() == 0.5


def test_single_positive_and_single_negative():
    rng = np.random.default_rng(3)
    scores = rng.random(500)
    labels = np.zeros(500, bool)
    labels[123] = True
    check(scores, labels)
    check(scores, ~labels)
    perfect = np.where(labels, 1.0, 0.2)
    assert ScoreHistogram().add(perfect, labels).ap() == 1.0


def test_all_positive_and_no_positive():
    h = ScoreHistogram().add(np.linspace(0, 1, 50), np.ones(50, bool))
    assert h.ap() == pytest.approx(average_precision_score(np.ones(50), np.linspace(0, 1, 50).astype(np.float16)), abs=1e-12)
    assert np.isnan(h.roc_auc())
    h = ScoreHistogram().add(np.linspace(0, 1, 50), np.zeros(50, bool))
    assert np.isnan(h.ap()) and np.isnan(h.roc_auc())


def test_streaming_in_chunks_and_merging_equal_one_pass(monkeypatch):
    rng = np.random.default_rng(7)
    scores = rng.random(10007).astype(np.float32)
    labels = rng.random(10007) < 0.2
    one = ScoreHistogram().add(scores, labels)
    monkeypatch.setattr(metrics, "CHUNK", 1000)
    chunked = ScoreHistogram().add(scores, labels)
    merged = ScoreHistogram()
    for part in np.array_split(np.arange(10007), 7):
        merged += ScoreHistogram().add(scores[part], labels[part])
    for h in (chunked, merged):
        assert np.array_equal(h.pos, one.pos) and np.array_equal(h.neg, one.neg)
    assert merged.ap() == one.ap()


def test_nan_is_an_error_that_names_the_source():
    with pytest.raises(MoodError, match="pred_7.nii.gz: 1 NaN"):
        ScoreHistogram().add(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 0]), what="pred_7.nii.gz")
    with pytest.raises(MoodError, match="NaN"):
        average_precision(np.array([0.1, np.nan]), np.array([0, 1]))


def test_replicate_rows_equal_single_rows():
    rng = np.random.default_rng(11)
    pos = rng.integers(0, 5, size=(4, 200))
    neg = rng.integers(0, 50, size=(4, 200))
    aps = histogram_ap(pos, neg)
    aucs = histogram_roc_auc(pos, neg)
    for i in range(4):
        assert aps[i] == pytest.approx(histogram_ap(pos[i], neg[i]), abs=1e-15)
        assert aucs[i] == pytest.approx(histogram_roc_auc(pos[i], neg[i]), abs=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_exact_float_metrics_for_the_sample_level(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(300), 2)  # ties
    labels = rng.random(300) < 0.4
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
