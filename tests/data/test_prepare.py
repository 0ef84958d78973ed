"""prepare / restore on phantoms turned into raw-like scans: oblique, anisotropic, flipped, in HU or 12-bit units.

The known truth: a raw scan is the phantom resampled onto an oblique grid in world coordinates, so the
phantom resampled onto the prepared volume's grid (through the affine prepare wrote) is what prepare
must reproduce, and the raw scan is what restore must land on.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import affine_transform, center_of_mass, distance_transform_edt

from mood_dpa.data.phantoms import make_phantom, phantom_affine
from mood_dpa.data.prepare import PrepareSettings, prepare_volume, restore_volume
from mood_dpa.volumes import write_volume

N = 32
RAW_SHAPE = (64, 48, 24)  # spacing (0.9, 1.2, 2.5) mm: covers the rotated 32 mm phantom cube
CT_WINDOW = (-280.0, 320.0)  # the phantom's [0,1] in HU: fat 0.3 -> -100, liver 0.56 -> 56


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from angles in degrees about x, then y, then z."""
    cx, cy, cz = np.cos(np.radians([ax, ay, az]))
    sx, sy, sz = np.sin(np.radians([ax, ay, az]))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def raw_affine(shape=RAW_SHAPE, spacing=(0.9, 1.2, 2.5), flips=(-1, 1, -1), angles=(15, -10, 25), centre=(1.0, -2.0, 0.5)):
    """An oblique, anisotropic grid with flipped axes (LPI-like) centred near the world origin."""
    lin = rotation(*angles) @ np.diag(np.array(spacing) * np.array(flips))
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = np.array(centre) - lin @ ((np.array(shape) - 1) / 2.0)
    return aff


def on_grid(volume: np.ndarray, volume_affine: np.ndarray, affine: np.ndarray, shape) -> np.ndarray:
    """``volume`` resampled (trilinear) onto the grid ``affine``/``shape`` through world coordinates."""
    m = np.linalg.inv(volume_affine) @ affine
    return affine_transform(volume, m[:3, :3], offset=m[:3, 3], output_shape=tuple(shape), order=1, cval=0.0)


def raw_like(kind: str, affine: np.ndarray, shape=RAW_SHAPE, blob_world=None):
    """(phantom in [0,1], raw scan): CT in HU (air -1000) for abdom, 12-bit MRI for brain; an optional bright blob."""
    phantom = make_phantom(kind, N, 0, 0)
    x = on_grid(phantom, phantom_affine(N), affine, shape)
    if blob_world is not None:
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 4 - 1)
        world = ijk @ affine[:3, :3].T + affine[:3, 3]
        x.reshape(-1)[np.linalg.norm(world - blob_world, axis=1) < 2.5] = 1.0
    if kind == "abdom":
        raw = np.where(x > 0, x * (CT_WINDOW[1] - CT_WINDOW[0]) + CT_WINDOW[0], -1000.0)
    else:
        raw = np.round(x * 4095.0)
    return phantom, raw.astype(np.float32)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def ct_raw(tmp_path: Path):
    """A folder with one raw-like abdominal CT scan (and what it was made from)."""
    folder = tmp_path / "raw"
    folder.mkdir()
    aff = raw_affine()
    phantom, raw = raw_like("abdom", aff)
    write_volume(folder / "scan.nii.gz", raw, aff)
    return folder, phantom, raw, aff


