"""A killed ``fit`` continues when the same command runs again (the README's promise; issue 20, item 7).

One chain of real processes: each run of ``mood-dpa fit`` is killed, alternately by SIGKILL (nothing of
Python runs: what a cluster's out-of-memory killer or ``kill -9`` does) and SIGTERM (``docker stop``,
SLURM: exit 130), right after it records one finished stage, so the chain stops at EVERY stage boundary;
and every training is also killed once INSIDE, a few steps in (before any checkpoint of SimCLR's short run,
and after the DPA's first validation wrote its best checkpoint but before any last.ckpt). A final run
without kills must finish every stage and write a detector that predicts. The kills are injected by the
test's own driver (monkeypatching FitState.finish and the trainer), not by any hook in the package.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

import mood_dpa

DRIVER = r"""
import os, signal, sys
import mood_dpa.fit.state as state
import mood_dpa.training.runner as runner
from lightning.pytorch.callbacks import Callback

how = sys.argv[1]            # "SIGKILL" or "SIGTERM": how this run dies
inside = int(sys.argv[2])    # 1: kill each training once, a few steps in (0: never)

def die():
    os.kill(os.getpid(), signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)

finish = state.FitState.finish
def finish_then_die(self, name, result, seconds):
    finish(self, name, result, seconds)
    print(f"KILLED AFTER {name}", file=sys.stderr, flush=True)
    die()
state.FitState.finish = finish_then_die

class Inside(Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        # SimCLR's quick run has 10 steps and no checkpoint before its end: kill at 5; the DPA validates
        # (and writes best.ckpt, no last.ckpt yet) at step 20 of 40: kill at 25
        step = 5 if "simclr" in str(trainer.default_root_dir) else 25
        done = os.path.join(os.getcwd(), "killed-inside-" + os.path.basename(str(trainer.default_root_dir)))
        if inside and trainer.global_step == step and not os.path.exists(done):  # once per training
            open(done, "w").close()
            print(f"KILLED INSIDE {trainer.default_root_dir} AT {step}", file=sys.stderr, flush=True)
            die()

make = runner._make_trainer
def make_with_kill(t, run_dir, max_steps, max_epochs, val_every, callbacks, *args, **kwargs):
    return make(t, run_dir, max_steps, max_epochs, val_every, [*callbacks, Inside()], *args, **kwargs)
runner._make_trainer = make_with_kill

from mood_dpa.cli import main
main(sys.argv[3:])
"""


def run(args: list[str], how: str, inside: int, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOOD_DPA_QUIET": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(mood_dpa.__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-c", DRIVER, how, str(inside), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_fit_resumes_after_a_kill_at_every_stage_and_inside_every_training(tmp_path):
    from mood_dpa.data.phantoms import write_phantoms
    from mood_dpa.inference.loading import load_detector
    from mood_dpa.volumes import list_volumes, read_volume

    data = tmp_path / "data"
    write_phantoms("abdom", 8, 32, 0, data)
    out = tmp_path / "models"
    args = ["fit", "-i", data, "-o", out, "--preset", "quick", "--method", "dpa", "--kind", "abdom", "--no-report"]
    killed_after, killed_inside = [], []
    for i in range(20):
        how = "SIGKILL" if i % 2 == 0 else "SIGTERM"
        proc = run(args, how, inside=1, cwd=tmp_path)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("KILLED")]
        if proc.returncode == 0:
            break
        assert lines, proc.stderr[-3000:]
        if how == "SIGKILL":
            assert proc.returncode == -signal.SIGKILL
        else:  # SIGTERM ends it like Ctrl-C: exit 130 with a message, no traceback
            assert proc.returncode == 130 and "interrupted (SIGTERM)" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        (killed_after if lines[-1].startswith("KILLED AFTER") else killed_inside).append(lines[-1])
    else:
        raise AssertionError("fit never finished")
    stages = json.loads((out / "fit_state.json").read_text())["stages"]
    expected = {"folds", "slices axis 0", "slices axis 2", "tuning set", "pretrain SimCLR backbone", "train dpa axis 0",
                "train dpa axis 2", "standardisation landmarks", "detector dpa"}
    assert set(stages) == expected
    # every stage was a boundary some run died at (the last one finished in the final, unkilled run)
    assert {line.removeprefix("KILLED AFTER ") for line in killed_after} == expected
    # and every training was killed once inside (SimCLR and both axes of the DPA)
    assert len(killed_inside) == 3, killed_inside
    # the final run skipped every finished stage and wrote a working detector
    assert "done earlier, skipped" in proc.stdout
    det = load_detector(out / "detectors" / "dpa.yaml", device="cpu")
    vol = read_volume(list_volumes(data)[0]).data
    scores = det.score_volume(vol)
    assert scores.shape == vol.shape and np.isfinite(scores).all() and scores.max() > 0
    assert [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] == []
