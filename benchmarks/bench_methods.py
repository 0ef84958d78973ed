"""Every method side by side: training items/s and inference seconds per 256^3 volume, next to the floor.

For each method at two scales (``demo``: the CPU demo's sizes; ``mood``: the MOOD-scale configs), in this
process on one device:

* **train**: one optimiser step (forward, loss, backward, Adam) on random data, timed over ``--steps``
  after a warm-up; items = slices (2-D) or patches (3-D). The floor is the step's FLOPs (counted by
  ``torch.utils.flop_counter.FlopCounterMode``) divided by the device's measured matmul rate: the fastest
  the step could run if every FLOP ran at matmul speed.
* **infer**: seconds to score one 256^3 brain volume, extrapolated from a timed sample so that a CPU
  finishes: slice methods time one batch of slices and multiply by the kept slices of all their axes on a
  256^3 phantom (the empty-slice rule of the scorer); the 3-D segmenter times one sliding window batch and
  multiplies by the windows MONAI's sliding_window_inference visits at 50 % overlap; the histogram
  baseline runs on the whole volume. The floor is the same FLOPs count over the matmul rate. The last two
  columns: the same with test-time flips (one more pass per mirrored axis).

The histogram baseline has no training step (it counts intensities) and no FLOP floor (it is memory-bound:
a bincount and a Gaussian filter). The DPA's SimCLR pre-training is measured by bench_training.py.

    python benchmarks/bench_methods.py                       # CPU, both scales (a few minutes on 2 cores)
    python benchmarks/bench_methods.py --scales demo         # the demo scale only
    python benchmarks/bench_methods.py --device cuda --bf16  # a GPU
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

#: the test-time flip sets fit/calibrate may choose besides none (mood_dpa.inference.tuning.FLIP_CANDIDATES)
FLIP_SETS = ((0,), (0, 1, 2))
#: method -> scale -> parameters. DPA: C, slice size, VGG width, axes; segmenters: U-Net features and size.
CASES = {
    "dpa": {"demo": dict(channels=16, size=64, width=0.25, axes=3), "mood": dict(channels=128, size=128, width=1.0, axes=3)},
    "segmenter2d": {"demo": dict(features=(8, 16, 32, 64, 128, 16), size=64, axes=3),
                    "mood": dict(features=(32, 32, 64, 128, 256, 32), size=256, axes=3)},
    "segmenter3d": {"demo": dict(features=(8, 16, 32, 64, 128, 16), patch=32),
                    "mood": dict(features=(32, 32, 64, 128, 256, 32), patch=160)},
    "histogram": {"demo": {}, "mood": {}},
}
BATCH = {"dpa": {"demo": 32, "mood": 8}, "segmenter2d": {"demo": 16, "mood": 4}, "segmenter3d": {"demo": 4, "mood": 1}}
VOLUME = 256


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    n = 8192 if device.type == "cuda" else 1024
    a = torch.rand(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        a @ a
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def timed(fn, device: torch.device, repeat: int) -> float:
    fn()  # warm-up
    sync(device)
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - t) / repeat


def autocast(device: torch.device, bf16: bool):
    import contextlib

    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda" else contextlib.nullcontext()


def build(method: str, p: dict, device: torch.device):
    """(net for inference: x -> map, train step: x -> loss, input shape of one item)."""
    if method == "dpa":
        from mood_dpa.models.autoencoder import ResidualAE
        from mood_dpa.models.backbones.vgg19 import VGG19Features
        from mood_dpa.models.perceptual import RelativePerceptualL1

        ae = ResidualAE("residual9", p["channels"], p["channels"], p["size"], seed=0).to(device)
        loss = RelativePerceptualL1(VGG19Features(("relu3_2",), width=p["width"], seed=0)).to(device)
        opt = torch.optim.Adam(ae.parameters(), lr=1e-4)

        def infer(x):
            with torch.no_grad():
                y = (ae(x * 2 - 1) + 1) / 2
                return loss.per_sample(x, y)

        def step(x):
            y = (ae(x * 2 - 1) + 1) / 2
            lv = loss(x, y)
            opt.zero_grad(set_to_none=True)
            lv.backward()
            opt.step()

        return infer, step, (1, p["size"], p["size"])
    from mood_dpa.methods.segmenter.model import SegmenterNet

    dim = 2 if method == "segmenter2d" else 3
    net = SegmenterNet(dim, p["features"], seed=0).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    side = p["size"] if dim == 2 else p["patch"]

    def infer(x):
        with torch.no_grad():
            return torch.sigmoid(net(x))

    def step(x):
        target = (torch.rand_like(x) > 0.9).float()
        lv = torch.nn.functional.binary_cross_entropy_with_logits(net(x), target)
        opt.zero_grad(set_to_none=True)
        lv.backward()
        opt.step()

    return infer, step, (1,) + (side,) * dim


def kept_slices(volume: np.ndarray, axes: int) -> int:
    from mood_dpa.data.slices import SliceRule, kept_indices

    return int(sum(len(kept_indices(volume, a, SliceRule())) for a in range(axes)))


def windows_3d(side: int, patch: int, overlap: float = 0.5) -> int:
    """Windows MONAI's sliding_window_inference visits per axis, cubed (its scan interval is patch * (1 - overlap))."""
    if patch >= side:
        return 1
    interval = max(int(patch * (1 - overlap)), 1)
    per_axis = math.ceil((side - patch) / interval) + 1
    return per_axis**3


