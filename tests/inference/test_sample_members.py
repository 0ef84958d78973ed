"""Sample-level members (the volume-histogram method in the registry and in detector files) and the
prediction record that lets `evaluate` warn when it scores the detector's own tuning set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import blob_volume
from mood_dpa.data.synth import make_synthetic_set
from mood_dpa.errors import MoodError
from mood_dpa.evaluation.evaluate import evaluate_folder
from mood_dpa.inference.detector import SAMPLE_COMBINE_RULES, combine_sample_scores
from mood_dpa.inference.tuning import calibrate_detector_file, choose_sample_combine
from mood_dpa.inference.loading import load_detector_file, write_detector_file
from mood_dpa.inference.detector_file import read_spec
from mood_dpa.inference.loading import load_detector
from mood_dpa.inference.predict import predict_folder
from mood_dpa.data.provenance import RECORD_NAME, read_predict_record
from mood_dpa.scoring.sample_inferer import SampleModel
from conftest import fit_baseline
from mood_dpa.methods.registry import load_scorers, method_for_file, model_kind
from mood_dpa.methods.volume_histogram.model import VolumeHistogramDetector
from mood_dpa.volumes import read_volume, write_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 24
KINDS = "gamma,ellipsoid,noise_level"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Healthy training volumes, a voxel histogram (map member) and a volume histogram (sample member),
    tuning set A (seed 0) and held-out set B (seed 1, OTHER source volumes), A2 (seed 7, A's volumes), and C
    (B's volumes under A's file names: what two prepared folders that both start at 00000.nii.gz look like)."""
    root = tmp_path_factory.mktemp("sample_members")
    train = [write_volume(root / "train" / f"{i:05d}.nii.gz", blob_volume((N, N, N), seed=i)) for i in range(6)]
    a_src = [write_volume(root / "a_src" / f"{20 + i:05d}.nii.gz", blob_volume((N, N, N), seed=20 + i)) for i in range(3)]
    b_src = [write_volume(root / "b_src" / f"{30 + i:05d}.nii.gz", blob_volume((N, N, N), seed=30 + i)) for i in range(3)]
    fit_baseline(train, root / "hist.npz", calibration_volumes=3, seed=0, progress=False)
    VolumeHistogramDetector.fit(train, bins=32, k=2, progress=False).save(root / "vh.npz")
    c_src = [write_volume(root / "c_src" / f"{20 + i:05d}.nii.gz", blob_volume((N, N, N), seed=30 + i)) for i in range(3)]
    for name, src, seed in (("A", a_src, 0), ("B", b_src, 1), ("A2", a_src, 7), ("C", c_src, 1)):
        make_synthetic_set(src, root / name, KINDS, "1", seed, progress=False)
    return {"root": root, "train": root / "train", "hist": root / "hist.npz", "vh": root / "vh.npz",
            "A": root / "A", "B": root / "B", "A2": root / "A2", "C": root / "C"}


