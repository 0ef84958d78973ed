"""A small labelled set with two methods' predictions, for the case-browser tests (a few seconds to make).

phantoms (32^3) -> synth (normal + two local kinds per subject) -> predictions of the histogram baseline
(fitted on other phantoms) and of a stand-in detector whose map is the intensity itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 32
KINDS = ["ellipsoid", "uniform"]


class Brightness:
    """A stand-in detector: voxel score = intensity (scores in [0, 1]), sample score = its 99.9th percentile."""

    name = "brightness"

    def score_volume(self, data):
        return np.clip(data, 0.0, 1.0).astype(np.float32)

    def sample_score(self, data, voxel_scores):
        return float(np.quantile(voxel_scores, 0.999))


def make_viewer_set(root: Path) -> dict:
    """Write ``root/{train,test,valset,pred_histogram,pred_brightness}``; returns their paths."""
    from mood_dpa.data.phantoms import write_phantoms
    from mood_dpa.data.synth.layout import make_synthetic_set
    from mood_dpa.inference.loading import load_detector
    from mood_dpa.inference.predict import predict_folder
    from mood_dpa.methods.histogram.model import fit_histogram

    train = write_phantoms("brain", 3, SIZE, 0, root / "train")
    test = write_phantoms("brain", 2, SIZE, 0, root / "test", start=3)
    make_synthetic_set(test, root / "valset", KINDS, (1, 1), seed=1, progress=False)
    fit_histogram(train, root / "histogram.npz", seed=0, progress=False)
    toy = root / "valset" / "toy"
    for name, det in (("histogram", load_detector(root / "histogram.npz", device="cpu")), ("brightness", Brightness())):
        summary = predict_folder(det, toy, root / f"pred_{name}", "both", progress=False, on_error=print)
        assert summary.ok
    return {"toy": toy, "valset": root / "valset", "histogram": root / "pred_histogram",
            "brightness": root / "pred_brightness"}
