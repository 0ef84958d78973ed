"""Every promise of the README's "Nothing you made is lost" paragraph, one test per defect found on the old main
(issue 20, items 1-8, 10, 11; item 9, the container's run scripts, is tests/inference/test_run_script_signals.py,
item 7's kills at every stage are tests/fit/test_fit_resume.py). Each failed before its fix."""

from __future__ import annotations

import errno
import json

import nibabel as nib
import numpy as np
import pytest
import yaml

from conftest import blob_volume, fit_baseline
from test_safety import refused, snapshot
from mood_dpa.volumes import write_volume


@pytest.fixture
def world(tmp_path):
    """tmp/scans: four small scans; tmp/models/hist.npz: the histogram baseline; tmp/models/vh.npz: the volume histogram."""
    from mood_dpa.methods.volume_histogram.model import VolumeHistogramDetector

    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(4):
        write_volume(scans / f"{i:05d}.nii.gz", blob_volume((16, 16, 16), seed=i), np.eye(4))
    models = tmp_path / "models"
    models.mkdir()
    paths = sorted(scans.iterdir())
    fit_baseline(paths, models / "hist.npz", bins=32, sigma=0.0, calibration_volumes=4)
    VolumeHistogramDetector.fit(paths, bins=16, k=2, progress=False).save(models / "vh.npz")
    return tmp_path


# ------------------------------------------------------------------------- 1. file outputs


def test_a_file_output_never_replaces_a_file_mood_dpa_did_not_write(world, cli, capsys):
    scans, models = world / "scans", world / "models"
    notes = world / "notes"
    notes.mkdir()
    for name in ("f.csv", "h.npz", "d.yaml", "r.json", "p.png"):
        (notes / name).write_text("my own file")
    before = snapshot(world)
    # folds into the input folder (over a training volume) and over a user's file
    refused(cli, capsys, ["folds", "-i", scans, "-o", scans / "00000.nii.gz", "--n-folds", "2"], "inside the input folder")
    refused(cli, capsys, ["folds", "-i", scans, "-o", notes / "f.csv", "--n-folds", "2"], "not written by mood-dpa", "--overwrite")
    refused(cli, capsys, ["baseline", "fit", "-i", scans, "-o", notes / "h.npz"], "not written by mood-dpa")
    refused(cli, capsys, ["ensemble", models / "hist.npz", "-o", notes / "d.yaml"], "not written by mood-dpa")
    refused(cli, capsys, ["show", scans / "00000.nii.gz", "-o", notes / "p.png"], "not written by mood-dpa")
    assert snapshot(world) == before
    # what mood-dpa wrote it may write again; what the user changed afterwards is theirs
    assert cli(["folds", "-i", scans, "-o", world / "folds.csv", "--n-folds", "2"]) == 0
    assert cli(["folds", "-i", scans, "-o", world / "folds.csv", "--n-folds", "2", "--seed", "3"]) == 0
    (world / "folds.csv").write_text((world / "folds.csv").read_text() + "\n")
    refused(cli, capsys, ["folds", "-i", scans, "-o", world / "folds.csv", "--n-folds", "2"], "changed since")
    assert cli(["folds", "-i", scans, "-o", notes / "f.csv", "--n-folds", "2", "--overwrite"]) == 0
    assert (notes / "f.csv").read_text().startswith("filename,test_fold")


def test_evaluate_json_never_lands_on_what_it_reads(world, cli, capsys):
    scans = world / "scans"
    val = world / "val"
    assert cli(["synth", "-i", scans, "-o", val, "--seed", "0"]) == 0
    pred = world / "pred"
    assert cli(["predict", "--model", world / "models" / "hist.npz", "--task", "both", "-i", val / "toy", "-o", pred]) == 0
    victim = pred / "00000_normal.nii.gz.txt"
    before = victim.read_text()
    refused(cli, capsys, ["evaluate", "--pred", pred, "--labels", val, "--task", "sample", "--json", victim], "inside the input folder")
    refused(cli, capsys, ["evaluate", "--pred", pred, "--labels", val, "--task", "sample", "--json", val / "r.json"], "inside the input folder")
    assert victim.read_text() == before
    assert cli(["evaluate", "--pred", pred, "--labels", val, "--task", "sample", "--json", world / "r.json"]) == 0
    assert json.loads((world / "r.json").read_text())["task"] == "sample"


