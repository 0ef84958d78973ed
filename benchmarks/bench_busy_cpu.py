"""Training speed on a shared CPU: the demo's DPA and 2-D segmenter alone and beside one busy process.

Why: on a small machine a training that uses every core with OpenMP's default (spinning) wait policy
collapses when one other process wants a core: each parallel region waits for the thread the scheduler
took away, and the waiting threads spin on the core the busy process needs. This script measures the
steps/s of one training process for each layout below, alone and beside ONE single-threaded busy
process (a pure-Python loop, nice 0), and prints the table ``mood-dpa`` chose its default from
(``mood_dpa.runtime``):

    1 thread | all cores | all cores passive wait (OMP_WAIT_POLICY=PASSIVE: idle threads sleep) | default

Each measurement is a fresh process (the OpenMP settings are read when torch loads); the speed is taken
between the ``--warmup``-th and the last training step (Lightning's own loop, the demo's configs), so
start-up, data loading and validation are left out. The machine must be otherwise idle: check ``uptime``.

    python benchmarks/bench_busy_cpu.py -o /tmp/busy --steps 60
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

LAYOUTS = {
    "1 thread": {"threads": 1, "env": {}},
    "all cores": {"threads": os.cpu_count() or 1, "env": {"OMP_WAIT_POLICY": "ACTIVE"}},
    "all cores passive wait": {"threads": os.cpu_count() or 1, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "default": {"threads": None, "env": {}},  # what mood-dpa does when the user says nothing
}
METHODS = ("dpa", "segmenter2d")


def setup(out: Path) -> dict:
    """12 phantoms of 64^3, folds, the three slice stores (made once)."""
    from mood_dpa.data.folds import make_folds, write_folds_csv
    from mood_dpa.data.phantoms import write_phantoms
    from mood_dpa.data.slices import SliceRule, build_store
    from mood_dpa.volumes import list_volumes

    vols = out / "volumes"
    if not vols.is_dir():
        write_phantoms("brain", 12, 64, 0, vols)
    files = list_volumes(vols)
    folds = out / "folds.csv"
    if not folds.is_file():
        write_folds_csv(folds, make_folds([p.name for p in files], 4, 0))
    stores = {}
    for a in range(3):
        stores[a] = out / "slices" / f"axis_{a}"
        if not (stores[a] / "meta.json").is_file():
            build_store(files, stores[a], a, 64, SliceRule())
    return {"folds": str(folds), "stores": {a: str(s) for a, s in stores.items()}}


def train_one(env: dict, method: str, threads: int | None, steps: int, warmup: int, run_dir: Path) -> float:
    """Steps/s of one short training of ``method`` in THIS process (the demo's config and sizes)."""
    from lightning.pytorch.callbacks import Callback

    from mood_dpa.config import load_config
    from mood_dpa.fit.train import CONFIG_DIR, stores_overrides
    from mood_dpa.methods.registry import recipe
    from mood_dpa.runtime import set_threads

    set_threads(threads)
    entry, rec = recipe(method)
    stores = [Path(env["stores"]["0"])] if rec.per_axis else [Path(s) for s in env["stores"].values()]
    over = [f"run_dir={run_dir}", "trainer.seed=0", f"trainer.threads={threads if threads else 'null'}",
            "trainer.accelerator=cpu", "model.size=64", *stores_overrides(stores, Path(env["folds"])),
            *rec.overrides.get("demo", ()), f"optim.max_steps={steps}", f"optim.val_every={steps}"]
    if method == "dpa":
        over.append("loss.vgg=null")  # a seeded random VGG of the demo's width: the same compute as SimCLR's
    cfg = load_config(entry.config, CONFIG_DIR / rec.configs["demo"].format(kind="brain", axis=0), over)
    times: dict[int, float] = {}

    class Clock(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            times[int(trainer.global_step)] = time.perf_counter()

    entry.train(cfg, callbacks=[Clock()])
    return (steps - warmup) / (times[steps] - times[warmup])


def busy() -> subprocess.Popen:
    """One single-threaded CPU-bound process (what an ordinary background job looks like to the scheduler)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(out: Path, env: dict, method: str, layout: str, competitor: bool, steps: int, warmup: int) -> float:
    spec = LAYOUTS[layout]
    child_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    child_env.update(spec["env"], MOOD_DPA_QUIET="1")
    (out / "runs").mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{method}_{layout.replace(' ', '_')}_{int(competitor)}_", dir=out / "runs")) / "run"
    job = json.dumps({"env": env, "method": method, "threads": spec["threads"], "steps": steps, "warmup": warmup,
                      "run_dir": str(run_dir)})
    other = busy() if competitor else None
    try:
        time.sleep(0.5)
        proc = subprocess.run([sys.executable, __file__, "--one", job], env=child_env, capture_output=True, text=True)
    finally:
        if other is not None:
            other.kill()
            other.wait()
    if proc.returncode != 0:
        raise SystemExit(f"error: {method} / {layout} failed:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, help="work folder (phantoms, slice stores, runs)")
    ap.add_argument("--steps", type=int, default=60, help="training steps per measurement")
    ap.add_argument("--warmup", type=int, default=10, help="steps left out at the start")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list of dpa, segmenter2d")
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma list of: {', '.join(LAYOUTS)}")
    ap.add_argument("--json", type=Path, help="also write the table as JSON")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        job = json.loads(args.one)
        print(train_one(job["env"], job["method"], job["threads"], job["steps"], job["warmup"], Path(job["run_dir"])))
        return 0
    if args.out is None:
        ap.error("-o/--out is required")
    if not 0 < args.warmup < args.steps:
        ap.error("--warmup must be between 0 and --steps")
    methods = [m for m in args.methods.split(",") if m]
    layouts = [x for x in args.layouts.split(",") if x]
    bad = [m for m in methods if m not in METHODS] + [x for x in layouts if x not in LAYOUTS]
    if bad:
        ap.error(f"unknown method or layout: {', '.join(bad)}")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"load before: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}", flush=True)
    env = setup(args.out)
    env["stores"] = {str(k): v for k, v in env["stores"].items()}
    rows = []
    for method in methods:
        for layout in layouts:
            alone = measure(args.out, env, method, layout, False, args.steps, args.warmup)
            shared = measure(args.out, env, method, layout, True, args.steps, args.warmup)
            rows.append({"method": method, "layout": layout, "alone": alone, "beside_one_busy": shared,
                         "slowdown": alone / shared})
            print(f"  {method:12s} {layout:26s} alone {alone:6.2f} steps/s, beside one busy process {shared:6.2f} "
                  f"({alone / shared:.2f}x slower)", flush=True)
    print("\n| method | threads | alone (steps/s) | beside one busy process | slowdown |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['layout']} | {r['alone']:.2f} | {r['beside_one_busy']:.2f} | {r['slowdown']:.2f}x |")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
