"""DPA quality against compute: pixel and sample AP on the demo's held-out test set against the
training budget (steps per axis) and the autoencoder width C, with the wall time of every point.

The setting is the demo's (``mood-dpa demo``): phantoms of 64^3 (40 training subjects, 8 held-out test
subjects with one case of each local kind plus a normal copy), fit's folds (fold 0 validates), 64x64
slice stores, the demo's SimCLR VGG19 (x0.25, relu3_2), the demo DPA config with ``model.channels=C``.
Every point is a real detector: calibrated on the normal validation volumes, its sample rule chosen
on the tuning set (validation-fold volumes with synthetic anomalies), then scored on the test set that
nothing trained or tuned on. The histogram baseline is scored the same way, for the per-kind count.

One training per (C, axis) runs to the largest budget with constant-LR Adam (the DPA's optimiser) and
no early stopping; the model at step k IS the model a k-step budget trains, so each budget is a
snapshot of that run. The wall time of a point is the sum over axes of the time each training took to
reach that step (validations and Lightning start included), on the device and threads given; with
``--jobs N`` the trainings run side by side in N processes and each still counts its own time.

    python benchmarks/bench_quality.py -o /tmp/bq                                   # CPU, brain, C 16 32
    python benchmarks/bench_quality.py -o /tmp/bq --kind abdom --widths 16
    python benchmarks/bench_quality.py -o /tmp/bq --device cuda --widths 16 32 64 --budgets 150 300 600 1200 2400 4800

Prints a table, writes ``quality.json`` and ``quality.png`` (AP against steps and against wall time).
The output folder holds only what this script made; a rerun with the same options reuses finished
trainings and snapshots (delete the folder to start over).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mood_dpa.data.synth.layout import LOCAL_KINDS



def parse_args(argv=None) -> argparse.Namespace:
    """The options; a missing or contradictory one is one ``error:`` line and exit 2 (argparse's rule)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("-o", "--out", type=Path, help="work folder (created; reused by a rerun)")
    ap.add_argument("--replot", type=Path, default=None, metavar="QUALITY_JSON",
                    help="only print the tables of an earlier run's quality.json and redraw its quality.png")
    ap.add_argument("--kind", choices=("brain", "abdom"), default="brain", help="phantom dataset (abdomen: axes 0 and 2)")
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32], help="autoencoder widths C (= d) to train")
    ap.add_argument("--budgets", type=int, nargs="+", default=[150, 300, 600, 1200, 2400],
                    help="steps per axis at which the model is scored (one training to the largest)")
    ap.add_argument("--batch-size", type=int, default=32, help="slices per training step (the demo: 32)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (the demo: 1e-3)")
    ap.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                    help="learning-rate schedule; cosine decays to 0 at the largest budget, so it takes one budget")
    ap.add_argument("--train", type=int, default=40, help="training phantoms (the demo: 40)")
    ap.add_argument("--test", type=int, default=8, help="held-out test phantoms (the demo: 8)")
    ap.add_argument("--size", type=int, default=64, help="phantom side = slice size (the demo: 64)")
    ap.add_argument("--simclr-steps", type=int, default=40, help="SimCLR pre-training steps (the demo: 40)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="trainings (and scorings) run side by side in this many processes (a GPU, or 1 thread each on a CPU)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.out is None and args.replot is None:
        ap.error("-o/--out is required (or --replot QUALITY_JSON)")
    if args.schedule == "cosine" and len(set(args.budgets)) > 1:
        ap.error("--schedule cosine depends on the budget: give one --budgets value per run")
    if min(args.budgets) < 1 or min(args.widths) < 1 or args.jobs < 1:
        ap.error("--budgets, --widths and --jobs take positive integers")
    return args


# ============================================================================ setup (the demo's data and fit stages)


def setup(args, log) -> dict:
    """Phantoms, folds, slice stores, tuning set, SimCLR VGG, histogram baseline; each made once."""
    from dataclasses import replace

    from mood_dpa import fit as F
    from mood_dpa.data.folds import make_folds, read_folds, write_folds_csv
    from mood_dpa.data.phantoms import write_phantoms
    from mood_dpa.data.slices import SliceRule, build_store
    from mood_dpa.data.synth.layout import make_synthetic_set
    from mood_dpa.fit.detectors import build_detector
    from mood_dpa.fit.state import FitState, Stages
    from mood_dpa.fit.train import FitContext, simclr_backbone
    from mood_dpa.volumes import list_volumes, volume_id

    out: Path = args.out
    plan = F.PRESETS["demo"]
    state = FitState(out / "setup", {"kind": args.kind, "train": args.train, "test": args.test, "size": args.size,
                                      "seed": args.seed, "simclr_steps": args.simclr_steps,
                                      "device": args.device, "threads": args.threads})
    stage = Stages(state, log)
    vol_dir, test_dir = out / "volumes", out / "test_volumes"
    stage("training phantoms", lambda: str(write_phantoms(args.kind, args.train, args.size, args.seed, vol_dir)[0]))
    stage("test phantoms", lambda: str(write_phantoms(args.kind, args.test, args.size, args.seed, test_dir,
                                                      start=args.train)[0]))
    vols, tests = list_volumes(vol_dir), list_volumes(test_dir)
    folds_csv = out / "setup" / "folds.csv"
    stage("folds", lambda: str(write_folds_csv(folds_csv, make_folds([p.name for p in vols], plan.n_folds, args.seed))))
    fold_of = read_folds(folds_csv)
    val_vols = [p for p in vols if fold_of[volume_id(p)] == 0]
    train_vols = [p for p in vols if fold_of[volume_id(p)] != 0]
    stores = {a: Path(stage(f"slices axis {a}", lambda a=a: str(build_store(
        vols, out / "setup" / "slices" / f"axis_{a}", a, args.size, SliceRule()).path))) for a in F.AXES[args.kind]}
    tuning = out / "setup" / "tuning"
    stage("tuning set", lambda: len(make_synthetic_set(val_vols, tuning, list(LOCAL_KINDS), (1, 1), args.seed + 1000,
                                                       cases_per_volume=plan.tuning_per_volume, progress=False)))
    testset = out / "testset"
    stage("test set", lambda: len(make_synthetic_set(tests, testset, list(LOCAL_KINDS), (1, 1), args.seed + 1, progress=False)))
    simclr_plan = replace(plan, name="bench", slice_size=args.size,
                          simclr_overrides=(f"optim.max_steps={args.simclr_steps}", f"augment.crop_size={min(48, args.size)}"))
    vgg = simclr_backbone(FitContext(stage, simclr_plan, args.kind, out / "setup", folds_csv, stores, train_vols, args.seed,
                                     args.device, args.threads))
    hist = out / "setup" / "histogram.npz"

    def fit_hist() -> str:
        from mood_dpa.methods.histogram.model import fit_histogram

        fit_histogram(train_vols, hist, seed=args.seed, progress=False)
        return str(build_detector(out / "setup" / "histogram.yaml", {"histogram": [str(hist)]}, val_vols, tuning,
                                     args.device, args.seed))

    hist_det = stage("histogram baseline", fit_hist)
    return {"folds": folds_csv, "val": val_vols, "tuning": tuning, "testset": testset, "stores": stores,
            "vgg": vgg, "histogram": Path(hist_det)}


# ============================================================================ training with snapshots


def snapshot_callback(budgets: list[int], out_dir: Path, axis: int, times: dict):
    """A Lightning callback that writes the model file at each budget step and records when it got there."""
    from lightning.pytorch.callbacks import Callback

    from mood_dpa.methods.dpa.model import save_dpa_model

    class Snapshots(Callback):
        def on_train_start(self, trainer, module):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            step = int(trainer.global_step)
            if step in budgets and str(step) not in times:
                times[str(step)] = time.perf_counter() - self.t0
                store = trainer.datamodule.stores[0]
                cfg = module.cfg
                meta = {"name": f"{cfg.name}_step{step}", "axis": axis, "rule": store.rule.to_dict(),
                        "normaliser": cfg.loss.normaliser, "backbone": cfg.loss.backbone,
                        "vgg_sha256": module.vgg_sha256, "vgg_file": cfg.loss.vgg, "step": step,
                        "best_val_loss": None, "train_config": cfg.model_dump(mode="json")}
                save_dpa_model(out_dir / f"step{step:05d}_axis{axis}.pt", module.autoencoder, module.loss_fn, meta)

    return Snapshots()


def demo_dpa_config(env: dict, axis: int, width: int, run_dir: Path, *, seed: int, device, threads, extra: list[str]):
    """The demo's DPA config (``configs/demo/dpa.yaml`` as fit builds it) for one axis of the setup ``env``
    (its stores, folds and SimCLR VGG), at width ``width``, with ``extra`` overrides last."""
    from mood_dpa.config import load_config
    from mood_dpa.fit.train import CONFIG_DIR, stores_overrides
    from mood_dpa.methods.dpa.config import DPATrainConfig

    over = [f"run_dir={run_dir}", f"trainer.seed={seed}", f"trainer.threads={threads if threads else 'null'}"]
    over += [f"trainer.accelerator={device}"] if device else []
    over += stores_overrides([env["stores"][axis]], env["folds"])
    over += [f"name=dpa_C{width}_axis{axis}", f"model.channels={width}", "model.latent=32", f"loss.vgg={env['vgg']}",
             "trainer.image_count=0", *extra]
    return load_config(DPATrainConfig, CONFIG_DIR / "demo" / "dpa.yaml", over)


def width_dir(args, width: int) -> Path:
    """The folder of one width's trainings: ``C16``, or ``C16_b16_lr0.002_cosine`` away from the defaults."""
    extra = [f"b{args.batch_size}" if args.batch_size != 32 else "", f"lr{args.lr:g}" if args.lr != 1e-3 else "",
             args.schedule if args.schedule != "constant" else ""]
    return args.out / "_".join([f"C{width}"] + [e for e in extra if e])


def train_axis(args, env: dict, width: int, axis: int) -> dict[str, float]:
    """Train one axis at ``width`` to the largest budget (snapshots on the way); returns {step: seconds}.
    Its times are recorded in ``C<width>/times_axis<axis>.json``; a finished axis is not trained again."""
    from mood_dpa.atomic import write_text
    from mood_dpa.methods.dpa.train import train_dpa
    from mood_dpa.runtime import set_threads

    if args.threads:
        set_threads(args.threads)
    wdir = width_dir(args, width)
    record = wdir / f"times_axis{axis}.json"
    if record.is_file():
        return json.loads(record.read_text())
    top = max(args.budgets)
    run_dir = wdir / "runs" / f"axis{axis}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # an interrupted training of this script: start that axis again
    cfg = demo_dpa_config(env, axis, width, run_dir, seed=args.seed, device=args.device, threads=args.threads,
                          extra=[f"model.size={args.size}", f"optim.batch_size={args.batch_size}", f"optim.lr={args.lr}",
                                 f"optim.max_steps={top}", f"optim.schedule={args.schedule}",
                                 f"optim.val_every={min(args.budgets)}", "optim.patience=100000", "optim.min_delta=0",
                                 f"trainer.checkpoint_every={top}"])
    times: dict[str, float] = {}
    print(f"  C={width} axis {axis}: training to {top} steps ...", flush=True)
    train_dpa(cfg, callbacks=[snapshot_callback(args.budgets, wdir / "snapshots", axis, times)])
    write_text(record, json.dumps(times, indent=1))
    print(f"  C={width} axis {axis}: {times[str(top)]:.0f} s", flush=True)
    return times


def run_all(fn, tasks: list[tuple], jobs: int) -> list:
    """``fn(*task)`` for every task: in this process, or in ``jobs`` spawned processes (a GPU shared by
    several small trainings, or one thread per process on a CPU)."""
    if jobs <= 1:
        return [fn(*t) for t in tasks]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(fn, *zip(*tasks)))