# ------------------------------------------------------------------------- 2. --overwrite keeps what it did not write


def test_overwrite_keeps_the_users_files_in_sub_folders(world, cli):
    scans, models = world / "scans", world / "models"
    synth_out = world / "S"
    (synth_out / "toy").mkdir(parents=True)
    (synth_out / "toy" / "mine.txt").write_text("keep me")
    assert cli(["synth", "-i", scans, "-o", synth_out, "--overwrite"]) == 0
    assert (synth_out / "toy" / "mine.txt").read_text() == "keep me"
    assert len(list((synth_out / "toy").glob("*.nii.gz"))) == 4 * 9  # one normal + 8 local kinds per scan
    sub = world / "sub"
    (sub / "models").mkdir(parents=True)
    (sub / "models" / "mine.txt").write_text("keep me too")
    slots = ["--brain-pixel", models / "hist.npz", "--brain-sample", models / "hist.npz",
             "--abdom-pixel", models / "hist.npz", "--abdom-sample", models / "hist.npz"]
    assert cli(["submission", "-o", sub, *slots, "--overwrite"]) == 0
    assert (sub / "models" / "mine.txt").read_text() == "keep me too"
    assert (sub / "models" / "pixel_brain" / "model.npz").is_file()


# ------------------------------------------------------------------------- 3. sample-only models have no voxel map


def test_a_sample_level_model_is_refused_for_the_pixel_task(world, cli, capsys):
    scans, models = world / "scans", world / "models"
    refused(cli, capsys, ["predict", "--model", models / "vh.npz", "--task", "pixel", "-i", scans, "-o", world / "p"], "no voxel map")
    refused(cli, capsys, ["predict", "--model", models / "vh.npz", "--task", "both", "-i", scans, "-o", world / "p"], "no voxel map")
    assert not (world / "p").exists()
    assert cli(["predict", "--model", models / "vh.npz", "--task", "sample", "-i", scans, "-o", world / "p"]) == 0
    slots = ["--brain-pixel", models / "vh.npz", "--brain-sample", models / "vh.npz",
             "--abdom-pixel", models / "hist.npz", "--abdom-sample", models / "hist.npz"]
    refused(cli, capsys, ["submission", "-o", world / "sub", *slots], "no voxel map", "pixel / brain")
    assert not (world / "sub").exists()


# ------------------------------------------------------------------------- 4. one detector per prediction folder


def test_a_prediction_folder_holds_one_detectors_outputs(world, cli, capsys):
    from mood_dpa.data.provenance import read_predict_record

    scans, models = world / "scans", world / "models"
    other = world / "models" / "hist2.npz"
    fit_baseline(sorted(scans.iterdir())[:3], other, bins=16, sigma=1.0, calibration_volumes=3)
    out = world / "pred"
    assert cli(["predict", "--model", models / "hist.npz", "--task", "pixel", "-i", scans, "-o", out]) == 0
    record = read_predict_record(out)
    assert record["tasks"]["pixel"]["files"] == sorted(p.name for p in scans.iterdir())
    before = snapshot(out)
    refused(cli, capsys, ["predict", "--model", other, "--task", "pixel", "-i", scans, "-o", out], "another detector", "--replace")
    assert snapshot(out) == before
    # another task by another detector is fine (the record keeps one entry per task)
    assert cli(["predict", "--model", other, "--task", "sample", "-i", scans, "-o", out]) == 0
    # the same detector again over fewer inputs: the outputs of the inputs that are gone go too
    fewer = world / "fewer"
    fewer.mkdir()
    for p in sorted(scans.iterdir())[:2]:
        (fewer / p.name).write_bytes(p.read_bytes())
    assert cli(["predict", "--model", models / "hist.npz", "--task", "pixel", "-i", fewer, "-o", out]) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(p.name for p in fewer.iterdir())
    assert len(list(out.glob("*.txt"))) == 4  # the sample task's outputs are another run's and stay
    # --replace: the first detector's maps go, the second's come
    assert cli(["predict", "--model", other, "--task", "pixel", "-i", scans, "-o", out, "--replace"]) == 0
    assert read_predict_record(out)["tasks"]["pixel"]["detector"]["path"] == str(other.resolve())
    assert len(list(out.glob("*.nii.gz"))) == 4


