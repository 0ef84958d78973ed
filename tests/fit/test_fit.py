"""`mood-dpa fit`: the training pipeline in one resumable command (issue 10, part 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from mood_dpa.errors import MoodError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from mood_dpa.data.phantoms import write_phantoms

    root = tmp_path_factory.mktemp("fit")
    write_phantoms("brain", 8, 32, 0, root / "vols")
    return root


def test_fit_trains_calibrates_and_predicts(phantoms, tmp_path, cli):
    from mood_dpa.data.synth.layout import make_synthetic_set
    from mood_dpa.evaluation.evaluate import evaluate_folder
    from mood_dpa.inference.detector_file import read_spec

    out = tmp_path / "models"
    assert cli(["fit", "-i", phantoms / "vols", "-o", out, "--preset", "quick", "--method", "histogram,l1", "--no-report"]) == 0
    state = json.loads((out / "fit_state.json").read_text())
    assert {"folds", "slices axis 0", "slices axis 1", "slices axis 2", "tuning set", "train histogram",
            "train l1 axis 0", "train l1 axis 2", "detector histogram", "detector l1"} <= set(state["stages"])
    # the cross-method detector holds the ensemble methods only (the plain-L1 AE is a reference)
    assert not (out / "detector.yaml").exists()
    spec = read_spec(out / "detectors" / "l1.yaml")
    assert [len(m.models) for m in spec.members] == [3] and spec.calibration is not None
    assert spec.info["calibration"]["tuned_on"]["cases"]  # tuned on the fit's own tuning set
    # the detector predicts held-out subjects in the MOOD format, and the evaluator reads it
    from mood_dpa.data.phantoms import write_phantoms

    test = write_phantoms("brain", 2, 32, 99, tmp_path / "test")
    make_synthetic_set(test, tmp_path / "heldout", ["uniform"], (1, 1), 5, progress=False)
    assert cli(["predict", "--model", out / "detectors" / "histogram.yaml", "--task", "both", "-i", tmp_path / "heldout" / "toy",
                "-o", tmp_path / "pred"]) == 0
    res = evaluate_folder(tmp_path / "pred", tmp_path / "heldout", "pixel", on_warning=None, progress=False)
    assert 0.0 <= res.ap <= 1.0 and res.tuning_warning is None


def test_a_rerun_after_a_kill_continues_where_it_stopped(phantoms, tmp_path, monkeypatch):
    import mood_dpa.methods.dpa.train as dpa_train
    from mood_dpa.fit import run_fit

    calls = []
    real = dpa_train.train_dpa

    def killed_on_second_axis(cfg, resume=False, callbacks=None):
        calls.append((cfg.run_dir, resume))
        if len(calls) == 2:
            raise KeyboardInterrupt  # what SIGTERM becomes
        return real(cfg, resume=resume, callbacks=callbacks)

    monkeypatch.setattr(dpa_train, "train_dpa", killed_on_second_axis)
    out = tmp_path / "models"
    with pytest.raises(KeyboardInterrupt):
        run_fit(phantoms / "vols", out, preset="quick", methods="l1", report=False, log=lambda s: None)
    first = json.loads((out / "fit_state.json").read_text())["stages"]
    assert "train l1 axis 0" in first and "train l1 axis 1" not in first

    log: list[str] = []
    outcome = run_fit(phantoms / "vols", out, preset="quick", methods="l1", report=False, log=log.append)
    skipped = [line for line in log if "done earlier, skipped" in line]
    assert any("train l1 axis 0" in line for line in skipped) and any("tuning set" in line for line in skipped)
    assert not any("train l1 axis 1" in line for line in skipped)
    assert [c[0].endswith("l1_axis0") for c in calls].count(True) == 1  # axis 0 was never trained again
    assert outcome.detectors["l1"] and (out / "detectors" / "l1.yaml").is_file()


def test_fit_refuses_other_options_foreign_folders_and_its_own_input(phantoms, tmp_path):
    from mood_dpa.fit import run_fit

    quiet = dict(report=False, log=lambda s: None)
    out = tmp_path / "m"
    run_fit(phantoms / "vols", out, preset="quick", methods="histogram", **quiet)
    with pytest.raises(MoodError, match="other options"):
        run_fit(phantoms / "vols", out, preset="quick", methods="histogram", seed=1, **quiet)
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep")
    with pytest.raises(MoodError, match="not made by mood-dpa"):
        run_fit(phantoms / "vols", foreign, preset="quick", methods="histogram", **quiet)
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]
    with pytest.raises(MoodError, match="inside the input"):
        run_fit(phantoms / "vols", phantoms / "vols" / "models", preset="quick", methods="histogram", **quiet)
    with pytest.raises(MoodError, match="unknown method"):
        run_fit(phantoms / "vols", tmp_path / "x", preset="quick", methods="dpa,magic", **quiet)
    with pytest.raises(MoodError, match="preset"):
        run_fit(phantoms / "vols", tmp_path / "x", preset="huge", **quiet)
    assert not (tmp_path / "x").exists()


def test_fit_state_results_survive_json(tmp_path):
    """What a stage returns is what a rerun gets back (stages return JSON values: paths as strings)."""
    from mood_dpa.fit import FitState, Stages

    state = FitState(tmp_path, {"a": 1})
    stage = Stages(state, log=lambda s: None)
    assert stage("one", lambda: [str(tmp_path / "f"), 3]) == [str(tmp_path / "f"), 3]
    again = Stages(FitState(tmp_path, {"a": 1}), log=lambda s: None)
    assert again("one", lambda: pytest.fail("a finished stage must not run again")) == [str(tmp_path / "f"), 3]
    assert np.isclose(json.loads((tmp_path / "fit_state.json").read_text())["stages"]["one"]["seconds"], 0.0, atol=1.0)


@pytest.mark.parametrize("preset", ["quick", "demo", "cpu", "long", "seed"])
@pytest.mark.parametrize("kind", ["brain", "abdom"])
def test_every_preset_names_configs_that_load_with_its_overrides(preset, kind, tmp_path):
    """fit builds each recipe's config from a packaged YAML plus overrides: all of them must exist and validate."""
    from mood_dpa.config import load_config
    from mood_dpa.fit import AXES, PRESETS
    from mood_dpa.fit.train import FitContext, common_overrides, config_path, stores_overrides
    from mood_dpa.methods.registry import recipes
    from mood_dpa.training.config import SimCLRConfig

    plan = PRESETS[preset]
    ctx = FitContext(lambda name, fn: fn(), plan, kind, tmp_path, tmp_path / "folds.csv", {}, [], 0, None, 1)
    common = common_overrides(tmp_path / "run", ctx)
    stores = stores_overrides([tmp_path / "s0"], tmp_path / "folds.csv")
    cfg = load_config(SimCLRConfig, config_path(plan.simclr_config, kind), common + stores + list(plan.simclr_overrides))
    assert str(cfg.run_dir) == str(tmp_path / "run") and cfg.trainer.seed == 0
    trained = 0
    for name, (entry, recipe) in recipes().items():
        if recipe.fitter is not None:
            continue
        for axis in AXES[kind] if recipe.per_axis else (None,):
            data = (["data.volumes=/x", "data.folds=/x/f.csv", "data.fold=0"] if recipe.data == "volumes"
                    else stores + [f"model.size={plan.slice_size}"])
            cfg = load_config(entry.config, config_path(recipe.configs[plan.group], kind, axis),
                              common + data + list(recipe.overrides.get(preset, ())))
            assert str(cfg.run_dir) == str(tmp_path / "run") and cfg.trainer.seed == 0 and cfg.trainer.threads == 1
            if name == "l1":
                assert cfg.loss.kind == "l1"
            trained += 1
    assert trained >= 4  # dpa and l1 per axis, both segmenters