def test_prepare_then_restore_ct(ct_raw, tmp_path, cli):
    raw_dir, phantom, raw, raw_aff = ct_raw
    data = tmp_path / "data"
    assert cli(["prepare", "-i", raw_dir, "-o", data, "--modality", "ct", "--size", N, "--window", "-280,320"]) == 0
    img = nib.load(str(data / "00000.nii.gz"))
    out, out_aff = np.asarray(img.dataobj, dtype=np.float32), img.affine
    assert out.shape == (N, N, N)
    assert out.min() == 0.0 and out.max() <= 1.0 and out.max() > 0.5
    # canonical: world-aligned RAS, isotropic
    spacing = out_aff[0, 0]
    assert spacing > 0 and np.allclose(out_aff[:3, :3], spacing * np.eye(3))
    # the phantom seen through the written affine is what was prepared (window = the phantom's own mapping)
    truth = on_grid(phantom, phantom_affine(N), out_aff, (N, N, N))
    assert pearson(out, truth) > 0.9  # the 2.5 mm raw axis blurs the 1 mm phantom; 0.947 measured
    assert np.abs(out - truth).mean() < 0.03
    # background exactly 0: everything a few voxels away from the body, and the cube's border
    far = distance_transform_edt(truth == 0) > 3  # beyond a raw voxel (2.5 mm) and the smoothing
    assert far.mean() > 0.2 and (out[far] == 0).all()
    # the body is not cropped away: the cube holds all of it, with a margin
    assert truth[[0, -1]].max() == 0 and truth[:, [0, -1]].max() == 0 and truth[:, :, [0, -1]].max() == 0
    assert truth.sum() > 0.95 * phantom.sum() * (1.0 / spacing**3)
    # the record: the index map is exactly the two affines composed; names.csv maps the name back
    record = json.loads((data / "prepare" / "00000.json").read_text())
    assert np.allclose(np.asarray(record["index_map"]), np.linalg.inv(raw_aff) @ out_aff, atol=1e-9)
    assert record["source_shape"] == list(raw.shape) and np.allclose(record["source_affine"], raw_aff, atol=1e-6)
    assert record["modality"] == "ct" and record["intensity"]["low_hu"] == -280.0
    with open(data / "names.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["name"], Path(r["source"]).name) for r in rows] == [("00000.nii.gz", "scan.nii.gz")]

    # restore the prepared volume itself as a "score map": raw shape and affine, lands on the windowed raw scan
    back_dir = tmp_path / "back"
    assert cli(["restore", "-i", data, "-o", back_dir, "--records", data / "prepare", "--reference", raw_dir]) == 0
    back = nib.load(str(back_dir / "scan.nii.gz"))
    assert back.shape == raw.shape and np.allclose(back.affine, raw_aff, atol=1e-5)
    restored = np.asarray(back.dataobj, dtype=np.float32)
    windowed = np.clip((raw - CT_WINDOW[0]) / (CT_WINDOW[1] - CT_WINDOW[0]), 0, 1)
    assert pearson(restored, windowed) > 0.9
    # outside the prepared cube: exactly 0
    cube = np.linalg.inv(np.asarray(record["index_map"]))
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in raw.shape], indexing="ij"), -1).reshape(-1, 3)
    uvw = ijk @ cube[:3, :3].T + cube[:3, 3]
    outside = ((uvw < -0.01) | (uvw > N - 0.99)).any(axis=1).reshape(raw.shape)
    assert outside.any() and (restored[outside] == 0).all()

    # nearest: only values the map has
    near_dir = tmp_path / "near"
    assert cli(["restore", "-i", data, "-o", near_dir, "--records", data / "prepare", "--interpolation", "nearest"]) == 0
    nearest = np.asarray(nib.load(str(near_dir / "scan.nii.gz")).dataobj, dtype=np.float32)
    assert np.isin(nearest, np.append(out.ravel(), 0)).all()
    assert pearson(nearest, restored) > 0.95


def test_prepare_mri_4d_oblique_keep_names(tmp_path, cli):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    aff = raw_affine(flips=(1, -1, 1), angles=(-20, 5, 10))
    phantom, raw = raw_like("brain", aff)
    img = nib.Nifti1Image(raw[..., None].astype(np.int16), aff)  # 4-D with one volume, 12-bit integers
    nib.save(img, str(raw_dir / "sub01.nii"))
    data = tmp_path / "data"
    assert cli(["prepare", "-i", raw_dir, "-o", data, "--modality", "mri", "--size", N, "--keep-names"]) == 0
    out_img = nib.load(str(data / "sub01.nii.gz"))
    out = np.asarray(out_img.dataobj, dtype=np.float32)
    assert out.shape == (N, N, N) and out.min() == 0.0 and out.max() == 1.0
    truth = on_grid(phantom, phantom_affine(N), out_img.affine, (N, N, N))
    assert pearson(out, truth) > 0.95  # 0.985 measured
    far = distance_transform_edt(truth == 0) > 3  # beyond a raw voxel (2.5 mm) and the smoothing
    assert far.mean() > 0.2 and (out[far] == 0).all()
    record = json.loads((data / "prepare" / "sub01.json").read_text())
    lo, hi = record["intensity"]["low_value"], record["intensity"]["high_value"]
    # robust percentiles of the foreground: about 0.5 % of the foreground is clipped at 1
    fg = out > 0
    assert 0.001 < np.mean(out[fg] >= 1.0) < 0.02
    assert 0 <= lo < hi <= 4095
    assert record["source_shape"] == list(RAW_SHAPE)


