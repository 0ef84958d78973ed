"""The segmenter: model file, raw scorers (2-D maps_fn contract, 3-D sliding window), training runs
(2-D and 3-D, early stopping, kill-and-resume, 2-process gloo DDP), configs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
import torch

from mood_dpa.errors import MoodError

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "mood_dpa" / "configs"
TINY = [4, 4, 8, 8, 16, 4]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict:
    """Six 32^3 brain phantoms, a folds CSV (3 folds) and slice stores of axes 0 and 1 at 32x32."""
    from mood_dpa.data.folds import make_folds, write_folds_csv
    from mood_dpa.data.phantoms import make_phantom
    from mood_dpa.data.slices import SliceRule, build_store
    from mood_dpa.volumes import write_volume

    root = tmp_path_factory.mktemp("seg")
    vols = root / "vols"
    vols.mkdir()
    for i in range(6):
        write_volume(vols / f"{i:05d}.nii.gz", make_phantom("brain", 32, 11, i), np.eye(4))
    folds = write_folds_csv(root / "folds.csv", make_folds([f"{i:05d}.nii.gz" for i in range(6)], 3, 0))
    rule = SliceRule(min_fraction=0.05)
    stores = [build_store(vols, root / f"axis_{a}", axis=a, size=32, rule=rule).path for a in (0, 1)]
    return {"vols": vols, "folds": folds, "stores": stores}


def _cfg(data, run_dir, dim=2, **over):
    from mood_dpa.methods.segmenter.config import SegmenterTrainConfig

    if dim == 2:
        d_data = {"stores": [str(s) for s in data["stores"]], "folds": str(data["folds"]), "max_val_slices": 16}
        model = {"features": TINY, "size": 32}
    else:
        d_data = {"volumes": str(data["vols"]), "folds": str(data["folds"]), "val_patches": 4}
        model = {"features": TINY, "patch": [32, 32, 32]}
    d = {
        "method": "segmenter", "name": "tiny", "dim": dim, "run_dir": str(run_dir), "data": d_data, "model": model,
        "anomalies": {"normal_p": 0.1},
        "optim": {"lr": 3e-3, "batch_size": 8 if dim == 2 else 2, "max_steps": 12, "val_every": 4, "min_delta": 0.0, "patience": 5},
        "trainer": {"accelerator": "cpu", "checkpoint_every": 4, "log_every": 2, "threads": 1},
    }
    for key, value in over.items():
        section, field = key.split("__")
        d[section][field] = value
    return SegmenterTrainConfig.model_validate(d)


def _val_losses(run_dir: Path) -> list[float]:
    out = []
    for path in sorted((run_dir / "logs" / "csv").rglob("metrics.csv")):
        with open(path, newline="") as fh:
            out += [float(r["val_loss"]) for r in csv.DictReader(fh) if r.get("val_loss")]
    return out


# ------------------------------------------------------------------ model file


def test_model_file_round_trip_and_clear_errors(tmp_path):
    from mood_dpa.methods.segmenter.model import SegmenterNet, load_segmenter_model, save_segmenter_model

    net = SegmenterNet(2, TINY, seed=3)
    meta = {"dim": 2, "axis": 1, "axes": [1], "size": 32, "rule": {"min_fraction": 0.05, "threshold": 0.0},
            "arch": {"features": TINY, "dropout": 0.0}, "name": "t", "step": 7}
    path = save_segmenter_model(tmp_path / "m.pt", net, meta)
    model = load_segmenter_model(path)
    assert (model.dim, model.axis, model.size, model.meta["step"]) == (2, 1, 32, 7)
    assert model.rule.min_fraction == pytest.approx(0.05)
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), torch.sigmoid(net.eval()(x)))
    assert not list(tmp_path.glob(".*"))  # no temporary left behind

    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(MoodError, match="not a readable model file"):
        load_segmenter_model(tmp_path / "junk.pt")
    torch.save({"format": "mood-dpa/dpa-model", "version": 1}, tmp_path / "dpa.pt")
    with pytest.raises(MoodError, match="not a segmenter model file"):
        load_segmenter_model(tmp_path / "dpa.pt")
    blob = torch.load(path, weights_only=True)
    blob["meta"]["arch"]["features"] = [8, 8, 8, 8, 8, 8]
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(MoodError, match="inconsistent"):
        load_segmenter_model(tmp_path / "bad.pt")
    with pytest.raises(MoodError, match="no such model file"):
        load_segmenter_model(tmp_path / "absent.pt")


# ------------------------------------------------------------------ scorers


class _Pointwise(torch.nn.Module):
    """A 1x1x1 conv 'U-Net': its output at a voxel depends on that voxel only."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, 1)
        torch.nn.init.constant_(self.conv.weight, 3.0)
        torch.nn.init.constant_(self.conv.bias, -1.0)

    def forward(self, x):
        return self.conv(x)


