import gzip

import nibabel as nib
import numpy as np
import pytest

from mood_dpa.errors import MoodError
from mood_dpa.volumes import iter_volumes, list_volumes, read_volume, volume_id, write_volume


def _affine():
    aff = np.diag([1.5, 2.0, 0.8, 1.0])
    aff[:3, 3] = [10.0, -4.0, 3.5]
    return aff


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii"])
def test_round_trip_values_and_affine(tmp_path, name):
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    write_volume(tmp_path / name, data, _affine())
    vol = read_volume(tmp_path / name)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, _affine())


def test_write_is_deterministic_and_level_changes_size(tmp_path):
    data = np.random.default_rng(1).random((16, 16, 16)).astype(np.float32).round(2)
    write_volume(tmp_path / "a.nii.gz", data, compresslevel=1)
    write_volume(tmp_path / "b.nii.gz", data, compresslevel=1)
    write_volume(tmp_path / "c.nii.gz", data, compresslevel=9)
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()
    assert (tmp_path / "c.nii.gz").stat().st_size < (tmp_path / "a.nii.gz").stat().st_size


def test_singleton_fourth_axis_is_accepted(tmp_path):
    data = np.ones((4, 5, 6, 1), np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "v.nii.gz"))
    assert read_volume(tmp_path / "v.nii.gz").data.shape == (4, 5, 6)


def test_integer_volume_is_read_as_float32(tmp_path):
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4)), str(tmp_path / "i.nii"))
    vol = read_volume(tmp_path / "i.nii")
    assert vol.data.dtype == np.float32 and vol.data[1, 2, 3] == 23


def _bad_files(tmp_path):
    good = tmp_path / "good.nii.gz"
    write_volume(good, np.random.default_rng(0).random((16, 16, 16)).astype(np.float32))
    raw = good.read_bytes()
    cases = {}
    p = tmp_path / "trunc.nii.gz"
    p.write_bytes(raw[: len(raw) // 2])
    cases["truncated"] = (p, "truncated or corrupt gzip")
    p = tmp_path / "junk.nii.gz"
    p.write_bytes(b"this is not a volume" * 20)
    cases["not gzip"] = (p, "not a gzip file")
    p = tmp_path / "text.nii.gz"
    p.write_bytes(gzip.compress(b"hello" * 200))
    cases["gzip without nifti"] = (p, "no NIfTI header")
    p = tmp_path / "empty.nii.gz"
    p.write_bytes(b"")
    cases["empty"] = (p, "empty file")
    p = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4), np.float32), np.eye(4)), str(p))
    cases["2-D"] = (p, "2-D")
    p = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), str(p))
    cases["4-D"] = (p, "real 4-D")
    p = tmp_path / "cplx.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.complex64), np.eye(4)), str(p))
    cases["complex"] = (p, "complex")
    p = tmp_path / "nan.nii.gz"
    arr = np.ones((4, 4, 4), np.float32)
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = np.inf
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(p))
    cases["nan"] = (p, "2 NaN or infinite")
    p = tmp_path / "volume.txt"
    p.write_text("not nifti")
    cases["suffix"] = (p, "not a NIfTI file")
    return cases


def test_each_bad_input_gives_one_clear_line(tmp_path):
    for label, (path, expected) in _bad_files(tmp_path).items():
        with pytest.raises(MoodError) as err:
            read_volume(path)
        msg = str(err.value)
        assert expected in msg, (label, msg)
        assert str(path) in msg and "\n" not in msg, label


def test_list_volumes_sorted_and_ignores_other_files(tmp_path):
    for name in ["00002.nii.gz", "00000.nii", "00001.nii.gz"]:
        write_volume(tmp_path / name, np.zeros((2, 2, 2), np.float32))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub.nii.gz").mkdir()
    assert [p.name for p in list_volumes(tmp_path)] == ["00000.nii", "00001.nii.gz", "00002.nii.gz"]


def test_list_volumes_empty_folder_fails(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(MoodError, match="no .nii"):
        list_volumes(tmp_path)
    with pytest.raises(MoodError, match="not a folder"):
        list_volumes(tmp_path / "missing")


def test_volume_id_follows_seed_convention():
    assert volume_id("00042.nii.gz") == "00042"
    assert volume_id("/x/00042_anom.nii.gz") == "00042"
    assert volume_id("toy_3.nii.gz") == "toy"


def test_failed_write_leaves_earlier_output_intact(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"
    write_volume(target, np.ones((3, 3, 3), np.float32))
    before = target.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nib.Nifti1Image, "to_bytes", boom)
    with pytest.raises(RuntimeError):
        write_volume(target, np.zeros((3, 3, 3), np.float32))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_iter_volumes_keeps_order_and_reports_bad_files(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"{i:05d}.nii.gz"
        write_volume(p, np.full((2, 2, 2), i, np.float32))
        paths.append(p)
    paths[2].write_bytes(b"broken")
    out = list(iter_volumes(paths, prefetch=2))
    assert [p for p, _ in out] == paths
    assert isinstance(out[2][1], MoodError)
    assert [float(v.data[0, 0, 0]) for i, (_, v) in enumerate(out) if i != 2] == [0.0, 1.0, 3.0]


def test_cli_exits_2_on_each_bad_input_and_writes_nothing(tmp_path, cli):
    for label, (path, expected) in _bad_files(tmp_path).items():
        folder = tmp_path / f"in_{label.replace(' ', '_')}"
        folder.mkdir()
        target = folder / ("00000.nii.gz" if path.name.endswith(".gz") else path.name)
        path.rename(target)
        if not target.name.endswith((".nii", ".nii.gz")):
            assert cli(["show", target, "-o", tmp_path / f"{label}.png"]) == 2, label
            assert not (tmp_path / f"{label}.png").exists()
            continue
        out = tmp_path / f"store_{label.replace(' ', '_')}"
        assert cli(["slices", "-i", folder, "-o", out, "--axis", "0", "--size", "8"]) == 2, label
        assert not out.exists(), label
        assert cli(["show", target, "-o", tmp_path / "x.png"]) == 2, label
        assert not (tmp_path / "x.png").exists()
    leftovers = [p.name for p in tmp_path.rglob(".*") if p.is_file()]
    assert leftovers == []
