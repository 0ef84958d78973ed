"""Sample-level ROC-AUC and AP of the volume-histogram detector per kind of change, on brain phantoms.

    python benchmarks/bench_volume_histogram.py [--size 64] [--train 32] [--test 8] [--seed 0]

Fits on ``--train`` healthy phantoms, scores ``--test`` held-out healthy phantoms and the same volumes
each changed in one way: global changes (gamma, contrast, intensity shift, inversion as another
modality's profile, noise, blur, a bias field, ghosting, a zoomed or a shifted volume) and one LOCAL
change (a bright ellipsoid of a few voxels' radius inside the brain). Each kind is scored as its own
task: the held-out normals (label 0) against their changed copies (label 1), so chance is ROC-AUC 0.5
and AP = the share of positives. Three detectors: the histogram alone (both statistic weights 0), the
histogram + foreground fraction + noise floor combined by the SUM of the median-scaled parts (format 1),
and the same parts combined by the MAX of each part's kNN distance over its leave-one-out normal
maximum (the default). Everything is seeded; timings are not reported.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy import ndimage

from mood_dpa.data.phantoms import make_phantom
from mood_dpa.evaluation.metrics import average_precision, roc_auc
from mood_dpa.methods.volume_histogram.model import VolumeHistogramDetector


def on_foreground(vol: np.ndarray, change) -> np.ndarray:
    out = vol.copy()
    fg = vol > 0
    out[fg] = np.clip(change(vol[fg]), 0.0, 1.0)
    return out


def zoom_about_centre(vol: np.ndarray, factor: float) -> np.ndarray:
    """The volume scaled by ``factor`` about its centre (linear interpolation, same grid)."""
    c = (np.array(vol.shape) - 1) / 2.0
    return ndimage.affine_transform(vol, np.eye(3) / factor, offset=c - c / factor, order=1, cval=0.0).astype(np.float32)


def shift(vol: np.ndarray, voxels: int, axis: int) -> np.ndarray:
    out = np.zeros_like(vol)
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    src[axis], dst[axis] = slice(0, vol.shape[axis] - voxels), slice(voxels, None)
    out[tuple(dst)] = vol[tuple(src)]
    return out


def local_ellipsoid(vol: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bright ellipsoid (semi-axes 3-6 % of the size) centred on a random voxel deep in the brain."""
    n = vol.shape[0]
    inner = ndimage.binary_erosion(vol > 0, iterations=max(2, n // 10))
    centre = np.argwhere(inner)[rng.integers(int(inner.sum()))]
    axes = rng.uniform(0.03, 0.06, 3) * n
    grid = np.indices(vol.shape).astype(np.float64)
    r2 = sum(((grid[i] - centre[i]) / axes[i]) ** 2 for i in range(3))
    return np.where((r2 <= 1.0) & (vol > 0), np.float32(rng.uniform(0.9, 1.0)), vol)


def changes(size: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    z = np.linspace(0.75, 1.25, size, dtype=np.float32)[None, None, :]
    return {
        "gamma 0.6": lambda v: on_foreground(v, lambda x: x**0.6),
        "gamma 1.6": lambda v: on_foreground(v, lambda x: x**1.6),
        "contrast x0.8": lambda v: on_foreground(v, lambda x: 0.5 + 0.8 * (x - 0.5)),
        "shift +0.08": lambda v: on_foreground(v, lambda x: x + 0.08),
        "inversion": lambda v: on_foreground(v, lambda x: 1.0 - x),
        "noise 0.05": lambda v: on_foreground(v, lambda x: x + rng.normal(0.0, 0.05, x.shape)),
        "blur 1.0": lambda v: np.where(v > 0, ndimage.gaussian_filter(v, 1.0), 0).astype(np.float32),
        "bias 0.75-1.25": lambda v: np.clip(np.where(v > 0, v * z, 0), 0, 1).astype(np.float32),
        "ghost 0.25": lambda v: np.clip(v + 0.25 * np.roll(v, size // 4, axis=1), 0, 1),
        "zoom 0.85": lambda v: zoom_about_centre(v, 0.85),
        "translate 6": lambda v: shift(v, 6 * size // 64, axis=1),
        "LOCAL ellipsoid": lambda v: local_ellipsoid(v, rng),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="phantom size (voxels per side)")
    parser.add_argument("--train", type=int, default=32, help="healthy training phantoms")
    parser.add_argument("--test", type=int, default=8, help="held-out healthy phantoms (each also changed once per kind)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--bins", type=int, default=128)
    args = parser.parse_args()
    if args.train < 3 or args.test < 2:
        parser.error("need --train >= 3 and --test >= 2")

    t0 = time.perf_counter()
    print(f"making {args.train} + {args.test} brain phantoms at {args.size}^3 ...", file=sys.stderr, flush=True)
    train = [make_phantom("brain", args.size, args.seed, i) for i in range(args.train)]
    held = [make_phantom("brain", args.size, args.seed, 10_000 + i) for i in range(args.test)]
    detectors = {
        "hist only": VolumeHistogramDetector.from_volumes(train, bins=args.bins, k=args.k, fraction_weight=0.0, noise_weight=0.0),
        "sum": VolumeHistogramDetector.from_volumes(train, bins=args.bins, k=args.k, combination="sum"),
        "max (default)": VolumeHistogramDetector.from_volumes(train, bins=args.bins, k=args.k),
    }
    width = {name: max(len(name) + 4, 9) for name in detectors}
    normal = {name: np.array([d.volume_score(v) for v in held]) for name, d in detectors.items()}
    labels = np.r_[np.zeros(args.test), np.ones(args.test)]
    chance_ap = 0.5
    print(f"volume-histogram, sample level: {args.size}^3 brain phantoms, fit on {args.train}, "
          f"{args.test} held-out normals vs the same {args.test} changed per kind (k={detectors['max (default)'].k}, bins={args.bins}, seed={args.seed})")
    print(f"chance: ROC-AUC 0.5, AP {chance_ap:.2f}")
    header = f"{'change':<16} |" + "".join(f" {name + ' AUC':>{width[name]}} {'AP':>5} |" for name in detectors) + f" {'median score':>12}"
    print(header)
    print("-" * len(header))
    pooled = {name: [] for name in detectors}
    for kind, change in changes(args.size, args.seed).items():
        changed = [change(v) for v in held]
        row = f"{kind:<16} |"
        for name, det in detectors.items():
            s = np.array([det.volume_score(v) for v in changed])
            scores = np.r_[normal[name], s]
            if kind != "LOCAL ellipsoid":
                pooled[name].append(s)
            row += f" {roc_auc(scores, labels):>{width[name]}.3f} {average_precision(scores, labels):>5.2f} |"
        row += f" {np.median(s):>12.3f}"
        print(row, flush=True)
    row = f"{'all global':<16} |"
    for name in detectors:
        s = np.concatenate(pooled[name])
        scores = np.r_[normal[name], s]
        y = np.r_[np.zeros(args.test), np.ones(s.size)]
        row += f" {roc_auc(scores, y):>{width[name]}.3f} {average_precision(scores, y):>5.2f} |"
    print(row + f" {'(AP chance ' + format(s.size / (s.size + args.test), '.2f') + ')':>12}")
    print(f"held-out normals, median score: {np.median(normal['max (default)']):.3f} (default); {time.perf_counter() - t0:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
