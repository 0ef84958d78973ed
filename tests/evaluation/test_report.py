import numpy as np
from sklearn.metrics import precision_recall_curve

from mood_dpa.evaluation.evaluate import EvalResult
from mood_dpa.evaluation.metrics import ScoreHistogram
from mood_dpa.evaluation.report import Figure, MethodResult, Report, pr_curve_from_histogram, pr_curve_from_scores, write_report


def _sk_curve(scores, labels):
    prec, rec, _ = precision_recall_curve(labels, scores)
    # sklearn lists thresholds ascending and appends (1, 0); ours runs from the top score down
    return prec[:-1][::-1], rec[:-1][::-1]


def test_pr_curve_from_scores_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, 300) / 20.0
    labels = rng.random(300) < 0.3
    p, r = pr_curve_from_scores(scores, labels)
    sp, sr = _sk_curve(scores, labels)
    np.testing.assert_allclose(p, sp)
    np.testing.assert_allclose(r, sr)


def test_pr_curve_from_histogram_equals_curve_of_float16_scores():
    rng = np.random.default_rng(1)
    scores = rng.random(5000).astype(np.float32) ** 3
    labels = rng.random(5000) < scores
    hist = ScoreHistogram().add(scores, labels)
    p, r = pr_curve_from_histogram(hist)
    sp, sr = _sk_curve(np.clip(scores.astype(np.float16), 0, 1).astype(np.float64), labels)
    np.testing.assert_allclose(p, sp)
    np.testing.assert_allclose(r, sr)


def _result(task, ap, kinds):
    return EvalResult(task=task, ap=ap, roc_auc=0.9, cases=6, positives=10, negatives=100,
                      per_kind={k: {"ap": ap / (i + 1), "roc_auc": 0.5} for i, k in enumerate(kinds)})


def test_report_lists_every_method_kind_and_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = tmp_path / "x.png"
    plt.imsave(png, np.zeros((4, 4)))
    kinds = ["sink", "uniform"]
    rng = np.random.default_rng(2)
    methods = []
    for name, ap in [("DPA", 0.8), ("Histogram", 0.3)]:
        s = rng.random(200)
        hist = ScoreHistogram().add(s, s > 0.7)
        methods.append(MethodResult(name, _result("pixel", ap, kinds), _result("sample", ap, kinds), hist,
                                    rng.random(12), rng.random(12) > 0.5, note=f"{name} note"))
    path = write_report(Report("t", methods, [Figure(png, "a <case>")], {"seed": "0"}, {"step": 1.5}), tmp_path / "rep")
    text = path.read_text()
    for needle in ["AP sink", "AP uniform", "DPA", "Histogram", "pr_pixel.png", "a &lt;case&gt;", "<b>0.800</b>", "1.5 s"]:
        assert needle in text, needle
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [".mood-dpa", "fig_00.png", "pr_pixel.png", "pr_sample.png", "report.html"]


def test_report_shows_localisation_and_scopes_apart(tmp_path):
    def res(task, shift):
        kinds = {"uniform": {"ap": 0.4 + shift, "roc_auc": 0.6, "best_dice": 0.3 + shift, "hit_rate": 0.5, "scope": "local"},
                 "blur": {"ap": 0.9, "roc_auc": 0.95, "best_dice": 0.8, "hit_rate": 1.0, "scope": "global"}}
        scopes = {"local": {"ap": 0.41 + shift, "roc_auc": 0.61, "best_dice": 0.25 + shift, "hit_rate": 0.375, "cases": 4,
                            "positives": 20, "negatives": 980},
                  "global": {"ap": 0.97, "roc_auc": 0.987, "best_dice": 0.9, "hit_rate": 1.0, "cases": 4, "positives": 600, "negatives": 400}}
        return EvalResult(task=task, ap=0.77, roc_auc=0.88, cases=6, positives=620, negatives=1380, per_kind=kinds,
                          per_scope=scopes, best_dice=0.66, hit_rate=0.7, hit_cases=4)

    methods = [MethodResult(n, res("pixel", d), res("sample", d)) for n, d in [("DPA", 0.1), ("Histogram", 0.0)]]
    text = write_report(Report("t", methods), tmp_path / "rep").read_text()
    pixel, sample = text.split("Sample level")
    # pixel: the local scope's numbers (not the all-case 0.770), local kinds only, localisation per kind
    assert "<b>0.510</b>" in pixel and "0.770" not in pixel and "AP uniform" in pixel and "AP blur" not in pixel
    assert "best Dice" in pixel and "hit rate" in pixel and "<b>0.350</b>" in pixel and "Dice uniform" in pixel
    assert "0.0200" in pixel  # chance = 20 / 1000 voxels of the local scope
    # sample: all cases, then local and global apart, every kind
    for needle in ["0.770", "AP local", "ROC-AUC global", "0.987", "AP blur", "AP uniform"]:
        assert needle in sample, needle
