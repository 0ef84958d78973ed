"""The shift benchmark: how every detector fares on a new scanner and with few training subjects.

For each training population of P subjects (default 2, 5, 10 and 40), the same number of training
volumes (default 40) is made from scans of those P subjects in the ``train`` phantom style (subject i
gets V/P scans: the same anatomy, a new acquisition each, as users augment a few real heads), and
``mood_dpa.fit.run_fit`` trains the preset's methods on them (``demo`` by default). With fewer
subjects than volumes, fit's validation fold holds other scans of the training subjects, as it does
for a user who augments a few heads.

Two kinds of test set are made once and shared by every population: held-out subjects (indices from
V on, the demo's test subjects) in the ``train`` style (in-distribution) and the SAME subject indices
in each requested shifted style (``shifted``: a held-out scanner and population; or one factor alone,
``contrast`` ... ``pose``; or a YAML file of ranges; see ``mood-dpa phantoms --help``). Each gets one
normal copy and one case of every anomaly kind per subject (``make_synthetic_set``, the demo's seed).
Every fitted detector (each method's, and the cross-method ensemble) predicts every test set and is
evaluated with the exact MOOD evaluator: pixel AP overall and per kind, best Dice, hit rate, sample
AP, sample ROC-AUC overall and over the local kinds; the chance level is printed beside every AP
(the share of anomalous voxels, or of anomalous cases), and per method the ratio of each shifted
set's pixel AP to the in-distribution one.

    python benchmarks/bench_shift.py -o /tmp/bs                                       # the full run (CPU: hours)
    python benchmarks/bench_shift.py -o /tmp/bs_quick --preset quick --size 32 --populations 2 5 --volumes 8 --test 2
    python benchmarks/bench_shift.py -o /tmp/bs --styles all                          # also each one-factor style
    python benchmarks/bench_shift.py --table /tmp/bs/shift.json                       # print an earlier run's tables

Prints tables and writes ``shift.json``. The output folder holds only what this script made; a rerun
with the same setting reuses every finished step (fits resume; new populations or styles are added).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

SETTING_FILE = "setting.json"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, as every mood-dpa command
        self.exit(2, f"error: {message}\n")


def parse_args(argv=None) -> argparse.Namespace:
    """The options; a missing or contradictory one is one ``error:`` line and exit 2."""
    ap = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("-o", "--out", type=Path, help="work folder (created; reused by a rerun with the same setting)")
    ap.add_argument("--table", type=Path, default=None, metavar="SHIFT_JSON", help="only print the tables of an earlier run")
    ap.add_argument("--kind", choices=("brain", "abdom"), default="brain", help="phantom dataset")
    ap.add_argument("--populations", type=int, nargs="+", default=[2, 5, 10, 40], help="training subjects per population")
    ap.add_argument("--volumes", type=int, default=40, help="training volumes of every population (scans of its subjects)")
    ap.add_argument("--test", type=int, default=8, help="held-out test subjects per test set (the demo: 8)")
    ap.add_argument("--size", type=int, default=64, help="phantom side (the demo: 64; the quick preset's slices: 32)")
    ap.add_argument("--preset", default="demo", help="fit preset (demo; quick for a smoke run)")
    ap.add_argument("--methods", default=None, help="fit's --method: a comma list or all (default: the preset's)")
    ap.add_argument("--styles", default="shifted",
                    help="shifted test styles, comma-separated: style names, YAML files, or all (shifted and every one-factor style)")
    ap.add_argument("--kinds", default="local", help="anomaly kinds of the test sets: local (default), global, all, or a comma list")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of every step (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0, help="phantoms, folds, training and test sets")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.KEY=VALUE",
                    help="fit's --set: override a method's config (repeatable)")
    ap.add_argument("--held-out", default=None, help="fit's --held-out: none, each, or family groups a+b,c")
    ap.add_argument("--tuning-kinds", default=None, help="fit's --tuning-kinds (default: the training families)")
    ap.add_argument("--tuning-appearance", type=float, default=0.0, help="fit's --tuning-appearance (default 0: one look)")
    ap.add_argument("--appearance-twin", type=float, default=0.0, help="fit's --appearance-twin (default 0: off)")
    ap.add_argument("--standardise", action=argparse.BooleanOptionalAction, default=None,
                    help="fit's --standardise / --no-standardise (default: the preset's, on)")
    args = ap.parse_args(argv)
    if args.out is None and args.table is None:
        ap.error("-o/--out is required (or --table SHIFT_JSON)")
    if min(args.populations) < 1 or args.volumes < 1 or args.test < 1 or args.seed < 0:
        ap.error("--populations, --volumes and --test take positive integers, --seed a non-negative one")
    if max(args.populations) > args.volumes:
        ap.error(f"a population of {max(args.populations)} subjects needs at least as many --volumes ({args.volumes})")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads takes a positive integer")
    args.populations = sorted(set(args.populations))
    return args


def style_list(value: str) -> list[str]:
    """``--styles`` -> the shifted styles in order (``all``: shifted, then every one-factor style)."""
    from mood_dpa.data.phantoms import STYLES

    names = [v.strip() for v in value.split(",") if v.strip()]
    if names == ["all"]:
        names = [s for s in STYLES if s != "train"]
    if not names:
        raise_error("--styles: give at least one style")
    return list(dict.fromkeys(names))


def raise_error(message: str):
    from mood_dpa.errors import MoodError

    raise MoodError(message)


def style_key(style: str) -> str:
    """A folder name for a style: its name, or a YAML file's stem."""
    return style if "/" not in style and not style.endswith((".yaml", ".yml")) else "file_" + Path(style).stem