def fit_histogram_on(volume: np.ndarray):
    """The histogram baseline's density fitted on one volume (its scoring cost does not depend on the fit)."""
    import tempfile
    from pathlib import Path

    from mood_dpa.methods.histogram.model import HistogramModel
    from mood_dpa.volumes import write_volume

    with tempfile.TemporaryDirectory() as tmp:
        path = write_volume(Path(tmp) / "00000.nii.gz", volume, np.eye(4))
        return HistogramModel.fit([path], progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--scales", default="demo,mood")
    ap.add_argument("--methods", default=",".join(CASES))
    ap.add_argument("--steps", type=int, default=2, help="timed training steps (after one warm-up)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.bf16 and device.type == "cuda" else torch.float32
    peak = matmul_peak(device, dtype)
    from mood_dpa.data.phantoms import make_phantom

    volume = make_phantom("brain", VOLUME, 0, 0)
    rows = []
    hist_model = None
    for scale in args.scales.split(","):
        for method in args.methods.split(","):
            p = CASES[method][scale]
            if method == "histogram":
                if hist_model is None:
                    hist_model = fit_histogram_on(volume)
                t = time.perf_counter()
                hist_model.raw_scores(volume)
                rows.append((method, scale, "-", "-", "-", time.perf_counter() - t, "-", "whole volume"))
                continue
            infer, step, shape = build(method, p, device)
            batch = BATCH[method][scale]
            x = torch.rand(batch, *shape, device=device)
            with autocast(device, args.bf16):
                step_s = timed(lambda: step(x), device, args.steps)
            train_flops = count_flops(lambda: step(x))
            xi = torch.rand(batch, *shape, device=device)
            with autocast(device, args.bf16):
                infer_s = timed(lambda: infer(xi), device, 1)
            infer_flops = count_flops(lambda: infer(xi))
            if method == "segmenter3d":
                units = windows_3d(VOLUME, p["patch"]) / batch
            else:
                units = kept_slices(volume, p["axes"]) / batch
            rows.append((method, scale, batch / step_s, batch / (train_flops / peak), 100 * (train_flops / peak) / step_s,
                         infer_s * units, infer_flops * units / peak, f"{units * batch:.0f} {'windows' if method == 'segmenter3d' else 'slices'}"))
            del infer, step, x, xi
    print(f"device {device} ({'bf16' if args.bf16 else 'fp32'}), threads {torch.get_num_threads()}, matmul peak {peak / 1e9:.1f} GFLOP/s")
    # test-time flips (ShellDetector.raw_map): each mirror image is one more whole pass of the member over the
    # volume (same kept slices / windows), so their cost is the measured pass times (1 + flips)
    print("| method | scale | train items/s | floor items/s | % of floor | infer s / 256^3 volume | floor s | work per volume "
          "| + flip (0,) s | + flips (0,1,2) s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        passes = [r[5] * (1 + len(f)) for f in FLIP_SETS] if isinstance(r[5], float) and r[0] != "histogram" else ["-", "-"]
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in (*r, *passes)]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
