"""Test-time flips and fold ensembles in the shell: flips averaged equal a hand computation, a fold ensemble of
identical models equals one model, and the tuning set chooses the flips (issue 17, item 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import blob_volume
from mood_dpa.inference.detector import Member, ShellDetector
from mood_dpa.scoring.volume_inferer import VolumeModel


def _ramp_model() -> VolumeModel:
    """A raw map that is NOT mirror-symmetric: intensity x (1 + voxel index along axis 0) + axis-2 index."""

    def raw_fn(v: torch.Tensor) -> torch.Tensor:
        i = torch.arange(v.shape[0], dtype=torch.float32, device=v.device).reshape(-1, 1, 1)
        k = torch.arange(v.shape[2], dtype=torch.float32, device=v.device).reshape(1, 1, -1)
        return v * (1.0 + i) + 0.01 * k

    return VolumeModel(raw_fn=raw_fn, name="ramp")


@pytest.mark.parametrize("flips", [(), (0,), (0, 2), (0, 1, 2)])
def test_flips_average_the_map_of_each_mirror_image_flipped_back(flips):
    vol = blob_volume((10, 12, 14), seed=3)
    member = Member("ramp", "histogram", [_ramp_model()], flips=flips)
    det = ShellDetector([member], device="cpu")
    got = det.raw_map(vol, member, flips).numpy()
    f = _ramp_model().raw_fn
    by_hand = f(torch.from_numpy(vol)).numpy().astype(np.float64)
    for a in flips:
        by_hand += np.flip(f(torch.from_numpy(np.flip(vol, a).copy())).numpy(), a)
    by_hand /= 1 + len(flips)
    np.testing.assert_allclose(got, by_hand, rtol=1e-6, atol=1e-6)
    if flips:  # the ramp is not symmetric: flipping changes the map
        assert not np.allclose(got, f(torch.from_numpy(vol)).numpy())
    # member_raw uses the member's own flips
    np.testing.assert_allclose(det.member_raw(vol)[0].numpy(), got, rtol=1e-6)


def test_a_fold_ensemble_of_identical_models_equals_one_model(tmp_path):
    from conftest import blob_scans_and_baseline
    from mood_dpa.inference.loading import load_detector, write_detector_file
    from mood_dpa.inference.tuning import calibrate_detector_file

    scans, _ = blob_scans_and_baseline(tmp_path)
    one = write_detector_file(tmp_path / "one.yaml", [tmp_path / "h.npz"])
    folds = write_detector_file(tmp_path / "folds.yaml", [tmp_path / "h.npz"] * 3)  # three "folds", one model
    for det_file in (one, folds):
        calibrate_detector_file(det_file, scans, samples_per_volume=2000, progress=False)
    vol = blob_volume((16, 16, 16), seed=9)
    a, b = load_detector(one, device="cpu"), load_detector(folds, device="cpu")
    assert len(b.members[0].scorers) == 3
    # the same map up to float32 rounding of (m + m + m) / 3
    np.testing.assert_allclose(a.score_volume(vol), b.score_volume(vol), rtol=1e-5, atol=1e-6)


def test_the_tuning_set_chooses_flips_that_help_and_records_them(tmp_path):
    """A model that sees anomalies only in the left half of a volume: its mirror image finds the right half's,
    so the tuning set chooses the left-right flip, and the detector file keeps it."""
    from mood_dpa.data.synth.layout import make_synthetic_set
    from mood_dpa.inference.tuning import FLIP_CANDIDATES, calibrate_detector, tuning_set
    from mood_dpa.volumes import write_volume

    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(6):
        write_volume(scans / f"{i:05d}.nii.gz", blob_volume((20, 20, 20), seed=i), np.eye(4))
    make_synthetic_set(sorted(scans.iterdir()), tmp_path / "tune", ["uniform"], (1, 1), 0, progress=False)

    def half_blind(v: torch.Tensor) -> torch.Tensor:
        # |v - local mean|: high on the changed region; zero in the right half along axis 0
        blur = torch.nn.functional.avg_pool3d(v[None, None], 5, stride=1, padding=2)[0, 0]
        out = (v - blur).abs()
        out[v.shape[0] // 2:] = 0.0
        return out

    member = Member("half", "histogram", [VolumeModel(raw_fn=half_blind, name="half")])
    det = ShellDetector([member], device="cpu")
    info = calibrate_detector(det, sorted(scans.iterdir()), val_dir=tmp_path / "tune", samples_per_volume=2000,
                              progress=False, flip_candidates=FLIP_CANDIDATES)
    assert 0 in member.flips and info["flips"] == {"half": list(member.flips)}
    aps = info["flips_ap"]["half"]
    assert aps["0"] > aps["none"]
    assert tuning_set(tmp_path / "tune").pixel_dir is not None