# ============================================================================ scoring


def score_detector(det_path: Path, env: dict, pred_dir: Path, device) -> dict:
    from mood_dpa.evaluation.evaluate import evaluate_folder
    from mood_dpa.inference.loading import load_detector
    from mood_dpa.inference.predict import predict_folder

    testset = env["testset"]
    if not (pred_dir / "result.json").is_file():
        summary = predict_folder(load_detector(det_path, device=device), testset / "toy", pred_dir, "both",
                                 progress=False, on_error=None)
        if not summary.ok:
            raise SystemExit(f"{det_path}: failed on {len(summary.failed)} cases")
        res = {t: evaluate_folder(pred_dir, testset / "toy_label", t, manifest=testset / "manifest.csv", on_warning=None,
                                  progress=False).to_dict() for t in ("pixel", "sample")}
        (pred_dir / "result.json").write_text(json.dumps(res))
    res = json.loads((pred_dir / "result.json").read_text())
    px, sm = res["pixel"], res["sample"]
    return {"pixel_ap": px["ap"], "best_dice": px["best_dice"], "hit_rate": px["hit_rate"],
            "per_kind": {k: v["ap"] for k, v in px["per_kind"].items()},
            "sample_ap": sm["ap"], "sample_auc": sm["roc_auc"], "chance_pixel": px["positives"] / max(1, px["positives"] + px["negatives"]),
            "chance_sample": sm["positives"] / max(1, sm["cases"])}


