"""A tiny DPA axis ensemble end to end: YAML, agreement with a per-slice reference of the model file,
calibration written into the YAML, and prediction through the one writer (`mood-dpa predict`)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from mood_dpa.ownership import written_by_us

from conftest import blob_volume
from mood_dpa.data.slices import SliceRule
from mood_dpa.errors import MoodError
from mood_dpa.scoring.calibration import UNCALIBRATED
from mood_dpa.inference.tuning import calibrate_detector_file
from mood_dpa.inference.loading import load_detector_file, write_detector_file
from mood_dpa.inference.detector_file import read_spec
from mood_dpa.models.autoencoder import ResidualAE
from mood_dpa.methods.dpa.model import load_dpa_model, save_dpa_model
from mood_dpa.models.perceptual import RelativePerceptualL1
from mood_dpa.models.backbones.vgg19 import VGG19Features
from mood_dpa.volumes import read_volume, write_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SHAPE = (28, 36, 32)  # not cubic: slices of every axis are resized to 32x32 and back
RULE = SliceRule(min_fraction=0.05)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> list[Path]:
    """Three tiny untrained DPA model files (32x32 slices, VGG width 1/16), one per axis."""
    folder = tmp_path_factory.mktemp("models")
    files = []
    for axis in range(3):
        ae = ResidualAE("residual9", channels=4, latent=4, size=32, seed=axis)
        loss = RelativePerceptualL1(VGG19Features(("relu2_1",), width=1 / 16, seed=10 + axis))
        normaliser = "volume" if axis != 1 else "slice"
        files.append(save_dpa_model(folder / f"axis{axis}" / "model.pt", ae, loss, {"axis": axis, "rule": RULE, "normaliser": normaliser, "name": f"ax{axis}"}))
    return files


def anomalous(vol: np.ndarray) -> np.ndarray:
    out = vol.copy()
    out[12:18, 13:19, 12:17] = 1.0
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """normals/ (4 volumes) and val/ in the MOOD toy layout (2 normal + 2 anomalous cases)."""
    root = tmp_path_factory.mktemp("data")
    aff = np.diag([1.5, 1.0, 2.0, 1.0])
    for i in range(4):
        write_volume(root / "normals" / f"{i:05d}.nii.gz", blob_volume(SHAPE, seed=i), aff)
    for i in range(4):
        vol = blob_volume(SHAPE, seed=10 + i)
        label = i % 2
        write_volume(root / "val" / "toy" / f"case_{i}.nii.gz", anomalous(vol) if label else vol, aff)
        (root / "val" / "toy_label" / "sample").mkdir(parents=True, exist_ok=True)
        (root / "val" / "toy_label" / "sample" / f"case_{i}.nii.gz.txt").write_text(f"{label}\n")
    return root


def slow_reference(model, vol: np.ndarray) -> np.ndarray:
    """One slice at a time through the model file's own API (pixel_maps + relative_maps)."""
    v = np.moveaxis(vol, model.axis, 0)
    kept = [i for i in range(v.shape[0]) if (v[i] > RULE.threshold).mean() >= RULE.min_fraction]
    outs = {i: model.pixel_maps(F.interpolate(torch.from_numpy(v[i].copy())[None, None], size=(32, 32), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)) for i in kept}
    dens = torch.cat([o.denominators for o in outs.values()], 0)
    res = np.zeros(v.shape, np.float64)
    for i, o in outs.items():
        den = o.denominators if model.normaliser == "slice" else dens.mean(0)
        m = model.relative_maps(o.numerators, den)
        shrink = any(n < 32 for n in v.shape[1:])  # documented: antialiased when a map is shrunk back
        res[i] = F.interpolate(m, size=v.shape[1:], mode="bilinear", align_corners=False, antialias=shrink)[0, 0].double().numpy()
    return np.moveaxis(res, 0, model.axis)


@pytest.mark.parametrize("axis", [0, 1])
def test_one_axis_ensemble_equals_per_slice_reference(tmp_path, model_files, axis):
    ens = write_detector_file(tmp_path / "one.yaml", [model_files[axis]])
    det = load_detector_file(ens, device="cpu", batch_size=5)
    vol = blob_volume(SHAPE, seed=3)
    raw = det.score_raw(vol).numpy()
    ref = slow_reference(load_dpa_model(model_files[axis], "cpu"), vol)
    assert (ref > 0).mean() > 0.3
    np.testing.assert_allclose(raw, ref, rtol=2e-4, atol=1e-6)
    scores = det.score_volume(vol)
    want = np.where(vol > 0, np.maximum(UNCALIBRATED.apply(ref), 2.0**-14), 0.0)  # uncalibrated map + background mask
    np.testing.assert_allclose(scores, want, atol=1e-6)


