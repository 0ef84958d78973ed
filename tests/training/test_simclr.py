"""SimCLR: NT-Xent against float64, the schedule, augmentations, and a tiny pre-training whose export
loads into the perceptual loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mood_dpa.models.ntxent import SimCLRNet, nt_xent
from mood_dpa.training.augment import SimCLRAugment, blur_kernel, seeded_rng
from mood_dpa.training.config import AugmentConfig
from mood_dpa.training.simclr import warmup_cosine
from test_training import tiny_stores  # noqa: F401  (session fixture: tiny phantom slice stores)


def _nt_xent_float64(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """SimCLR's definition, written out loop by loop in float64."""
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    n = n2 // 2
    sim = [[float(z[i] @ z[k] / (z[i].norm() * z[k].norm())) for k in range(n2)] for i in range(n2)]
    total = 0.0
    for i in range(n2):
        p = (i + n) % n2
        denom = sum(math.exp(sim[i][k] / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim[i][p] / t) / denom)
    return total / n2


@pytest.mark.parametrize("t", [0.5, 0.1])
def test_nt_xent_equals_float64_definition(t):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert float(nt_xent(z1, z2, t)) == pytest.approx(_nt_xent_float64(z1, z2, t), rel=1e-5)
    # identical views of well separated images give a lower loss than random pairs
    assert float(nt_xent(z1, z1 * 3.0, t)) < float(nt_xent(z1, z2, t))


def test_warmup_then_cosine_schedule():
    total, warm = 100, 10
    lrs = [warmup_cosine(s, total, warm) for s in range(total)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] < 0.01


def test_augment_views_are_batched_random_and_reproducible():
    aug = SimCLRAugment(AugmentConfig(crop_size=32))
    x = torch.rand(6, 1, 48, 48)
    with seeded_rng(1):
        v1 = aug(x)
    with seeded_rng(1):
        v2 = aug(x)
    with seeded_rng(2):
        v3 = aug(x)
    assert v1.shape == (6, 3, 32, 32) and float(v1.min()) >= 0 and float(v1.max()) <= 1
    assert torch.equal(v1, v2) and not torch.equal(v1, v3)
    assert torch.equal(v1[:, 0], v1[:, 2])  # grey stays grey
    assert blur_kernel(96, 0.1) == 9 and blur_kernel(32, 0.1) == 3


def test_simclr_net_head_shape_matches_the_seed():
    net = SimCLRNet(width=1.0)
    assert net.head[0].in_features == 25_088 and net.head[0].out_features == 2048 and net.head[2].out_features == 256
    small = SimCLRNet(width=0.125, hidden=32, out_dim=8)
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 8)


def test_tiny_pretraining_exports_a_vgg_file_the_perceptual_loss_loads(tiny_stores, tmp_path):
    from mood_dpa.models.perceptual import RelativePerceptualL1
    from mood_dpa.models.backbones.vgg19 import VGG19Features, load_vgg_weights, vgg_from_file
    from mood_dpa.training.config import SimCLRConfig
    from mood_dpa.training.runner import pretrain_simclr

    cfg = SimCLRConfig.model_validate(
        {
            "run_dir": str(tmp_path / "simclr"),
            # two stores (two axes) at once
            "data": {"stores": [str(tiny_stores[0]), str(tiny_stores[1])], "n_folds": 3},
            "model": {"width": 0.125, "hidden": 32, "out_dim": 16},
            "augment": {"crop_size": 32},
            "optim": {"batch_size": 32, "epochs": 2, "warmup_epochs": 0.5, "lr": 1e-3},
            "trainer": {"accelerator": "cpu", "log_every": 1, "threads": 1},
        }
    )
    out = pretrain_simclr(cfg)
    assert out.name == "vgg19_simclr.pt" and out.is_file()
    net = vgg_from_file(out, ["relu3_2"])
    assert net.width == 0.125
    loss = RelativePerceptualL1(net)
    x = torch.rand(2, 1, 32, 32)
    assert float(loss(x, x)) == 0.0 and float(loss(x, 1 - x)) > 0
    # the exported weights are the trained ones (not the initial ones), loaded by name
    init = VGG19Features(("relu3_2",), width=0.125, seed=0)
    assert not torch.equal(init.state_dict()["features.0.weight"], net.state_dict()["features.0.weight"])
    load_vgg_weights(init, out)
    assert torch.equal(init.state_dict()["features.12.weight"], net.state_dict()["features.12.weight"])
    import csv

    with open(next((tmp_path / "simclr" / "logs" / "csv").rglob("metrics.csv")), newline="") as fh:
        rows = list(csv.DictReader(fh))
    vals = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    lrs = [float(r["lr"]) for r in rows if r.get("lr")]
    assert len(vals) == 2 and all(np.isfinite(vals))  # one validation per epoch
    assert max(lrs) == pytest.approx(1e-3, rel=0.2) and lrs[-1] < lrs[len(lrs) // 2]  # warm-up, then decay


def test_pretraining_shorter_than_an_epoch_still_validates_and_exports(tiny_stores, tmp_path):
    from mood_dpa.models.backbones.vgg19 import vgg_from_file
    from mood_dpa.training.config import SimCLRConfig
    from mood_dpa.training.runner import pretrain_simclr

    cfg = SimCLRConfig.model_validate(
        {
            "run_dir": str(tmp_path / "short"),
            "data": {"stores": [str(tiny_stores[0])], "n_folds": 3},
            "model": {"width": 0.125, "hidden": 16, "out_dim": 8},
            "augment": {"crop_size": 32},
            "optim": {"batch_size": 16, "epochs": 50, "max_steps": 2, "warmup_epochs": 0},
            "trainer": {"accelerator": "cpu", "threads": 1},
        }
    )
    out = pretrain_simclr(cfg)
    import json

    summary = json.loads((tmp_path / "short" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["best_val_loss"] is not None
    assert vgg_from_file(out, ["relu1_1"]).width == 0.125