def score_point(args, env: dict, width: int, step: int) -> dict:
    from mood_dpa.fit.detectors import build_detector
    from mood_dpa.runtime import set_threads

    if args.threads:
        set_threads(args.threads)

    wdir = width_dir(args, width)
    files = [str(wdir / "snapshots" / f"step{step:05d}_axis{a}.pt") for a in env["stores"]]
    det = wdir / "detectors" / f"step{step:05d}.yaml"
    if not det.is_file():
        build_detector(det, {"dpa": files}, env["val"], env["tuning"], args.device, args.seed)
    return score_detector(det, env, wdir / "predictions" / f"step{step:05d}", args.device)


# ============================================================================ report


def plot(points: list[dict], hist: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for width in sorted({p["C"] for p in points}):
        ps = [p for p in points if p["C"] == width]
        axes[0].plot([p["steps"] for p in ps], [p["pixel_ap"] for p in ps], "o-", label=f"DPA C={width}")
        axes[1].plot([p["wall_s"] for p in ps], [p["pixel_ap"] for p in ps], "o-", label=f"DPA C={width}")
        axes[2].plot([p["steps"] for p in ps], [p["sample_auc"] for p in ps], "o-", label=f"DPA C={width}")
    for ax, key in ((axes[0], "pixel_ap"), (axes[1], "pixel_ap"), (axes[2], "sample_auc")):
        ax.axhline(hist[key], color="grey", ls="--", label="histogram baseline")
        chance = hist["chance_pixel"] if key == "pixel_ap" else 0.5
        ax.axhline(chance, color="black", ls=":", label="chance")
    axes[0].set(xscale="log", xlabel="training steps per axis", ylabel="pixel AP (test set)")
    axes[1].set(xscale="log", xlabel="training wall time, all axes (s)", ylabel="pixel AP (test set)")
    axes[2].set(xscale="log", xlabel="training steps per axis", ylabel="sample ROC-AUC (test set)")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for ax in axes:
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)


