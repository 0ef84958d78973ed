"""The embedded phantom population: determinism, variability, range, anatomy, files and CLI."""

from __future__ import annotations

import numpy as np
import pytest

from mood_dpa.cli import main
from mood_dpa.data.phantoms import ABDOM_LABELS, BRAIN_LABELS, make_phantom, write_phantoms
from mood_dpa.errors import MoodError
from mood_dpa.volumes import read_volume

KINDS = ("brain", "abdom")


@pytest.fixture(scope="module")
def labelled():
    """Two subjects of each kind at 48^3 with their tissue labels (made once for the module)."""
    return {(kind, i): make_phantom(kind, 48, 7, i, return_labels=True) for kind in KINDS for i in (0, 1)}


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_bytes(kind):
    a = make_phantom(kind, 40, 11, 2)
    b = make_phantom(kind, 40, 11, 2)
    assert a.dtype == np.float32 and a.shape == (40, 40, 40)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("kind", KINDS)
def test_subjects_and_seeds_differ(kind):
    base = make_phantom(kind, 40, 0, 0)
    other_subject = make_phantom(kind, 40, 0, 1)
    other_seed = make_phantom(kind, 40, 1, 0)
    for other in (other_subject, other_seed):
        assert np.abs(base - other).mean() > 0.01
    # the shape differs too, not only the noise: the foreground masks disagree on many voxels
    assert ((base > 0) != (other_subject > 0)).mean() > 0.005


def test_kinds_use_different_streams():
    assert not np.array_equal(make_phantom("brain", 32, 0, 0) > 0, make_phantom("abdom", 32, 0, 0) > 0)


@pytest.mark.parametrize("kind", KINDS)
def test_range_and_exact_zero_background(kind, labelled):
    for i in (0, 1):
        vol, lab, names = labelled[(kind, i)]
        assert vol.dtype == np.float32
        assert np.isfinite(vol).all()
        assert vol.min() >= 0.0 and vol.max() <= 1.0
        background = lab == names["background"]
        assert background.any() and (~background).any()
        assert np.all(vol[background] == 0.0)
        assert not np.signbit(vol[background]).any()  # +0.0, not -0.0
        # inside the body almost every voxel has signal (gas may touch 0 with noise)
        assert (vol[~background] > 0).mean() > 0.97
        # the corners of the field of view are outside the head / body
        assert vol[0, 0, 0] == 0.0 and vol[-1, -1, 0] == 0.0


def test_label_names_and_types(labelled):
    for kind, expected in (("brain", BRAIN_LABELS), ("abdom", ABDOM_LABELS)):
        vol, lab, names = labelled[(kind, 0)]
        assert names == expected
        assert lab.shape == vol.shape and np.issubdtype(lab.dtype, np.integer)
        assert set(np.unique(lab)) <= set(names.values())
    # every brain tissue is present at 48^3
    _, lab, names = labelled[("brain", 0)]
    assert set(np.unique(lab)) == set(names.values())


def _median(vol, lab, names, *tissues):
    mask = np.isin(lab, [names[t] for t in tissues])
    assert mask.sum() > 20, tissues
    return float(np.median(vol[mask]))


@pytest.mark.parametrize("index", [0, 1])
def test_brain_t1_ordering(labelled, index):
    vol, lab, names = labelled[("brain", index)]
    wm = _median(vol, lab, names, "white_matter")
    gm = _median(vol, lab, names, "grey_matter")
    csf = _median(vol, lab, names, "csf", "ventricles")
    deep = _median(vol, lab, names, "deep_grey")
    assert wm > gm + 0.1
    assert gm > csf + 0.1
    assert wm > deep > csf


@pytest.mark.parametrize("index", [0, 1])
def test_abdomen_ct_ordering(labelled, index):
    vol, lab, names = labelled[("abdom", index)]
    bone = _median(vol, lab, names, "bone")
    liver = _median(vol, lab, names, "liver")
    soft = _median(vol, lab, names, "soft_tissue")
    fat = _median(vol, lab, names, "fat")
    gas = _median(vol, lab, names, "gas")
    lung = _median(vol, lab, names, "lung")
    assert bone > liver > fat > gas
    assert bone > soft > fat
    assert fat > lung
    assert gas > 0.0  # inside the body, so not background


