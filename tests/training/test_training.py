"""DPA training with Lightning: learning, model file, kill-and-resume, DDP on CPU, configs, CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mood_dpa.errors import MoodError

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "mood_dpa" / "configs"


@pytest.fixture(scope="session")
def tiny_stores(tmp_path_factory) -> list[Path]:
    """Six 32^3 brain phantoms sliced along axes 0 and 1 at 32x32 (a few hundred slices)."""
    from mood_dpa.data.phantoms import make_phantom
    from mood_dpa.data.slices import SliceRule, build_store
    from mood_dpa.volumes import write_volume

    root = tmp_path_factory.mktemp("tiny")
    vols = root / "vols"
    vols.mkdir()
    for i in range(6):
        write_volume(vols / f"{i:05d}.nii.gz", make_phantom("brain", 32, 11, i), np.eye(4))
    rule = SliceRule(min_fraction=0.05)
    return [build_store(vols, root / f"axis_{a}", axis=a, size=32, rule=rule).path for a in (0, 1)]


def _cfg(stores, run_dir, **over):
    from mood_dpa.methods.dpa.config import DPATrainConfig

    d = {
        "name": "tiny",
        "run_dir": str(run_dir),
        "data": {"stores": [str(stores[0])], "n_folds": 3, "max_val_slices": 48},
        "model": {"channels": 8, "latent": 8, "size": 32},
        "loss": {"layers": ["relu2_2"], "vgg_width": 0.125},
        "optim": {"lr": 2e-3, "batch_size": 16, "max_steps": 40, "val_every": 10, "min_delta": 0.0, "patience": 5},
        "trainer": {"accelerator": "cpu", "checkpoint_every": 5, "log_every": 5, "image_count": 4, "threads": 1},
    }
    for key, value in over.items():
        section, field = key.split("__")
        d.setdefault(section, {})[field] = value
    return DPATrainConfig.model_validate(d)


def _val_losses(run_dir: Path) -> list[float]:
    out = []
    for path in sorted((run_dir / "logs" / "csv").rglob("metrics.csv")):
        with open(path, newline="") as fh:
            out += [float(r["val_loss"]) for r in csv.DictReader(fh) if r.get("val_loss")]
    return out


def test_tiny_dpa_learns_and_writes_a_complete_run(tiny_stores, tmp_path):
    from mood_dpa.methods.dpa.model import load_dpa_model
    from mood_dpa.methods.dpa.train import train_dpa

    cfg = _cfg(tiny_stores, tmp_path / "run")
    out = train_dpa(cfg)
    run = tmp_path / "run"
    vals = _val_losses(run)
    assert len(vals) == 4
    assert vals[-1] < 0.8 * vals[0], vals  # validation loss clearly lower
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["best_val_loss"] == pytest.approx(min(vals), rel=1e-5)
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "images").glob("step_*.png"))) == 4
    assert list((run / "logs" / "tensorboard").rglob("events.out.tfevents.*"))
    assert (run / "config.yaml").is_file()

    model = load_dpa_model(out, "cpu")
    assert model.axis == 0 and model.size == 32 and model.meta["layers"] == ["relu2_2"]
    assert model.rule.min_fraction == pytest.approx(0.05) and model.normaliser == "volume"
    assert model.meta["step"] == summary["best_step"]
    from mood_dpa.data.slices import SliceStore

    x = torch.from_numpy(np.asarray(SliceStore(tiny_stores[0]).slices[:8], dtype=np.float32))[:, None]
    maps = model.pixel_maps(x)
    assert maps.numerators.shape == (8, 1, 32, 32) and torch.isfinite(maps.numerators).all()
    # the model file reproduces the training loss of the best checkpoint
    rel = model.relative_maps(maps.numerators, maps.denominators)
    assert torch.isfinite(rel).all() and float(rel.mean()) > 0

    # a second run into the same folder is refused; resuming a folder without checkpoints too
    with pytest.raises(MoodError, match="already holds"):
        train_dpa(cfg)
    with pytest.raises(MoodError, match="nothing to resume"):
        train_dpa(_cfg(tiny_stores, tmp_path / "empty"), resume=True)


class _Kill(Exception):
    pass


def test_kill_and_resume_continues_from_the_saved_step_with_the_same_optimiser(tiny_stores, tmp_path):
    import lightning as L

    from mood_dpa.methods.dpa.train import train_dpa

    class KillAt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 13:  # last.ckpt was saved at step 10
                raise _Kill()

    class Capture(L.Callback):
        def on_train_start(self, trainer, module):
            self.step = trainer.global_step
            opt = trainer.optimizers[0]
            self.state = {k: {n: v.clone() for n, v in s.items() if torch.is_tensor(v)} for k, s in opt.state_dict()["state"].items()}
            self.weights = {k: v.clone() for k, v in module.autoencoder.state_dict().items()}

    cfg = _cfg(tiny_stores, tmp_path / "run", optim__max_steps=20, optim__val_every=10)
    with pytest.raises(_Kill):
        train_dpa(cfg, callbacks=[KillAt()])
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 10
    cap = Capture()
    out = train_dpa(cfg, resume=True, callbacks=[cap])
    assert cap.step == 10
    saved_opt = saved["optimizer_states"][0]["state"]
    assert set(cap.state) == set(saved_opt) and len(saved_opt) > 0
    for k, s in saved_opt.items():
        for name, v in s.items():
            if torch.is_tensor(v):
                assert torch.equal(cap.state[k][name], v), (k, name)
    sd = {k[len("autoencoder."):]: v for k, v in saved["state_dict"].items() if k.startswith("autoencoder.")}
    assert all(torch.equal(cap.weights[k], sd[k]) for k in sd)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 20 and out.is_file()
    # validation history continued: steps 10 (before the kill) and 20 (after)
    assert len(_val_losses(tmp_path / "run")) == 2


def test_plain_l1_reference_and_early_stopping(tiny_stores, tmp_path):
    from mood_dpa.methods.dpa.model import load_dpa_model
    from mood_dpa.methods.dpa.train import train_dpa

    # min_delta so large that only the first validation counts as an improvement: the seed's rule stops
    # when (step - best_step) / val_every > patience, i.e. after 1 + (patience + 1) validations
    cfg = _cfg(tiny_stores, tmp_path / "l1", loss__kind="l1", optim__max_steps=200, optim__val_every=4,
               optim__min_delta=10.0, optim__patience=2)
    out = train_dpa(cfg)
    summary = json.loads((tmp_path / "l1" / "summary.json").read_text())
    assert summary["stopped_early"] and summary["steps"] == 16
    assert summary["best_step"] == 4  # the last validation that improved by more than min_delta
    model = load_dpa_model(out)
    assert model.meta["step"] == 4
    assert model.meta["loss"] == "l1" and model.meta["layers"] == []


def test_loss_explosion_aborts_with_a_clear_error(tiny_stores, tmp_path):
    from mood_dpa.methods.dpa.train import train_dpa

    cfg = _cfg(tiny_stores, tmp_path / "boom", optim__abort_above=1e-6, optim__max_steps=5)
    with pytest.raises(MoodError, match="exploded"):
        train_dpa(cfg)


def test_two_process_ddp_on_cpu_trains_and_saves_one_checkpoint(tiny_stores, tmp_path):
    from mood_dpa.config import dump_config

    cfg = _cfg(tiny_stores, tmp_path / "ddp", optim__max_steps=4, optim__val_every=4, trainer__checkpoint_every=100)
    path = tmp_path / "ddp.yaml"
    path.write_text(dump_config(cfg))
    env = {**os.environ, "MOOD_DPA_QUIET": "1", "OMP_NUM_THREADS": "1"}
    exe = Path(sys.executable).parent / "mood-dpa"  # the console script (Lightning's DDP launcher re-runs it)
    cmd = [str(exe), "train", str(path), "--devices", "2", "--accelerator", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (tmp_path / "ddp" / "model.pt").is_file()
    assert "model written to" in proc.stdout


# ------------------------------------------------------------------ configs and CLI


def _yaml_files(sub: str) -> list[Path]:
    return sorted((CONFIGS / sub).rglob("*.yaml"))


def test_seed_configs_carry_the_submitted_hyperparameters():
    from mood_dpa.config import load_config
    from mood_dpa.methods.dpa.config import DPATrainConfig

    table = {
        ("brain", "pixel", 0): (128, "relu3_2", 1e-4), ("brain", "pixel", 1): (128, "relu3_2", 1e-4),
        ("brain", "pixel", 2): (128, "relu3_2", 1e-4), ("brain", "sample", 0): (128, "relu4_2", 1e-4),
        ("brain", "sample", 1): (64, "relu3_2", 2e-4), ("brain", "sample", 2): (128, "relu4_2", 1e-4),
        ("abdom", "pixel", 0): (64, "relu4_2", 2e-4), ("abdom", "pixel", 2): (128, "relu4_2", 1e-4),
        ("abdom", "sample", 0): (128, "relu4_2", 1e-4), ("abdom", "sample", 2): (128, "relu4_2", 1e-4),
    }
    for (ds, task, axis), (c, layer, lr) in table.items():
        cfg = load_config(DPATrainConfig, CONFIGS / ds / task / f"axis_{axis}.yaml")
        assert (cfg.model.channels, cfg.model.latent, cfg.model.size, cfg.model.arch) == (c, c, 128, "residual9")
        assert cfg.loss.layers == [layer] and cfg.optim.lr == lr and cfg.loss.kind == "perceptual"
        assert (cfg.optim.batch_size, cfg.optim.max_steps, cfg.optim.val_every) == (64, 300_000, 10_000)
        assert (cfg.optim.min_delta, cfg.optim.patience, cfg.data.fold) == (0.002, 3, 0)
    assert len(_yaml_files("brain")) == 6 and len(_yaml_files("abdom")) == 4


def test_every_packaged_config_validates():
    from mood_dpa.config import load_config
    from mood_dpa.training.config import SimCLRConfig

    files = sorted(CONFIGS.rglob("*.yaml"))
    grid = _yaml_files("cross_validation")
    assert len(grid) == 5 * 4  # brain axes 0-2 and abdom axes 0, 2 x C in {64,128} x {relu3_2, relu4_2}
    from mood_dpa.config import read_yaml
    from mood_dpa.methods.registry import DEFAULT_METHOD, method_by_name

    for f in files:  # every config through the class `mood-dpa train` / `pretrain` would use
        cls = SimCLRConfig if "simclr" in f.name else method_by_name(read_yaml(f).get("method", DEFAULT_METHOD)).config
        load_config(cls, f)
    simclr = load_config(SimCLRConfig, CONFIGS / "simclr.yaml")
    assert (simclr.optim.batch_size, simclr.optim.temperature, simclr.optim.lr, simclr.optim.weight_decay) == (256, 0.5, 3e-4, 1e-5)
    assert simclr.augment.crop_size == 96 and len(simclr.data.stores) == 6


def test_cli_train_help_and_bad_override(cli, tmp_path, capsys, monkeypatch):
    # independent of the working directory: even one where the README's demo already ran (its configs'
    # relative run_dir mood_demo/runs/simclr then holds a run) gives the same answers
    monkeypatch.chdir(tmp_path)
    done = tmp_path / "mood_demo" / "runs" / "simclr" / "checkpoints"
    done.mkdir(parents=True)
    (done / "last.ckpt").write_bytes(b"x")
    run_dir = tmp_path / "fresh_run"
    assert cli(["train", "--help"]) == 0
    assert "--resume" in capsys.readouterr().out
    assert cli(["train", str(CONFIGS / "demo" / "dpa.yaml"), "--set", "optim.lr=-1", "--set", f"run_dir={run_dir}"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert cli(["pretrain", str(CONFIGS / "demo" / "simclr.yaml"), "--set", "data.stores=[" + str(tmp_path / "nope") + "]",
                "--set", f"run_dir={run_dir}"]) == 2
    assert "not a slice store" in capsys.readouterr().err
    assert not run_dir.exists()


def test_cosine_schedule_decays_the_learning_rate_to_zero_at_max_steps(tiny_stores, tmp_path):
    """optim.schedule=cosine: lr follows lr0 * (1 + cos(pi t / T)) / 2 per step (checked by hand at every step)."""
    import math

    from lightning.pytorch.callbacks import Callback

    from mood_dpa.methods.dpa.train import train_dpa

    seen: list[tuple[int, float]] = []

    class Record(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))

    cfg = _cfg(tiny_stores, tmp_path / "run", optim__schedule="cosine", optim__max_steps=12, optim__val_every=6)
    train_dpa(cfg, callbacks=[Record()])
    assert [s for s, _ in seen] == list(range(12))
    for step, lr in seen:
        assert lr == pytest.approx(2e-3 * (1 + math.cos(math.pi * step / 12)) / 2, rel=1e-9, abs=1e-15)
    # the default stays the seed's constant rate
    seen.clear()
    train_dpa(_cfg(tiny_stores, tmp_path / "const", optim__max_steps=6, optim__val_every=6), callbacks=[Record()])
    assert {lr for _, lr in seen} == {2e-3}


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # the step is called without a Trainer
def test_dpa_appearance_augmentation_changes_input_and_target_alike_and_resumes_its_stream(tiny_stores, tmp_path):
    """``appearance.p``: a share of the normal training slices gets another scanner's look (issue 16); the
    autoencoder then reconstructs the CHANGED slice and the loss compares it with the changed slice (both
    sides alike: still normal). The background stays 0, and the stream is seeded and kept in the checkpoint."""
    from torch import nn

    from mood_dpa.data.phantoms import make_phantom
    from mood_dpa.methods.dpa.lightning import DPAModule

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = []

        def forward(self, x, y):
            self.calls.append((x.detach().clone(), y.detach().clone()))
            return (x - y).abs().mean()

    vol = make_phantom("brain", 32, 11, 0)
    batch = torch.from_numpy(np.stack([vol[12], vol[16], vol[20], vol[8]]).astype(np.float32))[:, None]
    config = _cfg(tiny_stores, tmp_path / "run", appearance__p=1.0).model_dump(mode="json")
    module = DPAModule(config)
    module.loss_fn = Recorder()
    module.training_step(batch, 0)
    x_seen, y_seen = module.loss_fn.calls[0]
    assert not torch.allclose(x_seen, batch, atol=1e-3)  # the look changed ...
    assert torch.equal(x_seen == 0, batch == 0)  # ... the background did not
    with torch.no_grad():
        assert torch.allclose(y_seen, module.reconstruct(x_seen), atol=1e-6)  # the AE saw the changed slice
    ckpt: dict = {}
    module.stream.save(ckpt)
    resumed = DPAModule(config)
    resumed.stream.load(ckpt)
    assert torch.equal(module.stream.get(batch.device).get_state(), resumed.stream.get(batch.device).get_state())
    # off (the default): the loss sees the slices as they are
    plain = DPAModule(_cfg(tiny_stores, tmp_path / "plain").model_dump(mode="json"))
    plain.loss_fn = Recorder()
    plain.training_step(batch, 0)
    assert torch.equal(plain.loss_fn.calls[0][0], batch)