def test_held_out_family_runs_train_without_their_group_and_join_one_member(phantoms, tmp_path, cli):
    """``--held-out fpi+poisson,intensity``: the 2-D segmenter is trained twice, each run with its group's
    weights at 0 and validated on that group alone; the detector's segmenter member holds both models."""
    from mood_dpa.inference.detector_file import read_spec

    out = tmp_path / "models"
    assert cli(["fit", "-i", phantoms / "vols", "-o", out, "--preset", "quick", "--method", "segmenter2d",
                "--held-out", "fpi+poisson,intensity", "--no-report"]) == 0
    runs = {"fpi+poisson": ("fpi", "poisson"), "intensity": ("intensity",)}
    for tag, group in runs.items():
        anomalies = yaml.safe_load((out / "runs" / f"segmenter2d_without_{tag}" / "config.yaml").read_text())["anomalies"]
        assert all(anomalies[f] == 0 for f in group) and anomalies["val_families"] == list(group), tag
        assert all(anomalies[f] > 0 for f in ("fpi", "poisson", "intensity") if f not in group), tag
    spec = read_spec(out / "detectors" / "segmenter2d.yaml")
    assert [len(m.models) for m in spec.members] == [2]
    assert json.loads((out / "fit_state.json").read_text())["options"]["held_out"] == ["fpi+poisson", "intensity"]
    assert cli(["fit", "-i", phantoms / "vols", "-o", tmp_path / "bad", "--preset", "quick", "--method", "segmenter2d",
                "--held-out", "fpi+nothing"]) == 2