def _model3d(patch, net=None):
    from mood_dpa.methods.segmenter.model import SegmenterModel, SegmenterNet

    n = SegmenterNet(3, TINY, seed=0)
    if net is not None:
        n.unet = net
    return SegmenterModel(n, {"dim": 3, "patch": list(patch), "arch": {"features": TINY}}).eval()


def test_sliding_window_equals_whole_volume_forward(one_torch_thread):
    """Two checks. (a) A pointwise net with 16^3 windows, 50 % overlap and Gaussian blending on a 24x28x20
    volume: every window predicts the same value at a voxel, so the blended map must equal one forward
    pass (tests the tiling, padding and weight normalisation). (b) The real U-Net with a window covering
    the volume (32^3 >= 32x32x16, padded with background): equals the forward pass of the padded volume
    cropped back (a conv net's output near window borders depends on the window, so smaller windows of a
    conv net legitimately differ at the borders and are not compared)."""
    from mood_dpa.methods.segmenter.scorer import segmenter_volume_map

    g = torch.Generator().manual_seed(0)
    vol = torch.rand((24, 28, 20), generator=g)
    m = _model3d((16, 16, 16), _Pointwise())
    got = segmenter_volume_map(m, vol, sw_batch_size=3)
    with torch.no_grad():
        want = m(vol[None, None])[0, 0]
    assert got.shape == vol.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    vol = torch.rand((32, 32, 16), generator=g)
    m = _model3d((32, 32, 32))
    got = segmenter_volume_map(m, vol)
    padded = torch.nn.functional.pad(vol, (8, 8))  # the inferer centres the volume in the window
    with torch.no_grad():
        want = m(padded[None, None])[0, 0, :, :, 8:24]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_maps_fn_contract_through_the_shell_axis_scorer(one_torch_thread):
    from mood_dpa.data.slices import SliceRule, kept_indices, resize_slices, take_slices
    from mood_dpa.scoring.slice_inferer import axis_map
    from mood_dpa.methods.segmenter.model import SegmenterModel, SegmenterNet
    from mood_dpa.methods.segmenter.scorer import axis_models, segmenter_maps_fn

    model = SegmenterModel(SegmenterNet(2, TINY, seed=1), {"dim": 2, "axes": [0, 2], "size": 32, "rule": SliceRule().to_dict(),
                                                           "arch": {"features": TINY}, "name": "s"}).eval()
    x = torch.rand(5, 1, 32, 32)
    p, ones = segmenter_maps_fn(model)(x)
    assert p.shape == (5, 1, 32, 32) and torch.equal(ones, torch.ones(5, 1))
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    ams = axis_models(model)
    assert [a.axis for a in ams] == [0, 2] and all(a.normaliser == "slice" for a in ams)

    vol = torch.zeros(24, 24, 24)
    vol[4:20, 6:18, 5:19] = torch.rand(16, 12, 14, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    raw, idx = axis_map(vol, ams[1])
    keep = kept_indices(vol, 2, SliceRule())
    assert np.array_equal(np.asarray(idx.cpu()), keep)
    # slice k of the map along axis 2 = the model's map of slice k, resized to 32 and back (antialiased)
    stack = torch.as_tensor(np.asarray(take_slices(vol.numpy(), 2)))[keep][:, None]
    with torch.no_grad():
        maps = model(resize_slices(stack, 32).clamp(0, 1))
    back = torch.nn.functional.interpolate(maps, size=(24, 24), mode="bilinear", align_corners=False, antialias=True)
    got = raw.movedim(2, 0)[keep]
    torch.testing.assert_close(got, back[:, 0], atol=1e-4, rtol=1e-4)
    skipped = sorted(set(range(24)) - set(keep.tolist()))
    assert skipped and float(raw.movedim(2, 0)[skipped].abs().max()) == 0.0


# ------------------------------------------------------------------ training


def test_tiny_2d_run_writes_a_complete_run_and_model_file(tiny_data, tmp_path):
    from mood_dpa.methods.segmenter.model import load_segmenter_model
    from mood_dpa.methods.segmenter.train import train_segmenter

    run = tmp_path / "run"
    out = train_segmenter(_cfg(tiny_data, run, optim__max_steps=16))
    vals = _val_losses(run)
    assert len(vals) == 4 and all(np.isfinite(vals))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 16 and summary["best_val_loss"] == pytest.approx(min(vals), rel=1e-5)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    model = load_segmenter_model(out)
    assert model.dim == 2 and model.size == 32 and model.meta["axes"] == [0, 1] and model.axis is None
    assert model.meta["step"] == summary["best_step"] and model.rule.min_fraction == pytest.approx(0.05)
    # the model file reproduces the best checkpoint's validation loss
    from mood_dpa.methods.segmenter.lightning import SegmenterModule

    ck = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    mod = SegmenterModule(ck["hyper_parameters"]["config"])
    mod.load_state_dict(ck["state_dict"])
    assert all(torch.equal(a, b) for a, b in zip(mod.net.state_dict().values(), model.net.state_dict().values()))
    with pytest.raises(MoodError, match="already holds"):
        train_segmenter(_cfg(tiny_data, run))


def test_fixed_synthetic_validation_gives_the_same_loss_for_the_same_weights(tiny_data, tmp_path):
    from mood_dpa.methods.segmenter.lightning import SegmenterModule
    from mood_dpa.training.data import SliceDataModule

    cfg = _cfg(tiny_data, tmp_path / "x")
    mod = SegmenterModule(cfg.model_dump(mode="json")).eval()
    data = SliceDataModule(cfg.data, cfg.model.size, cfg.optim.batch_size)
    batch = next(iter(data.val_dataloader()))
    losses = []
    for _ in range(2):
        logged = {}
        mod.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
        with torch.no_grad():
            mod.validation_step(batch, 0)
        losses.append(logged["val_loss"])
    assert losses[0] == losses[1]


def test_early_stopping_then_resume_continues_the_run(tiny_data, tmp_path):
    import lightning as L

    from mood_dpa.methods.segmenter.train import train_segmenter

    # the seed's rule (the shared runner): the first validation (step 2) is the best, no later one improves by
    # min_delta; it stops when (step - best_step) / val_every > patience, i.e. at step 2 + 2 * (2 + 1) = 8
    run = tmp_path / "es"
    train_segmenter(_cfg(tiny_data, run, optim__max_steps=200, optim__val_every=2, optim__min_delta=10.0, optim__patience=2,
                         trainer__checkpoint_every=2))
    s = json.loads((run / "summary.json").read_text())
    assert s["stopped_early"] and s["steps"] == 8 and s["best_step"] == 2

    class Kill(Exception):
        pass

    class KillAt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 6:  # last.ckpt saved at step 4
                raise Kill()

    class Capture(L.Callback):
        def on_train_start(self, trainer, module):
            self.step = trainer.global_step
            self.weights = {k: v.clone() for k, v in module.net.state_dict().items()}

    run = tmp_path / "kill"
    cfg = _cfg(tiny_data, run, optim__max_steps=8)
    with pytest.raises(Kill):
        train_segmenter(cfg, callbacks=[KillAt()])
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 4 and "segmenter_generator_state" in saved
    cap = Capture()
    out = train_segmenter(cfg, resume=True, callbacks=[cap])
    assert cap.step == 4
    sd = {k[len("net."):]: v for k, v in saved["state_dict"].items() if k.startswith("net.")}
    assert all(torch.equal(cap.weights[k], sd[k]) for k in sd)
    assert json.loads((run / "summary.json").read_text())["steps"] == 8 and out.is_file()
    assert len(_val_losses(run)) == 2  # step 4 before the kill, step 8 after


def test_tiny_3d_run_on_patches_and_its_volume_map(tiny_data, tmp_path, one_torch_thread):
    from mood_dpa.methods.segmenter.model import load_segmenter_model
    from mood_dpa.methods.segmenter.scorer import segmenter_volume_map
    from mood_dpa.volumes import read_volume

    from mood_dpa.methods.segmenter.train import train_segmenter

    out = train_segmenter(_cfg(tiny_data, tmp_path / "r3", dim=3, optim__max_steps=4, optim__val_every=2))
    model = load_segmenter_model(out)
    assert model.dim == 3 and model.patch == (32, 32, 32)
    vol = torch.from_numpy(read_volume(tiny_data["vols"] / "00000.nii.gz").data)
    m = segmenter_volume_map(model, vol)
    assert m.shape == vol.shape and float(m.min()) >= 0 and float(m.max()) <= 1


def test_deep_supervision_heads_weights_and_loss(one_torch_thread):
    """DynUNet with two deep-supervision heads: in training three full-size heads, the first being the one
    inference uses; the loss is nnU-Net's 1 : 1/2 : 1/4 weighting of each head's loss (checked by hand)."""
    from mood_dpa.methods.segmenter.lightning import SegmenterModule, segmentation_loss
    from mood_dpa.methods.segmenter.model import SegmenterNet, supervision_weights

    assert supervision_weights(1) == [1.0]
    np.testing.assert_allclose(supervision_weights(3), [4 / 7, 2 / 7, 1 / 7])
    net = SegmenterNet(3, TINY, seed=0, net="dynunet", deep_supervision=2)
    x = torch.rand(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    heads = net.train().heads(x)
    assert len(heads) == 3 and all(h.shape == x.shape for h in heads)
    assert not torch.allclose(heads[0], heads[1])
    with torch.no_grad():
        main = net.eval()(x)  # instance norm and no dropout: the same main head in both modes
    torch.testing.assert_close(main, heads[0].detach(), atol=1e-5, rtol=1e-5)
    assert len(net.heads(x)) == 1  # eval: only the main head

    cfg = {"method": "segmenter", "name": "ds", "dim": 3, "run_dir": "unused", "data": {"volumes": "unused"},
           "model": {"features": TINY, "patch": [32, 32, 32], "net": "dynunet", "deep_supervision": 2},
           "optim": {"batch_size": 2, "dice_weight": 1.0}, "trainer": {"accelerator": "cpu", "seed": 0}}
    module = SegmenterModule(cfg).train()
    batch = torch.rand(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1))
    module.log = lambda *a, **k: None  # no trainer attached
    gen = module.stream.get(batch.device, 0)
    state = gen.get_state()
    loss = module.training_step(batch, 0)
    gen.set_state(state)  # the same anomaly draw again, by hand
    xa, target = module.generator(batch, gen)
    hs = module.net.heads(xa)
    want = sum(w * float(segmentation_loss(h.detach(), target, 1.0)) for w, h in zip([4 / 7, 2 / 7, 1 / 7], hs))
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)


