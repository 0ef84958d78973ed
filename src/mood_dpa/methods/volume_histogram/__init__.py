"""Volume-level intensity-histogram detector (sample level only; see :mod:`.model`); shell scorer in :mod:`.scorer`."""

from .model import (
    COMBINATIONS,
    DETECTOR_KIND,
    FORMAT_VERSION,
    VolumeFeatures,
    VolumeHistogramDetector,
    combined_knn,
    knn_mean,
    leave_one_out_knn,
    pair_distances,
    part_distances,
    volume_features,
    wasserstein_matrix,
)

__all__ = [
    "COMBINATIONS",
    "DETECTOR_KIND",
    "FORMAT_VERSION",
    "VolumeFeatures",
    "VolumeHistogramDetector",
    "combined_knn",
    "knn_mean",
    "leave_one_out_knn",
    "pair_distances",
    "part_distances",
    "volume_features",
    "wasserstein_matrix",
]
