"""Raw scorers of a segmenter model file: anomaly probabilities, batched on the device.

* 2-D: :func:`segmenter_maps_fn` follows the DPA's ``maps_fn`` contract of
  :class:`mood_dpa.scoring.slice_inferer.AxisModel` (slices in, (numerator maps, denominators) out), with the
  probability map as the only numerator and denominators of 1, so the shell's axis scorer places the
  maps by slice index, combines axes, masks, calibrates. A model trained on all three axes serves as one
  AxisModel per axis (:func:`axis_models`).
* 3-D: :func:`segmenter_volume_map` runs MONAI's ``sliding_window_inference`` over the whole volume with
  the training patch as window, 50 % overlap and Gaussian blending of the window probabilities (the
  window centre, where the net saw the most context, counts most).
"""

from __future__ import annotations

from typing import Callable

import torch

from ...errors import MoodError
from ...scoring.slice_inferer import AxisModel
from ...scoring.volume_inferer import VolumeModel
from .model import SegmenterModel, load_segmenter_model

MapsFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def segmenter_maps_fn(model: SegmenterModel) -> MapsFn:
    """x01 (B, 1, S, S) -> (probabilities (B, 1, S, S), ones (B, 1)) on x01's device."""
    if model.dim != 2:
        raise MoodError(f"segmenter {model.meta.get('name')!r} is a {model.dim}-D model; 2-D maps need a 2-D model")
    model.eval()

    def maps_fn(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            p = model(x01)
        return p, torch.ones((x01.shape[0], 1), dtype=torch.float32, device=x01.device)

    return maps_fn


def axis_models(model: SegmenterModel, axes=None, weight: float = 1.0) -> list:
    """One :class:`AxisModel` per axis (default: the axes the model was trained on) sharing the network."""
    if axes is None:
        axes = model.meta.get("axes") or ([model.axis] if model.axis is not None else [0, 1, 2])
    fn = segmenter_maps_fn(model)
    name = str(model.meta.get("name", "segmenter"))
    return [AxisModel(axis=int(a), size=int(model.size), maps_fn=fn, rule=model.rule, normaliser="slice", weight=weight,
                      name=f"{name}_axis{a}") for a in axes]


@torch.no_grad()
def segmenter_volume_map(model: SegmenterModel, volume: torch.Tensor, sw_batch_size: int = 4, overlap: float = 0.5,
                         amp: bool = False) -> torch.Tensor:
    """(D, H, W) volume in [0, 1] -> (D, H, W) float32 anomaly probabilities, on the volume's device."""
    # heavy: monai only for 3-D models
    from monai.inferers import sliding_window_inference

    if model.dim != 3:
        raise MoodError(f"segmenter {model.meta.get('name')!r} is a {model.dim}-D model; volume maps need a 3-D model")
    if volume.dim() != 3:
        raise MoodError(f"expected a 3-D volume, got shape {tuple(volume.shape)}")
    model.eval()
    x = volume.float()[None, None]
    use_amp = bool(amp) and x.device.type == "cuda"

    def predictor(patch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=use_amp):
            return model(patch).float()

    out = sliding_window_inference(x, roi_size=model.patch, sw_batch_size=sw_batch_size, predictor=predictor,
                                   overlap=overlap, mode="gaussian", padding_mode="constant", cval=0.0)
    return out[0, 0].float()


def volume_model(model: SegmenterModel, weight: float = 1.0):
    """The shell's :class:`~mood_dpa.scoring.volume_inferer.VolumeModel` of a 3-D segmenter (sliding window)."""
    def raw_fn(volume: torch.Tensor) -> torch.Tensor:
        if next(model.parameters()).device != volume.device:
            model.to(volume.device)
        return segmenter_volume_map(model, volume, amp=volume.device.type == "cuda")

    return VolumeModel(raw_fn=raw_fn, weight=float(weight), name=str(model.meta.get("name", "segmenter3d")))


def load_scorers(path, device=None) -> list:
    """The registry's loader: a segmenter model file -> one AxisModel per trained axis (2-D) or one VolumeModel (3-D)."""
    model = load_segmenter_model(path, device or "cpu")
    return axis_models(model) if model.dim == 2 else [volume_model(model)]
