"""A detector with a standardiser (fit --standardise): every member scores the volume after its foreground
intensities are mapped onto the training landmarks; the detector file keeps the landmarks."""

from __future__ import annotations

import numpy as np
import torch

from conftest import blob_volume
from mood_dpa.inference.detector import Member, ShellDetector
from mood_dpa.scoring.standardise import Standardiser
from mood_dpa.scoring.volume_inferer import VolumeModel


def _identity() -> VolumeModel:
    return VolumeModel(raw_fn=lambda v: v.float().clone(), name="identity")  # the raw map IS what the member saw


def test_members_score_the_standardised_volume_and_a_gamma_change_is_undone():
    train = [blob_volume((16, 16, 16), seed=s) for s in range(4)]
    std = Standardiser.fit(train)
    vol = blob_volume((16, 16, 16), seed=7)
    shifted = np.where(vol > 0, np.clip(0.85 * vol ** 1.5, 1e-3, 1.0), 0.0).astype(np.float32)  # another scanner
    member = Member("id", "histogram", [_identity()])
    plain, standardised = ShellDetector([member], device="cpu"), ShellDetector([member], device="cpu", standardiser=std)
    np.testing.assert_allclose(standardised.member_raw(vol)[0].numpy(), std.apply(vol), atol=1e-7)
    np.testing.assert_allclose(standardised.member_raw(torch.from_numpy(vol))[0].numpy(), std.apply(vol), atol=1e-7)
    gap_plain = np.abs(plain.member_raw(vol)[0].numpy() - plain.member_raw(shifted)[0].numpy()).max()
    gap_std = np.abs(standardised.member_raw(vol)[0].numpy() - standardised.member_raw(shifted)[0].numpy()).max()
    assert gap_plain > 0.1 and gap_std < gap_plain / 4, (gap_plain, gap_std)
    # the background mask is the volume's own either way
    assert torch.equal(standardised.foreground(vol), plain.foreground(vol))


def test_the_detector_file_keeps_the_landmarks(tmp_path):
    from conftest import blob_scans_and_baseline
    from mood_dpa.inference.detector_file import read_spec
    from mood_dpa.inference.loading import load_detector
    from mood_dpa.inference.tuning import fit_detector_file

    scans, _ = blob_scans_and_baseline(tmp_path)
    std = Standardiser.fit(blob_volume((16, 16, 16), seed=s) for s in range(4))
    det_file = tmp_path / "det.yaml"
    fit_detector_file(det_file, [tmp_path / "h.npz"], scans, samples_per_volume=500, progress=False, standardiser=std)
    assert read_spec(det_file).standardise == std
    det = load_detector(det_file, device="cpu")
    assert det.standardiser == std
    vol = blob_volume((16, 16, 16), seed=9)
    plain = fit_detector_file(tmp_path / "plain.yaml", [tmp_path / "h.npz"], scans, samples_per_volume=500, progress=False)
    assert read_spec(tmp_path / "plain.yaml").standardise is None
    assert not np.allclose(det.member_raw(vol)[0].numpy(), plain.member_raw(vol)[0].numpy())


def test_sample_level_members_see_the_volume_as_it_is():
    """A global gamma is what a sample-level member (the volume histogram) must flag: standardisation, which
    undoes it for the voxel maps, is not applied to what sample-level members score."""
    from mood_dpa.scoring.sample_inferer import SampleModel

    seen = []
    sample = SampleModel(score_fn=lambda v: seen.append(np.array(v, np.float32)) or 0.5, name="probe")
    std = Standardiser.fit([blob_volume((16, 16, 16), seed=s) for s in range(3)])
    det = ShellDetector([Member("id", "histogram", [_identity()]), Member("probe", "volume-histogram", [sample])],
                        device="cpu", standardiser=std)
    vol = blob_volume((16, 16, 16), seed=5)
    det.member_sample_scores(vol)
    np.testing.assert_array_equal(seen[0], vol)
    np.testing.assert_allclose(det.member_raw(vol)[0].numpy(), std.apply(vol), atol=1e-7)
