"""The shell's border rule: its effect against a slow direct computation, old detector files unchanged,
and its choice on a tuning set (taken when it helps, left off when it hurts)."""

from itertools import product
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import blob_volume
from mood_dpa.errors import MoodError
from mood_dpa.scoring.border import BORDER_CANDIDATES, OFF, BorderRule, border_mask
from mood_dpa.scoring.calibration import Calibration
from mood_dpa.inference.detector import FOREGROUND_FLOOR, Member, ShellDetector
from mood_dpa.inference.tuning import TuningSet, calibrate_detector_file, choose_border
from mood_dpa.inference.loading import load_detector_file, write_detector_file
from mood_dpa.inference.detector_file import read_spec
from mood_dpa.scoring.volume_inferer import VolumeModel
from conftest import fit_baseline
from mood_dpa.volumes import write_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def slow_border(fg: np.ndarray, width: int) -> np.ndarray:
    """Direct: a foreground voxel is on the border when its (2w+1)^3 cube holds background or leaves the volume."""
    out = np.zeros(fg.shape, bool)
    for i, j, k in product(*(range(n) for n in fg.shape)):
        if not fg[i, j, k]:
            continue
        lo = [c - width for c in (i, j, k)]
        hi = [c + width + 1 for c in (i, j, k)]
        if min(lo) < 0 or any(h > n for h, n in zip(hi, fg.shape)):
            out[i, j, k] = True
        elif not fg[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].all():
            out[i, j, k] = True
    return out


@pytest.mark.parametrize("width", [1, 2])
def test_border_mask_equals_a_direct_loop(width):
    rng = np.random.default_rng(width)
    fg = np.zeros((11, 13, 9), bool)
    fg[1:10, 2:13, 0:8] = True  # touches the volume's edge on two faces (a cut scan)
    fg[rng.random(fg.shape) < 0.03] = False  # holes inside
    got = border_mask(torch.from_numpy(fg), width).numpy()
    np.testing.assert_array_equal(got, slow_border(fg, width))
    assert not border_mask(torch.from_numpy(fg), 0).numpy().any()


def intensity_detector(**options) -> ShellDetector:
    """One member whose raw map is the volume itself (so expected scores are computable by hand)."""
    return ShellDetector([Member("id", "test", [VolumeModel(lambda v: v.clone(), name="id")])], device="cpu", **options)


CAL = Calibration.from_dict({"kind": "quantile-log-tail", "xs": [0.0, 0.3, 0.6, 0.9], "ys": [0.0, 0.1, 0.3, 0.5],
                             "tail_scale": 0.2})


@pytest.mark.parametrize("rule", [BorderRule(1, 0.5), BorderRule(2, 0.1), BorderRule(1, 0.0)])
def test_calibrated_map_with_the_border_rule_equals_a_direct_computation(rule):
    vol = blob_volume((14, 16, 12), seed=3)
    vol[0:3, 5:9, 4:8] = 0.7  # foreground that reaches the volume's edge
    det = intensity_detector(calibration=CAL, border=rule)
    got = det.score_volume(vol)
    fg = vol > 0
    on_border = slow_border(fg, rule.width)
    expected = np.zeros(vol.shape, np.float64)
    for idx in zip(*np.nonzero(fg)):
        s = float(CAL.apply(np.array([vol[idx]], np.float64))[0])
        if on_border[idx]:
            s *= rule.factor
        expected[idx] = min(1.0, max(s, FOREGROUND_FLOOR))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    off = intensity_detector(calibration=CAL).score_volume(vol)
    assert np.array_equal(got[~on_border], off[~on_border])  # the rule touches border voxels only
    assert (got[on_border & (off > FOREGROUND_FLOOR)] < off[on_border & (off > FOREGROUND_FLOOR)]).all()


def test_trying_every_rule_on_one_volume_equals_scoring_it_once_per_rule():
    """calibrate's border search calibrates a volume once and finds each width's mask once
    (``finish`` with a shared foreground and mask dict): the same maps as the full path per rule."""
    vol = blob_volume((14, 16, 12), seed=4)
    vol[0:3, 5:9, 4:8] = 0.7
    det = intensity_detector(calibration=CAL)
    raw = det.score_raw(vol)
    scores, fg, masks = CAL.apply_torch(raw), det.foreground(vol), {}
    for rule in BORDER_CANDIDATES:
        assert torch.equal(det.finish(scores, vol, rule, fg, masks), det.calibrated(raw, vol, border=rule))
    assert sorted(masks) == [1, 2, 3]


def test_border_rule_rejects_bad_values():
    with pytest.raises(MoodError):
        BorderRule(1, 1.5)
    with pytest.raises(MoodError):
        BorderRule(-1, 0.5)
    assert not BorderRule(3, 1.0).active and not BorderRule(0, 0.2).active
    assert BORDER_CANDIDATES[0] == OFF