def _outputs(folder: Path) -> dict:
    """Every prediction in a folder: pixel arrays and sample texts, by file name."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.endswith(".txt"):
            out[p.name] = p.read_text()
        elif p.name.endswith(".nii.gz"):
            out[p.name] = read_volume(p).data
    return out


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


# ------------------------------------------------------------------ the method in the registry


def test_volume_histogram_is_a_registered_sample_level_method(world, tmp_path, cli):
    assert model_kind(world["vh"]) == "volume-histogram" and method_for_file(world["vh"]).name == "volume-histogram"
    scorers = load_scorers(world["vh"])
    assert len(scorers) == 1 and isinstance(scorers[0], SampleModel)
    # fitted from the command line: the same model as the library's fit with the same settings
    out = tmp_path / "m" / "vh.npz"
    assert cli(["baseline", "fit-volume", "-i", world["train"], "-o", out, "--bins", "32", "--k", "2"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == [".mood-dpa-files.json", "vh.npz"]
    ref = VolumeHistogramDetector.load(world["vh"])
    back = VolumeHistogramDetector.load(out)
    assert back.combination == "max" and back.part_max == ref.part_max and back.calibration == ref.calibration
    assert cli(["baseline", "fit-volume", "-i", world["train"], "-o", tmp_path / "vh.txt"]) == 2
    assert cli(["baseline", "fit-volume", "-i", world["train"], "-o", tmp_path / "x.npz", "--combination", "mean"]) == 2
    assert not (tmp_path / "x.npz").exists()
    # opened alone by load_detector: no voxel map, the file's own volume score
    det = load_detector(world["vh"], device="cpu")
    vol = read_volume(world["B"] / "toy" / "00030_gamma.nii.gz").data
    maps = det.score_volume(vol)
    assert maps.shape == vol.shape and maps.dtype == np.float32 and not maps.any()
    assert det.sample_score(vol, maps) == ref.volume_score(vol)
    pred = tmp_path / "pred"
    assert cli(["predict", "--model", world["vh"], "--task", "sample", "-i", world["B"] / "toy", "-o", pred]) == 0
    assert float((pred / "00030_gamma.nii.gz.txt").read_text()) == ref.volume_score(vol)


# ------------------------------------------------------------------ sample-level members in a detector


def test_combine_sample_scores_and_choice_by_hand():
    assert SAMPLE_COMBINE_RULES == ("map", "max", "mean")
    assert combine_sample_scores(0.2, [0.9, 0.4], "map") == 0.2
    assert combine_sample_scores(0.2, [0.9, 0.4], "max") == 0.9
    assert combine_sample_scores(0.2, [0.9, 0.4], "mean") == pytest.approx(0.5)
    assert combine_sample_scores(None, [0.9, 0.4], "map") == pytest.approx(0.65)  # no map: the members' mean
    with pytest.raises(MoodError, match="sample combine"):
        combine_sample_scores(0.2, [0.9], "min")
    from sklearn.metrics import average_precision_score

    labels = [0, 0, 1, 1, 1]
    map_scores = [0.1, 0.6, 0.5, 0.7, 0.2]  # the map misses case 4 and ranks a normal high
    members = [[0.1], [0.2], [0.3], [0.2], [0.9]]  # the volume score sees case 4
    rule, aps = choose_sample_combine(map_scores, members, labels)
    want = [average_precision_score(labels, [combine_sample_scores(s, m, r) for s, m in zip(map_scores, members)])
            for r in SAMPLE_COMBINE_RULES]
    np.testing.assert_allclose(aps, want, rtol=1e-12)
    assert rule == SAMPLE_COMBINE_RULES[int(np.argmax(want))] and rule != "map"
    # a member that adds nothing: all three tie on a perfect map, and ties go to map
    rule, aps = choose_sample_combine([0.1, 0.2, 0.8, 0.9, 0.7], [[0.0]] * 5, labels)
    assert rule == "map" and aps[0] == 1.0


def test_sample_member_never_enters_the_voxel_map_and_map_only_is_unchanged(world, tmp_path, cli):
    """With and without a volume-histogram member: the same calibration, sample rule and voxel outputs;
    with sample_combine map also the same sample outputs (identical files), with max / mean the sample
    score is exactly that rule over the map score and the volume score."""
    map_only = write_detector_file(tmp_path / "map.yaml", [world["hist"]])
    assert cli(["ensemble", world["hist"], world["vh"], "-o", tmp_path / "mix.yaml"]) == 0
    mix = tmp_path / "mix.yaml"
    assert [(m.method, m.calibration) for m in read_spec(mix).members] == [("histogram", None), ("volume-histogram", None)]
    info_map = calibrate_detector_file(map_only, world["train"], val_dir=world["A"], samples_per_volume=5000, progress=False)
    info_mix = calibrate_detector_file(mix, world["train"], val_dir=world["A"], samples_per_volume=5000, progress=False)
    s_map, s_mix = read_spec(map_only), read_spec(mix)
    assert s_mix.calibration == s_map.calibration and s_mix.sample_rule == s_map.sample_rule
    assert s_mix.members[1].calibration is None and "member_combine" not in info_mix  # one MAP member
    assert info_mix["sample_rule_ap"] == info_map["sample_rule_ap"]
    assert "sample_combine_ap" not in info_map and s_map.sample_combine == "map"
    aps = info_mix["sample_combine_ap"]
    assert set(aps) == set(SAMPLE_COMBINE_RULES) and info_mix["sample_combine"] == s_mix.sample_combine
    assert aps[s_mix.sample_combine] == max(aps.values())

    # a detector file written before sample_combine existed (no key) predicts byte-identically
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(map_only.read_text()).items() if k != "sample_combine"}))
    outs = {}
    for name, det_file, rule in (("map", map_only, None), ("old", old, None), ("mix_map", mix, "map"), ("mix_max", mix, "max"), ("mix_mean", mix, "mean")):
        det = load_detector_file(det_file, device="cpu")
        if rule is not None:
            det.sample_combine = rule
        assert predict_folder(det, world["B"] / "toy", tmp_path / name, "both", progress=False).ok
        outs[name] = _outputs(tmp_path / name)
    assert _same(outs["map"], outs["old"]) and _same(outs["map"], outs["mix_map"])
    vh = VolumeHistogramDetector.load(world["vh"])
    changed = 0
    for fname, value in outs["map"].items():
        if isinstance(value, np.ndarray):  # the pixel output never sees the sample member
            assert np.array_equal(outs["mix_max"][fname], value) and np.array_equal(outs["mix_mean"][fname], value)
            continue
        m, v = float(value), vh.volume_score(read_volume(world["B"] / "toy" / fname[: -len(".txt")]).data)
        assert float(outs["mix_max"][fname]) == max(m, v)
        assert float(outs["mix_mean"][fname]) == pytest.approx((m + v) / 2, abs=1e-15)
        changed += float(outs["mix_max"][fname]) != m
    assert changed > 0  # the member really moved some sample scores


def test_sample_only_detector_predicts_but_has_nothing_to_calibrate(world, tmp_path, cli):
    det_file = tmp_path / "vh_only.yaml"
    assert cli(["ensemble", world["vh"], "-o", det_file]) == 0
    assert cli(["calibrate", "-e", det_file, "-i", world["train"], "--val", world["A"]]) == 2
    det = load_detector_file(det_file, device="cpu")
    vol = read_volume(world["B"] / "toy" / "00031_noise_level.nii.gz").data
    assert not det.score_volume(vol).any()
    assert det.sample_score(vol, det.score_volume(vol)) == VolumeHistogramDetector.load(world["vh"]).volume_score(vol)
    with pytest.raises(MoodError, match="mixes"):
        from mood_dpa.inference.detector import Member, ShellDetector

        ShellDetector([Member("x", "x", [*load_scorers(world["hist"]), *load_scorers(world["vh"])])])


# ------------------------------------------------------------------ the prediction record and the tuning-set warning


def test_evaluate_warns_on_the_tuning_set_only(world, tmp_path, cli, capsys):
    det_file = write_detector_file(tmp_path / "det.yaml", [world["hist"], world["vh"]])
    calibrate_detector_file(det_file, world["train"], val_dir=world["A"], samples_per_volume=5000, progress=False)
    tuned = read_spec(det_file).info["calibration"]["tuned_on"]
    # the sources by CONTENT (sha256 of the volume), not by name
    assert len(tuned["sources"]) == 3 and all(x.startswith("sha256:") for x in tuned["sources"])

    def run(set_name: str, task: str = "sample"):
        pred = tmp_path / f"pred_{set_name}"
        assert cli(["predict", "--model", det_file, "--task", "both", "-i", world[set_name] / "toy", "-o", pred]) == 0
        return pred, evaluate_folder(pred, world[set_name], task, manifest=world[set_name] / "manifest.csv", on_warning=None, progress=False)

    pred_a, on_a = run("A")
    record = read_predict_record(pred_a)
    entry = record["tasks"]["sample"]
    assert set(record["tasks"]) == {"pixel", "sample"} and entry["detector"]["path"] == str(det_file.resolve())
    assert entry["detector"]["tuned_on"] == tuned and entry["input"] == str((world["A"] / "toy").resolve())
    assert on_a.tuning_warning is not None and "same manifest" in on_a.tuning_warning
    assert on_a.tuning_warning in on_a.warnings and on_a.to_dict()["detector"]["detector"]["path"] == str(det_file.resolve())
    # the hidden record changes nothing the evaluator scores (it pairs by label names)
    stripped = tmp_path / "stripped"
    shutil.copytree(pred_a, stripped)
    (stripped / RECORD_NAME).unlink()
    plain = evaluate_folder(stripped, world["A"], "sample", on_warning=None, progress=False)
    assert plain.ap == on_a.ap and plain.tuning_warning is None and plain.detector is None

    _, on_b = run("B")
    assert on_b.tuning_warning is None and on_b.detector is not None and not on_b.warnings
    # another seed on the SAME source volumes: a different manifest, but the same anatomy and normal copies
    _, on_a2 = run("A2", "pixel")
    assert on_a2.tuning_warning is not None and "3 of its 3 source volumes" in on_a2.tuning_warning
    # other volumes that happen to carry the tuning set's file names: no warning
    _, on_c = run("C", "pixel")
    assert on_c.tuning_warning is None
    # no manifest next to the labels: case names decide
    labels_only = tmp_path / "labels_only"
    shutil.copytree(world["A"] / "toy_label", labels_only / "toy_label")
    r = evaluate_folder(pred_a, labels_only / "toy_label", "sample", on_warning=None, progress=False)
    assert r.tuning_warning is not None and "12 of its 12 case names" in r.tuning_warning

    # the CLI: a WARNING line on stderr, and the warning in --json
    capsys.readouterr()
    assert cli(["evaluate", "--pred", pred_a, "--labels", world["A"], "--task", "sample", "--json", tmp_path / "a.json"]) == 0
    assert "WARNING: EVALUATING ON THE TUNING SET" in capsys.readouterr().err
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["tuning_warning"] and data["tuning_warning"] in data["warnings"]
    assert cli(["evaluate", "--pred", tmp_path / "pred_B", "--labels", world["B"], "--task", "sample", "--json", tmp_path / "b.json"]) == 0
    assert "WARNING" not in capsys.readouterr().err
    assert json.loads((tmp_path / "b.json").read_text())["tuning_warning"] is None


def test_record_keeps_the_other_task_and_a_lone_model_is_tuned_on_nothing(world, tmp_path, cli):
    det_file = write_detector_file(tmp_path / "det.yaml", [world["hist"]])
    calibrate_detector_file(det_file, world["train"], val_dir=world["A"], samples_per_volume=5000, progress=False)
    out = tmp_path / "pred"
    assert predict_folder(load_detector(det_file, device="cpu"), world["A"] / "toy", out, "pixel", progress=False).ok
    assert predict_folder(load_detector(world["vh"], device="cpu"), world["A"] / "toy", out, "sample", progress=False).ok
    tasks = read_predict_record(out)["tasks"]
    assert tasks["pixel"]["detector"]["path"] == str(det_file.resolve())
    assert tasks["sample"]["detector"]["path"] == str(world["vh"].resolve()) and tasks["sample"]["detector"]["tuned_on"] is None
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".mood-dpa", RECORD_NAME]  # no temp file left
    assert evaluate_folder(out, world["A"], "pixel", on_warning=None, progress=False).tuning_warning is not None
    assert evaluate_folder(out, world["A"], "sample", on_warning=None, progress=False).tuning_warning is None
    # --no-record (the challenge container): no record (the run scripts also remove the output marker)
    quiet = tmp_path / "quiet"
    assert cli(["predict", "--model", det_file, "--task", "sample", "-i", world["A"] / "toy", "-o", quiet, "--no-record"]) == 0
    assert sorted(p.name for p in quiet.iterdir() if p.name != ".mood-dpa") == sorted(f"{p.name}.txt" for p in (world["A"] / "toy").iterdir())
    # a foreign or broken record is ignored (it is advisory)
    (out / RECORD_NAME).write_text("{not json")
    assert read_predict_record(out) is None
    assert evaluate_folder(out, world["A"], "pixel", on_warning=None, progress=False).tuning_warning is None