def test_any_cubic_size_and_bad_arguments():
    assert make_phantom("abdom", 33, 0, 0).shape == (33, 33, 33)
    for bad in (
        dict(kind="liver", size=32, seed=0, index=0),
        dict(kind="brain", size=31, seed=0, index=0),
        dict(kind="brain", size=513, seed=0, index=0),
        dict(kind="brain", size=32.0, seed=0, index=0),
        dict(kind="brain", size=32, seed=-1, index=0),
        dict(kind="brain", size=32, seed=0, index=-3),
    ):
        with pytest.raises(MoodError):
            make_phantom(**bad)


@pytest.mark.parametrize("kind", KINDS)
def test_subject_independent_of_count(kind, tmp_path):
    three = write_phantoms(kind, 3, 32, 5, tmp_path / "three")
    one = write_phantoms(kind, 1, 32, 5, tmp_path / "one")
    assert [p.name for p in three] == ["00000.nii.gz", "00001.nii.gz", "00002.nii.gz"]
    assert [p.name for p in one] == ["00000.nii.gz"]
    assert one[0].read_bytes() == three[0].read_bytes()
    a, b = read_volume(three[0]), read_volume(three[1])
    assert np.array_equal(a.data, make_phantom(kind, 32, 5, 0))
    assert not np.array_equal(a.data, b.data)
    assert np.allclose(np.abs(np.diag(a.affine)[:3]), 1.0)  # 1 mm isotropic


def test_write_phantoms_rejects_bad_arguments_before_writing(tmp_path):
    out = tmp_path / "out"
    for kwargs in (dict(count=0), dict(size=600), dict(compresslevel=10), dict(kind="x")):
        args = dict(kind="brain", count=1, size=32, seed=0, out_dir=out)
        args.update(kwargs)
        with pytest.raises(MoodError):
            write_phantoms(**args)
        assert not out.exists()


def test_cli_writes_phantoms(tmp_path, capsys):
    out = tmp_path / "abdom"
    with pytest.raises(SystemExit) as exc:
        main(["phantoms", "--kind", "abdom", "--count", "2", "--size", "32", "--seed", "3", "-o", str(out), "--gzip-level", "0"])
    assert exc.value.code in (0, None)
    assert sorted(p.name for p in out.iterdir()) == [".mood-dpa", "00000.nii.gz", "00001.nii.gz"]
    assert np.array_equal(read_volume(out / "00001.nii.gz").data, make_phantom("abdom", 32, 3, 1))
    assert "wrote 2 abdom phantoms of 32^3 to" in capsys.readouterr().out
    # --start: held-out subjects with their own indices and names (subject 1 again, as 00001)
    held = tmp_path / "held"
    with pytest.raises(SystemExit) as exc:
        main(["phantoms", "--kind", "abdom", "--count", "2", "--size", "32", "--seed", "3", "-o", str(held), "--start", "1"])
    assert exc.value.code in (0, None)
    assert sorted(p.name for p in held.iterdir()) == [".mood-dpa", "00001.nii.gz", "00002.nii.gz"]
    assert np.array_equal(read_volume(held / "00001.nii.gz").data, make_phantom("abdom", 32, 3, 1))


@pytest.mark.parametrize(
    "extra",
    [
        ["--kind", "brain", "--count", "2", "--size", "20"],
        ["--kind", "brain", "--count", "2", "--size", "1024"],
        ["--kind", "liver", "--count", "2"],
        ["--kind", "brain", "--count", "0"],
        ["--kind", "brain", "--count", "1", "--seed", "-4"],
        ["--kind", "brain", "--count", "1", "--gzip-level", "11"],
        ["--kind", "brain", "--count", "many"],
    ],
)
def test_cli_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, extra):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["phantoms", *extra, "-o", str(out)])
    assert exc.value.code == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.strip()
