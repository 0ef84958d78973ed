"""VGG19 convolutional feature extractor (no batch norm), defined here with torchvision's names.

The module's parameters are called ``features.N.weight`` / ``features.N.bias`` where ``N`` is the
index torchvision uses in ``vgg19().features`` (0, 2, 5, 7, 10, ..., 34), so a torchvision VGG19
state dict loads by name, and so does our own SimCLR export (:func:`save_vgg_features`).

Nothing is downloaded: weights come from a file the user has (our SimCLR pre-training, or any
torchvision-format VGG19 file) or from a seeded random initialisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from ...atomic import atomic_path
from ...errors import MoodError
from ...ownership import file_sha256  # noqa: F401  (part of the backbone interface: the hash model files record)

#: torchvision's ``cfgs["E"]``: conv widths, "M" = 2x2 max-pool.
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)

FILE_FORMAT = "mood-dpa/vgg19-features"


def _layer_table() -> tuple[dict[str, int], list[int]]:
    """Map ``conv3_2`` / ``relu3_2`` / ``pool3`` to the torchvision index; list the conv indices."""
    names: dict[str, int] = {}
    convs: list[int] = []
    idx, block, k = 0, 1, 1
    for v in VGG19_CFG:
        if v == "M":
            names[f"pool{block}"] = idx
            idx += 1
            block, k = block + 1, 1
        else:
            names[f"conv{block}_{k}"] = idx
            names[f"relu{block}_{k}"] = idx + 1
            convs.append(idx)
            idx += 2
            k += 1
    return names, convs


LAYER_INDEX, CONV_INDICES = _layer_table()
N_MODULES = 37  # len(torchvision vgg19().features)


def layer_channels(layer: str, width: float = 1.0) -> int:
    """Number of channels of a named layer's output (``relu3_2`` -> 256 at width 1)."""
    idx = LAYER_INDEX[check_layer_name(layer)]
    ch = 3
    i = 0
    for v in VGG19_CFG:
        if v == "M":
            i += 1
        else:
            ch = _width(v, width)
            i += 2
        if i > idx:
            break
    return ch


def layer_stride(layer: str) -> int:
    """Down-sampling factor of a named layer relative to the input (``relu3_2`` -> 4)."""
    idx = LAYER_INDEX[check_layer_name(layer)]
    pools = sum(1 for name, j in LAYER_INDEX.items() if name.startswith("pool") and j <= idx)
    return 2**pools


def check_layer_name(layer: str) -> str:
    if layer not in LAYER_INDEX:
        known = ", ".join(n for n in LAYER_INDEX if n.startswith("relu"))
        raise MoodError(f"unknown VGG19 layer {layer!r}; use one of {known} (or convA_B / poolA)")
    return layer


