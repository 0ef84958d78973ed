"""What the raw-map memo saves: fit's detectors rebuilt and the demo's test set predicted, without and with it.

Takes a finished demo (``mood-dpa demo -o DEMO``: its fit folder's models, validation fold, tuning set and
standardiser, and its test set ``DEMO/valset``) and does what ``fit`` and the demo do after training, twice:
build each method's detector and the cross-method one (calibrate on the validation fold, choose the rules on
the tuning set) and predict the test set with each, first with no memo at all (as before it existed: each
tuning choice scores the tuning set again), then inside one (:func:`mood_dpa.inference.map_cache.raw_map_cache`). Prints, per step, the seconds and the number of member
scoring passes (calls of the shell's one raw scorer: machine-independent) and checks that both ways wrote the
same detector files and the same predictions, bit for bit.

    python benchmarks/bench_map_cache.py --demo /tmp/d8 -o /tmp/bench_cache
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--demo", type=Path, required=True, help="a finished demo's output folder")
    ap.add_argument("-o", "--out", type=Path, required=True, help="work folder (created; must not exist)")
    ap.add_argument("--limit", type=int, default=None, help="predict only the first N test cases (default: all)")
    args = ap.parse_args(argv)
    if not (args.demo / "fit" / "fit_state.json").is_file() or not (args.demo / "valset" / "toy").is_dir():
        ap.error(f"{args.demo}: not a finished demo (no fit/fit_state.json or valset/toy)")
    if args.out.exists():
        ap.error(f"{args.out}: exists; give a new folder")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import mood_dpa.inference.detector as shell
    from mood_dpa.data.folds import read_folds
    from mood_dpa.fit.detectors import build_detector
    from mood_dpa.inference.detector_file import read_spec
    from mood_dpa.inference.loading import load_detector
    from mood_dpa.inference.map_cache import raw_map_cache
    from mood_dpa.inference.predict import predict_folder
    from mood_dpa.scoring.standardise import Standardiser
    from mood_dpa.volumes import list_volumes, read_volume, volume_id

    fit = args.demo / "fit"
    state = json.loads((fit / "fit_state.json").read_text())
    vols = list_volumes(state["options"]["data"])
    fold = read_folds(fit / "folds.csv")
    val = [p for p in vols if fold[volume_id(p)] == 0]
    std_file = fit / "standardise.json"
    standardiser = Standardiser.from_dict(json.loads(std_file.read_text())) if std_file.is_file() else None
    members: dict[str, list[str]] = {}
    for det in sorted((fit / "detectors").glob("*.yaml")):
        for m in read_spec(det).members:
            members[m.name] = [str((det.parent / e.path).resolve()) for e in m.models]
    ensemble: dict[str, list[str]] = {}
    for m in read_spec(fit / "detector.yaml").members:  # the cross-method detector's members (the sample-level too)
        ensemble[m.name] = [str((fit / e.path).resolve()) for e in m.models]
    dets = {m: {m: files} for m, files in members.items()}
    dets["ensemble"] = ensemble
    test = args.demo / "valset" / "toy"
    if args.limit:
        sub = args.out / "test_subset"
        sub.mkdir(parents=True)
        for p in list_volumes(test)[: args.limit]:
            (sub / p.name).symlink_to(p.resolve())
        test = sub

    calls = {"n": 0}
    real = shell.score_raw

    def counted(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    shell.score_raw = counted
    memo = shell.active_cache
    rows: dict[str, dict[str, tuple[float, int]]] = {}
    for mode in ("off", "on"):
        folder = args.out / mode
        shell.active_cache = memo if mode == "on" else (lambda: None)  # off: as before the memo (calibrate opens one too)
        with (raw_map_cache() if mode == "on" else contextlib.nullcontext()):
            for name, mem in dets.items():
                for step, fn in (("build", lambda: build_detector(folder / f"{name}.yaml", mem, val, fit / "tuning", "cpu",
                                                                  int(state["options"]["seed"]), False, standardiser)),
                                 ("predict", lambda: predict_folder(load_detector(folder / f"{name}.yaml", "cpu"), test,
                                                                    folder / f"pred_{name}", "both", progress=False))):
                    n0, t0 = calls["n"], time.perf_counter()
                    fn()
                    rows.setdefault(f"{step} {name}", {})[mode] = (time.perf_counter() - t0, calls["n"] - n0)
                    print(f"  {mode:3s} {step} {name}: {rows[f'{step} {name}'][mode][0]:.1f} s, "
                          f"{rows[f'{step} {name}'][mode][1]} scoring passes", flush=True)
    shell.score_raw, shell.active_cache = real, memo

    same = True
    for name in dets:
        same &= read_spec(args.out / "off" / f"{name}.yaml").model_dump(exclude={"info"}) == \
            read_spec(args.out / "on" / f"{name}.yaml").model_dump(exclude={"info"})
        for p in sorted((args.out / "off" / f"pred_{name}").glob("*.nii.gz")):
            a, b = read_volume(p).data, read_volume(args.out / "on" / f"pred_{name}" / p.name).data
            same &= bool(np.array_equal(a, b))
    n_test = len(list_volumes(test))
    print(f"\nraw-map memo on {args.demo} ({n_test} test cases, {len(val)} validation volumes; "
          f"{'identical' if same else 'DIFFERENT'} detector files and predictions)")
    print("| step | no memo: s / passes | memo: s / passes | time ratio |")
    print("|---|---|---|---|")
    tot = {"off": [0.0, 0], "on": [0.0, 0]}
    for step, by in rows.items():
        for mode in ("off", "on"):
            tot[mode][0] += by[mode][0]
            tot[mode][1] += by[mode][1]
        print(f"| {step} | {by['off'][0]:.1f} / {by['off'][1]} | {by['on'][0]:.1f} / {by['on'][1]} | "
              f"{by['on'][0] / max(by['off'][0], 1e-9):.2f} |")
    print(f"| all | {tot['off'][0]:.1f} / {tot['off'][1]} | {tot['on'][0]:.1f} / {tot['on'][1]} | "
          f"{tot['on'][0] / max(tot['off'][0], 1e-9):.2f} |")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
