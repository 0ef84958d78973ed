"""3-D training data: random patches of the training volumes (native size, read once, kept in memory).

Folds work as for the DPA (:mod:`mood_dpa.data.folds`): the validation fold gives a FIXED, seeded set
of patches (so validation losses are comparable), every other fold gives random training patches,
centred on a foreground voxel with probability ``foreground_p``. Patch ``i`` is drawn by a numpy
generator seeded with ``(seed, i)``, so the stream is reproducible and DDP ranks (which get disjoint
indices from Lightning's DistributedSampler) see different patches. 2-D training uses the existing
slice stores (:class:`mood_dpa.training.data.SliceDataModule`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ...data.folds import make_folds, read_folds, split_ids
from ...errors import MoodError
from ...volumes import list_volumes, read_volume, volume_id
from .config import VolumeDataConfig


class Volume3D:
    """One volume in memory (float16) with the bounding box of its foreground (for fast centre draws)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = np.asarray(data, np.float16)
        fg = np.nonzero(self.data > 0)
        if fg[0].size:
            self.lo = np.array([a.min() for a in fg])
            self.hi = np.array([a.max() for a in fg]) + 1
        else:
            self.lo, self.hi = np.zeros(3, int), np.array(self.data.shape)


def crop(vol: np.ndarray, centre: Sequence[int], patch: Sequence[int]) -> np.ndarray:
    """A patch of ``vol`` centred at ``centre``; parts outside the volume are 0 (background)."""
    out = np.zeros(tuple(patch), np.float32)
    src, dst = [], []
    for c, p, n in zip(centre, patch, vol.shape):
        a = int(c) - p // 2
        lo, hi = max(a, 0), min(a + p, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - a, hi - a))
    out[tuple(dst)] = vol[tuple(src)]
    return out


def draw_patch(vols: Sequence[Volume3D], patch: Sequence[int], rng: np.random.Generator, foreground_p: float) -> np.ndarray:
    v = vols[int(rng.integers(len(vols)))]
    if rng.random() < foreground_p:
        for _ in range(32):  # rejection inside the foreground bounding box
            c = rng.integers(v.lo, v.hi)
            if v.data[tuple(c)] > 0:
                break
    else:
        c = rng.integers(0, v.data.shape)
    return crop(v.data, c, patch)


class TrainPatches(Dataset):
    """``length`` random patches; item i is a pure function of (seed, i)."""

    def __init__(self, vols: Sequence[Volume3D], patch: Sequence[int], length: int, seed: int, foreground_p: float) -> None:
        self.vols, self.patch, self.length, self.seed, self.fg_p = list(vols), tuple(patch), int(length), int(seed), float(foreground_p)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, int(i)])
        return torch.from_numpy(draw_patch(self.vols, self.patch, rng, self.fg_p))[None]


class FixedPatches(Dataset):
    def __init__(self, patches: list[np.ndarray]) -> None:
        self.patches = patches

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.patches[i])[None]


def load_split(cfg: VolumeDataConfig) -> tuple[list[Volume3D], list[Volume3D], list[Path]]:
    """(training volumes, validation volumes, all paths) of the folder, split by ``cfg.fold``."""
    paths = list_volumes(cfg.volumes)
    if not paths:
        raise MoodError(f"{cfg.volumes}: no volumes (*.nii.gz) to train on")
    table = read_folds(cfg.folds) if cfg.folds else make_folds([p.name for p in paths], cfg.n_folds, cfg.folds_seed)
    table = {volume_id(k): v for k, v in table.items()}
    val_ids, train_ids = split_ids(table, cfg.fold, "val"), split_ids(table, cfg.fold, "train")
    train = [Volume3D(read_volume(p).data) for p in paths if volume_id(p) in train_ids]
    val = [Volume3D(read_volume(p).data) for p in paths if volume_id(p) in val_ids]
    if not train or not val:
        raise MoodError(f"{cfg.volumes}: fold {cfg.fold} leaves {len(train)} training and {len(val)} validation volumes")
    return train, val, paths


class PatchDataModule(L.LightningDataModule):
    """Random training patches (sequential indices: each index is a fresh patch) and fixed validation patches."""

    def __init__(self, cfg: VolumeDataConfig, patch: Sequence[int], batch_size: int, length: int, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.patch, self.batch_size = cfg, tuple(int(p) for p in patch), int(batch_size)
        self.train_vols, self.val_vols, self.paths = load_split(cfg)
        self.train_set = TrainPatches(self.train_vols, self.patch, max(length, batch_size), seed, cfg.foreground_p)
        rng = np.random.default_rng([seed, 1])
        self.val_set = FixedPatches([draw_patch(self.val_vols, self.patch, rng, 1.0) for _ in range(cfg.val_patches)])

    def _loader(self, ds: Dataset, drop_last: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, drop_last=drop_last, num_workers=self.cfg.num_workers,
                          persistent_workers=self.cfg.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, drop_last=False)
