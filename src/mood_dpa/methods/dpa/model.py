"""The DPA model file: one self-contained ``.pt`` that inference opens with :func:`load_dpa_model`.

File layout (``torch.save`` of a plain dict; read back with ``weights_only=True``)::

    {"format": "mood-dpa/dpa-model", "version": 1,
     "meta": {...},                         # see DPAModel.meta below
     "autoencoder": state_dict,             # ResidualAE
     "vgg": state_dict | None}              # VGG19Features truncated at the deepest layer (None for loss 'l1')

``meta`` keys: ``arch`` {arch, channels, latent, size}, ``axis`` (int), ``size`` (slice size the model
takes), ``loss`` ("perceptual" | "l1"), ``layers`` (VGG layer names), ``weights`` (one per layer),
``vgg_width``, ``backbone`` (name in :mod:`mood_dpa.models.backbones`; "vgg19" when absent), ``vgg_sha256`` (hash of the VGG file training used, or None for a seeded random VGG),
``rule`` (the :class:`mood_dpa.data.slices.SliceRule` as a dict), ``normaliser`` ("slice" | "volume"),
plus free-form provenance (``name``, ``best_val_loss``, ``step`` ...).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch
from torch import nn

from ...data.slices import SliceRule
from ...errors import MoodError
from ...models.autoencoder import ResidualAE
from ...models.backbones import backbone
from ...models.perceptual import PixelL1, RelativePerceptualL1, combine_maps
from ..model_file import load_model_file, save_model_file

FORMAT = "mood-dpa/dpa-model"
VERSION = 1
REQUIRED_META = ("arch", "axis", "size", "loss", "layers", "weights", "rule", "normaliser")


class PixelMaps(NamedTuple):
    """What :meth:`DPAModel.pixel_maps` returns for a batch of N slices at slice size S.

    * ``recon``: (N, 1, S, S) reconstruction in the [0, 1] scale of the input (not clipped).
    * ``numerators``: (N, L, S, S) per-layer maps ``mean_c |F_l(x) - F_l(y)|`` up-sampled bilinearly
      to S (L = number of VGG layers; for loss 'l1': L = 1 and the map is ``|x - y|``).
    * ``denominators``: (N, L) per-slice ``mean_{c,i,j} |F_l(x)|`` (ones for loss 'l1').
    """

    recon: torch.Tensor
    numerators: torch.Tensor
    denominators: torch.Tensor


class DPAModel(nn.Module):
    """A trained Deep Perceptual Autoencoder for one axis, ready for inference.

    Contract for the volume scorer::

        model = load_dpa_model("model.pt", device)           # eval mode, frozen
        x01 = resize_slices(kept_slices, model.size)          # (N, 1, S, S) in [0, 1]
        out = model.pixel_maps(x01)                           # PixelMaps(recon, numerators, denominators)
        # per-slice normaliser:
        maps = model.relative_maps(out.numerators, out.denominators)            # (N, 1, S, S)
        # per-volume normaliser (the seed's): one denominator per layer for ALL kept slices of the
        # volume, i.e. the mean of the per-slice denominators over the volume (collect them over chunks):
        maps = model.relative_maps(out.numerators, all_denominators.mean(0))     # (N, 1, S, S)

    ``model.normaliser`` says which one the model was configured for ("slice" | "volume");
    ``model.axis``, ``model.size``, ``model.rule`` (SliceRule) say how to slice the volume.
    ``relative_maps`` computes ``sum_l w_l * numerators[:, l] / denominators[..., l]``.
    """

    def __init__(self, autoencoder: ResidualAE, loss: RelativePerceptualL1 | PixelL1, meta: Mapping[str, Any]) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.loss = loss
        self.meta = dict(meta)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    # ---- what the scorer needs to slice a volume
    @property
    def axis(self) -> int:
        return int(self.meta["axis"])

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def normaliser(self) -> str:
        return str(self.meta["normaliser"])

    @property
    def rule(self):
        return SliceRule.from_dict(self.meta["rule"])

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(float(w) for w in self.meta["weights"])

    # ---- computation
    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        """(N,1,S,S) in [0,1] -> reconstruction in the same scale (the AE works on 2x-1)."""
        return (self.autoencoder(x01 * 2.0 - 1.0) + 1.0) * 0.5

    @torch.no_grad()
    def pixel_maps(self, x01: torch.Tensor) -> PixelMaps:
        """Reconstruction, per-layer numerator maps (N,L,S,S) and per-slice denominators (N,L)."""
        if x01.dim() != 4 or x01.shape[1] != 1 or x01.shape[-1] != self.size or x01.shape[-2] != self.size:
            raise ValueError(f"DPAModel expects (N,1,{self.size},{self.size}) in [0,1], got {tuple(x01.shape)}")
        y01 = self.reconstruct(x01)
        num, den = self.loss.maps(x01, y01, self.size)
        return PixelMaps(y01.float(), num.float(), den.float())

    def relative_maps(self, numerators: torch.Tensor, denominators: torch.Tensor) -> torch.Tensor:
        """``sum_l w_l * num_l / den_l`` -> (N,1,S,S); ``denominators`` (N,L) per slice or (L,) shared."""
        return combine_maps(numerators, denominators, self.weights)

    def forward(self, x01: torch.Tensor) -> PixelMaps:
        return self.pixel_maps(x01)

    def save(self, path: str | os.PathLike) -> Path:
        return save_dpa_model(path, self.autoencoder, self.loss, self.meta)


def save_dpa_model(
    path: str | os.PathLike, autoencoder: ResidualAE, loss: RelativePerceptualL1 | PixelL1, meta: Mapping[str, Any]
) -> Path:
    """Atomically write a model file. ``meta`` needs ``axis``, ``rule``, ``normaliser`` at least; the
    architecture, slice size, loss kind, layers and weights are filled in from the modules."""
    meta = dict(meta)
    meta["arch"] = autoencoder.config()
    meta["size"] = autoencoder.size
    meta["loss"] = loss.kind
    meta["layers"] = list(loss.layers)
    meta["weights"] = list(loss.weights)
    if isinstance(loss, RelativePerceptualL1):
        meta["vgg_width"] = loss.features.width
        meta.setdefault("backbone", "vgg19")
        vgg = {k: v.detach().cpu().float().clone() for k, v in loss.features.state_dict().items()}
    else:
        meta.setdefault("vgg_width", None)
        vgg = None
    meta.setdefault("vgg_sha256", None)
    if hasattr(meta["rule"], "to_dict"):
        meta["rule"] = meta["rule"].to_dict()
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise MoodError(f"model file meta lacks {missing}")
    if meta["normaliser"] not in ("slice", "volume"):
        raise MoodError(f"normaliser must be 'slice' or 'volume', got {meta['normaliser']!r}")
    return save_model_file(path, FORMAT, VERSION, meta, autoencoder={k: v.detach().cpu().float().clone() for k, v in autoencoder.state_dict().items()}, vgg=vgg)


def load_dpa_model(path: str | os.PathLike, device: str | torch.device | None = None) -> DPAModel:
    """Open a model file written by :func:`save_dpa_model`; every part is checked (one-line MoodError)."""
    payload = load_model_file(path, FORMAT, VERSION, "DPA")
    meta = payload["meta"]
    if any(k not in meta for k in REQUIRED_META):
        raise MoodError(f"{path}: model file meta is incomplete (needs {', '.join(REQUIRED_META)})")
    arch = meta["arch"]
    try:
        ae = ResidualAE(arch["arch"], int(arch["channels"]), int(arch["latent"]), int(arch["size"]))
        ae.load_state_dict(payload["autoencoder"], strict=True)
        if meta["loss"] == "perceptual":
            vgg = backbone(str(meta.get("backbone") or "vgg19")).build(tuple(meta["layers"]), width=float(meta["vgg_width"]))
            vgg.load_state_dict(payload["vgg"], strict=True)
            loss: RelativePerceptualL1 | PixelL1 = RelativePerceptualL1(vgg, meta["weights"])
        elif meta["loss"] == "l1":
            loss = PixelL1()
        else:
            raise MoodError(f"{path}: unknown loss kind {meta['loss']!r}")
    except MoodError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MoodError(f"{path}: model file does not match its architecture ({first})") from None
    model = DPAModel(ae, loss, meta)
    if device is not None:
        model = model.to(device)
    return model