# ------------------------------------------------------------------------- 5. fit over changed data


def test_fit_refuses_to_continue_over_changed_volumes(tmp_path):
    from mood_dpa.data.phantoms import write_phantoms
    from mood_dpa.errors import MoodError
    from mood_dpa.fit import run_fit

    data = tmp_path / "data"
    write_phantoms("brain", 8, 32, 0, data)
    out = tmp_path / "models"
    quiet = dict(preset="quick", methods="histogram", seed=0, report=False, log=lambda s: None)
    run_fit(data, out, **quiet)
    state = json.loads((out / "fit_state.json").read_text())
    assert len(state["options"]["volumes"]) == 8
    write_phantoms("brain", 1, 32, 7, tmp_path / "other")  # another subject under a training volume's name
    (data / "00003.nii.gz").write_bytes((tmp_path / "other" / "00000.nii.gz").read_bytes())
    with pytest.raises(MoodError, match=r"training volumes changed since this fit started \(1: 00003.nii.gz\)"):
        run_fit(data, out, **quiet)
    assert json.loads((out / "fit_state.json").read_text()) == state


# ------------------------------------------------------------------------- 6. members are what they say


def test_a_member_listing_another_methods_file_is_refused(world):
    from mood_dpa.errors import MoodError
    from mood_dpa.inference.loading import load_detector, write_detector_file

    det = write_detector_file(world / "models" / "det.yaml", [world / "models" / "hist.npz"])
    data = yaml.safe_load(det.read_text())
    data["members"][0]["method"] = "dpa"
    det.write_text(yaml.safe_dump(data))
    with pytest.raises(MoodError, match="a histogram model file in member 'histogram', whose method is dpa"):
        load_detector(det)


# ------------------------------------------------------------------------- 8. devices are checked before any work


@pytest.mark.parametrize("device, needle", [("gpu", "no CUDA GPU"), ("cuda", "no CUDA GPU"), ("tpu", "not a device name"),
                                            ("cuda:x", "not a device name")])
def test_a_device_the_machine_lacks_is_refused_before_any_work(world, cli, capsys, device, needle):
    import torch

    if torch.cuda.is_available() and needle == "no CUDA GPU":
        pytest.skip("this machine has a CUDA GPU: the refusal cannot happen here")
    before = snapshot(world)
    refused(cli, capsys, ["fit", "-i", world / "scans", "-o", world / "fit", "--device", device], needle)
    refused(cli, capsys, ["predict", "--model", world / "models" / "hist.npz", "--task", "pixel", "-i", world / "scans",
                          "-o", world / "p", "--device", device], needle)
    assert snapshot(world) == before


# ------------------------------------------------------------------------- 10. one line, not a traceback


@pytest.mark.parametrize("args", [
    ["synth", "-i", "{scans}", "-o", "{t}/s", "--seed", "-1"],
    ["folds", "-i", "{scans}", "-o", "{t}/f.csv", "--seed", "-1"],
    ["baseline", "fit", "-i", "{scans}", "-o", "{t}/h.npz", "--seed", "-1"],
    ["baseline", "fit-volume", "-i", "{scans}", "-o", "{t}/v.npz", "--seed", "-1"],
    ["calibrate", "-d", "{t}/models/hist.npz", "-i", "{scans}", "--seed", "-1"],
    ["fit", "-i", "{scans}", "-o", "{t}/fit", "--seed", "-1"],
    ["evaluate", "--pred", "{t}", "--labels", "{t}", "--task", "pixel", "--seed", "-1"],
    ["folds", "-i", "{scans}", "-o", "{t}/f.csv", "--threads", "99999999999999999999"],
    ["evaluate", "--pred", "{t}", "--labels", "{t}", "--task", "pixel", "--bootstrap", "100000000"],
    ["folds", "-i", "{scans}", "-o", "{t}/f.csv", "--no-such-option"],
    ["folds", "-i", "{scans}", "-o", "{t}/f.csv", "--n-folds", "many"],
])
def test_bad_numbers_and_options_are_one_line(world, cli, capsys, args):
    before = snapshot(world)
    refused(cli, capsys, [a.format(scans=world / "scans", t=world) for a in args])
    assert snapshot(world) == before
    assert not (world / "fit" / "fit_state.json").exists()