def test_fit_keeps_a_configs_own_thread_count_unless_threads_is_given(tmp_path):
    """The demo-scale configs pin one thread (no slowdown beside a busy process, the same bits on any load);
    fit used to override every config with "all cores" (null). ``--threads N`` still fixes the count."""
    from types import SimpleNamespace

    from mood_dpa.config import load_config
    from mood_dpa.fit.train import common_overrides, config_path
    from mood_dpa.methods.segmenter.config import SegmenterTrainConfig

    for threads, expected in ((None, 1), (3, 3)):
        over = common_overrides(tmp_path / "run", SimpleNamespace(seed=0, threads=threads, device=None))
        cfg = load_config(SegmenterTrainConfig, config_path("segmenter/demo_2d.yaml", "brain"), over)
        assert cfg.trainer.threads == expected, (threads, over)


def test_held_out_each_trains_one_run_per_enabled_family_only(phantoms, tmp_path, cli):
    """``--held-out each`` lists every family, but a run without a family that is off anyway (deform and lesion
    in the packaged configs) would repeat the full mix: only the enabled families get a run. Holding out every
    enabled family is refused before any training."""
    out = tmp_path / "models"
    assert cli(["fit", "-i", phantoms / "vols", "-o", out, "--preset", "quick", "--method", "segmenter2d",
                "--held-out", "each", "--set", "segmenter2d.optim.max_steps=4", "--set", "segmenter2d.optim.val_every=2",
                "--set", "segmenter2d.anomalies.intensity=0", "--no-report"]) == 0
    runs = sorted(p.name for p in (out / "runs").iterdir() if p.name.startswith("segmenter2d"))
    assert runs == ["segmenter2d_without_fpi", "segmenter2d_without_poisson"]
    assert cli(["fit", "-i", phantoms / "vols", "-o", tmp_path / "bad", "--preset", "quick", "--method", "segmenter2d",
                "--held-out", "fpi+poisson+intensity", "--no-report"]) == 2
    assert not (tmp_path / "bad" / "runs" / "segmenter2d_without_fpi+poisson+intensity" / "model.pt").exists()


def test_fit_standardise_stores_the_training_volumes_landmarks_in_every_detector(phantoms, tmp_path, cli):
    """``--standardise``: the landmarks are the mean foreground percentiles of fit's TRAINING volumes (not the
    validation fold's, which calibrate), written once and carried by each detector file."""
    from mood_dpa.data.folds import read_folds
    from mood_dpa.inference.detector_file import read_spec
    from mood_dpa.scoring.standardise import Standardiser
    from mood_dpa.volumes import list_volumes, read_volume, volume_id

    out = tmp_path / "models"
    assert cli(["fit", "-i", phantoms / "vols", "-o", out, "--preset", "quick", "--method", "histogram", "--standardise",
                "--no-report"]) == 0
    fold = read_folds(out / "folds.csv")
    train = [read_volume(p).data for p in list_volumes(phantoms / "vols") if fold[volume_id(p)] != 0]
    expected = Standardiser.fit(train)
    got = read_spec(out / "detectors" / "histogram.yaml").standardise
    np.testing.assert_allclose(got.landmarks, expected.landmarks, atol=1e-9)
    assert json.loads((out / "fit_state.json").read_text())["options"]["standardise"] is True


def test_appearance_twin_trains_each_learned_method_again_with_other_looks_as_a_member_of_its_own(phantoms, tmp_path, cli):
    """``--appearance-twin 0.5``: the segmenter is trained twice, plainly and with half its training images in
    another look; the twin is its own member (and detector) beside the plain one; the fitted histogram has none."""
    from mood_dpa.inference.detector_file import read_spec

    out = tmp_path / "models"
    assert cli(["fit", "-i", phantoms / "vols", "-o", out, "--preset", "quick", "--method", "histogram,segmenter2d",
                "--appearance-twin", "0.5", "--set", "segmenter2d.optim.max_steps=4", "--set", "segmenter2d.optim.val_every=2",
                "--no-report"]) == 0
    looks = {run: yaml.safe_load((out / "runs" / run / "config.yaml").read_text())["appearance"]["p"]
             for run in ("segmenter2d", "segmenter2d+appearance")}
    assert looks == {"segmenter2d": 0.0, "segmenter2d+appearance": 0.5}
    assert [m.name for m in read_spec(out / "detector.yaml").members] == ["histogram", "segmenter2d", "segmenter2d+appearance"]
    twin = read_spec(out / "detectors" / "segmenter2d+appearance.yaml")
    assert [m.method for m in twin.members] == ["segmenter"] and not (out / "models" / "histogram+appearance.npz").exists()
    assert cli(["fit", "-i", phantoms / "vols", "-o", tmp_path / "bad", "--preset", "quick", "--appearance-twin", "2"]) == 2
