"""The volume-histogram model file as the shell sees it: one sample-level scorer (no voxel map).

Why a :class:`~mood_dpa.scoring.sample_inferer.SampleModel` and not a VolumeModel: the detector says nothing
about WHERE, so painting its volume score on the voxels would flood the pooled pixel AP; as a
sample-level member of a detector it adds its calibrated volume score to the sample decision only
(:mod:`mood_dpa.inference.detector`).
"""

from __future__ import annotations

import os
from typing import Any

from ...scoring.sample_inferer import SampleModel
from .model import VolumeHistogramDetector


def load_scorers(path: str | os.PathLike, device: Any = None) -> list:
    """One sample-level scorer: the file's calibrated volume score (computed on the CPU whatever ``device``)."""
    det = VolumeHistogramDetector.load(path)
    return [SampleModel(det.volume_score, name=f"volume-histogram:{os.path.basename(os.fspath(path))}")]
