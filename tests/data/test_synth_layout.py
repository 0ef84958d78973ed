"""The MOOD toy layout written by make_synthetic_set / `mood-dpa synth`."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import blob_volume

from mood_dpa.data.synth import KINDS, make_synthetic_set, read_manifest
from mood_dpa.errors import MoodError
from mood_dpa.volumes import write_volume

N = 32


@pytest.fixture(scope="module")
def vols(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("src")
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    for i in range(3):
        write_volume(folder / f"{i:05d}.nii.gz", blob_volume((N, N, N), seed=i), affine)
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_matches_the_manifest(vols, tmp_path):
    paths = sorted(vols.glob("*.nii.gz"))
    rows = make_synthetic_set(paths, tmp_path / "out", kinds=None, per_volume="1-2", seed=3, progress=False)
    out = tmp_path / "out"
    assert len(rows) == 3 * (1 + len(KINDS))
    manifest = read_manifest(out / "manifest.csv")
    assert [r["case"] for r in manifest] == [r["case"] for r in rows]
    assert {r["kind"] for r in manifest} == {"normal", *KINDS}
    names = {p.name for p in (out / "toy").iterdir()}
    assert names == {r["file"] for r in rows}
    assert names == {p.name for p in (out / "toy_label" / "pixel").iterdir()}
    assert {n + ".txt" for n in names} == {p.name for p in (out / "toy_label" / "sample").iterdir()}
    for row in manifest:
        img = nib.load(out / "toy" / row["file"])
        lab = nib.load(out / "toy_label" / "pixel" / row["file"])
        assert lab.get_data_dtype() == np.uint8 and lab.shape == img.shape == (N, N, N)
        assert np.allclose(img.affine, np.diag([1.5, 1.5, 2.0, 1.0]))
        data, mask = img.get_fdata(), np.asarray(lab.dataobj)
        assert data.min() >= 0 and data.max() <= 1
        assert int(mask.sum()) == int(row["voxels"])
        sample = (out / "toy_label" / "sample" / (row["file"] + ".txt")).read_text()
        assert sample == f"{row['label']}\n"
        source = nib.load(vols / row["source"]).get_fdata()
        if row["kind"] == "normal":
            assert row["label"] == "0" and mask.sum() == 0 and np.array_equal(data, source)
        else:
            assert row["label"] == "1" and mask.sum() > 0
            # the label marks exactly the voxels that differ from the source by more than MIN_CHANGE
            assert np.array_equal(mask.astype(bool), np.abs(data - source) > 0.02)
            regions = json.loads(row["params"])
            assert len(regions) == int(row["regions"]) and 1 <= len(regions) <= 2
            assert json.loads(row["centre"]) == [r["centre"] for r in regions]


def test_same_seed_same_bytes_other_seed_other_bytes(vols, tmp_path):
    paths = sorted(vols.glob("*.nii.gz"))
    kinds = ["uniform", "patch", "sink"]
    make_synthetic_set(paths, tmp_path / "a", kinds, 2, seed=1, progress=False)
    make_synthetic_set(paths, tmp_path / "b", kinds, 2, seed=1, progress=False)
    make_synthetic_set(paths, tmp_path / "c", kinds, 2, seed=2, progress=False)
    a, b, c = files_of(tmp_path / "a"), files_of(tmp_path / "b"), files_of(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a["manifest.csv"] != c["manifest.csv"]
    # a kind's cases do not depend on which other kinds were asked for
    make_synthetic_set(paths, tmp_path / "d", ["sink"], 2, seed=1, progress=False)
    d = files_of(tmp_path / "d")
    assert d["toy/00001_sink.nii.gz"] == a["toy/00001_sink.nii.gz"]


def test_failure_leaves_nothing_behind(vols, tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8bnot really")
    paths = sorted(vols.glob("*.nii.gz")) + [bad]
    with pytest.raises(MoodError, match="broken.nii.gz"):
        make_synthetic_set(paths, tmp_path / "out", ["uniform"], 1, seed=0, progress=False)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["broken.nii.gz"]
    with pytest.raises(MoodError, match="unknown anomaly kind"):
        make_synthetic_set(paths, tmp_path / "out", ["uniform", "smear"], 1, seed=0)
    with pytest.raises(MoodError, match="unknown region shape 'cube'"):
        make_synthetic_set(paths, tmp_path / "out", ["uniform"], 1, seed=0, shape="cube")
    with pytest.raises(MoodError, match="per-volume"):
        make_synthetic_set(paths, tmp_path / "out", ["uniform"], "3-1", seed=0)


def test_cases_per_volume_draws_kinds(vols, tmp_path):
    rows = make_synthetic_set(sorted(vols.glob("*.nii.gz")), tmp_path / "o", None, 1, seed=0, cases_per_volume=2, progress=False)
    assert len(rows) == 3 * 3
    assert all(sum(r["volume_id"] == v and r["kind"] != "normal" for r in rows) == 2 for v in ("00000", "00001", "00002"))


def test_cli_synth_with_folds(vols, tmp_path, cli):
    folds = tmp_path / "folds.csv"
    folds.write_text("filename,test_fold\n00000.nii.gz,1\n00001.nii.gz,0\n00002.nii.gz,1\n")
    out = tmp_path / "syn"
    code = cli(["synth", "-i", vols, "-o", out, "--folds", folds, "--fold", "1", "--kinds", "uniform,noise", "--seed", "4",
                "--edge", "hard", "--shape", "sphere", "--per-volume", "3"])
    assert code == 0
    regions = [r for row in read_manifest(out / "manifest.csv") for r in json.loads(row["params"])]
    assert len(regions) == 4 * 3 and all(r["shape"] == "sphere" and r["soft"] is False for r in regions)
    assert sorted(p.name for p in (out / "toy").iterdir()) == [
        "00000_noise.nii.gz", "00000_normal.nii.gz", "00000_uniform.nii.gz",
        "00002_noise.nii.gz", "00002_normal.nii.gz", "00002_uniform.nii.gz",
    ]
    assert cli(["synth", "-i", vols, "-o", tmp_path / "x", "--kinds", "wobble"]) == 2
    assert cli(["synth", "-i", vols, "-o", tmp_path / "x", "--edge", "fuzzy"]) == 2
    assert not (tmp_path / "x").exists()