def test_files_that_are_not_text_are_one_line(world, cli, capsys):
    scans = world / "scans"
    binary = world / "det.yaml"
    binary.write_bytes((scans / "00000.nii.gz").read_bytes())
    refused(cli, capsys, ["predict", "--model", binary, "--task", "pixel", "-i", scans, "-o", world / "p"], "not a text file")
    val = world / "val"
    assert cli(["synth", "-i", scans, "-o", val]) == 0
    assert cli(["predict", "--model", world / "models" / "hist.npz", "--task", "pixel", "-i", val / "toy", "-o", world / "p"]) == 0
    refused(cli, capsys, ["evaluate", "--pred", world / "p", "--labels", val, "--task", "pixel", "--manifest",
                          scans / "00000.nii.gz"], "not a manifest")
    refused(cli, capsys, ["synth", "-i", scans, "-o", world / "s2", "--folds", scans / "00001.nii.gz"], "not a folds CSV")


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(world, cli, capsys, monkeypatch):
    import mood_dpa.atomic as atomic

    real = atomic.os.replace

    def full(src, dst):
        if str(dst).endswith(".nii.gz"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", full)
    for args in (["synth", "-i", world / "scans", "-o", world / "s"],
                 ["phantoms", "--kind", "brain", "-n", "1", "--size", "32", "-o", world / "ph"],
                 ["predict", "--model", world / "models" / "hist.npz", "--task", "pixel", "-i", world / "scans", "-o", world / "p"]):
        code = cli(args)
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and "No space left on device" in err, err
    leftovers = [p for p in world.rglob("*") if ".tmp" in p.name]
    assert leftovers == [] and not (world / "s").exists()


def test_a_raw_scan_with_a_broken_affine_is_one_line(tmp_path, cli, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    img = nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32) * 1000, np.eye(4))
    img.header.set_qform(None, code=0)
    img.header["srow_x"] = [np.nan, 0, 0, 0]  # a broken header, as written by some converters: the sform has a NaN
    img.header["sform_code"] = 1
    nib.Nifti1Image(np.asanyarray(img.dataobj), None, header=img.header).to_filename(raw / "a.nii.gz")
    assert not np.isfinite(nib.load(raw / "a.nii.gz").affine).all()
    refused(cli, capsys, ["prepare", "-i", raw, "-o", tmp_path / "out", "--modality", "mri", "--size", "32"], "NaN or infinite")
    assert not (tmp_path / "out").exists()


def test_a_read_only_place_for_fit_volume_is_refused_before_fitting(world, cli, capsys, monkeypatch):
    from test_safety import _deny_writes_in

    ro = world / "ro"
    ro.mkdir()
    _deny_writes_in(monkeypatch, ro)
    try:
        refused(cli, capsys, ["baseline", "fit-volume", "-i", world / "scans", "-o", ro / "v.npz"], "cannot write")
    finally:
        ro.chmod(0o755)


# ------------------------------------------------------------------------- 11. accepted without a word


def test_a_2d_image_is_not_scored(world, cli, capsys):
    flat = world / "flat"
    flat.mkdir()
    write_volume(flat / "00000.nii.gz", np.full((64, 64, 1), 0.5, np.float32), np.eye(4))
    # predict reports each bad input in one line, writes nothing for it, and exits 2
    code = cli(["predict", "--model", world / "models" / "hist.npz", "--task", "pixel", "-i", flat, "-o", world / "p"])
    err = capsys.readouterr().err
    assert code == 2 and "skipped 00000.nii.gz" in err and "2-D image" in err and "Traceback" not in err
    assert not (world / "p" / "00000.nii.gz").exists()
    refused(cli, capsys, ["slices", "-i", flat, "-o", world / "store", "--axis", "0", "--size", "8"], "2-D image")