def test_a_deep_supervised_3d_run_writes_a_model_that_loads_as_its_net(tiny_data, tmp_path, one_torch_thread):
    from mood_dpa.methods.segmenter.model import load_segmenter_model
    from mood_dpa.methods.segmenter.scorer import segmenter_volume_map
    from mood_dpa.methods.segmenter.train import train_segmenter
    from mood_dpa.volumes import read_volume

    out = train_segmenter(_cfg(tiny_data, tmp_path / "ds", dim=3, model__net="dynunet", model__deep_supervision=2,
                               optim__max_steps=4, optim__val_every=2))
    model = load_segmenter_model(out)
    assert type(model.net.unet).__name__ == "DynUNet" and model.meta["arch"]["deep_supervision"] == 2
    vol = torch.from_numpy(read_volume(tiny_data["vols"] / "00000.nii.gz").data)
    m = segmenter_volume_map(model, vol)
    assert m.shape == vol.shape and float(m.min()) >= 0 and float(m.max()) <= 1
    with pytest.raises(ValueError, match="deep_supervision needs net: dynunet"):
        _cfg(tiny_data, tmp_path / "x", dim=3, model__deep_supervision=1)


def test_patch_data_is_seeded_foreground_centred_and_split_by_fold(tiny_data):
    from mood_dpa.methods.segmenter.config import VolumeDataConfig
    from mood_dpa.methods.segmenter.data import PatchDataModule, crop

    cfg = VolumeDataConfig(volumes=str(tiny_data["vols"]), folds=str(tiny_data["folds"]), val_patches=3, foreground_p=1.0)
    a = PatchDataModule(cfg, (16, 16, 16), 2, length=10, seed=0)
    b = PatchDataModule(cfg, (16, 16, 16), 2, length=10, seed=0)
    assert len(a.train_vols) == 4 and len(a.val_vols) == 2
    assert all(torch.equal(a.train_set[i], b.train_set[i]) for i in range(10))
    assert not torch.equal(a.train_set[0], a.train_set[1])
    assert all(float(a.train_set[i][0, 8, 8, 8]) > 0 for i in range(10))  # centre voxel on the foreground
    assert torch.equal(a.val_set[2], b.val_set[2])
    vol = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    p = crop(vol, (0, 1, 2), (2, 2, 2))  # corners outside the volume are background
    assert p[0, 0, 0] == 0 and p[1, 0, 0] == vol[0, 0, 1] and p[1, 1, 1] == vol[0, 1, 2]


