"""VGG19 features, weight loading, the residual autoencoder and the DPA model file."""

from __future__ import annotations

import pytest
import torch

from mood_dpa.errors import MoodError
from mood_dpa.models.autoencoder import ResidualAE, count_parameters, n_stages
from mood_dpa.methods.dpa.model import DPAModel, load_dpa_model, save_dpa_model
from mood_dpa.models.perceptual import PixelL1, RelativePerceptualL1
from mood_dpa.models.backbones.vgg19 import (
    CONV_INDICES,
    LAYER_INDEX,
    VGG19Features,
    load_vgg_weights,
    save_vgg_features,
    vgg_from_file,
)

RULE = {"min_fraction": 4000 / 65536, "threshold": 0.0}


# ------------------------------------------------------------------ autoencoder


@pytest.mark.parametrize("c, enc, dec", [(128, 2_034_560, 1_739_265), (64, 509_376, 435_457)])
def test_residual9_parameter_counts_match_the_seed(c, enc, dec):
    ae = ResidualAE("residual9", channels=c, latent=c, size=128)
    assert count_parameters(ae.encoder) == enc
    assert count_parameters(ae.decoder) == dec


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_autoencoder_any_size_has_a_1x1_latent(size):
    ae = ResidualAE("residual9", channels=4, latent=3, size=size)
    assert len(ae.encoder.blocks) == 1 + n_stages(size)
    x = torch.rand(2, 1, size, size) * 2 - 1
    z = ae.encoder(x)
    assert z.shape == (2, 3, 1, 1)
    assert ae(x).shape == (2, 1, size, size)


def test_residual18_has_two_residual_blocks_per_stage():
    r9 = ResidualAE("residual9", channels=8, latent=8, size=32)
    r18 = ResidualAE("residual18", channels=8, latent=8, size=32)
    per_block = 2 * (9 * 8 * 8 + 8)
    stages = n_stages(32)
    # one extra residual block at full resolution and one after every down / up block
    assert count_parameters(r18.encoder) - count_parameters(r9.encoder) == (1 + stages) * per_block
    assert count_parameters(r18.decoder) - count_parameters(r9.decoder) == stages * per_block
    assert r18(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_autoencoder_refuses_bad_sizes_and_arch():
    for size in (16, 48, 512):
        with pytest.raises(MoodError):
            ResidualAE(size=size, channels=4, latent=4)
    with pytest.raises(MoodError):
        ResidualAE("resnet50", channels=4, latent=4, size=32)


def test_autoencoder_init_is_seeded_kaiming_fan_out():
    a = ResidualAE(channels=16, latent=16, size=32, seed=3)
    b = ResidualAE(channels=16, latent=16, size=32, seed=3)
    c = ResidualAE(channels=16, latent=16, size=32, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["encoder.conv_in.weight"], sc["encoder.conv_in.weight"])
    assert all(float(v.abs().sum()) == 0 for k, v in sa.items() if k.endswith("bias"))
    # kaiming normal, fan_out, leaky_relu(0.2): std = sqrt(2 / (1 + 0.2^2)) / sqrt(fan_out)
    w = a.encoder.blocks[0].conv1.weight.detach()
    expected = (2 / 1.04) ** 0.5 / (16 * 9) ** 0.5
    assert abs(float(w.std()) - expected) / expected < 0.1


# ------------------------------------------------------------------ VGG19


def test_vgg_layer_table_matches_torchvision_indices():
    assert CONV_INDICES == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert LAYER_INDEX["relu3_2"] == 13 and LAYER_INDEX["relu4_2"] == 22 and LAYER_INDEX["pool5"] == 36


def test_vgg_features_shapes_and_truncation():
    net = VGG19Features(("relu4_2", "relu3_2"), width=0.125)
    # stops at the deepest requested layer (relu4_2 = module 22)
    assert len(net.features) == 23
    a, b = net(torch.rand(2, 1, 64, 64))
    assert a.shape == (2, 64, 8, 8) and b.shape == (2, 32, 16, 16)
    full = VGG19Features(("relu3_2",))
    assert full(torch.rand(1, 1, 128, 128))[0].shape == (1, 256, 32, 32)
    assert set(full.state_dict()) == {f"features.{i}.{p}" for i in CONV_INDICES[:6] for p in ("weight", "bias")}
    with pytest.raises(MoodError):
        VGG19Features(("relu9_9",))


def test_vgg_grey_input_equals_replicated_rgb():
    net = VGG19Features(("relu2_1",), width=0.125)
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(net(x)[0], net(x.repeat(1, 3, 1, 1))[0])


def test_frozen_vgg_passes_gradient_to_the_input():
    net = VGG19Features(("relu3_2",), width=0.125).freeze()
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    net(x)[0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())


def _torchvision_like_state(width: float = 1.0, seed: int = 1) -> dict:
    """What torchvision's vgg19().state_dict() looks like: features.N.* plus classifier.*."""
    full = VGG19Features(None, width=width, seed=seed)
    state = dict(full.state_dict())
    state["classifier.0.weight"] = torch.zeros(4, 4)
    state["classifier.0.bias"] = torch.zeros(4)
    return state


def test_load_torchvision_style_state_by_name(tmp_path):
    state = _torchvision_like_state(width=0.125)
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    net = load_vgg_weights(VGG19Features(("relu3_2",), width=0.125, seed=99), path)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k])


