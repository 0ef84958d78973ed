"""Raw-like scans through the whole path (issue 10's acceptance): prepare -> fit -> synth -> predict -> evaluate -> restore."""

from __future__ import annotations

import numpy as np


def test_raw_scans_to_a_detector_and_maps_back_on_the_raw_grid(tmp_path, cli):
    """Issue 10's acceptance path on raw-like scans: prepare -> fit -> synth -> predict -> evaluate -> restore."""
    import nibabel as nib
    from test_prepare import on_grid, raw_affine

    from mood_dpa.data.phantoms import make_phantom, phantom_affine
    from mood_dpa.evaluation.evaluate import evaluate_folder

    raw = tmp_path / "raw"
    raw.mkdir()
    affine = raw_affine()
    for i in range(10):  # oblique, anisotropic, flipped grid; 12-bit MRI units
        x = on_grid(make_phantom("brain", 32, 0, i), phantom_affine(32), affine, (64, 48, 24))
        nib.save(nib.Nifti1Image(np.round(x * 4095).astype(np.int16), affine), raw / f"scan{i:02d}.nii.gz")
    (raw / "train").mkdir()
    (raw / "test").mkdir()
    for p in sorted(raw.glob("scan*.nii.gz")):
        p.rename(raw / ("test" if p.name >= "scan08" else "train") / p.name)
    for split in ("train", "test"):
        assert cli(["prepare", "-i", raw / split, "-o", tmp_path / split, "--modality", "mri", "--size", "32"]) == 0
    assert cli(["fit", "-i", tmp_path / "train", "-o", tmp_path / "models", "--preset", "quick", "--method", "histogram,l1",
                "--no-report"]) == 0
    assert cli(["synth", "-i", tmp_path / "test", "-o", tmp_path / "heldout", "--kinds", "uniform", "--seed", "1"]) == 0
    assert cli(["predict", "--model", tmp_path / "models" / "detectors" / "l1.yaml", "--task", "both",
                "-i", tmp_path / "heldout" / "toy", "-o", tmp_path / "pred"]) == 0
    res = evaluate_folder(tmp_path / "pred", tmp_path / "heldout", "pixel", on_warning=None, progress=False)
    assert res.cases == 4 and 0.0 <= res.ap <= 1.0 and res.tuning_warning is None
    assert cli(["restore", "-i", tmp_path / "pred", "-o", tmp_path / "on_raw", "--records", tmp_path / "test" / "prepare",
                "--reference", raw / "test"]) == 0
    back = nib.load(sorted((tmp_path / "on_raw").glob("*.nii.gz"))[0])
    assert back.shape == (64, 48, 24) and np.allclose(back.affine, affine)