def scans_per_subject(volumes: int, subjects: int) -> list[int]:
    """``volumes`` split over ``subjects`` as evenly as possible (the first subjects get one more)."""
    return [volumes // subjects + (i < volumes % subjects) for i in range(subjects)]


# ============================================================================ the steps, each done once


def check_setting(args) -> dict:
    """The setting every step of the folder depends on; a rerun with another one is refused."""
    from mood_dpa.atomic import write_text
    from mood_dpa.data.synth.layout import parse_kinds

    setting = {"kind": args.kind, "volumes": args.volumes, "test": args.test, "size": args.size, "preset": args.preset,
               "methods": args.methods, "kinds": parse_kinds(args.kinds), "seed": args.seed,
               "overrides": args.overrides, "held_out": args.held_out, "tuning_kinds": args.tuning_kinds,
               **({"tuning_appearance": args.tuning_appearance} if args.tuning_appearance else {}),
               **({"standardise": args.standardise} if args.standardise is not None else {}),
               **({"appearance_twin": args.appearance_twin} if args.appearance_twin else {})}
    path = args.out / SETTING_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if old != setting:
            diff = sorted(k for k in setting if setting[k] != old.get(k))
            raise_error(f"{args.out}: an earlier run with another setting ({', '.join(diff)}) is here; choose another -o")
    else:
        write_text(path, json.dumps(setting, indent=1))
    return setting


def training_volumes(args, population: int, log) -> Path:
    """``pop<P>/volumes``: ``--volumes`` scans of subjects 0..P-1 in the train style."""
    from mood_dpa.atomic import write_text
    from mood_dpa.data.phantoms import write_phantoms

    folder = args.out / f"pop{population:02d}" / "volumes"
    done = folder.parent / "volumes.json"
    if not done.is_file():
        counts = scans_per_subject(args.volumes, population)
        log(f"  population {population}: {args.volumes} training volumes = scans {counts} of subjects 0..{population - 1}")
        for subject, scans in enumerate(counts):
            write_phantoms(args.kind, 1, args.size, args.seed, folder, start=subject, scans=scans, style="train")
        write_text(done, json.dumps({"subjects": population, "scans": counts}))
    return folder


def test_set(args, style: str, kinds: list[str], log) -> Path:
    """``test/<style>/set``: held-out subjects V..V+T-1 in ``style`` with one case of every kind each."""
    from mood_dpa.data.phantoms import write_phantoms
    from mood_dpa.data.synth.layout import make_synthetic_set

    root = args.out / "test" / style_key(style)
    testset = root / "set"
    if not (testset / "manifest.csv").is_file():
        log(f"  test set {style}: subjects {args.volumes}..{args.volumes + args.test - 1}")
        paths = write_phantoms(args.kind, args.test, args.size, args.seed, root / "volumes", start=args.volumes, style=style)
        make_synthetic_set(paths, testset, kinds, (1, 1), args.seed + 1, progress=False)
    return testset


def fit_population(args, population: int, log) -> dict[str, Path]:
    """run_fit on the population's volumes; every detector it wrote (the ensemble too), by method."""
    from mood_dpa.fit import run_fit

    volumes = training_volumes(args, population, log)
    fit = run_fit(volumes, args.out / f"pop{population:02d}" / "fit", preset=args.preset, methods=args.methods,
                  kind=args.kind, seed=args.seed, device=args.device, threads=args.threads, report=False,
                  overrides=args.overrides, held_out=args.held_out, tuning_kinds=args.tuning_kinds,
                  tuning_appearance=args.tuning_appearance, standardise=args.standardise,
                  appearance_twin=args.appearance_twin,
                  log=lambda msg: log("    " + msg))
    detectors = {m: Path(p) for m, p in fit.detectors.items()}
    if fit.detector is not None and Path(fit.detector) not in detectors.values():
        detectors["ensemble"] = Path(fit.detector)
    return detectors


def ap_chance(metrics: dict) -> float:
    """The AP of a detector that guesses: the share of positives (voxels or cases)."""
    pos, neg = metrics.get("positives", 0), metrics.get("negatives", 0)
    return pos / (pos + neg) if pos + neg else float("nan")


def summarise(pixel: dict, sample: dict) -> dict:
    """The numbers the tables show, from the evaluator's pixel and sample results."""
    local = sample.get("per_scope", {}).get("local", {})
    return {
        "pixel_ap": pixel["ap"], "pixel_chance": ap_chance(pixel), "best_dice": pixel["best_dice"],
        "hit_rate": pixel["hit_rate"],
        "per_kind": {k: {"ap": m["ap"], "chance": ap_chance(m), "hit_rate": m.get("hit_rate")}
                     for k, m in pixel.get("per_kind", {}).items()},
        "sample_ap": sample["ap"], "sample_chance": ap_chance(sample), "sample_auc": sample["roc_auc"],
        "sample_auc_local": local.get("roc_auc", float("nan")),
        # the pooled pixel AP over the kinds no family of the detector's models imitates (NaN: it saw them all)
        "pixel_ap_unseen": pixel.get("per_group", {}).get("unseen", {}).get("ap", float("nan")),
    }


def score(detector: Path, testset: Path, pred_dir: Path, device, log) -> dict:
    """Predict ``testset`` with ``detector`` and evaluate it (kept in ``<pred_dir>.json`` for a rerun)."""
    from mood_dpa.atomic import write_text
    from mood_dpa.data.synth.layout import ALL_KINDS
    from mood_dpa.evaluation.evaluate import evaluate_folder
    from mood_dpa.inference.loading import load_detector, seen_kinds
    from mood_dpa.inference.predict import predict_folder

    record = pred_dir.with_suffix(".json")
    if record.is_file():
        kept = json.loads(record.read_text())
        if "pixel_ap_unseen" in kept or not pred_dir.is_dir():
            return kept  # a record of before the unseen-kind AP existed: its predictions are evaluated again below
    else:
        summary = predict_folder(load_detector(detector, device=device), testset / "toy", pred_dir, "both", progress=False,
                                 on_error=log)
        if not summary.ok:
            raise_error(f"{detector}: failed on {len(summary.failed)} cases of {testset}")
    seen = set(seen_kinds(detector))
    groups = {"unseen": [k for k in ALL_KINDS if k not in seen]} if set(ALL_KINDS) - seen else None
    res = {task: evaluate_folder(pred_dir, testset / "toy_label", task, manifest=testset / "manifest.csv", on_warning=None,
                                 progress=False, groups=groups).to_dict() for task in ("pixel", "sample")}
    result = summarise(res["pixel"], res["sample"])
    write_text(record, json.dumps(result, indent=1))
    return result


# ============================================================================ tables


def _f(value, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _ratio(a, b) -> str:
    return "-" if not b or any(isinstance(v, float) and math.isnan(v) for v in (a, b)) else f"{a / b:.2f}"


def _times(ap, chance) -> str:
    return "-" if not chance or any(isinstance(v, float) and math.isnan(v) for v in (ap, chance)) else f"{ap / chance:.0f}x"


def report(path: Path) -> None:
    """Print the tables of a ``shift.json``."""
    data = json.loads(path.read_text())
    styles = ["train", *data["styles"]]
    rows = data["results"]  # population -> method -> style -> summary
    print(f"\nshift benchmark: {data['title']}")
    print("\npixel AP (x chance) | pixel AP over the kinds the models never saw | hit rate | sample ROC-AUC over local "
          "kinds, per test set; ratio = shifted / train pixel AP")
    head = (["subjects", "method"] + [f"{s}: AP (x chance) / unseen / hit / AUC local" for s in styles]
            + [f"ratio {s}" for s in data["styles"]])
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for pop, methods in rows.items():
        for method, per_style in methods.items():
            cells = []
            for s in styles:
                r = per_style.get(s)
                cells.append("-" if r is None else f"{_f(r['pixel_ap'], 4)} ({_times(r['pixel_ap'], r['pixel_chance'])}) / "
                             f"{_f(r.get('pixel_ap_unseen'))} / {_f(r['hit_rate'], 2)} / {_f(r['sample_auc_local'])}")
            ratios = [_ratio(per_style.get(s, {}).get("pixel_ap"), per_style.get("train", {}).get("pixel_ap"))
                      for s in data["styles"]]
            print(f"| {pop} | {method} | " + " | ".join(cells + ratios) + " |")
    chance = {s: next((m[s] for ms in rows.values() for m in ms.values() if s in m), None) for s in styles}
    print("| - | chance | " + " | ".join("-" if chance[s] is None else f"{_f(chance[s]['pixel_chance'], 4)} / - / - / 0.5"
                                          for s in styles) + " |" + " - |" * len(data["styles"]))
    print("\nsample level per test set: AP (chance) / ROC-AUC overall")
    head = ["subjects", "method"] + styles
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for pop, methods in rows.items():
        for method, per_style in methods.items():
            print(f"| {pop} | {method} | " + " | ".join(
                "-" if s not in per_style else f"{_f(per_style[s]['sample_ap'])} ({_f(per_style[s]['sample_chance'])}) / "
                f"{_f(per_style[s]['sample_auc'])}" for s in styles) + " |")
    kinds = data["kinds"]
    print("\npixel AP per kind (chance in the first row of each test set)")
    print("| subjects | method | test set | " + " | ".join(kinds) + " |\n|" + "---|" * (len(kinds) + 3))
    for s in styles:
        if chance[s] is not None:
            print(f"| - | chance | {s} | " + " | ".join(_f(chance[s]["per_kind"].get(k, {}).get("chance"), 4) for k in kinds) + " |")
    for pop, methods in rows.items():
        for method, per_style in methods.items():
            for s in styles:
                if s in per_style:
                    print(f"| {pop} | {method} | {s} | " + " | ".join(
                        _f(per_style[s]["per_kind"].get(k, {}).get("ap")) for k in kinds) + " |")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.table:
        report(args.table)
        return 0
    os.environ.setdefault("MOOD_DPA_QUIET", "1")
    import torch

    from mood_dpa.atomic import write_text
    from mood_dpa.data.phantoms import resolve_style
    from mood_dpa.outputs import mark_output_dir, prepare_output_dir
    from mood_dpa.runtime import set_threads

    if args.threads:
        set_threads(args.threads)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    styles = style_list(args.styles)
    for s in ["train", *styles]:
        resolve_style(s)  # an unknown style or a bad file: refused before any work
    prepare_output_dir(args.out, inputs=[], overwrite=False)
    mark_output_dir(args.out)
    setting = check_setting(args)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    start = time.perf_counter()
    log(f"test sets: {args.test} held-out {args.kind} subjects of {args.size}^3 in styles train, {', '.join(styles)}")
    testsets = {s: test_set(args, s, setting["kinds"], log) for s in ["train", *styles]}
    results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    for population in args.populations:
        t0 = time.perf_counter()
        log(f"population of {population} subjects: fit (preset {args.preset}) ...")
        detectors = fit_population(args, population, log)
        timings[f"fit {population}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results[str(population)] = {}
        for method, det in detectors.items():
            results[str(population)][method] = {
                s: score(det, testsets[s], args.out / f"pop{population:02d}" / "pred" / method / style_key(s), args.device, log)
                for s in ["train", *styles]}
        timings[f"predict+evaluate {population}"] = time.perf_counter() - t0
        # the times of the run that did the work (a rerun that reuses it keeps them)
        first = args.out / f"pop{population:02d}" / "timings.json"
        if first.is_file():
            timings.update(json.loads(first.read_text()))
        else:
            write_text(first, json.dumps({k: v for k, v in timings.items() if k.endswith(f" {population}")}))
        log(f"population of {population}: fit {timings[f'fit {population}']:.0f} s, "
            f"predict+evaluate {timings[f'predict+evaluate {population}']:.0f} s")
    dev = torch.cuda.get_device_name(0) if args.device == "cuda" else f"{torch.get_num_threads()} CPU threads"
    title = (f"{args.kind} phantoms {args.size}^3, {args.volumes} training volumes per population, {args.test} held-out "
             f"test subjects per style, fit preset {args.preset}, seed {args.seed}, {dev}; "
             f"{sum(timings.values()):.0f} s of fits and predictions ({time.perf_counter() - start:.0f} s this run)")
    out = args.out / "shift.json"
    write_text(out, json.dumps({"title": title, "setting": setting, "styles": styles, "kinds": setting["kinds"],
                                "populations": args.populations, "timings": timings, "results": results}, indent=1))
    report(out)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    from mood_dpa.errors import MoodError

    try:
        sys.exit(main())
    except MoodError as exc:  # a refused output folder, a bad style: one line, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