def test_our_export_roundtrip(tmp_path):
    full = VGG19Features(None, width=0.125, seed=5)
    path = save_vgg_features(tmp_path / "v.pt", full, {"note": "test"})
    net = vgg_from_file(path, ["relu2_2"])
    assert net.width == 0.125
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in net.state_dict().items())


def test_weight_loading_refuses_wrong_files(tmp_path):
    good = _torchvision_like_state(width=0.125)
    target = VGG19Features(("relu3_2",), width=0.125)

    def refuse(obj, pattern):
        path = tmp_path / "bad.pt"
        if isinstance(obj, bytes):
            path.write_bytes(obj)
        else:
            torch.save(obj, path)
        with pytest.raises(MoodError, match=pattern):
            load_vgg_weights(target, path)

    # wrong width: every name present, shapes differ
    refuse(_torchvision_like_state(width=0.25), "has shape")
    # a deeper conv missing (partial file)
    partial = {k: v for k, v in good.items() if not k.startswith("features.34.")}
    refuse(partial, "missing")
    # batch-norm VGG keys
    bn = dict(good)
    bn["features.1.running_mean"] = torch.zeros(8)
    refuse(bn, "unexpected key")
    # something else entirely
    refuse({"encoder.weight": torch.zeros(3)}, "not a VGG19")
    refuse(b"this is not a torch file", "not a readable")
    with pytest.raises(MoodError, match="no such"):
        load_vgg_weights(target, tmp_path / "absent.pt")
    # the refused loads left the module untouched and usable
    assert target(torch.rand(1, 1, 32, 32))[0].shape[1] == 32


# ------------------------------------------------------------------ model file


def _tiny_model(kind="perceptual"):
    ae = ResidualAE("residual9", channels=8, latent=8, size=32, seed=1)
    loss = RelativePerceptualL1(VGG19Features(("relu2_2", "relu3_1"), width=0.125), [1.0, 0.5]) if kind == "perceptual" else PixelL1()
    return ae, loss


@pytest.mark.parametrize("kind", ["perceptual", "l1"])
def test_model_file_roundtrip_and_pixel_maps(tmp_path, kind):
    ae, loss = _tiny_model(kind)
    path = save_dpa_model(tmp_path / "m.pt", ae, loss, {"axis": 2, "rule": RULE, "normaliser": "slice", "name": "t"})
    model = load_dpa_model(path, "cpu")
    assert isinstance(model, DPAModel)
    assert (model.axis, model.size, model.normaliser, model.meta["loss"]) == (2, 32, "slice", kind)
    assert model.rule.min_fraction == pytest.approx(RULE["min_fraction"])
    x = torch.rand(3, 1, 32, 32)
    out = model.pixel_maps(x)
    n_layers = 2 if kind == "perceptual" else 1
    assert out.recon.shape == (3, 1, 32, 32)
    assert out.numerators.shape == (3, n_layers, 32, 32) and out.denominators.shape == (3, n_layers)
    with torch.no_grad():
        expect_recon = (ae(2 * x - 1) + 1) / 2
    assert torch.allclose(out.recon, expect_recon, atol=1e-6)
    per_slice = model.relative_maps(out.numerators, out.denominators)
    shared = model.relative_maps(out.numerators, out.denominators.mean(0))
    assert per_slice.shape == shared.shape == (3, 1, 32, 32)
    if kind == "perceptual":
        # the map's spatial mean equals the relative loss for a single full-resolution layer; here check
        # the per-slice combination by hand
        w = torch.tensor([1.0, 0.5])
        hand = (out.numerators * (w / out.denominators)[:, :, None, None]).sum(1, keepdim=True)
        assert torch.allclose(per_slice, hand)
        assert not torch.allclose(per_slice, shared)


def test_model_file_refuses_mismatch(tmp_path):
    ae, loss = _tiny_model()
    path = save_dpa_model(tmp_path / "m.pt", ae, loss, {"axis": 0, "rule": RULE, "normaliser": "volume"})
    payload = torch.load(path, weights_only=True)
    payload["meta"]["arch"]["channels"] = 16
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(MoodError, match="does not match"):
        load_dpa_model(tmp_path / "bad.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(MoodError, match="not a mood-dpa"):
        load_dpa_model(tmp_path / "other.pt")
    with pytest.raises(MoodError):
        save_dpa_model(tmp_path / "x.pt", ae, loss, {"axis": 0, "rule": RULE, "normaliser": "per-pixel"})
    assert not (tmp_path / "x.pt").exists()
