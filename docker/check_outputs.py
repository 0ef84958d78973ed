"""Check a MOOD run script's output folder against its inputs, and against the host's predictions.

Used by docker/check_container.sh (host side, not part of the image):
    python check_outputs.py --task pixel|sample --input IN --output OUT [--host HOST_OUT]
Checks every output: the name (pixel: the input's name; sample: <input name>.txt), nothing else in
OUT (no hidden work folder or marker), pixel maps of the input's shape and affine, a float dtype,
finite scores in [0,1]; sample files of one finite float in [0,1]. With --host, prints the largest
absolute difference to the predictions `mood-dpa predict` wrote on the host for the same cases.
Prints one line; exits 1 with the reasons when a check fails.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def _volumes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii")))


def _sample(path: Path) -> float:
    lines = path.read_text().splitlines()
    if len(lines) != 1:
        raise ValueError(f"{path.name}: {len(lines)} lines, expected one")
    return float(lines[0])


def check(task: str, inp: Path, out: Path, host: Path | None) -> tuple[list[str], float | None, str]:
    problems: list[str] = []
    names = _volumes(inp)
    want = names if task == "pixel" else [f"{n}.txt" for n in names]
    present = sorted(p.name for p in out.iterdir())
    if present != want:
        extra, missing = sorted(set(present) - set(want)), sorted(set(want) - set(present))
        problems.append(f"OUT holds {len(present)} entries: extra {extra[:5]}, missing {missing[:5]}")
    worst, dtypes = 0.0 if host is not None else None, set()
    for name in names:
        if task == "pixel":
            if not (out / name).is_file():
                continue
            src, pred = nib.load(inp / name), nib.load(out / name)
            data = np.asanyarray(pred.dataobj)
            dtypes.add(str(data.dtype))
            if data.shape != src.shape:
                problems.append(f"{name}: shape {data.shape}, input {src.shape}")
            elif not np.allclose(pred.affine, src.affine):
                problems.append(f"{name}: affine differs from the input's")
            if data.dtype.kind != "f" or not np.isfinite(data).all() or data.min() < 0 or data.max() > 1:
                problems.append(f"{name}: dtype {data.dtype}, range [{data.min()}, {data.max()}] (want finite floats in [0,1])")
            if host is not None:
                ref = np.asanyarray(nib.load(host / name).dataobj)
                if ref.shape == data.shape:
                    worst = max(worst, float(np.abs(ref.astype(np.float64) - data.astype(np.float64)).max()))
                else:
                    problems.append(f"{name}: host prediction has shape {ref.shape}")
        else:
            path = out / f"{name}.txt"
            if not path.is_file():
                continue
            try:
                value = _sample(path)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            dtypes.add("text float")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                problems.append(f"{path.name}: {value} is not a finite score in [0,1]")
            if host is not None:
                worst = max(worst, abs(_sample(host / f"{name}.txt") - value))
    return problems, worst, ", ".join(sorted(dtypes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("pixel", "sample"), required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--host", type=Path, help="the host's predictions for the same cases and detector")
    args = parser.parse_args(argv)
    problems, worst, dtypes = check(args.task, args.input, args.output, args.host)
    n = len(_volumes(args.input))
    diff = "" if worst is None else f"; max |container - host| = {worst:.3g}"
    if problems:
        print(f"FAIL {args.task}: " + "; ".join(problems[:8]) + diff)
        return 1
    print(f"ok {args.task}: {n} outputs named like the inputs, {dtypes}, finite, in [0,1]{diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
