"""Axis ensembles of DPA models: the YAML file, the Detector, and the helpers that build and calibrate one.

The ensemble file (``*.yaml``; paths are relative to the file)::

    format: mood-dpa/ensemble
    version: 1
    name: brain_pixel
    models:                       # one DPA model file per axis (or any number of models)
      - {path: axis0/model.pt, weight: 1.0}
      - {path: axis1/model.pt, weight: 1.0}
      - {path: axis2/model.pt, weight: 1.0}
    combine: mean                 # mean | max | mean_covered (see mood_dpa.inference.scorer)
    background_threshold: 0.0     # voxels <= this score 0, all others >= 2^-14; null = no mask
    calibration:                  # raw -> [0, 1] (mood_dpa.inference.calibration); a mapping,
      kind: quantile-log-tail     # or a path to a YAML/JSON file holding one; null = uncalibrated
      xs: [...]
      ys: [...]
      tail_scale: 0.123
    sample_rule: {kind: topk, fraction: 0.0001, sigma: 1.0}
    batch_size: null              # slices per forward pass; null = automatic (128 on CUDA; on a CPU by model size)
    bf16: false                   # bf16 autocast on CUDA
    info: {...}                   # free-form provenance (what calibration was fitted on, ...)

Python API (what the demo calls)::

    write_ensemble("ens/brain_pixel.yaml", ["runs/ax0/model.pt", "runs/ax1/model.pt", "runs/ax2/model.pt"])
    calibrate_ensemble("ens/brain_pixel.yaml", normal_volumes="val_normals/", val_dir="synth_val/")
    det = load_ensemble("ens/brain_pixel.yaml", device=None)           # a Detector
    predict_folder(det, "synth_val/toy", "pred/pixel", "pixel")          # mood_dpa.inference.predict

An uncalibrated ensemble still predicts (raw x -> 1 - 1/(1 + log1p(x)), monotone into [0, 1)), but
its scores are not comparable across cases: calibrate before evaluating pooled pixel AP.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import yaml
from pydantic import Field

from ..atomic import write_text
from ..config import StrictModel, read_yaml, validate
from ..errors import MoodError
from .calibration import (
    CANDIDATE_RULES,
    DEFAULT_SAMPLES_PER_VOLUME,
    DEFAULT_Y_TOP,
    UNCALIBRATED,
    Calibration,
    SampleRule,
    candidate_scores,
    choose_sample_rule,
    fit_calibration,
    sample_raw_scores,
)

FORMAT = "mood-dpa/ensemble"
VERSION = 1
#: Slices per forward pass on CUDA when neither the YAML nor the caller says: large batches fill the
#: device (128 slices of 128^2 at C=128 is ~1 GB per fp32 activation).
AUTO_BATCH = {"cuda": 128}
#: On a CPU the convolutions are compute-bound and batching only helps while one activation tensor
#: stays in cache: measured on the seed's C=128 at 128^2 (8 MB per slice per activation), batches of
#: 6-8 slices ran ~25 % slower than one slice at a time. So the automatic CPU batch keeps one
#: activation (widest layer x S^2 x 4 bytes x batch) within this many bytes (C=128 @128^2 -> 1,
#: the demo's C=32 @64^2 -> 16).
CPU_ACTIVATION_BYTES = 8 << 20
#: Lowest score of a foreground voxel when the background is masked (smallest normal float16, 2^-14).
FOREGROUND_FLOOR = 2.0**-14


class ModelEntry(StrictModel):
    path: str
    weight: float = Field(1.0, gt=0)


class CalibrationSpec(StrictModel):
    kind: str = "quantile-log-tail"
    xs: list[float]
    ys: list[float]
    tail_scale: float


class SampleRuleSpec(StrictModel):
    kind: Literal["max", "topk", "smoothed_max"] = "topk"
    fraction: float = 1e-4
    sigma: float = 1.0


class EnsembleSpec(StrictModel):
    format: Literal["mood-dpa/ensemble"] = FORMAT
    version: int = VERSION
    name: str = ""
    models: list[ModelEntry] = Field(min_length=1)
    combine: Literal["mean", "max", "mean_covered"] = "mean"
    background_threshold: float | None = 0.0
    calibration: CalibrationSpec | str | None = None
    sample_rule: SampleRuleSpec = Field(default_factory=SampleRuleSpec)
    batch_size: int | None = Field(None, ge=1)  # None: automatic (EnsembleDetector._auto_batch)
    bf16: bool = False
    info: dict[str, Any] = Field(default_factory=dict)


# ============================================================================ reading and writing


def read_spec(path: str | os.PathLike) -> EnsembleSpec:
    path = Path(path)
    if not path.is_file():
        raise MoodError(f"{path}: no such ensemble file")
    data = read_yaml(path)
    if data.get("format") not in (None, FORMAT):
        raise MoodError(f"{path}: not a mood-dpa ensemble file (format {data.get('format')!r})")
    spec = validate(EnsembleSpec, data, str(path))
    if spec.version > VERSION:
        raise MoodError(f"{path}: ensemble version {spec.version} is newer than this mood-dpa reads ({VERSION})")
    return spec


def write_spec(path: str | os.PathLike, spec: EnsembleSpec) -> Path:
    """Atomically write an ensemble file (floats keep their exact repr, so a round trip is exact)."""
    data = spec.model_dump(mode="json")
    return write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))


def resolve_calibration(spec: EnsembleSpec, base: Path) -> Calibration | None:
    """The ensemble's calibration (inline, or read from the file it names, relative to ``base``)."""
    c = spec.calibration
    if c is None:
        return None
    if isinstance(c, str):
        p = (base / c) if not Path(c).is_absolute() else Path(c)
        d = read_yaml(p)  # JSON is YAML
        return Calibration.from_dict(d.get("calibration", d))
    return Calibration.from_dict(c.model_dump())


