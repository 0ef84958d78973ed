"""Exact pooled voxel AP: the streaming float16-histogram evaluator next to scikit-learn.

The data stand for ``--volumes`` prediction/label pairs of ``--side``^3 voxels (default 12 x 256^3 =
2.01e8 voxels): labels are a few random balls per volume (about 1 % positives), scores are noisy
float32 values, higher inside the balls, partly outside [0, 1]. Each volume is generated from its
own seed, so both methods see exactly the same values.

- streaming: one volume at a time -> ``ScoreHistogram.add`` (what ``mood-dpa evaluate`` does per case);
- scikit-learn: every volume read as float16 and clipped, concatenated (what the official MOOD script
  does), then ONE ``average_precision_score`` (and ``roc_auc_score`` with ``--auc``).

Each method runs in its own process. Reported: the metric time (data generation excluded), the
tracemalloc peak of the metric computation above the inputs it already holds, the inputs held, and
the process's peak RSS. Usage (needs scikit-learn; several GB of memory for the sklearn side)::

    python benchmarks/bench_evaluator.py [--volumes 12] [--side 256] [--seed 0] [--auc]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np


def make_volume(i: int, side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, i])
    shape = (side, side, side)
    labels = np.zeros(shape, bool)
    axis = np.arange(side, dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        c = rng.uniform(0.3, 0.7, 3) * side
        r = rng.uniform(0.05, 0.13) * side
        d = (axis[:, None, None] - c[0]) ** 2 + (axis[None, :, None] - c[1]) ** 2 + (axis[None, None, :] - c[2]) ** 2
        labels |= d <= r * r
    scores = rng.standard_normal(shape, dtype=np.float32)
    scores *= 0.15
    scores += 0.2
    scores += 0.25 * labels
    return scores, labels


def run_streaming(args) -> dict:
    sys.path.insert(0, "src")
    from mood_dpa.evaluation.metrics import ScoreHistogram

    hist = ScoreHistogram()
    seconds, extra = 0.0, 0
    tracemalloc.start()
    for i in range(args.volumes):
        scores, labels = make_volume(i, args.side, args.seed)
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        t = time.perf_counter()
        hist.add(scores, labels)
        seconds += time.perf_counter() - t
        extra = max(extra, tracemalloc.get_traced_memory()[1] - before)
        del scores, labels
    t = time.perf_counter()
    ap, auc = hist.ap(), hist.roc_auc()
    seconds += time.perf_counter() - t
    return {"method": "streaming", "ap": ap, "roc_auc": auc, "seconds": seconds, "extra_bytes": extra,
            "input_bytes": args.side**3 * 5, "voxels": hist.positives + hist.negatives, "positives": hist.positives}


def run_sklearn(args) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    n = args.side**3
    total = args.volumes * n
    scores = np.empty(total, np.float16)
    labels = np.empty(total, bool)
    for i in range(args.volumes):
        s, lab = make_volume(i, args.side, args.seed)
        scores[i * n : (i + 1) * n] = np.clip(s.astype(np.float16), 0, 1).ravel()
        labels[i * n : (i + 1) * n] = lab.ravel()
        del s, lab
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    ap = float(average_precision_score(labels, scores))
    seconds = time.perf_counter() - t
    auc, auc_seconds = None, None
    if args.auc:
        t = time.perf_counter()
        auc = float(roc_auc_score(labels, scores))
        auc_seconds = time.perf_counter() - t
    extra = tracemalloc.get_traced_memory()[1] - before
    return {"method": "sklearn", "ap": ap, "roc_auc": auc, "seconds": seconds, "auc_seconds": auc_seconds,
            "extra_bytes": extra, "input_bytes": total * 3, "voxels": total, "positives": int(labels.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=12)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--auc", action="store_true", help="also time sklearn's roc_auc_score")
    parser.add_argument("--mode", choices=["streaming", "sklearn"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        result = run_streaming(args) if args.mode == "streaming" else run_sklearn(args)
        result["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(result))
        return

    results = {}
    for mode in ("streaming", "sklearn"):
        cmd = [sys.executable, __file__, "--mode", mode, "--volumes", str(args.volumes), "--side", str(args.side), "--seed", str(args.seed)]
        if args.auc:
            cmd.append("--auc")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    st, sk = results["streaming"], results["sklearn"]
    mb = 1 / 2**20
    print(f"{st['voxels']:,} voxels ({args.volumes} x {args.side}^3), {st['positives']:,} positives")
    print(f"{'':34s}{'streaming':>14s}{'scikit-learn':>16s}{'ratio sk/stream':>18s}")
    print(f"{'AP':34s}{st['ap']:14.12f}{sk['ap']:16.12f}{'|diff| = %.1e' % abs(st['ap'] - sk['ap']):>18s}")
    if sk["roc_auc"] is not None:
        print(f"{'ROC-AUC':34s}{st['roc_auc']:14.12f}{sk['roc_auc']:16.12f}{'|diff| = %.1e' % abs(st['roc_auc'] - sk['roc_auc']):>18s}")
    print(f"{'metric time, s (AP; stream: AP+AUC)':34s}{st['seconds']:14.2f}{sk['seconds']:16.2f}{sk['seconds'] / st['seconds']:18.1f}")
    if sk.get("auc_seconds") is not None:
        print(f"{'sklearn roc_auc_score time, s':34s}{'-':>14s}{sk['auc_seconds']:16.2f}")
    print(f"{'peak working memory, MiB':34s}{st['extra_bytes'] * mb:14.1f}{sk['extra_bytes'] * mb:16.1f}{sk['extra_bytes'] / max(st['extra_bytes'], 1):18.1f}")
    print(f"{'inputs held, MiB':34s}{st['input_bytes'] * mb:14.1f}{sk['input_bytes'] * mb:16.1f}")
    print(f"{'process peak RSS, MiB':34s}{st['max_rss_bytes'] * mb:14.1f}{sk['max_rss_bytes'] * mb:16.1f}{sk['max_rss_bytes'] / st['max_rss_bytes']:18.1f}")


if __name__ == "__main__":
    main()