def _width(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class VGG19Features(nn.Module):
    """The VGG19 conv stack, returning the activations of the requested layers.

    * ``layers``: names such as ``("relu3_2",)`` or ``("relu3_2", "relu4_2")``; :meth:`forward`
      returns a list of tensors in that order. Only the modules up to the deepest requested layer
      are built, and the forward stops there.
    * ``layers=None`` builds the full 37-module stack (what SimCLR trains); ``forward`` then returns
      ``[output of the last pool]``.
    * ``width`` scales every conv's channel count (1.0 = the real VGG19; smaller values give the
      narrow networks of the CPU demo configs; only width 1.0 is torchvision-compatible).
    * Input: ``(N, 1, H, W)`` grey images in [0, 1] (replicated to 3 channels) or ``(N, 3, H, W)``.
      No ImageNet normalisation (the SimCLR VGG was trained on plain [0, 1] input).
    * :meth:`freeze` sets ``requires_grad=False`` on every parameter and eval mode: gradients still
      flow through the network to its input.
    """

    def __init__(self, layers: Sequence[str] | None = ("relu3_2",), width: float = 1.0, seed: int | None = 0) -> None:
        super().__init__()
        if width <= 0:
            raise MoodError(f"VGG width must be > 0, got {width}")
        self.width = float(width)
        self.layers = tuple(check_layer_name(layer) for layer in layers) if layers else ()
        if self.layers and len(set(self.layers)) != len(self.layers):
            raise MoodError(f"VGG layers listed twice: {list(self.layers)}")
        self._indices = [LAYER_INDEX[layer] for layer in self.layers]
        last = max(self._indices) if self._indices else N_MODULES - 1
        modules: list[nn.Module] = []
        in_ch = 3
        for v in VGG19_CFG:
            if len(modules) > last:
                break
            if v == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = _width(int(v), width)
                modules.append(nn.Conv2d(in_ch, out, kernel_size=3, padding=1))
                modules.append(nn.ReLU(inplace=False))
                in_ch = out
        self.features = nn.Sequential(*modules[: last + 1])
        self.out_channels = in_ch
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = 0) -> None:
        """torchvision's VGG init (kaiming-normal fan_out relu, zero bias), seeded."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                nn.init.zeros_(m.bias)

    def freeze(self) -> "VGG19Features":
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()
        return self

    def train(self, mode: bool = True) -> "VGG19Features":
        # No dropout / BN: train and eval are identical; keep the flag honest anyway.
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"VGG19Features expects (N,1|3,H,W), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if not self._indices:
            return [self.features(x)]
        wanted = {idx: k for k, idx in enumerate(self._indices)}
        out: list[torch.Tensor | None] = [None] * len(self._indices)
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
        return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# weight files


def expected_shapes(width: float = 1.0) -> dict[str, tuple[int, ...]]:
    """The 32 ``features.N.weight/bias`` names of a full VGG19 conv stack and their shapes."""
    shapes: dict[str, tuple[int, ...]] = {}
    in_ch = 3
    conv = iter(CONV_INDICES)
    for v in VGG19_CFG:
        if v == "M":
            continue
        out = _width(int(v), width)
        idx = next(conv)
        shapes[f"features.{idx}.weight"] = (out, in_ch, 3, 3)
        shapes[f"features.{idx}.bias"] = (out,)
        in_ch = out
    return shapes


def _read_state(source: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str, Any]:
    """Read a state dict from a file or mapping; returns (state, description, raw object)."""
    if isinstance(source, Mapping):
        obj: Any = source
        where = "<state dict>"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise MoodError(f"{path}: no such VGG weight file")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
            raise MoodError(f"{path}: not a readable torch weight file ({type(exc).__name__})") from None
    raw = obj
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise MoodError(f"{where}: not a VGG19 state dict (expected a mapping of parameter names)")
    return dict(obj), where, raw


def _describe_width(state: Mapping[str, torch.Tensor]) -> float | None:
    w = state.get("features.0.weight")
    if isinstance(w, torch.Tensor) and w.dim() == 4:
        return w.shape[0] / 64.0
    return None


def check_vgg_state(state: Mapping[str, Any], width: float, where: str = "<state dict>") -> dict[str, torch.Tensor]:
    """Check that ``state`` holds a full VGG19 conv stack of ``width``; return its ``features.*`` tensors.

    Accepted: torchvision's VGG19 (``features.*`` and optionally ``classifier.*``) and our export.
    Every conv name must be present with the right shape; any other ``features.*`` key (e.g. the
    batch-norm variant's running statistics) or any key outside ``features.``/``classifier.`` is refused.
    """
    # strip a common wrapper prefix such as "module." or "vgg." (DDP / Lightning module attributes)
    keys = list(state)
    for prefix in ("module.", "vgg.", "model."):
        if keys and all(k.startswith(prefix) for k in keys):
            state = {k[len(prefix):]: v for k, v in state.items()}
            keys = list(state)
    want = expected_shapes(width)
    feats: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("classifier."):
            continue
        if not k.startswith("features."):
            raise MoodError(f"{where}: unexpected key {k!r}: not a VGG19 feature state dict")
        if k not in want:
            raise MoodError(
                f"{where}: unexpected key {k!r} (a VGG19 without batch norm has only conv weights at "
                f"torchvision indices {CONV_INDICES})"
            )
        if not isinstance(v, torch.Tensor):
            raise MoodError(f"{where}: {k} is not a tensor")
        feats[k] = v
    missing = [k for k in want if k not in feats]
    if missing:
        raise MoodError(f"{where}: missing {len(missing)} VGG19 parameter(s), first {missing[0]!r}")
    for k, shape in want.items():
        if tuple(feats[k].shape) != shape:
            found = _describe_width(feats)
            hint = f" (the file looks like width {found:g})" if found and found != width else ""
            raise MoodError(
                f"{where}: {k} has shape {tuple(feats[k].shape)}, expected {shape} for VGG19 width {width:g}{hint}"
            )
        if not torch.is_floating_point(feats[k]) or not torch.isfinite(feats[k]).all():
            raise MoodError(f"{where}: {k} is not a finite floating-point tensor")
    return feats


def read_vgg_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a VGG weight file; returns (state, meta). ``meta['width']`` is 1.0 for torchvision files."""
    state, _, raw = _read_state(path)
    meta: dict[str, Any] = {"width": 1.0}
    if isinstance(raw, Mapping) and raw.get("format") == FILE_FORMAT:
        meta = dict(raw.get("meta", {}))
        meta.setdefault("width", 1.0)
    return state, meta


def load_vgg_weights(module: VGG19Features, source: str | os.PathLike | Mapping[str, Any]) -> VGG19Features:
    """Load a full VGG19 conv state (file or mapping) into ``module`` by name, checking every shape.

    The source must contain the complete 16-conv stack at the module's width even when the module
    is truncated at a shallower layer (a partial or mismatched file is refused with one clear line).
    """
    state, where, _ = _read_state(source)
    feats = check_vgg_state(state, module.width, where)
    own = module.state_dict()
    sub = {k: feats[k].to(own[k].dtype) for k in own}
    module.load_state_dict(sub, strict=True)
    return module


def save_vgg_features(path: str | os.PathLike, module: nn.Module, meta: Mapping[str, Any] | None = None) -> Path:
    """Atomically save the ``features.*`` conv weights of a full VGG19 stack (our export format).

    ``module`` is a :class:`VGG19Features` (or anything whose state dict has ``features.N.*`` keys,
    e.g. the SimCLR network). The file is a dict ``{format, meta, state_dict}``; :func:`load_vgg_weights`
    also reads it.
    """
    width = float(getattr(module, "width", 1.0))
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items() if k.startswith("features.")}
    check_vgg_state(state, width, "export")
    payload = {"format": FILE_FORMAT, "meta": {"width": width, **dict(meta or {})}, "state_dict": state}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def vgg_from_file(path: str | os.PathLike, layers: Iterable[str] | None, width: float | None = None) -> VGG19Features:
    """Build a frozen :class:`VGG19Features` for ``layers`` from a weight file (width read from the file)."""
    state, meta = read_vgg_file(path)
    file_width = float(meta.get("width", 1.0))
    if width is not None and float(width) != file_width:
        raise MoodError(f"{path}: VGG width {file_width:g} in the file, but the config asks for {width:g}")
    net = VGG19Features(tuple(layers) if layers else None, width=file_width)
    feats = check_vgg_state(state, file_width, str(path))
    own = net.state_dict()
    net.load_state_dict({k: feats[k].to(own[k].dtype) for k in own}, strict=True)
    return net.freeze()


# ---- the backbone interface (mood_dpa.models.backbones)
def build(layers: Sequence[str], width: float = 1.0, seed: int | None = 0) -> VGG19Features:
    """A VGG19 feature extractor with seeded random weights (the backbone registry's constructor)."""
    return VGG19Features(tuple(layers), width=width, seed=seed)


from_file = vgg_from_file
