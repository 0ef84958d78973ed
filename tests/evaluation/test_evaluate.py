"""The MOOD evaluator on folders: exact pooled AP, pairing rules, per-kind, bootstrap, JSON, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mood_dpa.errors import MoodError
from mood_dpa.evaluation.evaluate import bootstrap_pixel_ap, evaluate_folder

S = (12, 10, 8)


def save(path: Path, arr, dtype):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(arr).astype(dtype), np.eye(4))
    img.set_data_dtype(dtype)
    nib.save(img, str(path))


@pytest.fixture
def pixel_set(tmp_path):
    """6 cases: 2 normal, 4 anomalous (kinds a, a, b, b); predictions with many ties and out-of-range values."""
    rng = np.random.default_rng(0)
    labels, preds, kinds = {}, {}, {}
    for i in range(6):
        name = f"case_{i}.nii.gz"
        lab = np.zeros(S, np.uint8)
        if i >= 2:
            lab[2 : 4 + i, 3:7, 2:5] = 1
        pred = np.round(rng.normal(0.3, 0.3, S), 2) + 0.4 * lab * (rng.random(S) < 0.7)
        if i == 3:
            pred[0, 0, :] = 5.0  # above 1: clipped
            pred[1, 0, :] = 0.99996  # float16 reads 1.0
        save(tmp_path / "toy_label" / "pixel" / name, lab, np.uint8)
        save(tmp_path / "pred" / name, pred, np.float32)
        labels[name], preds[name] = lab, pred
        kinds[f"case_{i}"] = "normal" if i < 2 else ("a" if i < 4 else "b")
    with open(tmp_path / "manifest.csv", "w") as fh:
        fh.write("case,kind\n" + "".join(f"{c},{k}\n" for c, k in kinds.items()))
    return tmp_path, labels, preds, kinds


def reference(labels, preds, names=None):
    names = sorted(labels) if names is None else names
    y = np.concatenate([labels[n].ravel() for n in names])
    s = np.concatenate([np.clip(preds[n].astype(np.float16), 0, 1).ravel() for n in names])
    return average_precision_score(y, s), roc_auc_score(y, s)


def test_pooled_pixel_ap_equals_sklearn(pixel_set):
    root, labels, preds, _ = pixel_set
    res = evaluate_folder(root / "pred", root / "toy_label" / "pixel", "pixel", on_warning=None, progress=False)
    ap, auc = reference(labels, preds)
    assert res.ap == pytest.approx(ap, abs=1e-12) and res.roc_auc == pytest.approx(auc, abs=1e-12)
    assert res.cases == 6 and res.positives == sum(int(v.sum()) for v in labels.values()) and not res.warnings
    # the set's root and toy_label are accepted as label folders too
    for where in (root, root / "toy_label"):
        assert evaluate_folder(root / "pred", where, "pixel", on_warning=None, progress=False).ap == res.ap


def test_missing_and_mismatched_predictions_count_as_zeros(pixel_set):
    root, labels, preds, _ = pixel_set
    (root / "pred" / "case_2.nii.gz").unlink()
    save(root / "pred" / "case_4.nii.gz", np.ones((12, 10, 9)), np.float32)
    seen = []
    res = evaluate_folder(root / "pred", root, "pixel", on_warning=seen.append, progress=False)
    preds = dict(preds, **{"case_2.nii.gz": np.zeros(S), "case_4.nii.gz": np.zeros(S)})
    ap, auc = reference(labels, preds)
    assert res.ap == pytest.approx(ap, abs=1e-12) and res.roc_auc == pytest.approx(auc, abs=1e-12)
    assert res.missing == ["case_2", "case_4"] and seen == res.warnings and len(seen) == 2
    assert "case_2" in seen[0] and "no prediction" in seen[0]
    assert "case_4" in seen[1] and "shape" in seen[1]


def test_labels_that_are_not_0_or_1_are_refused_naming_the_file(tmp_path):
    # MOOD's labels are binary; rounding an image folder given as labels gave a plausible, wrong AP
    pred = np.random.default_rng(1).random(S)
    save(tmp_path / "pred" / "x.nii.gz", pred, np.float32)
    for value in (0.4, 0.6, 3.0, -2.0, np.nan):
        lab = np.zeros(S, np.float32)
        lab[0] = value
        save(tmp_path / "lab" / "x.nii.gz", lab, np.float32)
        with pytest.raises(MoodError, match=r"x\.nii\.gz.*(0 or 1)"):
            evaluate_folder(tmp_path / "pred", tmp_path / "lab", "pixel", on_warning=None, progress=False)
    lab = np.zeros(S, np.uint8)
    lab[0] = 1
    save(tmp_path / "lab" / "x.nii.gz", lab, np.uint8)
    res = evaluate_folder(tmp_path / "pred", tmp_path / "lab", "pixel", on_warning=None, progress=False)
    y = (lab == 1).ravel()
    assert res.positives == int(y.sum()) == S[1] * S[2]
    assert res.ap == pytest.approx(average_precision_score(y, np.clip(pred.astype(np.float16), 0, 1).ravel()), abs=1e-12)


def test_nan_prediction_is_an_error_naming_the_file(pixel_set):
    root, *_ = pixel_set
    bad = np.zeros(S, np.float32)
    bad[3, 3, 3] = np.nan
    save(root / "pred" / "case_5.nii.gz", bad, np.float32)
    with pytest.raises(MoodError, match=r"case_5\.nii\.gz.*NaN"):
        evaluate_folder(root / "pred", root, "pixel", on_warning=None, progress=False)


def test_per_kind_pools_each_kind_with_the_normal_cases(pixel_set):
    root, labels, preds, kinds = pixel_set
    res = evaluate_folder(root / "pred", root, "pixel", manifest=root / "manifest.csv", on_warning=None, progress=False)
    assert set(res.per_kind) == {"a", "b"}
    for kind in ("a", "b"):
        names = [f"{c}.nii.gz" for c, k in kinds.items() if k in (kind, "normal")]
        ap, auc = reference(labels, preds, names)
        assert res.per_kind[kind]["ap"] == pytest.approx(ap, abs=1e-12)
        assert res.per_kind[kind]["roc_auc"] == pytest.approx(auc, abs=1e-12)
        assert res.per_kind[kind]["cases"] == 4


def test_bootstrap_is_seeded_and_resamples_cases(pixel_set):
    root, labels, preds, _ = pixel_set
    kw = dict(on_warning=None, progress=False, bootstrap=40)
    a = evaluate_folder(root / "pred", root, "pixel", seed=1, **kw).bootstrap
    b = evaluate_folder(root / "pred", root, "pixel", seed=1, **kw).bootstrap
    c = evaluate_folder(root / "pred", root, "pixel", seed=2, **kw).bootstrap
    assert a == b and a["mean"] != c["mean"]
    assert a["n"] == 40 and 0 <= a["ci95"][0] <= a["mean"] <= a["ci95"][1] <= 1
    # one replicate equals sklearn on the resampled cases (same generator draws)
    names = sorted(labels)
    pos = np.stack([np.bincount(np.clip(preds[n].astype(np.float16), 0, 1).view(np.uint16).ravel()[labels[n].ravel() == 1], minlength=15361) for n in names])
    neg = np.stack([np.bincount(np.clip(preds[n].astype(np.float16), 0, 1).view(np.uint16).ravel()[labels[n].ravel() == 0], minlength=15361) for n in names])
    one = bootstrap_pixel_ap(pos, neg, 1, seed=9)
    idx = np.random.default_rng(9).integers(0, 6, size=(1, 6))[0]
    ap, _ = reference(labels, preds, [names[i] for i in idx]) if any(labels[names[i]].any() for i in idx) else (np.nan, 0)
    assert one["mean"] == pytest.approx(ap, abs=1e-12)


def test_sample_level_rules(tmp_path):
    lab_dir, pred_dir = tmp_path / "toy_label" / "sample", tmp_path / "pred"
    lab_dir.mkdir(parents=True)
    pred_dir.mkdir()
    labels = {"a": 1, "b": 0, "c": 1, "d": 0, "e": 1, "f": 0}
    preds = {"a": "0.9\n", "b": "1.7\nextra", "c": "not a number", "d": "-3", "e": "0.4 \n", "f": None}
    for k, v in labels.items():
        (lab_dir / f"{k}.nii.gz.txt").write_text(f"{v}\n")
        if preds[k] is not None:
            (pred_dir / f"{k}.nii.gz.txt").write_text(preds[k])
    seen = []
    res = evaluate_folder(pred_dir, tmp_path, "sample", on_warning=seen.append, progress=False, bootstrap=20)
    y = [1, 0, 1, 0, 1, 0]
    s = [0.9, 1.0, 0.0, 0.0, 0.4, 0.0]
    assert res.ap == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert res.roc_auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert res.missing == ["c", "f"] and len(seen) == 2 and "c:" in seen[0] and "f:" in seen[1]
    assert res.bootstrap["n"] == 20
    (pred_dir / "a.nii.gz.txt").write_text("nan\n")
    with pytest.raises(MoodError, match=r"a\.nii\.gz\.txt.*NaN"):
        evaluate_folder(pred_dir, tmp_path, "sample", on_warning=None, progress=False)


def test_bad_arguments_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoodError, match="no NIfTI label"):
        evaluate_folder(tmp_path, tmp_path / "empty", "pixel", progress=False)
    with pytest.raises(MoodError, match="expected pixel or sample"):
        evaluate_folder(tmp_path, tmp_path / "empty", "voxel", progress=False)
    with pytest.raises(MoodError, match="no such prediction folder"):
        evaluate_folder(tmp_path / "nope", tmp_path / "empty", "pixel", progress=False)


def test_cli_writes_json_and_table(pixel_set, cli, capsys):
    root, labels, preds, _ = pixel_set
    out = root / "results" / "res.json"  # beside the set, not inside an input folder
    out.parent.mkdir()
    code = cli(["evaluate", "--pred", root / "pred", "--labels", root / "toy_label", "--task", "pixel",
                "--manifest", root / "manifest.csv", "--bootstrap", "10", "--json", out])
    assert code == 0
    data = json.loads(out.read_text())
    assert {"task", "ap", "roc_auc", "cases", "positives", "per_kind", "bootstrap"} <= set(data)
    assert data["task"] == "pixel" and data["ap"] == pytest.approx(reference(labels, preds)[0], abs=1e-12)
    assert set(data["per_kind"]) == {"a", "b"} and data["bootstrap"]["n"] == 10
    captured = capsys.readouterr()
    assert "pixel AP" in captured.out
    assert cli(["evaluate", "--pred", root / "pred", "--labels", root / "missing", "--task", "pixel"]) == 2


def test_result_carries_the_curve_material(tmp_path):
    """The pooled pixel histogram and the sample scores/labels come back with the result (for PR curves)."""
    import numpy as np

    from mood_dpa.evaluation.evaluate import evaluate_folder
    from mood_dpa.volumes import write_volume

    labels, pred = tmp_path / "toy_label", tmp_path / "pred"
    rng = np.random.default_rng(0)
    all_scores, all_labels = [], []
    for i in range(3):
        lab = (rng.random((6, 6, 6)) > 0.8).astype(np.uint8)
        sc = rng.random((6, 6, 6)).astype(np.float32)
        write_volume(labels / "pixel" / f"c{i}.nii.gz", lab, dtype=np.uint8)
        write_volume(pred / f"c{i}.nii.gz", sc)
        (labels / "sample").mkdir(parents=True, exist_ok=True)
        (labels / "sample" / f"c{i}.nii.gz.txt").write_text(f"{i % 2}\n")
        (pred / f"c{i}.nii.gz.txt").write_text(f"{0.1 * i}\n")
        all_scores.append(sc.ravel())
        all_labels.append(lab.ravel())
    px = evaluate_folder(pred, labels, "pixel", on_warning=None, progress=False)
    assert px.histogram.positives == int(np.concatenate(all_labels).sum())
    assert px.histogram.ap() == px.ap
    sm = evaluate_folder(pred, labels, "sample", on_warning=None, progress=False)
    np.testing.assert_allclose(sm.scores, [0.0, 0.1, 0.2])
    assert list(sm.labels) == [False, True, False]
    assert "histogram" not in sm.to_dict() and "scores" not in px.to_dict()