def report(path: Path) -> None:
    """Print the tables of a ``quality.json`` and draw ``quality.png`` beside it."""
    data = json.loads(path.read_text())
    hist, points, title = data["histogram"], data["points"], data["setting"]
    print(f"chance: pixel AP {hist['chance_pixel']:.4f}, sample AP {hist['chance_sample']:.3f} (ROC-AUC 0.5)")
    head = ["C", "steps/axis", "train s", "pixel AP", "best Dice", "hit rate", "sample AP", "sample AUC", "kinds > hist"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    print(f"| histogram | - | - | {hist['pixel_ap']:.4f} | {hist['best_dice']:.3f} | {hist['hit_rate']:.2f} | "
          f"{hist['sample_ap']:.3f} | {hist['sample_auc']:.3f} | - |")
    for p in points:
        print(f"| {p['C']} | {p['steps']} | {p['wall_s']:.0f} | {p['pixel_ap']:.4f} | {p['best_dice']:.3f} | "
              f"{p['hit_rate']:.2f} | {p['sample_ap']:.3f} | {p['sample_auc']:.3f} | {p['kinds_above_histogram']}/8 |")
    print("\nper-kind pixel AP:")
    print("| C | steps | " + " | ".join(LOCAL_KINDS) + " |\n|" + "---|" * (len(LOCAL_KINDS) + 2))
    print("| histogram | - | " + " | ".join(f"{hist['per_kind'].get(k, float('nan')):.3f}" for k in LOCAL_KINDS) + " |")
    for p in points:
        print(f"| {p['C']} | {p['steps']} | " + " | ".join(f"{p['per_kind'].get(k, float('nan')):.3f}" for k in LOCAL_KINDS) + " |")
    png = path.with_suffix(".png")
    plot(points, hist, png, f"DPA quality against compute ({title})")
    print(f"\nwrote {path} and {png}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        report(args.replot)
        return 0
    os.environ.setdefault("MOOD_DPA_QUIET", "1")
    import torch

    from mood_dpa.runtime import set_threads

    if args.threads:
        set_threads(args.threads)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.budgets = sorted(set(args.budgets))
    from mood_dpa.outputs import mark_output_dir, prepare_output_dir

    prepare_output_dir(args.out, inputs=[], overwrite=False)
    mark_output_dir(args.out)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    start = time.perf_counter()
    env = setup(args, log)
    hist = score_detector(env["histogram"], env, args.out / "setup" / "predictions_histogram", args.device)
    axes = list(env["stores"])
    trainings = [(args, env, w, a) for w in args.widths for a in axes]
    times = dict(zip([(w, a) for _, _, w, a in trainings], run_all(train_axis, trainings, args.jobs)))
    todo = [(args, env, w, b) for w in args.widths for b in args.budgets]
    results = run_all(score_point, todo, args.jobs)
    points = []
    for (_, _, width, step), res in zip(todo, results):
        wall = sum(times[(width, a)][str(step)] for a in axes)
        above = sum(res["per_kind"].get(k, 0) > hist["per_kind"].get(k, 0) for k in LOCAL_KINDS)
        points.append({"C": width, "steps": step, "wall_s": wall, "kinds_above_histogram": above, **res})
    dev = torch.cuda.get_device_name(0) if args.device == "cuda" else f"{torch.get_num_threads()} CPU threads"
    title = (f"{args.kind} phantoms {args.size}^3, {args.train} train / {args.test} test subjects, batch {args.batch_size}, "
             f"lr {args.lr:g} {args.schedule}, {dev}")
    print(f"\nDPA quality against compute: {title}; {time.perf_counter() - start:.0f} s in all")
    from mood_dpa.atomic import write_text

    write_text(args.out / "quality.json", json.dumps({"setting": title, "device": dev, "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "histogram": hist, "points": points}, indent=1))
    report(args.out / "quality.json")
    return 0


if __name__ == "__main__":
    from mood_dpa.errors import MoodError

    try:
        sys.exit(main())
    except MoodError as exc:  # a refused output folder, a bad volume: one line, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
