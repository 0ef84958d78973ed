import numpy as np
import pytest
import torch

from mood_dpa.data.folds import make_folds
from mood_dpa.data.slices import (
    SEED_MIN_FRACTION,
    SliceDataset,
    SliceRule,
    SliceStore,
    build_store,
    foreground_fraction,
    kept_indices,
    resize_slices,
    take_slices,
)
from mood_dpa.errors import MoodError
from mood_dpa.volumes import write_volume


def test_take_slices_keeps_other_axes_in_order():
    vol = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(take_slices(vol, 1)[2], vol[:, 2, :])
    np.testing.assert_array_equal(take_slices(vol, 2)[3], vol[:, :, 3])
    t = torch.from_numpy(vol)
    assert torch.equal(take_slices(t, 0)[1], t[1])


def test_empty_rule_matches_hand_made_case():
    # 256x256 slices: slice k has exactly n_k foreground pixels.
    counts = [0, 3999, 4000, 4001, 65536]
    vol = np.zeros((5, 256, 256), np.float32)
    for k, n in enumerate(counts):
        vol[k].flat[:n] = 0.5
    np.testing.assert_allclose(foreground_fraction(vol, 0), np.array(counts) / 65536)
    assert list(kept_indices(vol, 0)) == [2, 3, 4]  # the seed's ">= 4000 of 256^2"
    # a threshold makes dim pixels background
    vol[4].flat[:] = 0.05
    assert list(kept_indices(vol, 0, SliceRule(threshold=0.1))) == [2, 3]
    assert SEED_MIN_FRACTION == 4000 / 65536


def test_rule_is_the_same_on_torch_and_numpy():
    vol = (np.random.default_rng(0).random((10, 12, 14)) > 0.9).astype(np.float32)
    for axis in range(3):
        np.testing.assert_array_equal(kept_indices(vol, axis, SliceRule(0.1)), kept_indices(torch.from_numpy(vol), axis, SliceRule(0.1)))


def test_resize_is_antialiased_and_exact_on_constants():
    stack = torch.full((2, 40, 40), 0.3)
    out = resize_slices(stack, 16)
    assert out.shape == (2, 1, 16, 16)
    torch.testing.assert_close(out, torch.full_like(out, 0.3))
    # a checkerboard averages to its mean under an antialiased 4x reduction (plain bilinear would alias)
    board = torch.from_numpy((np.indices((64, 64)).sum(0) % 2).astype(np.float32))[None]
    assert abs(float(resize_slices(board, 16).mean()) - 0.5) < 1e-3
    assert float(resize_slices(board, 16).std()) < 0.05
    same = torch.rand(3, 1, 8, 8)
    assert resize_slices(same, 8) is same


def _volume_with_gap(shape=(12, 20, 20)):
    vol = np.zeros(shape, np.float32)
    vol[2:10, 4:16, 4:16] = np.linspace(0.1, 0.9, 8)[:, None, None]
    vol[5] = 0  # an empty slice in the middle
    return vol


def test_store_places_slices_by_index_and_maps_back(tmp_path):
    vols = tmp_path / "vols"
    a, b = _volume_with_gap(), _volume_with_gap()[::-1].copy()
    write_volume(vols / "00000.nii.gz", a)
    write_volume(vols / "00001.nii.gz", b)
    store = build_store(vols, tmp_path / "store", axis=0, size=20)
    assert list(store.slice_indices[store.volume_ids == "00000"]) == [2, 3, 4, 6, 7, 8, 9]
    assert list(store.slice_indices[store.volume_ids == "00001"]) == [2, 3, 4, 5, 7, 8, 9]
    for row in range(len(store)):
        src = {"00000": a, "00001": b}[store.volume_ids[row]]
        np.testing.assert_allclose(store.slices[row], src[store.slice_indices[row]], atol=1e-3)
    assert store.slices.dtype == np.float16 and isinstance(store.slices, np.memmap)
    reopened = SliceStore(tmp_path / "store")
    assert reopened.axis == 0 and reopened.size == 20 and len(reopened) == 14


def test_store_is_reproducible_and_failed_run_leaves_nothing(tmp_path, monkeypatch):
    vols = tmp_path / "vols"
    for i in range(3):
        write_volume(vols / f"{i:05d}.nii.gz", _volume_with_gap())
    build_store(vols, tmp_path / "s1", axis=1, size=16)
    build_store(vols, tmp_path / "s2", axis=1, size=16)
    for name in ["slices.npy", "index.csv", "meta.json"]:
        assert (tmp_path / "s1" / name).read_bytes() == (tmp_path / "s2" / name).read_bytes()
    before = (tmp_path / "s1" / "slices.npy").read_bytes()
    (vols / "00002.nii.gz").write_bytes(b"corrupt")
    with pytest.raises(MoodError, match="00002"):
        build_store(vols, tmp_path / "s1", axis=1, size=16)
    assert (tmp_path / "s1" / "slices.npy").read_bytes() == before  # earlier store intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1", "s2", "vols"]  # no temp folders


def test_dataset_filters_by_fold(tmp_path):
    vols = tmp_path / "vols"
    for i in range(6):
        write_volume(vols / f"{i:05d}.nii.gz", _volume_with_gap())
    store = build_store(vols, tmp_path / "store", axis=0, size=16)
    folds = make_folds([f"{i:05d}.nii.gz" for i in range(6)], 3, seed=1)
    folds = {k.split(".")[0]: v for k, v in folds.items()}
    val = SliceDataset(store, folds, fold=0, split="val")
    train = SliceDataset(store, folds, fold=0, split="train")
    assert len(val) + len(train) == len(store) == 6 * 7
    val_ids = {val.volume_of(i)[0] for i in range(len(val))}
    assert val_ids == {v for v, f in folds.items() if f == 0}
    assert not val_ids & {train.volume_of(i)[0] for i in range(len(train))}
    item = val[0]
    assert item.shape == (1, 16, 16) and item.dtype == torch.float32
    assert 0.0 <= float(item.min()) and float(item.max()) <= 1.0
    both = SliceDataset([store, tmp_path / "store"])
    assert len(both) == 2 * len(store)


def test_slices_cli(tmp_path, cli, volume_folder):
    assert cli(["slices", "-i", volume_folder, "-o", tmp_path / "st", "--axis", "2", "--size", "16"]) == 0
    store = SliceStore(tmp_path / "st")
    assert store.axis == 2 and store.size == 16 and len(store) > 0
    assert set(store.volume_ids) == {f"{i:05d}" for i in range(5)}
    assert cli(["slices", "-i", tmp_path / "nothing", "-o", tmp_path / "st2", "--axis", "0"]) == 2
    assert cli(["slices", "-i", volume_folder, "-o", tmp_path / "st3", "--axis", "3"]) == 2
    assert not (tmp_path / "st2").exists() and not (tmp_path / "st3").exists()
