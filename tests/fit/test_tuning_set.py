"""fit's tuning set: anomalies of the training families, optionally in more than one look (issue 16)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def vols(tmp_path_factory):
    from mood_dpa.data.phantoms import write_phantoms

    root = tmp_path_factory.mktemp("tuning")
    write_phantoms("brain", 8, 32, 0, root / "vols")  # fit's quick preset needs 8 (4 folds)
    return sorted((root / "vols").glob("*.nii.gz"))


def _read(folder, sub, name):
    from mood_dpa.volumes import read_volume

    return read_volume(folder / sub / name).data


def test_other_looks_change_whole_volumes_alike_and_leave_labels_and_background(vols, tmp_path):
    """``appearance_p=1``: every volume gets a look drawn by its own seed, the same look for its normal copy and
    its anomalous cases (the plain set's case with that seed's look, to float32 precision); labels, the
    background and the case list stay those of the one-look set; the same seed gives the same set."""
    from mood_dpa.fit.tuning_set import LOOKS_FILE, make_family_tuning_set, other_look

    plain, looked = tmp_path / "plain", tmp_path / "looked"
    n = make_family_tuning_set(vols, plain, seed=3)
    assert make_family_tuning_set(vols, looked, seed=3, appearance_p=1.0) == n
    assert not (plain / LOOKS_FILE).exists()
    looks = json.loads((looked / LOOKS_FILE).read_text())["cases"]
    rows = list(csv.DictReader((looked / "manifest.csv").open()))
    assert [r["case"] for r in rows] == [r["case"] for r in csv.DictReader((plain / "manifest.csv").open())]
    assert set(looks) == {r["case"] for r in rows}
    by_source: dict[str, set[int]] = {}
    for r in rows:
        by_source.setdefault(r["source"], set()).add(looks[r["case"]])
        name = r["file"]
        x0, x1 = _read(plain, "toy", name), _read(looked, "toy", name)
        assert np.array_equal(_read(plain, "toy_label/pixel", name), _read(looked, "toy_label/pixel", name))
        assert np.array_equal(x0 == 0, x1 == 0)  # background stays background
        assert np.abs(x1 - x0).max() > 0.02  # the look changed
        np.testing.assert_allclose(x1, other_look(x0, looks[r["case"]]), atol=1e-6)
    assert all(len(seeds) == 1 for seeds in by_source.values())  # one look per volume, for all its cases
    assert len({s for seeds in by_source.values() for s in seeds}) == len(by_source)  # another per volume
    again = tmp_path / "again"
    make_family_tuning_set(vols, again, seed=3, appearance_p=1.0)
    assert all(np.array_equal(_read(looked, "toy", r["file"]), _read(again, "toy", r["file"])) for r in rows)


def test_fit_refuses_a_bad_tuning_appearance_before_writing_anything(vols, tmp_path, cli, capsys):
    src = vols[0].parent
    out = tmp_path / "models"
    assert cli(["fit", "-i", src, "-o", out, "--preset", "quick", "--method", "histogram", "--tuning-appearance", "1.5"]) == 2
    assert "--tuning-appearance" in capsys.readouterr().err
    assert cli(["fit", "-i", src, "-o", out, "--preset", "quick", "--method", "histogram", "--tuning-appearance", "0.5",
                "--tuning-kinds", "local"]) == 2
    assert "does not combine with --tuning-kinds" in capsys.readouterr().err
    assert cli(["fit", "-i", src, "-o", out, "--preset", "quick", "--method", "segmenter2d", "--held-out", "fpi+bogus"]) == 2
    assert not out.exists()
