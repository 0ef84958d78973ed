"""The slice store's index.csv: every row names its own slice in slices.npy (issue 11)."""

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mood_dpa.data.slices import STORE_VERSION, SliceRule, SliceStore, build_store
from mood_dpa.errors import MoodError
from mood_dpa.volumes import write_volume


def _volumes(tmp_path):
    """Three volumes of different shapes with partly empty slices, so volumes keep different slice counts."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "vols"
    shapes = [(10, 12, 14), (16, 9, 11), (7, 13, 12)]
    vols = {}
    for k, shape in enumerate(shapes):
        v = rng.random(shape).astype(np.float32)
        v[: k + 1] = 0  # empty leading slices along axis 0, a different number per volume
        v[:, -1 - k :] = 0  # and trailing ones along axis 1
        name = f"{k:05d}.nii.gz"
        write_volume(folder / name, v)
        vols[name] = v
    return folder, vols


def _direct_slice(volume: np.ndarray, axis: int, index: int, size: int) -> np.ndarray:
    """The slice computed by hand: explicit indexing, the documented resize, clamp, float16."""
    sl = [slice(None)] * 3
    sl[axis] = index
    img = torch.from_numpy(np.ascontiguousarray(volume[tuple(sl)], dtype=np.float32))[None, None]
    if img.shape[-2:] != (size, size):
        img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return img[0, 0].clamp(0, 1).numpy().astype(np.float16)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_every_index_row_names_its_slice(tmp_path, axis):
    folder, vols = _volumes(tmp_path)
    size = 8
    build_store(folder, tmp_path / "store", axis=axis, size=size, rule=SliceRule(min_fraction=0.3))
    slices = np.load(tmp_path / "store" / "slices.npy")  # plain numpy, as a user reads it
    with open(tmp_path / "store" / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert slices.dtype == np.float16 and slices.shape == (len(rows), size, size)
    assert [int(r["row"]) for r in rows] == list(range(len(rows)))
    counts = {}
    for r in rows:
        vol = vols[r["file"]]
        assert r["volume_id"] == r["file"].split(".")[0]
        np.testing.assert_array_equal(slices[int(r["row"])], _direct_slice(vol, axis, int(r["slice_index"]), size))
        counts[r["file"]] = counts.get(r["file"], 0) + 1
    # the kept slices are those with >= 30 % of their pixels > 0, counted directly
    for name, vol in vols.items():
        frac = (np.moveaxis(vol, axis, 0) > 0).reshape(vol.shape[axis], -1).mean(1)
        assert counts.get(name, 0) == int((frac >= 0.3).sum())
    assert len(counts) == 3
    meta = json.loads((tmp_path / "store" / "meta.json").read_text())
    assert meta["version"] == STORE_VERSION == 2 and meta["n_slices"] == len(rows)


def _rewrite(store, version, rows=None):
    meta = json.loads((store / "meta.json").read_text())
    meta["version"] = version
    (store / "meta.json").write_text(json.dumps(meta))
    if rows is not None:
        with open(store / "index.csv", newline="") as fh:
            table = list(csv.reader(fh))
        for k, r in enumerate(table[1:]):
            r[0] = str(rows[k])
        with open(store / "index.csv", "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(table)


def test_version_1_store_is_read_by_position(tmp_path):
    folder, _ = _volumes(tmp_path)
    store = tmp_path / "store"
    build_store(folder, store, axis=0, size=8)
    fresh = SliceStore(store)
    n = len(fresh)
    _rewrite(store, 1, rows=[2 * k for k in range(n)])  # the wrong row column version 1 wrote
    old = SliceStore(store)
    assert old.version == 1 and len(old) == n
    np.testing.assert_array_equal(old.slice_indices, fresh.slice_indices)
    np.testing.assert_array_equal(old.volume_ids, fresh.volume_ids)


def test_unknown_or_inconsistent_store_is_refused(tmp_path):
    folder, _ = _volumes(tmp_path)
    store = tmp_path / "store"
    build_store(folder, store, axis=0, size=8)
    n = len(SliceStore(store))
    _rewrite(store, 2, rows=[2 * k for k in range(n)])
    with pytest.raises(MoodError, match="row column"):
        SliceStore(store)
    _rewrite(store, 99)
    with pytest.raises(MoodError, match="version 99.*rebuild"):
        SliceStore(store)
    _rewrite(store, None)
    with pytest.raises(MoodError, match="version None"):
        SliceStore(store)