def test_write_ensemble_yaml_is_relative_and_checked(tmp_path, model_files):
    ens = write_detector_file(tmp_path / "ens" / "brain_pixel.yaml", model_files, [1, 2, 1], combine="mean_covered")
    spec = read_spec(ens)
    assert spec.name == "brain_pixel" and spec.members[0].combine == "mean_covered" and [m.weight for m in spec.members[0].models] == [1, 2, 1]
    assert len(spec.members) == 1 and all(not Path(m.path).is_absolute() for m in spec.members[0].models)
    det = load_detector_file(ens, device="cpu")
    assert [m.axis for m in det.axis_models] == [0, 1, 2] and det.calibration is None
    with pytest.raises(MoodError):
        write_detector_file(tmp_path / "bad.yaml", [tmp_path / "nope.pt"])
    bad = tmp_path / "typo.yaml"
    bad.write_text(ens.read_text().replace("combine:", "combin:"))
    with pytest.raises(MoodError, match="unknown key"):
        load_detector_file(bad)
    moved = tmp_path / "elsewhere" / "deeper" / "brain_pixel.yaml"
    moved.parent.mkdir(parents=True)
    moved.write_text(ens.read_text())  # relative paths no longer resolve
    with pytest.raises(MoodError, match="no such model file"):
        load_detector_file(moved)


def test_calibrate_then_predict(tmp_path, model_files, data, cli):
    ens = write_detector_file(tmp_path / "ens.yaml", model_files)
    assert cli(["calibrate", "--ensemble", ens, "-i", data / "normals", "--val", data / "val", "--samples-per-volume", "5000"]) == 0
    first = yaml.safe_load(ens.read_text())
    assert first["calibration"]["kind"] == "quantile-log-tail" and len(first["calibration"]["xs"]) > 5
    assert first["sample_rule"]["kind"] in ("max", "topk", "smoothed_max")
    assert first["info"]["calibration"]["normal_volumes"] == 4 and first["info"]["calibration"]["validation_volumes"] == 4
    # atomic rewrite left nothing behind but the record that mood-dpa wrote ens.yaml (so a later run may replace it)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mood-dpa-files.json", "ens.yaml"]
    assert written_by_us(ens)
    # deterministic: the same inputs give the same map and rule
    info = calibrate_detector_file(ens, data / "normals", val_dir=data / "val", samples_per_volume=5000, progress=False)
    again = yaml.safe_load(ens.read_text())
    assert again["calibration"] == first["calibration"] and again["sample_rule"] == first["sample_rule"]
    assert info["samples"] == 4 * 5000
    # the calibration may also live in its own file named by the YAML (relative path)
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(again["calibration"]))
    split = tmp_path / "split.yaml"
    split.write_text(yaml.safe_dump({**again, "calibration": "cal.yaml"}))
    vol = blob_volume(SHAPE, seed=9)
    np.testing.assert_array_equal(load_detector_file(split).score_volume(vol), load_detector_file(ens).score_volume(vol))

    out_px, out_s = tmp_path / "pixel", tmp_path / "sample"
    assert cli(["predict", "--model", ens, "--task", "pixel", "-i", data / "val" / "toy", "-o", out_px, "--device", "cpu"]) == 0
    assert cli(["predict", "--model", ens, "--task", "sample", "-i", data / "val" / "toy", "-o", out_s, "--batch-size", "7"]) == 0
    normal_max = []
    for src in sorted((data / "val" / "toy").iterdir()):
        inp, pred = read_volume(src), read_volume(out_px / src.name)
        assert pred.data.shape == inp.data.shape
        np.testing.assert_allclose(pred.affine, inp.affine)
        assert np.isfinite(pred.data).all() and pred.data.min() >= 0 and pred.data.max() <= 1
        assert (pred.data[inp.data <= 0] == 0).all()  # background masked ...
        assert (pred.data[inp.data > 0] >= 2.0**-14).all()  # ... strictly below every foreground voxel
        lines = (out_s / f"{src.name}.txt").read_text().splitlines()
        assert len(lines) == 1 and 0.0 <= float(lines[0]) <= 1.0
        if src.name in ("case_0.nii.gz", "case_2.nii.gz"):
            normal_max.append(pred.data.max())
    # calibrated: a normal case's voxels stay in the normal range of the map (well below 1)
    assert max(normal_max) < 0.9


def test_ensemble_command_then_calibrate_on_one_fold(tmp_path, model_files, data, cli):
    ens = tmp_path / "cli.yaml"
    assert cli(["ensemble", *model_files, "-o", ens, "--weights", "1,2,1", "--combine", "max"]) == 0
    spec = read_spec(ens)
    assert [m.weight for m in spec.members[0].models] == [1.0, 2.0, 1.0] and spec.members[0].combine == "max"
    assert [(ens.parent / m.path).resolve() for m in spec.members[0].models] == [Path(f).resolve() for f in model_files]
    assert cli(["ensemble", *model_files, "-o", tmp_path / "bad.yaml", "--weights", "1,x"]) == 2
    assert not (tmp_path / "bad.yaml").exists()
    folds = tmp_path / "folds.csv"
    folds.write_text("filename,test_fold\n00000.nii.gz,0\n00001.nii.gz,1\n00002.nii.gz,0\n00003.nii.gz,1\n")
    assert cli(["calibrate", "-e", ens, "-i", data / "normals", "--folds", folds, "--fold", "1", "--samples-per-volume", "500"]) == 0
    assert yaml.safe_load(ens.read_text())["info"]["calibration"]["normal_volumes"] == 2
    assert cli(["calibrate", "-e", ens, "-i", data / "normals", "--folds", folds, "--fold", "5"]) == 2
