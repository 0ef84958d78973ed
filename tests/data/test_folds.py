from collections import Counter

import pytest

from mood_dpa.data.folds import make_folds, read_folds, split_ids, write_folds_csv
from mood_dpa.errors import MoodError

NAMES = [f"{i:05d}.nii.gz" for i in range(23)]


def test_folds_are_a_seeded_balanced_partition():
    a = make_folds(NAMES, 10, seed=3)
    assert set(a) == set(NAMES)
    sizes = Counter(a.values())
    assert set(sizes) == set(range(10)) and max(sizes.values()) - min(sizes.values()) <= 1
    assert a == make_folds(list(reversed(NAMES)), 10, seed=3)  # input order does not matter
    assert a != make_folds(NAMES, 10, seed=4)


def test_csv_round_trip_in_seed_format(tmp_path):
    folds = make_folds(NAMES, 5, seed=0)
    path = write_folds_csv(tmp_path / "folds.csv", folds)
    lines = path.read_text().splitlines()
    assert lines[0] == "filename,test_fold" and lines[1] == f"00000.nii.gz,{folds['00000.nii.gz']}"
    ids = read_folds(path)
    assert ids == {n.split(".")[0]: f for n, f in folds.items()}
    for k in range(5):
        val, train = split_ids(ids, k, "val"), split_ids(ids, k, "train")
        assert val and not val & train and val | train == set(ids)


def test_bad_folds(tmp_path):
    with pytest.raises(MoodError, match="cannot fill"):
        make_folds(NAMES[:3], 10, 0)
    bad = tmp_path / "f.csv"
    bad.write_text("name,fold\na,1\n")
    with pytest.raises(MoodError, match="header"):
        read_folds(bad)
    bad.write_text("filename,test_fold\n00001.nii.gz,x\n")
    with pytest.raises(MoodError, match="line 2"):
        read_folds(bad)
    with pytest.raises(MoodError, match="fold 7"):
        split_ids({"a": 0, "b": 1}, 7, "val")


def test_folds_cli(tmp_path, cli, volume_folder):
    assert cli(["folds", "-i", volume_folder, "-o", tmp_path / "f.csv", "--n-folds", "5", "--seed", "2"]) == 0
    assert read_folds(tmp_path / "f.csv") == {n.split(".")[0]: f for n, f in make_folds([p.name for p in volume_folder.iterdir()], 5, 2).items()}
    assert cli(["folds", "-i", volume_folder, "-o", tmp_path / "g.csv", "--n-folds", "9"]) == 2
    assert not (tmp_path / "g.csv").exists()
