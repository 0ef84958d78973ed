"""Shell options against the shift benchmark, on models already trained: what intensity standardisation, a
tuning set in more than one look, and an extra member do to every detector, without training anything again.

Takes a finished ``bench_shift.py`` run (its population's fit folder: models, folds, validation volumes, and
its test sets in the train style and the shifted styles) and rebuilds each method's detector and the
cross-method detector under each variant, calibrated on the same validation volumes and tuned on the
family tuning set (or on the same set with a share of its volumes in another look), then predicts and
evaluates every test set with the exact MOOD evaluator. The plain variant reproduces the run's own
detectors (the same code path as ``fit``), so every other row reads against it.

    python benchmarks/bench_shell_options.py --run /tmp/bs -o /tmp/bs_options --population 5
    python benchmarks/bench_shell_options.py --run /tmp/bs -o /tmp/bs_options --population 5 \\
        --extra segmenter2d_app=/tmp/bs_app/pop05/fit/runs/segmenter2d/model.pt --variants plain looks

Variants: ``plain`` (as fit builds them), ``standardise`` (fit --standardise: landmarks of the training
volumes), ``looks`` (fit --tuning-appearance 0.5), ``standardise+looks``. ``--extra NAME=MODEL`` adds a
member to the cross-method detector of every variant (e.g. a segmenter trained with appearance
augmentation beside the plain one). Prints a table and writes ``options.json``; finished steps are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_shift import _f, _times, score  # noqa: E402  (the shift benchmark's predict-and-evaluate step)

VARIANTS = ("plain", "standardise", "looks", "standardise+looks")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--run", type=Path, required=True, help="a bench_shift.py output folder")
    ap.add_argument("-o", "--out", type=Path, required=True, help="work folder (created; reused by a rerun)")
    ap.add_argument("--population", type=int, default=5, help="which population's models (default 5)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=MODEL", help="another member of the cross-method detector")
    ap.add_argument("--looks", type=float, default=0.5, help="share of tuning volumes in another look for the looks variants")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    fit = args.run / f"pop{args.population:02d}" / "fit"
    if not (fit / "fit_state.json").is_file():
        ap.error(f"{fit}: no finished fit of population {args.population} in this run")
    for item in args.extra:
        name, _, model = item.partition("=")
        if not name or not Path(model).is_file():
            ap.error(f"--extra {item!r}: expected NAME=MODEL with an existing model file")
    return args


def members_of(fit: Path) -> dict[str, list[str]]:
    """The fitted run's members (method -> model files), read from its detector files."""
    from mood_dpa.inference.detector_file import read_spec

    out: dict[str, list[str]] = {}
    for det in sorted((fit / "detectors").glob("*.yaml")):
        for m in read_spec(det).members:
            out[m.name] = [str((det.parent / e.path).resolve()) for e in m.models]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from mood_dpa.data.folds import read_folds
    from mood_dpa.fit.detectors import build_detector
    from mood_dpa.fit.tuning_set import make_family_tuning_set
    from mood_dpa.scoring.standardise import Standardiser
    from mood_dpa.volumes import list_volumes, read_volume, volume_id

    fit = args.run / f"pop{args.population:02d}" / "fit"
    state = json.loads((fit / "fit_state.json").read_text())
    vols = list_volumes(state["options"]["data"])
    fold = read_folds(fit / "folds.csv")
    val = [p for p in vols if fold[volume_id(p)] == 0]
    train = [p for p in vols if fold[volume_id(p)] != 0]
    members = members_of(fit)
    for item in args.extra:
        name, _, model = item.partition("=")
        members[name] = [str(Path(model).resolve())]
    styles = sorted(p.name for p in (args.run / "test").iterdir() if (p / "set" / "manifest.csv").is_file())
    args.out.mkdir(parents=True, exist_ok=True)
    looks = args.out / "tuning_looks"
    if any("looks" in v for v in args.variants) and not (looks / "manifest.csv").is_file():
        make_family_tuning_set(val, looks, args.seed + 1000, 1, appearance_p=args.looks)  # fit's tuning seed
    standardiser = Standardiser.fit(read_volume(p).data for p in train)
    results: dict = {}
    start = time.perf_counter()
    for variant in args.variants:
        std = standardiser if "standardise" in variant else None
        tuning = looks if "looks" in variant else fit / "tuning"
        dets = {m: {m: files} for m, files in members.items()}
        if len(members) > 1:
            dets["ensemble"] = members
        for name, mem in dets.items():
            det = args.out / variant / f"{name}.yaml"
            if not det.is_file():
                build_detector(det, mem, val, tuning, "cpu", args.seed, standardiser=std)
            for style in styles:
                r = score(det, args.run / "test" / style / "set", args.out / variant / f"pred_{name}_{style}", "cpu", print)
                results.setdefault(variant, {}).setdefault(name, {})[style] = r
                print(f"  {variant:18s} {name:18s} {style:8s} AP {r['pixel_ap']:.4f} hit {r['hit_rate']:.2f} "
                      f"AUC local {r['sample_auc_local']:.3f}", flush=True)
    (args.out / "options.json").write_text(json.dumps({"run": str(args.run), "population": args.population,
                                                       "extra": args.extra, "results": results}, indent=1))
    print(f"\nshell options on {args.run} (population {args.population}; {time.perf_counter() - start:.0f} s)")
    print("| variant | detector | " + " | ".join(f"{s}: AP (x chance) / unseen / hit / AUC local" for s in styles) + " |")
    print("|---|---|" + "---|" * len(styles))
    for variant, by_det in results.items():
        for name, by_style in by_det.items():
            cells = [f"{_f(r['pixel_ap'], 4)} ({_times(r['pixel_ap'], r['pixel_chance'])}) / {_f(r.get('pixel_ap_unseen'))} / "
                     f"{_f(r['hit_rate'], 2)} / {_f(r['sample_auc_local'])}" for r in (by_style[s] for s in styles)]
            print(f"| {variant} | {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
