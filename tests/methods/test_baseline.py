"""The intensity-histogram baseline (its raw map through the shared shell) and the model-file loader."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blob_volume

from conftest import fit_baseline
from mood_dpa.methods.histogram.model import HistogramModel
from mood_dpa.errors import MoodError
from mood_dpa.evaluation.metrics import ScoreHistogram
from mood_dpa.inference.detector import Detector
from mood_dpa.inference.loading import load_detector
from mood_dpa.volumes import write_volume

N = 32


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    for i in range(4):
        write_volume(folder / f"{i:05d}.nii.gz", blob_volume((N, N, N), seed=10 + i))
    return sorted(folder.glob("*.nii.gz"))


@pytest.fixture(scope="module")
def model_file(train, tmp_path_factory):
    return tmp_path_factory.mktemp("model") / "histogram.npz"


@pytest.fixture(scope="module")
def detector(train, model_file):
    fit_baseline(train, model_file, seed=0, progress=False)
    return load_detector(model_file, device="cpu")


def bright_case(seed=0):
    vol = blob_volume((N, N, N), seed=seed)
    grid = np.stack(np.meshgrid(*[np.arange(N)] * 3, indexing="ij"))
    blob = ((grid - np.array([14, 17, 15]).reshape(3, 1, 1, 1)) ** 2).sum(0) <= 16
    vol[blob] = 1.0
    return vol, blob


def test_finds_a_bright_blob(detector):
    vol, blob = bright_case()
    scores = detector.score_volume(vol)
    assert isinstance(detector, Detector)
    assert scores.dtype == np.float32 and scores.shape == vol.shape
    assert np.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1
    ap = ScoreHistogram().add(scores, blob).ap()
    rate = blob.mean()
    assert ap > 10 * rate and ap > 0.5, (ap, rate)
    normal = blob_volume((N, N, N), seed=1)
    normal_scores = detector.score_volume(normal)
    assert np.median(normal_scores[normal > 0]) < 0.35
    assert detector.sample_score(vol, scores) > detector.sample_score(normal, normal_scores) + 0.1
    assert 0 <= detector.sample_score(normal, normal_scores) <= 1


def test_scores_are_spread_not_piled_up_near_one(detector):
    vol, blob = bright_case(seed=2)
    scores = detector.score_volume(vol)
    codes = np.unique(np.clip(scores.astype(np.float16), 0, 1))
    assert codes.size > 500, "float16 must keep the scores apart"
    assert (scores >= 0.999).mean() < 0.01
    assert scores[blob].mean() > 0.5 > np.mean(scores[~blob])


def test_calibration_is_the_shells_and_the_background_scores_zero(detector):
    """The private knots are gone: the shell's calibration (fitted on the training volumes) maps raw
    rarity monotonically into [0, 1), and background voxels score exactly 0 (they did not before)."""
    cal = detector.calibration
    assert cal is not None and np.all(np.diff(cal.xs) > 0)
    raw = np.linspace(0, cal.xs[-1] * 1.5, 1000)
    mapped = cal.apply(raw)
    assert np.all(np.diff(mapped) >= 0) and mapped[0] == 0 and mapped[-1] < 1
    vol, _ = bright_case()
    scores = detector.score_volume(vol)
    assert np.all(scores[vol <= 0] == 0) and scores[vol > 0].min() >= 2.0**-14


def test_save_and_load_through_load_detector(detector, model_file, tmp_path):
    model = HistogramModel.load(model_file)
    path = model.save(tmp_path / "model.npz")
    loaded = load_detector(path, device="cpu", batch_size=8)  # the baseline ignores the batch size
    vol, _ = bright_case()
    assert np.array_equal(loaded.score_volume(vol), detector.score_volume(vol))
    assert loaded.name == "histogram"


def test_fit_is_seeded(train, tmp_path):
    a = fit_baseline(train, tmp_path / "a.npz", seed=3, calibration_volumes=2, progress=False)
    b = fit_baseline(train, tmp_path / "b.npz", seed=3, calibration_volumes=2, progress=False)
    assert a.shell["calibration"] == b.shell["calibration"] and np.array_equal(a.density, b.density)


def test_load_detector_refuses_what_it_does_not_know(tmp_path):
    with pytest.raises(MoodError, match="no such model file"):
        load_detector(tmp_path / "none.npz")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(MoodError, match="unknown model file type .pt"):
        load_detector(tmp_path / "m.pt")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(MoodError, match="not a mood-dpa model"):
        load_detector(tmp_path / "plain.npz")
    np.savez(tmp_path / "other.npz", detector=np.array("forest"))
    with pytest.raises(MoodError, match="unknown detector 'forest'"):
        load_detector(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MoodError, match="not a readable"):
        load_detector(tmp_path / "junk.npz")


def test_yaml_goes_to_the_detector_file_loader(tmp_path, monkeypatch):
    calls = []

    class Fake:
        name = "fake"

    def load_detector_file(path, device, batch_size=None):
        calls.append((path, device, batch_size))
        return Fake()

    import mood_dpa.inference.loading as real

    monkeypatch.setattr(real, "load_detector_file", load_detector_file)
    cfg = tmp_path / "ens.yml"
    cfg.write_text("models: []\n")
    det = load_detector(cfg, device="cpu", batch_size=16)
    assert isinstance(det, Fake)
    load_detector(cfg)
    assert calls == [(cfg, "cpu", 16), (cfg, None, None)]
    with pytest.raises(MoodError, match="batch-size"):
        load_detector(cfg, batch_size=0)


def test_cli_baseline_fit(train, tmp_path, cli):
    folder = train[0].parent
    assert cli(["baseline", "fit", "-i", folder, "-o", tmp_path / "b.npz"]) == 0
    det = load_detector(tmp_path / "b.npz")
    assert det.name == "histogram" and det.calibration is not None and [m.method for m in det.members] == ["histogram"]
    assert cli(["baseline", "fit", "-i", folder, "-o", tmp_path / "b.bin"]) == 2
    assert cli(["baseline", "fit", "-i", tmp_path / "nothing", "-o", tmp_path / "c.npz"]) == 2
