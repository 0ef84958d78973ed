"""Where do a method's false positives fall? Interior, the body's border, the first/last kept slices, background.

WHY: a map-based detector that flags the edge of the body (or the slice where the scan is cut) spends its
top scores on normal anatomy. This bench says how much of that happens, per method, so a border rule
(``border:`` in the detector YAML, :mod:`mood_dpa.inference.border`) can be judged by numbers.

For each method folder, every voxel of every case is put in ONE region (first match wins):

* ``background``   the volume's intensity <= --background (what the detector masks);
* ``edge slices``  foreground voxels in the first or last --edge-slices KEPT slices of any axis (kept by
                   the training rule, :func:`mood_dpa.data.slices.kept_indices`: the slices a slice model
                   saw at their least typical);
* ``border``       foreground voxels within --width voxels (Euclidean) of the background or of the
                   volume's outside (a scan cut through the body has a border there too);
* ``interior``     every other foreground voxel.

At the threshold that flags as many voxels as are anomalous (pooled over all cases: the top-N voxels, N =
the anomalous voxel count; ties at the threshold are all flagged), the flagged NON-anomalous voxels (false
positives) are counted per region, with their share of all false positives, the region's share of all
voxels, the density ratio (FP share / voxel share; 1 = as often as chance, > 1 = over-flagged) and
``x interior`` (the region's false-positive rate over the interior's; > 1 = flagged more than inside). With
--best-dice the same at the threshold of the best pooled Dice. A second table gives, per anomaly kind, the
share of the anomalous voxels in each region (anomalies that touch the border are what a border rule
can cost). Exact counts, numpy only.

Example::

    python benchmarks/bench_border_fp.py mood_demo/predictions --set mood_demo/valset --best-dice
    python benchmarks/bench_border_fp.py mood_demo/predictions/dpa --set mood_demo/valset --width 1
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REGIONS = ("interior", "border", "edge slices", "background")


def fail(message: str) -> None:
    """One ``error: ...`` line and exit status 2 (the project's rule for bad input)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def region_map(volume: np.ndarray, width: float, edge_slices: int, background: float) -> np.ndarray:
    """int8 region code per voxel (index into :data:`REGIONS`)."""
    from scipy import ndimage as ndi

    from mood_dpa.data.slices import kept_indices

    fg = volume > background
    # the volume's outside counts as background: pad by one background voxel on every side
    dist = ndi.distance_transform_edt(np.pad(fg, 1, constant_values=False))[1:-1, 1:-1, 1:-1]
    code = np.zeros(volume.shape, np.int8)
    code[fg & (dist <= width)] = 1
    if edge_slices > 0:
        for axis in range(3):
            idx = kept_indices(volume, axis)
            for k in list(idx[:edge_slices]) + list(idx[-edge_slices:]):
                sl = [slice(None)] * 3
                sl[axis] = int(k)
                code[tuple(sl)] = np.where(fg[tuple(sl)], 2, code[tuple(sl)])
    code[~fg] = 3
    return code


def load_set(set_dir: Path, width: float, edge_slices: int, background: float):
    """(files, kinds, labels, regions) of the synthetic set, labels/regions as flat arrays per case."""
    import nibabel as nib

    manifest = set_dir / "manifest.csv"
    if not manifest.is_file():
        fail(f"{manifest}: no manifest (expected the output of `mood-dpa synth`)")
    rows = list(csv.DictReader(manifest.open()))
    files, kinds, labels, regions = [], [], [], []
    for r in rows:
        f = r["file"]
        vol = np.asarray(nib.load(str(set_dir / "toy" / f)).dataobj, np.float32)
        lab = np.asarray(nib.load(str(set_dir / "toy_label" / "pixel" / f)).dataobj) >= 1
        files.append(f)
        kinds.append(r["kind"])
        labels.append(lab.reshape(-1))
        regions.append(region_map(vol, width, edge_slices, background).reshape(-1))
    return files, kinds, labels, regions


def load_scores(pred_dir: Path, files) -> np.ndarray:
    import nibabel as nib

    out = []
    for f in files:
        p = pred_dir / f
        if not p.is_file():
            fail(f"{p}: missing prediction")
        out.append(np.asarray(nib.load(str(p)).dataobj, np.float32).reshape(-1))
    return np.concatenate(out)


def top_n_threshold(scores: np.ndarray, n: int) -> float:
    """The n-th largest score (flag = score >= it)."""
    return float(np.partition(scores, scores.size - n)[scores.size - n])


def best_dice_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, Dice) of the best pooled Dice over all thresholds (flag = score >= threshold), exactly."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    tp = np.cumsum(labels[order], dtype=np.int64)
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each distinct score
    dice = 2.0 * tp[last] / (last + 1 + labels.sum())
    k = int(np.argmax(dice))
    return float(s[last[k]]), float(dice[k])


