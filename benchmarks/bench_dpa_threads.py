"""How to use a small CPU's cores for the demo's DPA training: one process with every thread, or one
one-thread process per axis side by side?

Trains the demo DPA (C, batch 32, 64x64, the demo SimCLR VGG19) for a few hundred steps on the slice
stores of a ``bench_quality.py`` work folder, three ways: one process with 1 thread, one with
``--threads`` threads, and ``--threads`` one-thread processes at once (one axis each); prints steps/s.

    python benchmarks/bench_quality.py -o /tmp/bq --widths 16 --budgets 150   # makes the stores (once)
    python benchmarks/bench_dpa_threads.py --setup /tmp/bq --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train_once(setup: Path, axis: int, width: int, threads: int, steps: int, run_dir: Path) -> float:
    """Train one axis for ``steps`` steps in this process; returns the seconds it took."""
    from bench_quality import demo_dpa_config  # this folder's script: the same config its sweep trains

    from mood_dpa.methods.dpa.train import train_dpa
    from mood_dpa.runtime import set_threads

    set_threads(threads)
    env = {"stores": {axis: setup / "setup" / "slices" / f"axis_{axis}"}, "folds": setup / "setup" / "folds.csv",
           "vgg": setup / "setup" / "runs" / "simclr" / "vgg19_simclr.pt"}
    cfg = demo_dpa_config(env, axis, width, run_dir, seed=0, device="cpu", threads=threads,
                          extra=["model.size=64", "optim.batch_size=32", f"optim.max_steps={steps}",
                                 f"optim.val_every={steps}"])
    start = time.perf_counter()
    train_dpa(cfg)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup", type=Path, required=True, help="a bench_quality.py work folder (its setup/ is read)")
    ap.add_argument("--steps", type=int, default=200, help="training steps per run")
    ap.add_argument("--width", type=int, default=16, help="autoencoder width C")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores to use (default: all)")
    ap.add_argument("--one", nargs=2, type=int, metavar=("AXIS", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not (args.setup / "setup" / "slices" / "axis_0").is_dir():
        ap.error(f"{args.setup}: no bench_quality.py setup/ (run bench_quality.py -o {args.setup} first)")
    os.environ.setdefault("MOOD_DPA_QUIET", "1")
    with tempfile.TemporaryDirectory() as tmp:
        if args.one:
            axis, threads = args.one
            print(json.dumps(train_once(args.setup, axis, args.width, threads, args.steps, Path(tmp) / "run")))
            return 0

        def launch(axis: int, threads: int) -> subprocess.Popen:
            cmd = [sys.executable, __file__, "--setup", str(args.setup), "--steps", str(args.steps), "--width",
                   str(args.width), "--one", str(axis), str(threads)]
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

        def seconds(proc: subprocess.Popen) -> float:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"error: a training run failed (exit {proc.returncode})")
            return float(out.strip().splitlines()[-1])

        rows = [("1 process, 1 thread", [seconds(launch(0, 1))])]
        rows.append((f"1 process, {args.threads} threads", [seconds(launch(0, args.threads))]))
        procs = [launch(a % 3, 1) for a in range(args.threads)]
        rows.append((f"{args.threads} one-thread processes side by side", [seconds(p) for p in procs]))
    print(f"demo DPA C={args.width}, batch 32, 64x64, {args.steps} steps per run ({os.cpu_count()} CPU cores)")
    print("| layout | seconds per run | steps/s in all |\n|---|---|---|")
    for name, secs in rows:
        print(f"| {name} | {', '.join(f'{s:.1f}' for s in secs)} | {sum(args.steps / s for s in secs):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