@pytest.fixture(scope="module")
def histogram_detector(tmp_path_factory):
    """A fitted histogram model, its detector YAML written by today's code, and a small tuning set."""
    root = tmp_path_factory.mktemp("border")
    normals = [write_volume(root / "normals" / f"{i:05d}.nii.gz", blob_volume((16, 18, 14), seed=i)) for i in range(3)]
    model = fit_baseline(normals, root / "histogram.npz", bins=32, progress=False)
    assert model is not None
    for i in range(4):
        vol = blob_volume((16, 18, 14), seed=20 + i)
        label = np.zeros(vol.shape, np.float32)
        if i % 2:
            vol[6:10, 7:11, 5:9] = 0.05  # a dark lesion inside
            label[6:10, 7:11, 5:9] = 1
        write_volume(root / "val" / "toy" / f"case_{i}.nii.gz", vol)
        write_volume(root / "val" / "toy_label" / "pixel" / f"case_{i}.nii.gz", label)
        (root / "val" / "toy_label" / "sample").mkdir(parents=True, exist_ok=True)
        (root / "val" / "toy_label" / "sample" / f"case_{i}.nii.gz.txt").write_text(f"{i % 2}\n")
    return root


def test_old_detector_file_without_the_field_scores_exactly_as_before(histogram_detector, tmp_path):
    root = histogram_detector
    path = write_detector_file(tmp_path / "det.yaml", [root / "histogram.npz"])
    calibrate_detector_file(path, root / "normals", progress=False)  # no --val: the rule stays off
    data = yaml.safe_load(path.read_text())
    assert data["border"] == {"width": 0, "factor": 1.0}
    del data["border"]  # what a file written before the rule existed looks like
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(data, sort_keys=False))
    assert read_spec(old).border.width == 0
    det_old, det_new = load_detector_file(old, device="cpu"), load_detector_file(path, device="cpu")
    assert det_old.border == OFF
    vol = blob_volume((16, 18, 14), seed=7)
    reference = det_old.calibrated(det_old.score_raw(vol), vol, border=OFF).numpy()
    np.testing.assert_array_equal(det_old.score_volume(vol), reference)
    np.testing.assert_array_equal(det_new.score_volume(vol), reference)


def test_calibrate_with_val_records_the_choice_and_round_trips(histogram_detector, tmp_path):
    root = histogram_detector
    path = write_detector_file(tmp_path / "det.yaml", [root / "histogram.npz"])
    info = calibrate_detector_file(path, root / "normals", val_dir=root / "val", progress=False)
    assert set(info["border_ap"]) == {r.describe() for r in BORDER_CANDIDATES}
    spec = read_spec(path)
    chosen = BorderRule(spec.border.width, spec.border.factor)
    assert info["border"] == chosen.describe()
    best = max(info["border_ap"].values())
    assert info["border_ap"][chosen.describe()] == best
    assert load_detector_file(path, device="cpu").border == chosen
    info = calibrate_detector_file(path, root / "normals", val_dir=root / "val", progress=False, border_candidates=(OFF,))
    assert info["border"] == "off" and read_spec(path).border.width == 0  # the caller can keep it off


def artefact_case(tmp_path: Path, lesion_on_border: bool) -> tuple[ShellDetector, TuningSet]:
    """Raw map = the volume's intensity. A cube of foreground whose outer layer is bright (1.0, a normal
    border artefact) or dim (0.2), interior voxels in [0.1, 0.5), and a lesion of raw 0.8 inside
    (the border rule should help) or 1.0 on the border layer with no artefact (it should hurt)."""
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(4):
        vol = np.zeros((14, 14, 14), np.float32)
        vol[2:12, 2:12, 2:12] = 0.2 if lesion_on_border else 1.0
        vol[3:11, 3:11, 3:11] = rng.uniform(0.1, 0.5, (8, 8, 8))
        label = np.zeros(vol.shape, np.float32)
        if i % 2:
            where = (slice(2, 5), slice(5, 8), slice(5, 8)) if lesion_on_border else (slice(6, 8), slice(6, 8), slice(6, 8))
            vol[where] = 1.0 if lesion_on_border else 0.8
            label[where] = 1
        paths.append(write_volume(tmp_path / "toy" / f"c{i}.nii.gz", vol))
        write_volume(tmp_path / "toy_label" / "pixel" / f"c{i}.nii.gz", label)
        labels.append(i % 2)
    return intensity_detector(), TuningSet(tmp_path, paths, labels, tmp_path / "toy_label" / "pixel")


def test_choice_takes_the_rule_when_it_helps(tmp_path):
    det, tuning = artefact_case(tmp_path, lesion_on_border=False)
    rule, aps = choose_border(det, tuning, (OFF, BorderRule(1, 0.1)))
    assert rule == BorderRule(1, 0.1)
    assert aps[1] > 0.99 and aps[0] < 0.5


def test_choice_leaves_the_rule_off_when_it_hurts(tmp_path):
    det, tuning = artefact_case(tmp_path, lesion_on_border=True)
    rule, aps = choose_border(det, tuning, (OFF, BorderRule(1, 0.1)))
    assert rule == OFF
    assert aps[0] > 0.99 and aps[1] < aps[0]


def test_choice_needs_pixel_labels(tmp_path):
    det, tuning = artefact_case(tmp_path, lesion_on_border=False)
    with pytest.raises(MoodError, match="pixel labels"):
        choose_border(det, TuningSet(tuning.root, tuning.paths, tuning.labels, None))
