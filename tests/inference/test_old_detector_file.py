"""A detector file written before the restructuring still loads and predicts identically.

``old_detector/`` was written by main at b7c5cac (format ``mood-dpa/ensemble``, version 2) with:

    mood-dpa phantoms --kind brain --count 4 --size 32 -o train
    mood-dpa phantoms --kind brain --count 2 --size 32 --start 4 -o test
    mood-dpa baseline fit -i train -o det/hist.npz --bins 64
    mood-dpa baseline fit-volume -i train -o det/vh.npz --k 2
    mood-dpa ensemble det/hist.npz det/vh.npz -o det/detector.yaml
    mood-dpa calibrate -e det/detector.yaml -i train
    mood-dpa predict --model det/detector.yaml --task both -i test -o pred   # -> old_detector/expected/

Today's code regenerates the same test phantoms (the train style keeps its bytes) and must give the same
maps, voxel for voxel, and the same sample scores, digit for digit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from mood_dpa.data.phantoms import write_phantoms
from mood_dpa.inference.detector_file import read_spec

OLD = Path(__file__).parent / "old_detector"


def test_a_detector_file_of_the_old_format_predicts_as_it_did(tmp_path, cli):
    det = tmp_path / "det"
    shutil.copytree(OLD, det, ignore=shutil.ignore_patterns("expected"))
    assert "format: mood-dpa/ensemble" in (det / "detector.yaml").read_text()
    spec = read_spec(det / "detector.yaml")
    assert [m.method for m in spec.members] == ["histogram", "volume-histogram"] and spec.calibration is not None
    test = write_phantoms("brain", 2, 32, 0, tmp_path / "test", start=4)
    assert [p.name for p in test] == ["00004.nii.gz", "00005.nii.gz"]
    out = tmp_path / "pred"
    assert cli(["predict", "--model", det / "detector.yaml", "--task", "both", "-i", tmp_path / "test", "-o", out]) == 0
    for name in ("00004.nii.gz", "00005.nii.gz"):
        new = np.asarray(nib.load(out / name).dataobj)
        old = np.asarray(nib.load(OLD / "expected" / name).dataobj)
        assert new.dtype == old.dtype and np.array_equal(new, old), name
        assert (out / f"{name}.txt").read_text() == (OLD / "expected" / f"{name}.txt").read_text(), name
    assert (det / "detector.yaml").read_text() == (OLD / "detector.yaml").read_text()  # predict changed nothing
