"""Seconds per phantom (brain and abdomen) at 64^3, 128^3 and 256^3.

    python benchmarks/bench_phantoms.py [--sizes 64 128 256] [--repeats 3] [--write]

"make" is the in-memory generation (``make_phantom``), best of ``--repeats`` runs after one
warm-up; with ``--write`` a second column adds writing the .nii.gz (gzip level 1) once.
Timings depend on the machine and its load: report the CPU count with the numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mood_dpa.data.phantoms import make_phantom, phantom_affine
from mood_dpa.volumes import write_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--kinds", nargs="+", default=["brain", "abdom"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="also time writing the .nii.gz once")
    args = parser.parse_args()

    make_phantom("brain", 32, 0, 0)  # imports and first-call set-up out of the timings
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"phantom generation, {cpus} CPUs available, best of {args.repeats} (subjects 0..{args.repeats - 1})")
    header = f"{'kind':<6} {'size':>5} {'make s/phantom':>15}" + (f" {'write .nii.gz s':>16}" if args.write else "")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            for size in args.sizes:
                times = []
                vol = None
                for i in range(args.repeats):
                    t0 = time.perf_counter()
                    vol = make_phantom(kind, size, 0, i)
                    times.append(time.perf_counter() - t0)
                line = f"{kind:<6} {size:>5} {min(times):>15.2f}"
                if args.write:
                    t0 = time.perf_counter()
                    write_volume(Path(tmp) / f"{kind}_{size}.nii.gz", vol, affine=phantom_affine(size), compresslevel=1)
                    line += f" {time.perf_counter() - t0:>16.2f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
