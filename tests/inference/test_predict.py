"""predict_folder, the one MOOD-format writer, and `mood-dpa predict`."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import blob_volume

from conftest import fit_baseline
from mood_dpa.errors import MoodError
from mood_dpa.inference.predict import predict_folder
from mood_dpa.volumes import write_volume

AFFINE = np.array([[0.0, 1.2, 0, 10], [1.1, 0, 0, -5], [0, 0, 0.9, 3], [0, 0, 0, 1]])


class Ramp:
    """A stand-in detector: voxel score = clipped intensity * 2 (leaves [0,1] on purpose)."""

    name = "ramp"

    def score_volume(self, data):
        return (data * 2.0 - 0.1).astype(np.float32)

    def sample_score(self, data, voxel_scores):
        return float(voxel_scores.max())


class Broken(Ramp):
    def score_volume(self, data):
        out = super().score_volume(data)
        out[0, 0, 0] = np.nan
        return out


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    write_volume(folder / "toy_0.nii.gz", blob_volume((20, 18, 16), seed=0), AFFINE)
    write_volume(folder / "case.nii", blob_volume((16, 16, 16), seed=1), AFFINE)
    (folder / "readme.txt").write_text("ignored")
    return folder


def test_pixel_outputs_keep_name_shape_affine_and_range(inputs, tmp_path):
    summary = predict_folder(Ramp(), inputs, tmp_path / "out", "pixel", progress=False)
    assert summary.ok and len(summary.written) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".mood-dpa", "case.nii", "toy_0.nii.gz"]  # predictions + the tool's marker
    for name, shape in (("toy_0.nii.gz", (20, 18, 16)), ("case.nii", (16, 16, 16))):
        img = nib.load(tmp_path / "out" / name)
        data = np.asarray(img.dataobj)
        assert img.get_data_dtype() == np.float32 and data.shape == shape
        assert np.allclose(img.affine, AFFINE)
        assert np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1
        assert data.min() == 0 and data.max() == 1  # Ramp went outside [0,1]: clipped
    assert "wrote 2 predictions" in summary.line()


def test_sample_outputs_one_float(inputs, tmp_path):
    summary = predict_folder(Ramp(), inputs, tmp_path / "out", "sample", progress=False)
    assert summary.ok
    files = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".mood-dpa")
    assert files == ["case.nii.txt", "toy_0.nii.gz.txt"]
    for f in files:
        value = float((tmp_path / "out" / f).read_text().splitlines()[0])
        assert value == 1.0


def test_bad_inputs_are_skipped_and_reported(inputs, tmp_path):
    (inputs / "bad.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    nan = blob_volume((8, 8, 8))
    nan[1, 1, 1] = np.nan
    write_volume(inputs / "nan.nii.gz", nan)
    messages = []
    summary = predict_folder(Ramp(), inputs, tmp_path / "out", "pixel", progress=False, on_error=messages.append)
    assert sorted(n for n, _ in summary.failed) == ["bad.nii.gz", "nan.nii.gz"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".mood-dpa", "case.nii", "toy_0.nii.gz"]
    assert len(messages) == 2 and all(m.startswith("skipped ") for m in messages)
    summary = predict_folder(Broken(), inputs, tmp_path / "out2", "sample", progress=False, on_error=None)
    assert len(summary.failed) == 4 and not summary.written


def test_errors_for_the_whole_run(inputs, tmp_path):
    with pytest.raises(MoodError, match="expected pixel, sample or both"):
        predict_folder(Ramp(), inputs, tmp_path / "o", "voxel")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoodError, match="no .nii"):
        predict_folder(Ramp(), tmp_path / "empty", tmp_path / "o", "pixel")


def test_cli_predict_with_the_baseline_and_a_corrupt_input(inputs, tmp_path, cli, capsys):
    train = [inputs / "toy_0.nii.gz", inputs / "case.nii"]
    fit_baseline(train, tmp_path / "b.npz", progress=False)
    args = ["predict", "--model", tmp_path / "b.npz", "--task", "pixel", "-i", inputs, "-o", tmp_path / "p",
            "--device", "cpu", "--batch-size", "4"]
    assert cli(args) == 0
    out = nib.load(tmp_path / "p" / "toy_0.nii.gz")
    assert out.shape == (20, 18, 16) and np.allclose(out.affine, AFFINE)
    (inputs / "corrupt.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    code = cli(["predict", "--model", tmp_path / "b.npz", "--task", "sample", "-i", inputs, "-o", tmp_path / "s2"])
    captured = capsys.readouterr()
    assert code == 2
    assert "corrupt.nii.gz" in captured.err and "1 input(s) failed" in captured.out
    # the outputs, the marker, and the hidden record of which model wrote them (the MOOD evaluator pairs by label names)
    assert sorted(p.name for p in (tmp_path / "s2").iterdir()) == [".mood-dpa", ".mood-dpa-predict.json", "case.nii.txt", "toy_0.nii.gz.txt"]
    assert cli(["predict", "--model", tmp_path / "b.npz", "--task", "voxel", "-i", inputs, "-o", tmp_path / "x"]) == 2


def test_both_tasks_in_one_pass_equal_separate_runs(inputs, tmp_path):
    class Counting(Ramp):
        calls = 0

        def score_volume(self, data):
            Counting.calls += 1
            return super().score_volume(data)

    det = Counting()
    predict_folder(det, inputs, tmp_path / "px", "pixel", progress=False)
    predict_folder(det, inputs, tmp_path / "sm", "sample", progress=False)
    n = Counting.calls
    summary = predict_folder(det, inputs, tmp_path / "both", "both", progress=False)
    assert Counting.calls - n == n // 2  # one scoring pass per volume instead of two
    assert summary.ok and len(summary.written) == n
    for p in (tmp_path / "px").iterdir():
        assert (tmp_path / "both" / p.name).read_bytes() == p.read_bytes()
    for p in (tmp_path / "sm").iterdir():
        assert (tmp_path / "both" / p.name).read_text() == p.read_text()


def test_ranks_share_the_inputs_without_overlap(inputs, tmp_path, monkeypatch):
    names = set()
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        summary = predict_folder(Ramp(), inputs, tmp_path / "out", "sample", progress=False)
        mine = {p.name for p in summary.written}
        assert mine and not mine & names
        names |= mine
    assert names == {f"{p.name}.txt" for p in inputs.iterdir() if ".nii" in p.name}