def write_ensemble(
    path: str | os.PathLike,
    model_files: Sequence[str | os.PathLike],
    weights: Sequence[float] | None = None,
    *,
    combine: str = "mean",
    background_threshold: float | None = 0.0,
    calibration: Calibration | None = None,
    sample_rule: SampleRule | None = None,
    batch_size: int | None = None,
    bf16: bool = False,
    name: str | None = None,
    check: bool = True,
) -> Path:
    """Write an ensemble YAML listing ``model_files`` (stored relative to the YAML's folder when possible).

    ``check=True`` opens every model file once (on the CPU) so a wrong path or file fails here, not at
    prediction time.
    """
    path = Path(path)
    files = [Path(f) for f in model_files]
    if not files:
        raise MoodError("an ensemble needs at least one model file")
    weights = [1.0] * len(files) if weights is None else [float(w) for w in weights]
    if len(weights) != len(files):
        raise MoodError(f"{len(files)} model files but {len(weights)} weights")
    if check:
        from ..models.model_file import load_dpa_model

        for f in files:
            load_dpa_model(f, "cpu")
    base = path.parent.resolve()
    entries = []
    for f, w in zip(files, weights):
        fa = f.resolve()
        try:
            rel = os.path.relpath(fa, base)
        except ValueError:  # another drive (Windows)
            rel = str(fa)
        entries.append(ModelEntry(path=Path(rel).as_posix(), weight=w))
    spec = validate(
        EnsembleSpec,
        {
            "name": name if name is not None else path.name.split(".")[0],
            "models": [e.model_dump() for e in entries],
            "combine": combine,
            "background_threshold": background_threshold,
            "calibration": calibration.to_dict() if calibration is not None else None,
            "sample_rule": (sample_rule or SampleRule()).to_dict(),
            "batch_size": batch_size,
            "bf16": bf16,
        },
        str(path),
    )
    return write_spec(path, spec)


# ============================================================================ the detector


