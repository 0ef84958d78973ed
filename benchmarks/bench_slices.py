"""Slices written per second by ``mood-dpa slices`` (read .nii.gz, empty-slice rule, antialiased resize, store).

    python benchmarks/bench_slices.py [--count 8] [--sizes 128 256] [--slice-size 128]

Writes ``--count`` brain phantoms per volume size into a temporary folder, then builds the store
for each axis and reports kept slices per second and volumes per second (reading included).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mood_dpa.data.phantoms import write_phantoms
from mood_dpa.data.slices import build_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--slice-size", type=int, default=128)
    args = parser.parse_args()
    os.environ.setdefault("MOOD_DPA_QUIET", "1")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"slice store build, {cpus} CPUs, {args.count} brain phantoms per size, slices resized to {args.slice_size}^2")
    head = f"{'volume':>7} {'axis':>4} {'kept slices':>11} {'seconds':>8} {'slices/s':>9} {'volumes/s':>9}"
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            vols = Path(tmp) / f"v{size}"
            write_phantoms("brain", args.count, size, 0, vols)
            for axis in range(3):
                start = time.perf_counter()
                store = build_store(vols, Path(tmp) / f"s{size}_{axis}", axis, args.slice_size)
                sec = time.perf_counter() - start
                print(f"{size:>5}^3 {axis:>4} {len(store):>11} {sec:>8.2f} {len(store) / sec:>9.0f} {args.count / sec:>9.2f}")


if __name__ == "__main__":
    main()