def test_point_anomaly_lands_in_place(tmp_path):
    """A bright blob placed in raw space is found at the same world point after prepare, and back after restore."""
    aff = raw_affine()
    blob_world = np.array([4.0, 3.0, -2.0])  # inside the body
    _, clean = raw_like("abdom", aff)
    _, marked = raw_like("abdom", aff, blob_world=blob_world)
    settings = PrepareSettings("ct", N, window=CT_WINDOW)
    a = prepare_volume(clean, aff, settings)
    b = prepare_volume(marked, aff, settings)
    assert np.allclose(a.affine, b.affine)  # a blob inside the body does not move the crop
    diff = b.data - a.data
    assert diff.max() > 0.2
    found = np.array(center_of_mass(np.where(diff > 0.1, diff, 0)))
    expected = (np.linalg.inv(a.affine) @ np.append(blob_world, 1))[:3]
    assert np.linalg.norm(found - expected) < 2.0
    # and back on the raw grid, near the raw voxel it was placed at
    back = restore_volume(np.clip(diff, 0, None), a.record)
    assert back.shape == clean.shape
    found_raw = aff[:3, :3] @ np.array(center_of_mass(np.where(back > 0.05, back, 0))) + aff[:3, 3]
    assert np.linalg.norm(found_raw - blob_world) < 2.5  # mm; raw voxels are up to 2.5 mm


def test_prepare_index_map_matches_nibabel_resampling(ct_raw):
    """The output grid sampled by nibabel's own resampler from the raw image gives the same volume."""
    from nibabel.processing import resample_from_to

    _, _, raw, aff = ct_raw
    settings = PrepareSettings("ct", 48, window=CT_WINDOW)  # 48^3: finer than the raw voxels, no anti-aliasing
    prepared = prepare_volume(raw, aff, settings)
    assert max(prepared.record["resampling"]["antialias_sigma_source_voxels"]) == 0
    ref = resample_from_to(nib.Nifti1Image(raw, aff), ((48, 48, 48), prepared.affine), order=1, cval=-1000.0)
    expected = np.clip((np.asarray(ref.dataobj) - CT_WINDOW[0]) / (CT_WINDOW[1] - CT_WINDOW[0]), 0, 1)
    inside = prepared.data > 0
    assert inside.mean() > 0.1
    assert np.abs(prepared.data[inside] - expected[inside]).max() < 1e-4


def test_overwrite_only_with_flag_and_only_our_files(ct_raw, tmp_path, cli, capsys):
    raw_dir, _, raw, aff = ct_raw
    write_volume(raw_dir / "second.nii.gz", raw, aff)
    data = tmp_path / "data"
    data.mkdir()
    (data / "thesis.tex").write_text("keep me")
    args = ["prepare", "-i", raw_dir, "-o", data, "--modality", "ct", "--size", 16, "--body", "abdomen"]
    assert cli(args) == 2
    assert "--overwrite" in one_error_line(capsys)
    assert sorted(p.name for p in data.iterdir()) == ["thesis.tex"]
    assert cli(args + ["--overwrite"]) == 0
    assert (data / "00001.nii.gz").is_file() and (data / "prepare" / "00001.json").is_file()
    # a rerun on fewer scans removes the stale outputs it made earlier, nothing else
    (raw_dir / "second.nii.gz").unlink()
    assert cli(args + ["--overwrite"]) == 0
    names = sorted(p.name for p in data.iterdir())
    assert names == ["00000.nii.gz", "names.csv", "prepare", "thesis.tex"]
    assert not (data / "prepare" / "00001.json").exists()
    assert (data / "thesis.tex").read_text() == "keep me"


def _assert_refused(cli, capsys, args, fragment: str, out: Path | None = None):
    assert cli(args) == 2
    line = one_error_line(capsys)
    assert fragment in line, line
    if out is not None:
        assert not out.exists() or not any(out.iterdir())


def test_prepare_bad_inputs(tmp_path, cli, capsys):
    base = ["--modality", "mri", "--size", 16]
    out = tmp_path / "out"
    # 2-D file
    d2 = tmp_path / "d2"
    d2.mkdir()
    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), str(d2 / "flat.nii.gz"))
    _assert_refused(cli, capsys, ["prepare", "-i", d2, "-o", out, *base], "flat.nii.gz", out)
    # NaN voxels
    dn = tmp_path / "dn"
    dn.mkdir()
    vol = np.ones((12, 12, 12), np.float32)
    vol[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(dn / "nan.nii.gz"))
    _assert_refused(cli, capsys, ["prepare", "-i", dn, "-o", out, *base], "NaN", out)
    # not NIfTI inside a .nii.gz name, and a folder with no NIfTI at all, and an empty folder
    dg = tmp_path / "dg"
    dg.mkdir()
    (dg / "junk.nii.gz").write_bytes(b"this is not a scan")
    _assert_refused(cli, capsys, ["prepare", "-i", dg, "-o", out, *base], "junk.nii.gz", out)
    dt = tmp_path / "dt"
    dt.mkdir()
    (dt / "notes.txt").write_text("hello")
    _assert_refused(cli, capsys, ["prepare", "-i", dt, "-o", out, *base], "no .nii", out)
    de = tmp_path / "de"
    de.mkdir()
    _assert_refused(cli, capsys, ["prepare", "-i", de, "-o", out, *base], "no .nii", out)
    _assert_refused(cli, capsys, ["prepare", "-i", tmp_path / "missing", "-o", out, *base], "no such", out)