class EnsembleDetector:
    """A Detector over an axis ensemble of DPA models (see :mod:`mood_dpa.inference.scorer`)."""

    def __init__(
        self,
        models: Sequence[Any],
        *,
        name: str = "dpa-ensemble",
        weights: Sequence[float] | None = None,
        combine: str = "mean",
        background_threshold: float | None = 0.0,
        calibration: Calibration | None = None,
        sample_rule: SampleRule | None = None,
        batch_size: int | None = None,
        bf16: bool = False,
        device: str | Any | None = None,
    ) -> None:
        import torch

        from .scorer import COMBINE_RULES, AxisModel, device_for_rank

        if combine not in COMBINE_RULES:
            raise MoodError(f"combine rule {combine!r} is not known (use one of {', '.join(COMBINE_RULES)})")
        self.device = device_for_rank(str(device) if device is not None else None)
        self.name = name
        self.combine = combine
        self.background_threshold = background_threshold
        self.calibration = calibration
        self.sample_rule = sample_rule or SampleRule()
        self.bf16 = bool(bf16)
        given = weights is not None
        weights = list(weights) if given else [getattr(m, "weight", 1.0) for m in models]
        if len(weights) != len(models):
            raise MoodError(f"{len(models)} models but {len(weights)} weights")
        self.models = list(models)
        self.axis_models: list[AxisModel] = []
        for k, (m, w) in enumerate(zip(self.models, weights)):
            if isinstance(m, AxisModel):
                m.weight = float(w)
                self.axis_models.append(m)
                continue
            m = m.to(self.device).eval()
            self.models[k] = m
            self.axis_models.append(
                AxisModel(
                    axis=m.axis, size=m.size, maps_fn=_dpa_maps_fn(m), rule=m.rule, normaliser=m.normaliser,
                    weight=float(w), name=str(m.meta.get("name", f"model{k}")),
                )
            )
        self._torch = torch
        self.batch_size = int(batch_size) if batch_size else self._auto_batch()

    def _auto_batch(self) -> int:
        if self.device.type in AUTO_BATCH:
            return AUTO_BATCH[self.device.type]
        per_slice = 0
        for m in self.models:
            meta = getattr(m, "meta", None)
            if not meta:
                continue
            width = max(int(meta.get("arch", {}).get("channels", 64)), int(64 * float(meta.get("vgg_width") or 0)))
            per_slice = max(per_slice, width * int(meta["size"]) ** 2 * 4)
        if per_slice == 0:
            return 8
        return int(max(1, min(64, CPU_ACTIVATION_BYTES // per_slice)))

    # ---- raw and calibrated scores
    def score_raw(self, data: np.ndarray):
        """Raw combined scores (torch float32 tensor on the device; not masked, not calibrated)."""
        from .scorer import score_raw

        return score_raw(data, self.axis_models, self.combine, self.batch_size, self.device, self.bf16)

    def foreground(self, data: np.ndarray | Any):
        """Boolean tensor on the device: the voxels that are not masked as background."""
        torch = self._torch
        vol = torch.as_tensor(np.asarray(data, np.float32) if not isinstance(data, torch.Tensor) else data).to(self.device)
        if self.background_threshold is None:
            return torch.ones(vol.shape, dtype=torch.bool, device=self.device)
        return vol > float(self.background_threshold)

    def calibrated(self, raw, data) -> Any:
        """Calibrated, background-masked float32 tensor in [0, 1] from raw scores of ``data``."""
        torch = self._torch
        cal = self.calibration if self.calibration is not None else UNCALIBRATED
        s = cal.apply_torch(raw)
        if self.background_threshold is not None:
            # background is strictly the minimum: 0, while every foreground voxel scores >= FOREGROUND_FLOOR
            # (the smallest normal float16), so foreground voxels never tie with the masked background
            s = torch.where(self.foreground(data), s.clamp_min(FOREGROUND_FLOOR), torch.zeros_like(s))
        return torch.nan_to_num(s, nan=1.0).clamp_(0.0, 1.0)

    def score_volume(self, data: np.ndarray) -> np.ndarray:
        """Voxel scores: float32, same shape as ``data``, finite, in [0, 1]."""
        raw = self.score_raw(data)
        return self.calibrated(raw, data).cpu().numpy().astype(np.float32, copy=False)

    def sample_score(self, data: np.ndarray, voxel_scores: np.ndarray) -> float:
        """One score in [0, 1] pooled from the (calibrated) voxel scores by the ensemble's sample rule."""
        return self.sample_rule.score(voxel_scores)


def _dpa_maps_fn(model):
    def maps_fn(x01):
        out = model.pixel_maps(x01)
        w = torch_tensor(model.weights, out.numerators)
        # layer weights go on the numerators, so sum_l num_l / den_l is the model's weighted map
        return out.numerators * w[None, :, None, None], out.denominators

    return maps_fn


def torch_tensor(values, like):
    import torch

    return torch.as_tensor(values, dtype=like.dtype, device=like.device)


def load_ensemble(
    path: str | os.PathLike, device: str | Any | None = None, batch_size: int | None = None, bf16: bool | None = None
) -> EnsembleDetector:
    """Open an ensemble YAML as a Detector (model files relative to the YAML; one-line MoodError on problems)."""
    from ..models.model_file import load_dpa_model

    path = Path(path)
    spec = read_spec(path)
    base = path.parent
    models = []
    for e in spec.models:
        p = Path(e.path)
        p = p if p.is_absolute() else base / p
        models.append(load_dpa_model(p, "cpu"))
    return EnsembleDetector(
        models,
        name=spec.name or path.stem,
        weights=[e.weight for e in spec.models],
        combine=spec.combine,
        background_threshold=spec.background_threshold,
        calibration=resolve_calibration(spec, base),
        sample_rule=SampleRule.from_dict(spec.sample_rule.model_dump()),
        batch_size=batch_size or spec.batch_size,
        bf16=spec.bf16 if bf16 is None else bf16,
        device=device,
    )


# ============================================================================ calibration


def _volume_paths(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    from ..volumes import list_volumes

    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        return [p] if p.is_file() else list_volumes(p)
    return [Path(s) for s in source]


def _val_layout(val_dir: Path, labels_dir: Path | None) -> tuple[list[Path], list[int]]:
    """Volumes and sample labels of a validation set in the MOOD toy layout (``toy/`` + ``toy_label/sample/``)."""
    from ..volumes import list_volumes

    vol_dir = val_dir / "toy" if (val_dir / "toy").is_dir() else val_dir
    if labels_dir is None:
        for cand in (val_dir / "toy_label" / "sample", val_dir.parent / "toy_label" / "sample"):
            if cand.is_dir():
                labels_dir = cand
                break
    if labels_dir is None:
        raise MoodError(f"{val_dir}: no sample labels found (expected toy_label/sample/<name>.txt); give --val-labels")
    paths = list_volumes(vol_dir)
    labels = []
    for p in paths:
        f = labels_dir / f"{p.name}.txt"
        if not f.is_file():
            raise MoodError(f"{f}: missing sample label for {p.name}")
        try:
            labels.append(int(float(f.read_text().split()[0])))
        except (ValueError, IndexError):
            raise MoodError(f"{f}: the first line is not a number") from None
    return paths, labels


def calibrate_detector(
    det: EnsembleDetector,
    normal_volumes: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    val_dir: str | os.PathLike | None = None,
    val_labels: str | os.PathLike | None = None,
    seed: int = 0,
    samples_per_volume: int = DEFAULT_SAMPLES_PER_VOLUME,
    y_top: float = DEFAULT_Y_TOP,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit ``det.calibration`` on NORMAL volumes and (with ``val_dir``) choose ``det.sample_rule``.

    Returns a summary dict (also stored as the ensemble's ``info.calibration``).
    """
    from ..progress import track
    from ..volumes import iter_volumes

    start = time.perf_counter()
    paths = _volume_paths(normal_volumes)
    samples: list[np.ndarray] = []
    items = iter_volumes(paths, prefetch=1)
    for k, (p, vol) in enumerate(track(items, "calibrating", total=len(paths)) if progress else items):
        if isinstance(vol, MoodError):
            raise vol
        raw = det.score_raw(vol.data)
        mask = det.foreground(vol.data) if det.background_threshold is not None else None
        samples.append(sample_raw_scores(raw, mask, samples_per_volume, seed * 1_000_003 + k))
    n = int(sum(s.size for s in samples))
    det.calibration = fit_calibration(samples, y_top=y_top)
    info: dict[str, Any] = {
        "normal_volumes": len(paths),
        "samples": n,
        "seed": seed,
        "samples_per_volume": samples_per_volume,
        "raw_normal_max": float(det.calibration.xs[-1]),
    }
    if val_dir is not None:
        vpaths, labels = _val_layout(Path(val_dir), Path(val_labels) if val_labels is not None else None)
        rows = []
        items = iter_volumes(vpaths, prefetch=1)
        for p, vol in track(items, "choosing the sample rule", total=len(vpaths)) if progress else items:
            if isinstance(vol, MoodError):
                raise vol
            voxels = det.calibrated(det.score_raw(vol.data), vol.data)
            rows.append(candidate_scores(voxels, CANDIDATE_RULES))
        rule, aps = choose_sample_rule(np.array(rows), labels, CANDIDATE_RULES)
        det.sample_rule = rule
        info["sample_rule_ap"] = {r.describe(): round(a, 6) for r, a in zip(CANDIDATE_RULES, aps)}
        info["validation_volumes"] = len(vpaths)
    info["sample_rule"] = det.sample_rule.describe()
    info["seconds"] = round(time.perf_counter() - start, 2)
    return info


def calibrate_ensemble(
    path: str | os.PathLike,
    normal_volumes: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    val_dir: str | os.PathLike | None = None,
    val_labels: str | os.PathLike | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    samples_per_volume: int = DEFAULT_SAMPLES_PER_VOLUME,
    y_top: float = DEFAULT_Y_TOP,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit the calibration (and choose the sample rule when ``val_dir`` is given) and write both into
    the ensemble YAML atomically (inline). Returns the summary dict."""
    path = Path(path)
    spec = read_spec(path)
    det = load_ensemble(path, device=device, batch_size=batch_size)
    info = calibrate_detector(
        det, normal_volumes, val_dir=val_dir, val_labels=val_labels, seed=seed,
        samples_per_volume=samples_per_volume, y_top=y_top, progress=progress,
    )
    data = spec.model_dump(mode="json")
    data["calibration"] = det.calibration.to_dict()  # type: ignore[union-attr]
    data["sample_rule"] = det.sample_rule.to_dict()
    data["info"] = {**data.get("info", {}), "calibration": info}
    write_spec(path, validate(EnsembleSpec, data, str(path)))
    return info


def fit_ensemble(
    path: str | os.PathLike,
    model_files: Sequence[str | os.PathLike],
    normal_volumes: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    val_dir: str | os.PathLike | None = None,
    val_labels: str | os.PathLike | None = None,
    weights: Sequence[float] | None = None,
    combine: str = "mean",
    background_threshold: float | None = 0.0,
    device: str | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> EnsembleDetector:
    """Write an ensemble of ``model_files``, calibrate it on ``normal_volumes`` (and choose the sample rule
    on ``val_dir``), and return it loaded, ready for :func:`mood_dpa.inference.predict.predict_folder`."""
    write_ensemble(path, model_files, weights, combine=combine, background_threshold=background_threshold, batch_size=batch_size)
    calibrate_ensemble(path, normal_volumes, val_dir=val_dir, val_labels=val_labels, device=device, seed=seed, progress=progress)
    return load_ensemble(path, device=device)
