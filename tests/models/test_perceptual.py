"""Relative perceptual L1: loss and map against a float64 hand computation; gradient flow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mood_dpa.errors import MoodError
from mood_dpa.models.perceptual import PixelL1, RelativePerceptualL1, combine_maps
from mood_dpa.models.backbones.vgg19 import VGG19Features


def _vgg(layers, width=0.125, seed=0):
    return VGG19Features(layers, width=width, seed=seed)


def _hand_features64(vgg: VGG19Features, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Every module's output, computed in float64 by hand (conv2d / relu / max-pool)."""
    h = x.double().expand(-1, 3, -1, -1)
    out = {}
    for i, m in enumerate(vgg.features):
        if isinstance(m, torch.nn.Conv2d):
            h = F.conv2d(h, m.weight.double(), m.bias.double(), padding=1)
        elif isinstance(m, torch.nn.ReLU):
            h = h.clamp_min(0)
        else:
            h = F.max_pool2d(h, 2)
        out[i] = h
    return out


def _pair(seed=0, n=3, s=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, s, s, generator=g)
    y = (x + 0.2 * torch.randn(n, 1, s, s, generator=g)).clamp(0, 1)
    return x, y


def test_single_layer_loss_equals_float64_hand_computation():
    vgg = _vgg(("relu3_2",))
    loss = RelativePerceptualL1(vgg)
    x, y = _pair()
    fx = _hand_features64(vgg, x)[13]
    fy = _hand_features64(vgg, y)[13]
    per = (fx - fy).abs().mean(dim=(1, 2, 3)) / fx.abs().mean(dim=(1, 2, 3))
    got = loss(x, y)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(per.mean()), rel=1e-5)
    assert torch.allclose(loss.per_sample(x, y).double(), per, rtol=1e-5)


def test_multi_layer_weighted_loss_and_maps_equal_hand_computation():
    layers, weights = ("relu2_2", "relu3_2"), (0.7, 1.3)
    vgg = _vgg(layers)
    loss = RelativePerceptualL1(vgg, weights)
    x, y = _pair(seed=1)
    hx, hy = _hand_features64(vgg, x), _hand_features64(vgg, y)
    idx = [8, 13]
    per = sum(w * (hx[i] - hy[i]).abs().mean(dim=(1, 2, 3)) / hx[i].abs().mean(dim=(1, 2, 3)) for w, i in zip(weights, idx))
    assert float(loss(x, y)) == pytest.approx(float(per.mean()), rel=1e-5)

    num, den = loss.maps(x, y, size=32)
    assert num.shape == (3, 2, 32, 32) and den.shape == (3, 2)
    for k, i in enumerate(idx):
        m = (hx[i] - hy[i]).abs().mean(1, keepdim=True)
        m = F.interpolate(m, size=(32, 32), mode="bilinear", align_corners=False)
        assert torch.allclose(num[:, k : k + 1].double(), m, rtol=1e-5, atol=1e-7)
        assert torch.allclose(den[:, k].double(), hx[i].abs().mean(dim=(1, 2, 3)), rtol=1e-5)

    # per-slice normaliser: map = sum_l w_l num_l / den_l (slice's own); shared: one den per layer
    per_slice = combine_maps(num, den, weights)
    shared_den = den.mean(0)
    shared = combine_maps(num, shared_den, weights)
    hand_slice = sum(w * num[:, k].double() / den[:, k, None, None].double() for k, w in enumerate(weights))
    hand_shared = sum(w * num[:, k].double() / shared_den[k].double() for k, w in enumerate(weights))
    assert torch.allclose(per_slice[:, 0].double(), hand_slice, rtol=1e-5)
    assert torch.allclose(shared[:, 0].double(), hand_shared, rtol=1e-5)


def test_map_mean_matches_the_loss_at_native_resolution():
    # at the layer's own resolution, the spatial mean of the relative map is the per-sample loss
    loss = RelativePerceptualL1(_vgg(("relu1_2",)))
    x, y = _pair(seed=2)
    num, den = loss.maps(x, y, size=32)  # relu1_2 is at full resolution: no resampling
    rel = combine_maps(num, den, [1.0])
    assert torch.allclose(rel.mean(dim=(1, 2, 3)), loss.per_sample(x, y), rtol=1e-5)


def test_no_gradient_reaches_vgg_and_the_denominator_carries_none():
    vgg = _vgg(("relu3_2",))
    loss = RelativePerceptualL1(vgg)
    x, y0 = _pair(seed=3, n=2)
    x = x.clone().requires_grad_(True)  # the real image: only the denominator and F(x) depend on it
    y = y0.clone().requires_grad_(True)
    loss(x, y).backward()
    assert all(p.grad is None and not p.requires_grad for p in vgg.parameters())
    assert x.grad is None  # F(x) and the denominator are stop-gradient
    assert y.grad is not None and float(y.grad.abs().sum()) > 0

    # d loss / d y equals the float64 gradient with the denominator held constant
    y64 = y0.double().clone().requires_grad_(True)
    x64 = x.detach().double()
    vgg64 = _vgg(("relu3_2",)).double()
    with torch.no_grad():
        fx = vgg64(x64)[0]
    den = fx.abs().mean(dim=(1, 2, 3))
    fy = vgg64(y64)[0]
    ((fx - fy).abs().mean(dim=(1, 2, 3)) / den).mean().backward()
    assert torch.allclose(y.grad.double(), y64.grad, rtol=1e-3, atol=1e-9)


def test_vgg_stays_frozen_in_train_mode():
    loss = RelativePerceptualL1(_vgg(("relu2_1",)))
    loss.train()
    assert not loss.features.training
    assert not any(p.requires_grad for p in loss.parameters())


def test_weights_must_match_layers():
    with pytest.raises(MoodError):
        RelativePerceptualL1(_vgg(("relu2_1", "relu3_1")), [1.0])


def test_pixel_l1_reference():
    x, y = _pair(seed=4)
    l1 = PixelL1()
    assert float(l1(x, y)) == pytest.approx(float((x.double() - y.double()).abs().mean()), rel=1e-6)
    num, den = l1.maps(x, y)
    assert torch.allclose(num, (x - y).abs()) and torch.equal(den, torch.ones(3, 1))