def test_prepare_refuses_output_in_input_and_bad_options(ct_raw, tmp_path, cli, capsys):
    raw_dir, _, raw, aff = ct_raw
    before = sorted(p.name for p in raw_dir.iterdir())
    ct = ["--modality", "ct", "--size", 16]
    _assert_refused(cli, capsys, ["prepare", "-i", raw_dir, "-o", raw_dir / "prepared", *ct, "--body", "abdomen"], "inside")
    _assert_refused(cli, capsys, ["prepare", "-i", raw_dir, "-o", raw_dir, *ct, "--body", "abdomen", "--overwrite"], "input")
    _assert_refused(cli, capsys, ["prepare", "-i", raw_dir / "scan.nii.gz", "-o", raw_dir, *ct, "--body", "abdomen"], "input")
    _assert_refused(cli, capsys, ["prepare", "-i", tmp_path, "-o", raw_dir, *ct, "--body", "abdomen"], "input")  # output inside input
    assert sorted(p.name for p in raw_dir.iterdir()) == before
    out = tmp_path / "out"
    _assert_refused(cli, capsys, ["prepare", "-i", raw_dir, "-o", out, *ct], "--body", out)
    _assert_refused(cli, capsys, ["prepare", "-i", raw_dir, "-o", out, *ct, "--window", "40,40"], "--window", out)
    _assert_refused(cli, capsys, ["prepare", "-i", raw_dir, "-o", out, *ct, "--window", "nan,1"], "--window", out)
    _assert_refused(cli, capsys, ["prepare", "-i", raw_dir, "-o", out, "--modality", "ct", "--size", 8, "--body", "brain"], "--size", out)
    # units that cannot be the modality's: a CT given as MRI, an MRI (no air below -200 HU) given as CT
    _assert_refused(cli, capsys, ["prepare", "-i", raw_dir, "-o", out, "--modality", "mri", "--size", 16], "--modality ct", out)
    mri = tmp_path / "mri"
    mri.mkdir()
    write_volume(mri / "m.nii.gz", np.clip(raw + 1000, 0, None), aff)
    _assert_refused(cli, capsys, ["prepare", "-i", mri, "-o", out, *ct, "--body", "brain"], "Hounsfield", out)
    # --keep-names with names the toolkit would map to one volume id
    write_volume(raw_dir / "sub_01.nii.gz", raw, aff)
    _assert_refused(cli, capsys, ["prepare", "-i", raw_dir, "-o", out, *ct, "--body", "abdomen", "--keep-names"], "sub_01", out)


def test_restore_names_and_bad_inputs(ct_raw, tmp_path, cli, capsys):
    raw_dir, _, _, _ = ct_raw
    data = tmp_path / "data"
    assert cli(["prepare", "-i", raw_dir, "-o", data, "--modality", "ct", "--size", 16, "--body", "abdomen"]) == 0
    scores = tmp_path / "scores"
    scores.mkdir()
    write_volume(scores / "00000_sink.nii.gz", np.full((16, 16, 16), 0.5, np.float32), np.eye(4))
    (scores / "00000_sink.nii.gz.txt").write_text("0.5")
    back = tmp_path / "back"
    assert cli(["restore", "-i", scores, "-o", back, "--records", data / "prepare"]) == 0
    assert sorted(p.name for p in back.iterdir()) == ["scan_sink.nii.gz"]
    # wrong shape, no record, output inside the scores folder, missing records folder
    bad = tmp_path / "bad"
    bad.mkdir()
    write_volume(bad / "00000.nii.gz", np.zeros((8, 8, 8), np.float32), np.eye(4))
    out = tmp_path / "out"
    _assert_refused(cli, capsys, ["restore", "-i", bad, "-o", out, "--records", data / "prepare"], "00000.nii.gz", out)
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    write_volume(orphan / "00007.nii.gz", np.zeros((16, 16, 16), np.float32), np.eye(4))
    _assert_refused(cli, capsys, ["restore", "-i", orphan, "-o", out, "--records", data / "prepare"], "no prepare record", out)
    _assert_refused(cli, capsys, ["restore", "-i", scores, "-o", scores / "x", "--records", data / "prepare"], "inside")
    _assert_refused(cli, capsys, ["restore", "-i", scores, "-o", out, "--records", tmp_path / "nope"], "records", out)
    _assert_refused(cli, capsys, ["restore", "-i", scores, "-o", back, "--records", data / "prepare"], "--overwrite")
