"""Volume-level intensity-histogram detector (sample level only; see :mod:`.model`)."""

from .model import (
    DETECTOR_KIND,
    FORMAT_VERSION,
    VolumeFeatures,
    VolumeHistogramDetector,
    knn_mean,
    leave_one_out_knn,
    pair_distances,
    volume_features,
    wasserstein_matrix,
)

__all__ = [
    "DETECTOR_KIND",
    "FORMAT_VERSION",
    "VolumeFeatures",
    "VolumeHistogramDetector",
    "knn_mean",
    "leave_one_out_knn",
    "pair_distances",
    "volume_features",
    "wasserstein_matrix",
]
