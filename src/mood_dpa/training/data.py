"""Lightning data modules over slice stores (train / validation split by fold through the volume id)."""

from __future__ import annotations

from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.folds import make_folds, read_folds
from ..data.slices import SliceDataset, SliceStore, resize_slices
from ..errors import MoodError
from .config import DataConfig


class ResizedSlices(Dataset):
    """Items of several slice datasets (possibly of different store sizes), resized to ``size``."""

    def __init__(self, parts: Sequence[SliceDataset], size: int | None) -> None:
        self.parts = list(parts)
        self.size = size
        self._offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, i: int) -> torch.Tensor:
        k = int(np.searchsorted(self._offsets, i, side="right") - 1)
        x = self.parts[k][i - int(self._offsets[k])]
        if self.size is not None and x.shape[-1] != self.size:
            x = resize_slices(x[None], self.size)[0]
        return x


def open_stores(paths: Sequence[str]) -> list[SliceStore]:
    return [SliceStore(p) for p in paths]


def fold_tables(cfg: DataConfig, stores: Sequence[SliceStore]) -> list[dict[str, int]]:
    """One fold table per store: the folds CSV (one for all, or one per store), or seeded folds over
    every volume id of the stores."""
    if isinstance(cfg.folds, list):
        return [read_folds(f) for f in cfg.folds]
    if cfg.folds is not None:
        return [read_folds(cfg.folds)] * len(stores)
    ids = sorted({str(v) for s in stores for v in s.volume_ids})
    if len(ids) < cfg.n_folds:
        raise MoodError(
            f"{len(ids)} volumes in the slice stores cannot fill {cfg.n_folds} folds; set data.n_folds or data.folds"
        )
    return [make_folds(ids, cfg.n_folds, cfg.folds_seed)] * len(stores)


def split_datasets(cfg: DataConfig, size: int | None) -> tuple[Dataset, Dataset, list[SliceStore]]:
    """(train, val, stores): every store's slices split by ``cfg.fold``, resized to ``size``."""
    stores = open_stores(cfg.stores)
    tables = fold_tables(cfg, stores)
    train = ResizedSlices([SliceDataset(s, t, cfg.fold, "train") for s, t in zip(stores, tables)], size)
    val: Dataset = ResizedSlices([SliceDataset(s, t, cfg.fold, "val") for s, t in zip(stores, tables)], size)
    if cfg.max_val_slices is not None and len(val) > cfg.max_val_slices:
        idx = np.linspace(0, len(val) - 1, cfg.max_val_slices).round().astype(int)
        val = Subset(val, sorted(set(idx.tolist())))
    return train, val, stores


class SliceDataModule(L.LightningDataModule):
    """Shuffled training batches (drop_last) and ordered validation batches of (B, 1, S, S) slices in [0, 1]."""

    def __init__(self, cfg: DataConfig, size: int | None, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.size, self.batch_size, self.seed = cfg, size, batch_size, seed
        self.train_set, self.val_set, self.stores = split_datasets(cfg, size)
        if len(self.train_set) < batch_size:
            raise MoodError(f"only {len(self.train_set)} training slices, fewer than one batch of {batch_size}")

    def _loader(self, ds: Dataset, shuffle: bool, drop_last: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            generator=gen if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False, drop_last=False)