def fp_table(scores: np.ndarray, labels: np.ndarray, regions: np.ndarray, thr: float) -> list[dict]:
    flag = scores >= thr
    fp = flag & ~labels
    n_fp = max(1, int(fp.sum()))
    rows = []
    for c, name in enumerate(REGIONS):
        in_region = regions == c
        count = int((fp & in_region).sum())
        share = count / n_fp
        vshare = float(in_region.mean())
        rows.append({"region": name, "fp": count, "share": share, "voxel_share": vshare,
                     "density": share / vshare if vshare > 0 else float("nan"),
                     "rate": count / max(1, int(in_region.sum()))})
    for r in rows:  # each region's false-positive rate against the interior's (1 = as often as inside)
        r["vs_interior"] = r["rate"] / rows[0]["rate"] if rows[0]["rate"] > 0 else float("nan")
    return rows


def print_fp(method: str, what: str, thr: float, scores, labels, regions) -> None:
    flag = scores >= thr
    print(f"\n{method} - {what}: threshold {thr:.5g}, flagged {int(flag.sum())}, true {int((flag & labels).sum())}, "
          f"false {int((flag & ~labels).sum())}")
    print(f"  {'region':12s} {'FP':>9s} {'FP share':>9s} {'voxels':>8s} {'density':>8s} {'x interior':>10s}")
    for r in fp_table(scores, labels, regions, thr):
        print(f"  {r['region']:12s} {r['fp']:9d} {r['share']:9.1%} {r['voxel_share']:8.1%} {r['density']:8.2f} {r['vs_interior']:10.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("predictions", type=Path, help="a method's prediction folder (<case>.nii.gz), or a folder of them")
    ap.add_argument("--set", type=Path, required=True, help="the synthetic set: toy/, toy_label/pixel/, manifest.csv")
    ap.add_argument("--width", type=float, default=2.0, help="border width in voxels (Euclidean; default 2)")
    ap.add_argument("--edge-slices", type=int, default=2, help="first/last kept slices per axis (default 2; 0 = none)")
    ap.add_argument("--background", type=float, default=0.0, help="intensity <= this is background (default 0)")
    ap.add_argument("--best-dice", action="store_true", help="also at the best pooled Dice threshold")
    ap.add_argument("--methods", nargs="*", default=None, help="only these method subfolders")
    args = ap.parse_args(argv)
    if not args.predictions.is_dir():
        fail(f"{args.predictions}: no such folder")
    if args.width < 0 or args.edge_slices < 0:
        fail("--width and --edge-slices must be >= 0")
    if any(args.predictions.glob("*.nii.gz")):
        methods = {args.predictions.name: args.predictions}
    else:
        methods = {p.name: p for p in sorted(args.predictions.iterdir()) if p.is_dir() and any(p.glob("*.nii.gz"))}
        if args.methods:
            methods = {k: v for k, v in methods.items() if k in args.methods}
    if not methods:
        fail(f"{args.predictions}: no predictions found")
    print(f"reading {args.set} ...", file=sys.stderr)
    files, kinds, labels, regions = load_set(args.set, args.width, args.edge_slices, args.background)
    L, R = np.concatenate(labels), np.concatenate(regions)
    n_pos = int(L.sum())
    if n_pos == 0:
        fail("the set has no anomalous voxel")
    print(f"{len(files)} cases, {n_pos} anomalous voxels; border = within {args.width:g} voxels, "
          f"edge slices = first/last {args.edge_slices} kept per axis")
    print("\nwhere the anomalous voxels lie, per kind (share of the kind's anomalous voxels):")
    print(f"  {'kind':10s} " + " ".join(f"{r:>11s}" for r in REGIONS))
    for kind in sorted(set(kinds) - {"normal"}):
        sel = [i for i, k in enumerate(kinds) if k == kind]
        lab = np.concatenate([labels[i] for i in sel])
        reg = np.concatenate([regions[i] for i in sel])[lab]
        print(f"  {kind:10s} " + " ".join(f"{(reg == c).mean() if reg.size else 0:11.1%}" for c in range(len(REGIONS))))
    for name, folder in methods.items():
        print(f"scoring {name} ...", file=sys.stderr)
        S = load_scores(folder, files)
        print_fp(name, "top-N (N = anomalous voxels)", top_n_threshold(S, n_pos), S, L, R)
        if args.best_dice:
            thr, dice = best_dice_threshold(S, L)
            print_fp(name, f"best Dice {dice:.4f}", thr, S, L, R)
    return 0


if __name__ == "__main__":
    sys.exit(main())
