"""Seconds per brain volume for the seed's 3-axis pixel ensemble, split into read / compute / write.

The ensemble is the seed's brain/pixel model set (SEED_SPEC.md): three residual9 autoencoders with
C = d = 128 at 128x128, relative perceptual maps on VGG19 relu3_2, one per axis, the per-volume
normaliser. Weights are random (seeded): timing does not depend on them.

Rows of the table, all measured in this process on the same volume:

* ``mood-dpa``   : :class:`mood_dpa.inference.detector.ShellDetector` (kept slices resized on the
  device in batches, maps placed by slice index, axes combined on the device, calibrated).
* ``seed-style`` : the seed's pipeline shape: slice by slice, each slice resized on the CPU and run
  through the model alone (batch 1, fp32), maps up-sampled to 128^2, stacked to a 128^3 grid,
  averaged over axes, resized to the input's shape (trilinear, on the CPU), divided by 100.
* ``floor``      : FLOPs of the kept slices (counted with torch's FlopCounterMode on the models'
  forward: AE + VGG on x and on its reconstruction) / the measured matmul peak of the device.

Sizes: the real case is 256^3 (``--size 256``, 768 slices, about 27 TFLOP). On a small CPU that takes
many minutes per pipeline, so ``--size`` (e.g. 64) shrinks the phantom and ``--slice-step k`` scores
only every k-th kept slice of each axis (the benchmark wraps the scorer's slice rule; the seed-style
loop takes the same slices). The model cost per slice does not depend on the volume size (every slice
is resized to 128^2), so the table also extrapolates compute to a 256^3 volume with all its kept
slices (x kept-slice ratio), and read/write by voxel count; both are labelled as extrapolations.

    python benchmarks/bench_inference.py --size 64 --slice-step 8          # CPU, about a minute
    python benchmarks/bench_inference.py --device cuda --size 256 --bf16    # a GPU, the real case
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def build_models(device: torch.device, channels: int, layer: str):
    from mood_dpa.data.slices import SliceRule
    from mood_dpa.models.autoencoder import ResidualAE
    from mood_dpa.methods.dpa.model import DPAModel
    from mood_dpa.models.perceptual import RelativePerceptualL1
    from mood_dpa.models.backbones.vgg19 import VGG19Features

    models = []
    for axis in range(3):
        ae = ResidualAE("residual9", channels, channels, 128, seed=axis)
        loss = RelativePerceptualL1(VGG19Features((layer,), seed=100 + axis))
        meta = {"axis": axis, "size": 128, "rule": SliceRule().to_dict(), "normaliser": "volume", "weights": [1.0], "layers": [layer],
                "arch": ae.config(), "vgg_width": 1.0, "name": f"axis{axis}"}
        models.append(DPAModel(ae, loss, meta).to(device))
    return models


def flops_per_slice(model, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(2, 1, 128, 128, device=device)
    with FlopCounterMode(display=False) as counter:
        model.pixel_maps(x)
    return counter.get_total_flops() / 2


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Best FLOP/s of a square matmul (2048 on CPU, 8192 on CUDA)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.rand(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        a @ a
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def subsample_rule(step: int):
    """Make the scorer keep only every ``step``-th kept slice (benchmark-only, documented above)."""
    import mood_dpa.scoring.slice_inferer as scorer
    from mood_dpa.data.slices import kept_indices

    def kept(volume, axis, rule):
        return kept_indices(volume, axis, rule)[::step]

    scorer.kept_indices = kept
    return kept


def seed_style(vol: np.ndarray, models, kept_fn, device: torch.device) -> np.ndarray:
    """Slice by slice, CPU resizing, fp32, 128^3 grid, mean over axes, trilinear back, /100."""
    grids = []
    for m in models:
        stack = np.moveaxis(vol, m.axis, 0)
        idx = kept_fn(vol, m.axis, m.rule)
        nums, dens = [], []
        for i in idx:
            x = torch.from_numpy(np.ascontiguousarray(stack[i]))[None, None]
            x = F.interpolate(x, size=(128, 128), mode="bilinear", antialias=True, align_corners=False)  # on the CPU
            out = m.pixel_maps(x.clamp(0, 1).to(device))
            nums.append(out.numerators.cpu())
            dens.append(out.denominators.cpu())
        grid = torch.zeros(stack.shape[0], 128, 128)
        if nums:
            maps = m.relative_maps(torch.cat(nums), torch.cat(dens).mean(0))
            grid[torch.as_tensor(idx)] = maps[:, 0]
        grid = F.interpolate(grid[None, None], size=(128, 128, 128), mode="trilinear", align_corners=False)[0, 0]
        grids.append(grid.movedim(0, m.axis))
    avg = torch.stack(grids).mean(0)
    out = F.interpolate(avg[None, None], size=vol.shape, mode="trilinear", align_corners=False)[0, 0] / 100
    return out.clamp(0, 1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="phantom side (256 = the MOOD brain size)")
    ap.add_argument("--slice-step", type=int, default=1, help="score every k-th kept slice only (then extrapolate)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--batch-size", type=int, default=None, help="slices per forward (default: the ensemble's automatic choice; 1 on CPU at C=128, 128 on CUDA)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA (mood-dpa row only)")
    ap.add_argument("--channels", type=int, default=128, help="autoencoder width C = d (seed: 128)")
    ap.add_argument("--layer", default="relu3_2", help="VGG layer (seed brain/pixel: relu3_2)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per pipeline (interleaved); the fastest is reported")
    ap.add_argument("--skip-seed", action="store_true", help="do not run the seed-style pipeline")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args()

    from mood_dpa.data.phantoms import make_phantom, phantom_affine
    from mood_dpa.data.slices import kept_indices
    from mood_dpa.inference.detector import Member, ShellDetector
    from mood_dpa.methods.dpa.scorer import axis_model
    from mood_dpa.volumes import read_volume, write_volume

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    models = build_models(device, args.channels, args.layer)
    kept_fn = subsample_rule(args.slice_step) if args.slice_step > 1 else kept_indices
    scorers = [axis_model(m.to(device).eval(), 1.0, f"axis{k}") for k, m in enumerate(models)]
    det = ShellDetector([Member("dpa", "dpa", scorers)], batch_size=args.batch_size, bf16=args.bf16, device=device)
    bs = det.batch_size

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "00000.nii.gz"
        vol = make_phantom("brain", args.size, seed=0, index=0)
        write_volume(src, vol, phantom_affine(args.size))
        kept = [len(kept_fn(vol, a, models[a].rule)) for a in range(3)]
        all_kept = [len(kept_indices(vol, a, models[a].rule)) for a in range(3)]
        fps = flops_per_slice(models[0], device)
        peak = matmul_peak(device, torch.bfloat16 if (args.bf16 and device.type == "cuda") else torch.float32)

        rows = {}
        # warm-up (allocator, oneDNN / cuDNN plans) on a small slab, not timed
        det.score_volume(vol[: max(8, args.size // 8)])

        def once(run) -> tuple[float, float, float]:
            t0 = time.perf_counter()
            v = read_volume(src)
            t1 = time.perf_counter()
            with torch.no_grad():
                scores = run(v.data)
            sync(device)
            t2 = time.perf_counter()
            write_volume(Path(tmp) / "pred.nii.gz", scores, v.affine, v.header)
            t3 = time.perf_counter()
            return (t1 - t0, t2 - t1, t3 - t2)

        pipelines = {"mood-dpa": det.score_volume}
        if not args.skip_seed:
            pipelines["seed-style"] = lambda data: seed_style(data, models, kept_fn, device)
        # interleaved repeats (A B A B ...), fastest of each kept: fair on a machine shared with others
        for _ in range(max(1, args.repeat)):
            for name, run in pipelines.items():
                r = once(run)
                if name not in rows or sum(r) < sum(rows[name]):
                    rows[name] = r

    n_run = sum(kept)
    floor = n_run * fps / peak
    # extrapolation to 256^3: compute scales with the number of kept slices (model cost per slice is
    # fixed at 128^2); read/write with the voxel count. Kept-slice share taken from this phantom.
    slices_256 = sum(all_kept) / (3 * args.size) * 3 * 256
    c_scale = slices_256 / max(n_run, 1)
    io_scale = (256 / args.size) ** 3

    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{threads} CPU threads'}), "
          f"torch {torch.__version__}, batch {bs}, bf16 {args.bf16 and device.type == 'cuda'}")
    print(f"ensemble: 3 axes x residual9 C=d={args.channels} @128^2, VGG19 {args.layer}; random weights")
    print(f"volume {args.size}^3 brain phantom; kept slices per axis {all_kept}, scored {kept} (slice step {args.slice_step})")
    print(f"FLOPs per slice {fps / 1e9:.2f} GFLOP; scored {n_run * fps / 1e12:.3f} TFLOP; a 256^3 volume "
          f"(~{slices_256:.0f} kept slices) {slices_256 * fps / 1e12:.1f} TFLOP (all 768 slices: {768 * fps / 1e12:.1f})")
    print(f"measured matmul peak {peak / 1e9:.1f} GFLOP/s")
    print()
    hdr = f"{'pipeline':<12} {'read s':>8} {'compute s':>10} {'write s':>8} {'total s':>8} | {'256^3 est. total s':>19} {'x floor':>8}"
    print(hdr)
    print("-" * len(hdr))
    out = {"device": str(device), "size": args.size, "slice_step": args.slice_step, "kept": kept, "all_kept": all_kept,
           "gflop_per_slice": fps / 1e9, "peak_gflops": peak / 1e9, "floor_s": floor, "rows": {}}
    for name, (r, c, w) in rows.items():
        est = r * io_scale + c * c_scale + w * io_scale
        print(f"{name:<12} {r:8.3f} {c:10.2f} {w:8.3f} {r + c + w:8.2f} | {est:19.1f} {c / floor:8.2f}")
        out["rows"][name] = {"read": r, "compute": c, "write": w, "est_256": est}
    print(f"{'floor':<12} {'':8} {floor:10.2f} {'':8} {floor:8.2f} | {floor * c_scale:19.1f} {1.0:8.2f}")
    print("\n'256^3 est.' extrapolates compute by kept-slice count and read/write by voxel count; "
          "'x floor' = measured compute / arithmetic floor of the scored slices.")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
