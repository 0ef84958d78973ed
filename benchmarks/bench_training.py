"""Training throughput of DPA and SimCLR, next to the arithmetic floor.

For each case one training step (forward, backward, Adam) is timed on synthetic slices; the FLOPs of
one step are counted from the model with ``torch.utils.flop_counter.FlopCounterMode`` and divided by
the machine's measured dense matmul rate, which gives the "floor" (the fastest the step could be if
every FLOP ran at matmul speed). Peak memory: CUDA's max allocated, or on CPU the peak RSS of the
case's own subprocess.

    python benchmarks/bench_training.py                 # CPU (brief) and, when CUDA is present, GPU bf16 + fp32
    python benchmarks/bench_training.py --device cuda   # the GPU cases only (bf16 and fp32)
    python benchmarks/bench_training.py --steps 5 --seed-batch 4

Cases: the seed's brain pixel model (C = d = 128, 128x128, relu3_2 of a full-width VGG19), the CPU demo
model (C = d = 16, 64x64, relu3_2 of a width-0.25 VGG19), and SimCLR (seed: VGG19 at 96x96 views;
demo: width 0.25 at 48x48), in images/s (two views per image).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = {
    # name: (kind, params)
    "dpa_seed_brain_pixel": ("dpa", dict(channels=128, size=128, layers=("relu3_2",), width=1.0)),
    "dpa_demo": ("dpa", dict(channels=16, size=64, layers=("relu3_2",), width=0.25)),
    "simclr_seed": ("simclr", dict(width=1.0, crop=96, hidden=2048, out=256, store=128)),
    "simclr_demo": ("simclr", dict(width=0.25, crop=48, hidden=256, out=64, store=64)),
}


def matmul_rate(device: str, dtype_name: str, n: int = 2048, seconds: float = 1.0) -> float:
    """Measured dense matmul FLOP/s."""
    import torch

    dtype = getattr(torch, dtype_name)
    if device == "cpu":
        n = 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        if device != "cpu" and reps % 20:
            continue
        _sync(device)
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _build(kind: str, p: dict, device: str, channels_last: bool):
    import torch

    from mood_dpa.models.autoencoder import ResidualAE
    from mood_dpa.models.ntxent import SimCLRNet, nt_xent
    from mood_dpa.models.perceptual import RelativePerceptualL1
    from mood_dpa.models.backbones.vgg19 import VGG19Features
    from mood_dpa.training.augment import SimCLRAugment
    from mood_dpa.training.config import AugmentConfig

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if kind == "dpa":
        ae = ResidualAE("residual9", p["channels"], p["channels"], p["size"]).to(device, memory_format=fmt)
        loss = RelativePerceptualL1(VGG19Features(p["layers"], width=p["width"])).to(device, memory_format=fmt)
        opt = torch.optim.Adam(ae.parameters(), lr=1e-4)

        def step(x):
            y = (ae(x * 2 - 1) + 1) / 2
            lv = loss(x, y)
            opt.zero_grad(set_to_none=True)
            lv.backward()
            opt.step()
            return lv

        return step, (1, p["size"])
    net = SimCLRNet(p["width"], p["hidden"], p["out"]).to(device, memory_format=fmt)
    aug = SimCLRAugment(AugmentConfig(crop_size=p["crop"])).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4, weight_decay=1e-5)

    def step(x):
        v = torch.cat([aug(x), aug(x)]).contiguous(memory_format=fmt)
        z = net(v)
        lv = nt_xent(z[: x.shape[0]], z[x.shape[0]:], 0.5)
        opt.zero_grad(set_to_none=True)
        lv.backward()
        opt.step()
        return lv

    return step, (1, p["store"])


def run_case(name: str, device: str, precision: str, batch: int, steps: int) -> dict:
    """Time one case in this process; returns a result row."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    kind, p = CASES[name]
    torch.manual_seed(0)
    gpu = device.startswith("cuda")
    step, (ch, size) = _build(kind, p, device, channels_last=gpu)
    x = torch.rand(batch, ch, size, size, device=device)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if precision == "bf16" else (lambda: _null())
    with ctx():
        step(x)  # warm-up
    _sync(device)
    counter = FlopCounterMode(display=False)
    with counter, ctx():
        step(x)
    flops_step = counter.get_total_flops()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        with ctx():
            step(x)
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    rate = matmul_rate(device, "bfloat16" if precision == "bf16" else "float32")
    per_item = flops_step / batch
    mem = torch.cuda.max_memory_allocated() / 2**20 if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "case": name,
        "device": device if not gpu else torch.cuda.get_device_name(),
        "precision": precision,
        "batch": batch,
        "items_per_s": batch / dt,
        "gflop_per_item": per_item / 1e9,
        "matmul_tflops": rate / 1e12,
        "floor_items_per_s": rate / per_item,
        "fraction_of_floor": (batch / dt) / (rate / per_item),
        "peak_mem_mib": mem,
        "threads": torch.get_num_threads(),
    }


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="cpu: the CPU cases; cuda: the GPU cases; auto: the CPU cases, then the GPU's when CUDA is present")
    ap.add_argument("--precision", default=None, choices=["fp32", "bf16"],
                    help="GPU precision (default: bf16 and fp32); the CPU cases are fp32")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per case (after one warm-up)")
    ap.add_argument("--seed-batch", type=int, default=2, help="CPU batch for the seed-sized cases")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_case(args.one, args.device, args.precision or "fp32", args.batch, args.steps)))
        return

    import torch

    plans = []
    if args.device in ("auto", "cpu"):
        for name in CASES:
            seed_sized = name.endswith("seed") or "seed_" in name
            cpu_batch = args.seed_batch if seed_sized else 16
            plans.append((name, "cpu", "fp32", cpu_batch, args.steps))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        for name in CASES:
            gpu_batch = 64 if name.startswith("dpa") else 256 if name == "simclr_seed" else 64
            for prec in ((args.precision,) if args.precision else ("bf16", "fp32")):
                plans.append((name, "cuda", prec, gpu_batch, max(args.steps, 10)))
    rows = []
    env = {**os.environ}
    for name, dev, prec, batch, steps in plans:
        cmd = [sys.executable, __file__, "--one", name, "--device", dev, "--precision", prec, "--batch", str(batch),
               "--steps", str(steps)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(f"{name} {dev} {prec}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    head = f"{'case':22} {'device':22} {'prec':5} {'batch':>5} {'items/s':>9} {'GFLOP/item':>10} {'matmul TF/s':>11} {'floor/s':>9} {'of floor':>8} {'peak MiB':>9}"
    print(head)
    for r in rows:
        print(f"{r['case']:22} {r['device'][:22]:22} {r['precision']:5} {r['batch']:5d} {r['items_per_s']:9.2f} "
              f"{r['gflop_per_item']:10.2f} {r['matmul_tflops']:11.3f} {r['floor_items_per_s']:9.2f} "
              f"{100 * r['fraction_of_floor']:7.1f}% {r['peak_mem_mib']:9.0f}")
    print("items = slices (DPA) or images with two views each (SimCLR); floor = matmul FLOP/s / FLOPs per item")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
