"""SIGTERM (docker stop, SLURM, timeout) ends training like Ctrl-C: quickly, non-zero, checkpoint kept, no temporaries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import mood_dpa


def test_sigterm_during_training_exits_quickly_and_keeps_the_checkpoint(tmp_path, volume_folder):
    from mood_dpa.config import dump_config
    from mood_dpa.data.slices import SliceRule, build_store
    from mood_dpa.methods.dpa.config import DPATrainConfig

    store = build_store(volume_folder, tmp_path / "store", axis=0, size=32, rule=SliceRule(min_fraction=0.05)).path
    run = tmp_path / "run"
    cfg = DPATrainConfig.model_validate({
        "name": "sigterm",
        "run_dir": str(run),
        "data": {"stores": [str(store)], "n_folds": 2, "max_val_slices": 8},
        "model": {"channels": 4, "latent": 4, "size": 32},
        "loss": {"kind": "l1"},
        "optim": {"lr": 1e-3, "batch_size": 4, "max_steps": 10_000_000, "val_every": 1_000_000, "patience": 5},
        "trainer": {"accelerator": "cpu", "checkpoint_every": 2, "log_every": 1000, "image_count": 0, "threads": 1},
    })
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_config(cfg))
    env = {**os.environ, "MOOD_DPA_QUIET": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(mood_dpa.__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "mood_dpa", "train", str(path)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = run / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 120
        while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert last.is_file(), proc.communicate(timeout=30)
        time.sleep(0.5)  # mid-training, between or during checkpoint writes
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = proc.communicate()
    assert took < 10
    assert proc.returncode != 0, (out, err)
    assert "Traceback" not in err, err
    assert last.is_file() and last.stat().st_size > 0
    import torch

    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] >= 2
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert leftovers == []
