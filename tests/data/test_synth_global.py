"""Global anomaly kinds (the whole volume changed), their labels, the manifest's scope, per-scope results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import blob_volume

from mood_dpa.data.synth import ALL_KINDS, GLOBAL_KINDS, KINDS, apply_anomaly, global_label, make_synthetic_set, parse_kinds, read_manifest
from mood_dpa.data.synth import global_kinds as gk
from mood_dpa.errors import MoodError
from mood_dpa.evaluation.evaluate import evaluate_folder
from mood_dpa.volumes import read_volume, write_volume

N = 20


@pytest.mark.parametrize("kind", list(GLOBAL_KINDS))
def test_every_global_kind_changes_the_volume_reproducibly(kind):
    vol = blob_volume((N, N, N), seed=1)
    before = vol.copy()
    out, label, record = apply_anomaly(vol, kind, np.random.default_rng(5))
    again, label2, record2 = apply_anomaly(vol, kind, np.random.default_rng(5))
    assert np.array_equal(vol, before)  # the input is not modified
    assert out.dtype == np.float32 and out.shape == vol.shape and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out, again) and np.array_equal(label, label2) and record == record2
    fg = vol > 0
    assert np.abs(out - vol)[fg].mean() > 0.005, "a global kind must change the foreground visibly"
    # label: the whole foreground, plus only changed voxels outside it
    assert label[fg].all()
    outside = (label > 0) & ~fg
    assert np.all(np.abs(out - vol)[outside] > 0.02)
    assert record["kind"] == kind and record["voxels"] == int(label.sum())


def test_global_kinds_by_hand():
    vol = blob_volume((N, N, N), seed=2)
    fg = vol > 0
    rng = np.random.default_rng(0)
    out, _ = gk.gamma(vol, rng, value=2.0)
    assert np.allclose(out, vol**2, atol=1e-6)
    out, _ = gk.modality(vol, rng, knots=[1.0, 0.75, 0.5, 0.25, 0.0])  # an inverted profile
    assert np.allclose(out[fg], 1.0 - vol[fg], atol=1e-6) and np.all(out[~fg] == 0)
    out, _ = gk.translate(vol, rng, vector=(2.0, 0.0, -3.0))
    assert np.allclose(out[2:, :, : N - 3], vol[:-2, :, 3:], atol=1e-6) and np.all(out[:2] == 0)
    out, _ = gk.rescale(vol, rng, scale=1.0)
    assert np.allclose(out, vol, atol=1e-6)
    out, _ = gk.ghosting(vol, rng, axis=1, level=0.25)
    assert np.allclose(out, np.clip(vol + 0.25 * np.roll(vol, N // 2, axis=1), 0, 1), atol=1e-6)
    before = np.zeros((4, 4, 4), np.float32)
    before[1:3, 1:3, 1:3] = 0.5
    after = before.copy()
    after[0, 0, 0] = 0.3  # a ghost in the background
    after[3, 3, 3] = 0.01  # too small to count
    lab = global_label(before, after)
    assert lab.sum() == 8 + 1 and lab[0, 0, 0] == 1 and lab[3, 3, 3] == 0


def test_parse_kinds_groups_and_default():
    assert parse_kinds(None) == list(KINDS)
    assert parse_kinds("local") == list(KINDS)
    assert parse_kinds("global") == list(GLOBAL_KINDS)
    assert parse_kinds("all") == list(ALL_KINDS) == list(KINDS) + list(GLOBAL_KINDS)
    assert parse_kinds("blur,local,blur") == ["blur", *KINDS]
    assert not set(KINDS) & set(GLOBAL_KINDS)
    with pytest.raises(MoodError, match="unknown anomaly kind nope"):
        parse_kinds("nope,blur")


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("glob")
    for i in range(2):
        write_volume(root / "src" / f"{i:05d}.nii.gz", blob_volume((N, N, N), seed=i), np.eye(4))
    paths = sorted((root / "src").glob("*.nii.gz"))
    local = make_synthetic_set(paths, root / "local", kinds=None, per_volume=1, seed=4, progress=False)
    both = make_synthetic_set(paths, root / "all", kinds="all", per_volume=1, seed=4, progress=False)
    return root, local, both


def test_manifest_records_scope_and_local_cases_stay_identical(two_sets):
    root, local, both = two_sets
    manifest = read_manifest(root / "all" / "manifest.csv")
    assert {r["kind"]: r["scope"] for r in manifest} == {"normal": "none", **{k: "local" for k in KINDS},
                                                         **{k: "global" for k in GLOBAL_KINDS}}
    for r in manifest:
        if r["scope"] == "global":
            assert r["label"] == "1" and r["regions"] == "0"
            assert (root / "all" / "toy_label" / "sample" / f"{r['file']}.txt").read_text() == "1\n"
    # adding the global kinds does not change a single local case
    for r in local:
        for sub in ("toy", "toy_label/pixel"):
            assert (root / "local" / sub / r["file"]).read_bytes() == (root / "all" / sub / r["file"]).read_bytes()
    assert {r["kind"] for r in local} == {"normal", *KINDS}


def test_evaluate_gives_local_and_global_sample_results_apart(two_sets, tmp_path):
    root, _, both = two_sets
    pred = tmp_path / "pred"
    pred.mkdir()
    # a detector that sees only global anomalies: global 0.9, everything else 0.1 or 0.5 by case
    for i, r in enumerate(both):
        score = 0.9 if r["scope"] == "global" else (0.5 if i % 2 else 0.1)
        (pred / f"{r['file']}.txt").write_text(f"{score}\n")
    res = evaluate_folder(pred, root / "all", "sample", manifest=root / "all" / "manifest.csv", on_warning=None, progress=False)
    assert set(res.per_scope) == {"local", "global"}
    g, loc = res.per_scope["global"], res.per_scope["local"]
    assert g["roc_auc"] == 1.0 and g["ap"] == 1.0 and g["cases"] == 2 * len(GLOBAL_KINDS) + 2
    assert loc["cases"] == 2 * len(KINDS) + 2 and loc["roc_auc"] < 1.0
    assert sorted(g["kinds"]) == sorted(GLOBAL_KINDS) and res.per_kind["blur"]["scope"] == "global"
    assert res.to_dict()["per_scope"]["global"]["roc_auc"] == 1.0
    # pixel level: each scope pooled with the normal cases; the global labels cover the foreground
    r = next(r for r in both if r["kind"] == "gamma")
    lab = read_volume(root / "all" / "toy_label" / "pixel" / r["file"]).data
    src = read_volume(root / "src" / r["source"]).data
    assert np.array_equal(lab > 0, src > 0)


def test_cli_synth_default_is_local_and_kinds_global(tmp_path, cli):
    for i in range(1):
        write_volume(tmp_path / "src" / f"{i:05d}.nii.gz", blob_volume((16, 16, 16), seed=i), np.eye(4))
    assert cli(["synth", "-i", tmp_path / "src", "-o", tmp_path / "a", "--per-volume", "1"]) == 0
    assert {r["kind"] for r in read_manifest(tmp_path / "a" / "manifest.csv")} == {"normal", *KINDS}
    assert cli(["synth", "-i", tmp_path / "src", "-o", tmp_path / "b", "--kinds", "global"]) == 0
    assert {r["scope"] for r in read_manifest(tmp_path / "b" / "manifest.csv")} == {"none", "global"}
    assert cli(["synth", "-i", tmp_path / "src", "-o", tmp_path / "c", "--kinds", "bogus"]) == 2