def test_a_label_on_another_grid_is_warned_about(world, cli, capsys):
    val = world / "val"
    assert cli(["synth", "-i", world / "scans", "-o", val]) == 0
    pred = world / "p"
    assert cli(["predict", "--model", world / "models" / "hist.npz", "--task", "pixel", "-i", val / "toy", "-o", pred]) == 0
    case = pred / "00000_uniform.nii.gz"
    img = nib.load(str(case))
    shifted = img.affine.copy()
    shifted[:3, 3] += 10.0
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), shifted), case)
    capsys.readouterr()
    assert cli(["evaluate", "--pred", pred, "--labels", val, "--task", "pixel"]) == 0
    assert "00000_uniform: the prediction's affine differs from the label's" in capsys.readouterr().err


def test_a_store_of_no_slice_is_an_error(world, cli, capsys):
    dark = world / "dark"
    dark.mkdir()
    write_volume(dark / "00000.nii.gz", np.zeros((16, 16, 16), np.float32), np.eye(4))
    refused(cli, capsys, ["slices", "-i", dark, "-o", world / "store", "--axis", "0", "--size", "8"], "no slice")
    assert not (world / "store").exists()


def test_a_ct_window_that_maps_everything_to_zero_is_an_error(tmp_path, cli, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    body = np.full((24, 24, 24), -1000.0, np.float32)
    body[4:20, 4:20, 4:20] = 1500.0  # a body of 1,500 HU, under a window of [2000, 3000] HU: all of it maps to 0
    nib.save(nib.Nifti1Image(body, np.eye(4)), raw / "ct.nii.gz")
    refused(cli, capsys, ["prepare", "-i", raw, "-o", tmp_path / "out", "--modality", "ct", "--size", "32",
                          "--window", "2000,3000"], "maps to 0")
    assert not (tmp_path / "out").exists()


def test_predict_and_evaluate_pair_files_by_whole_name(world, cli):
    """Two files with one volume id (sub_01, sub_02) are two cases to predict and evaluate (the README's rule)."""
    cases = world / "cases"
    cases.mkdir()
    for k, name in enumerate(("sub_01.nii.gz", "sub_02.nii.gz")):
        write_volume(cases / name, blob_volume((16, 16, 16), seed=10 + k), np.eye(4))
    out = world / "p"
    assert cli(["predict", "--model", world / "models" / "hist.npz", "--task", "both", "-i", cases, "-o", out]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "sub_01.nii.gz", "sub_01.nii.gz.txt", "sub_02.nii.gz", "sub_02.nii.gz.txt"]
    a, b = (nib.load(str(out / n)).get_fdata() for n in ("sub_01.nii.gz", "sub_02.nii.gz"))
    assert not np.array_equal(a, b)  # each its own scan's map


def test_restore_onto_a_4d_raw_scan_keeps_its_shape(tmp_path, cli):
    raw = tmp_path / "raw"
    raw.mkdir()
    vol = np.zeros((32, 32, 32, 1), np.float32)
    vol[6:26, 6:26, 6:26, 0] = np.random.default_rng(0).random((20, 20, 20)) * 500 + 500
    nib.save(nib.Nifti1Image(vol, np.diag([1.2, 1.2, 1.2, 1.0])), raw / "a.nii.gz")
    prepared = tmp_path / "prepared"
    assert cli(["prepare", "-i", raw, "-o", prepared, "--modality", "mri", "--size", "32"]) == 0
    scores = tmp_path / "scores"
    scores.mkdir()
    for f in prepared.glob("*.nii.gz"):
        write_volume(scores / f.name, np.full((32, 32, 32), 0.5, np.float32), nib.load(str(f)).affine)
    for reference in ([], ["--reference", raw]):
        back = tmp_path / f"back{len(reference)}"
        assert cli(["restore", "-i", scores, "-o", back, "--records", prepared / "prepare", *reference]) == 0
        out = next(back.glob("*.nii.gz"))
        assert nib.load(str(out)).shape == (32, 32, 32, 1)