def test_two_process_ddp_on_cpu_saves_one_checkpoint(tiny_data, tmp_path):
    from mood_dpa.config import dump_config

    cfg = _cfg(tiny_data, tmp_path / "ddp", optim__max_steps=4, optim__val_every=4, trainer__checkpoint_every=100)
    path = tmp_path / "ddp.yaml"
    path.write_text(dump_config(cfg))
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "MOOD_DPA_QUIET": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    # `mood-dpa train` dispatches on `method: segmenter`; Lightning's DDP launcher re-runs the same command for rank 1
    cmd = [sys.executable, "-m", "mood_dpa", "train", str(path), "--devices", "2", "--accelerator", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (tmp_path / "ddp" / "model.pt").is_file() and "model written to" in proc.stdout


# ------------------------------------------------------------------ configs


def test_segmenter_configs_validate_and_mismatches_are_clear(tmp_path, capsys):
    from mood_dpa.config import load_config
    from mood_dpa.methods.segmenter.config import SegmenterTrainConfig

    files = sorted((CONFIGS / "segmenter").glob("*.yaml"))
    assert {f.name for f in files} >= {"demo_2d.yaml", "demo_3d.yaml", "mood_brain_2d.yaml", "mood_brain_3d.yaml",
                                       "mood_abdom_2d.yaml", "mood_abdom_3d.yaml"}
    for f in files:
        cfg = load_config(SegmenterTrainConfig, f)
        assert cfg.method == "segmenter" and cfg.dim == (3 if "_3d" in f.name else 2)
    with pytest.raises(MoodError, match="data needs 'volumes'"):
        load_config(SegmenterTrainConfig, CONFIGS / "segmenter" / "demo_2d.yaml", ["dim=3"])
    with pytest.raises(MoodError, match="model.size"):
        load_config(SegmenterTrainConfig, CONFIGS / "segmenter" / "demo_2d.yaml", ["model.size=40"])
    assert run_cli(["train", CONFIGS / "segmenter" / "demo_2d.yaml", "--set", "optim.lr=-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "optim.lr" in err
