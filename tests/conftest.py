"""Shared test helpers: run the CLI in-process, and make tiny volumes without the phantom generator."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MOOD_DPA_QUIET", "1")


def run_cli(args: list[str]) -> int:
    """Run ``mood-dpa ARGS`` in this process and return its exit code."""
    from mood_dpa.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def blob_volume(shape=(24, 24, 24), seed: int = 0) -> np.ndarray:
    """A smooth positive blob in [0,1] with an exactly-zero background border."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    texture = gaussian_filter(rng.random(shape), 1.5)
    vol = np.where(r < 0.7, 0.4 + 0.5 * (texture - texture.min()) / np.ptp(texture), 0.0)
    return vol.astype(np.float32)


def fit_baseline(paths, out, *, calibration_volumes: int = 16, seed: int = 0, progress: bool = False, **options):
    """``mood-dpa baseline fit`` in Python: the histogram density, then its lone-file calibration; returns the model."""
    from mood_dpa.inference.tuning import calibrate_model_file
    from mood_dpa.methods.histogram.model import HistogramModel, fit_histogram

    fit_histogram(paths, out, progress=progress, **options)
    calibrate_model_file(out, list(paths), seed=seed, calibration_volumes=calibration_volumes, progress=progress)
    return HistogramModel.load(out)


def blob_scans_and_baseline(root: Path, count: int = 4, shape=(16, 16, 16)) -> tuple[Path, Path]:
    """``count`` blob volumes in ``root/scans`` and a histogram baseline fitted on them (``root/h.npz``)."""
    from mood_dpa.volumes import write_volume

    scans = root / "scans"
    scans.mkdir()
    for i in range(count):
        write_volume(scans / f"{i:05d}.nii.gz", blob_volume(shape, seed=i), np.eye(4))
    fit_baseline(sorted(scans.iterdir()), root / "h.npz", bins=32, calibration_volumes=count)
    return scans, root / "h.npz"


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def volume_folder(tmp_path: Path) -> Path:
    """Five tiny blob volumes named like MOOD (00000.nii.gz ...)."""
    from mood_dpa.volumes import write_volume

    folder = tmp_path / "vols"
    folder.mkdir()
    for i in range(5):
        write_volume(folder / f"{i:05d}.nii.gz", blob_volume(seed=i), np.eye(4))
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny convolutions on 2 shared cores run far faster single-threaded; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
