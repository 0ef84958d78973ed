"""The MOOD submission: build context, and the four run scripts executed WITHOUT docker against a
phantom toy set, with every path outside OUT read-only (and checked unchanged), outputs evaluated
with the MOOD evaluator; plus the slim-image import check."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mood_dpa.data.phantoms import write_phantoms
from mood_dpa.data.slices import SliceRule
from mood_dpa.data.synth.layout import make_synthetic_set
from mood_dpa.errors import MoodError
from mood_dpa.evaluation.evaluate import evaluate_folder
from mood_dpa.inference.tuning import calibrate_detector_file
from mood_dpa.inference.loading import write_detector_file
from mood_dpa.inference.submission import DOCKER_FILES, RUN_SCRIPTS, build_submission, docker_dir
from mood_dpa.volumes import read_volume

BIN = Path(sys.executable).parent / "mood-dpa"
HEAVY = ("lightning", "pytorch_lightning", "kornia", "matplotlib", "tensorboard", "sklearn")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_ensemble(folder: Path, normals: list[Path]) -> Path:
    from mood_dpa.models.autoencoder import ResidualAE
    from mood_dpa.methods.dpa.model import save_dpa_model
    from mood_dpa.models.perceptual import RelativePerceptualL1
    from mood_dpa.models.backbones.vgg19 import VGG19Features

    files = []
    for axis in (0, 2):
        ae = ResidualAE("residual9", channels=4, latent=4, size=32, seed=axis)
        loss = RelativePerceptualL1(VGG19Features(("relu2_1",), width=1 / 16, seed=axis))
        files.append(save_dpa_model(folder / f"ax{axis}.pt", ae, loss, {"axis": axis, "rule": SliceRule(0.05), "normaliser": "volume"}))
    ens = write_detector_file(folder / "ens" / "brain_pixel.yaml", files)
    calibrate_detector_file(ens, normals, samples_per_volume=2000, progress=False)
    return ens


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Phantom training volumes, toy sets in the MOOD layout, models and the assembled build context."""
    from conftest import fit_baseline

    root = tmp_path_factory.mktemp("sub")
    models, toys = {}, {}
    for kind, seed in (("brain", 1), ("abdom", 2)):
        train = write_phantoms(kind, 3, 32, seed, root / f"{kind}_train")
        healthy = write_phantoms(kind, 2, 32, seed + 100, root / f"{kind}_healthy")
        make_synthetic_set(healthy, root / f"{kind}_toy", kinds="uniform,noise", seed=seed, progress=False)
        toys[kind] = root / f"{kind}_toy"
        fit_baseline(train, root / f"{kind}_hist.npz", calibration_volumes=2, seed=0, progress=False)
        models[kind] = root / f"{kind}_hist.npz"
    ens = tiny_ensemble(root / "dpa", write_phantoms("brain", 2, 32, 7, root / "brain_val_normals"))
    ctx = root / "context"
    slots = {"pixel_brain": ens, "sample_brain": models["brain"], "pixel_abdom": models["abdom"], "sample_abdom": models["abdom"]}
    build_submission(ctx, slots)
    return {"root": root, "ctx": ctx, "toys": toys, "ensemble": ens}


def snapshot(folder: Path, skip: Path) -> dict:
    """Every file and folder under ``folder`` (except ``skip``) with size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        d = Path(dirpath)
        if d == skip or skip in d.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = d / name
            if p == skip:
                continue
            st = p.lstat()
            out[str(p)] = (st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return out


def set_tree_read_only(folder: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o444)
        os.chmod(dirpath, 0o555)


def test_build_context_is_complete(setup):
    ctx = setup["ctx"]
    for name in DOCKER_FILES:
        assert (ctx / name).is_file()
    for script in RUN_SCRIPTS + ("mood_run.sh",):
        assert os.access(ctx / script, os.X_OK)
        assert subprocess.run(["sh", "-n", str(ctx / script)]).returncode == 0  # POSIX sh syntax
    assert sorted(p.name for p in (ctx / "models" / "pixel_brain").iterdir()) == ["m0_ax0.pt", "m1_ax2.pt", "model.yaml"]
    assert (ctx / "models" / "sample_abdom" / "model.npz").is_file()
    assert (ctx / "mood-dpa" / "pyproject.toml").is_file() and (ctx / "mood-dpa" / "src" / "mood_dpa" / "inference" / "detector.py").is_file()
    assert not list(ctx.rglob("__pycache__"))
    text = (ctx / "Dockerfile").read_text()
    for script in RUN_SCRIPTS:  # every entry point lands in /workspace
        assert script in text
    installs = [line for line in text.replace("\\\n", " ").splitlines() if line.startswith("RUN pip install")]
    assert installs and not any(pkg in line for line in installs for pkg in HEAVY)  # slim runtime image
    assert any("--no-deps" in line for line in installs)
    # the scripts in the image are the repository's
    assert (ctx / "mood_run.sh").read_bytes() == (docker_dir() / "mood_run.sh").read_bytes()


def test_uncalibrated_ensemble_is_refused(setup, tmp_path):
    from mood_dpa.inference.detector_file import read_spec

    spec = read_spec(setup["ensemble"])
    raw = write_detector_file(tmp_path / "raw.yaml", [setup["ensemble"].parent / m.path for m in spec.members[0].models])
    slots = {s: setup["root"] / "brain_hist.npz" for s in ("sample_brain", "pixel_abdom", "sample_abdom")}
    with pytest.raises(MoodError, match="not calibrated"):
        build_submission(tmp_path / "ctx", {"pixel_brain": raw, **slots})
    assert not (tmp_path / "ctx").exists()


@pytest.mark.parametrize("task,dataset", [("pixel", "brain"), ("sample", "brain"), ("pixel", "abdom"), ("sample", "abdom")])
def test_run_script_writes_only_under_out(setup, tmp_path, task, dataset):
    toy = setup["toys"][dataset]
    work = tmp_path / "work"
    # the container's view: IN and the image (scripts + models) read-only, HOME/TMPDIR/cwd read-only
    ro = work / "readonly"
    in_dir = work / "in"
    image = work / "image"
    out = work / "out"
    ro.mkdir(parents=True)
    import shutil

    shutil.copytree(toy / "toy", in_dir)
    shutil.copytree(setup["ctx"], image, ignore=shutil.ignore_patterns("mood-dpa", "Dockerfile"))
    out.mkdir()
    for folder in (ro, in_dir, image):
        set_tree_read_only(folder)
    before = snapshot(work, skip=out)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(ro),
        "TMPDIR": str(ro),
        "MOOD_DPA_BIN": str(BIN),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # the package under test: a worktree's src/ when PYTHONPATH names it, else the installed one
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}),
    }
    try:
        proc = subprocess.run(
            ["sh", str(image / f"run_{task}_{dataset}.sh"), str(in_dir), str(out)],
            cwd=ro, env=env, capture_output=True, text=True, timeout=120,
        )
        after = snapshot(work, skip=out)
    finally:
        for folder in (ro, in_dir, image):
            for dirpath, _, _ in os.walk(folder):
                os.chmod(dirpath, 0o755)
    assert proc.returncode == 0, proc.stderr
    assert after == before  # nothing outside OUT changed or appeared
    inputs = sorted(p.name for p in (toy / "toy").iterdir())
    want = inputs if task == "pixel" else [f"{n}.txt" for n in inputs]
    assert sorted(p.name for p in out.iterdir()) == want  # and no temporary left inside OUT
    for name in inputs:
        if task == "pixel":
            src, pred = read_volume(toy / "toy" / name), read_volume(out / name)
            assert pred.data.shape == src.data.shape and np.allclose(pred.affine, src.affine)
            assert np.isfinite(pred.data).all() and 0 <= pred.data.min() and pred.data.max() <= 1
        else:
            lines = (out / f"{name}.txt").read_text().splitlines()
            assert len(lines) == 1 and 0.0 <= float(lines[0]) <= 1.0
    result = evaluate_folder(out, toy, task, progress=False, on_warning=None)
    assert result.cases == len(inputs) and not result.missing
    assert 0.0 <= result.ap <= 1.0 and result.positives > 0 and result.negatives > 0


def test_run_script_failures_are_clean(setup, tmp_path):
    out = tmp_path / "out"
    env = {"PATH": os.environ.get("PATH", ""), "MOOD_DPA_BIN": str(BIN), "MOOD_DPA_MODELS": str(tmp_path / "nothing")}
    script = str(setup["ctx"] / "run_pixel_brain.sh")
    bad_args = subprocess.run(["sh", script, str(tmp_path)], env=env, capture_output=True, text=True)
    assert bad_args.returncode == 2 and "usage" in bad_args.stderr
    no_model = subprocess.run(["sh", script, str(setup["toys"]["brain"] / "toy"), str(out)], env=env, capture_output=True, text=True)
    assert no_model.returncode == 2 and "no model" in no_model.stderr
    env.pop("MOOD_DPA_MODELS")
    out.mkdir()
    # a failing predictor that leaves a temporary behind: the script must still clean up and fail
    fake = tmp_path / "fake-mood-dpa"
    fake.write_text('#!/bin/sh\necho partial > "$TMPDIR/junk"\necho "error: broken.nii.gz: fake failure" >&2\nexit 3\n')
    fake.chmod(0o755)
    failed = subprocess.run(["sh", script, str(setup["toys"]["brain"] / "toy"), str(out)], env={**env, "MOOD_DPA_BIN": str(fake)}, capture_output=True, text=True)
    assert failed.returncode == 3 and "broken.nii.gz" in failed.stderr
    assert list(out.iterdir()) == []  # the work folder is removed on failure too


def test_prediction_path_imports_no_training_packages(setup):
    """The image installs only runtime dependencies: predicting must not import training-only packages."""
    code = (
        "import sys, numpy as np\n"
        "import mood_dpa.cli\n"
        "from mood_dpa.inference.loading import load_detector\n"
        f"d = load_detector({str(setup['ctx'] / 'models' / 'pixel_brain' / 'model.yaml')!r}, 'cpu')\n"
        "d.score_volume(np.zeros((32, 32, 32), np.float32))\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_submission_command(setup, tmp_path, cli):
    root = setup["root"]
    out = tmp_path / "ctx"
    args = ["submission", "-o", out, "--brain-pixel", setup["ensemble"], "--brain-sample", root / "brain_hist.npz",
            "--abdom-pixel", root / "abdom_hist.npz", "--abdom-sample", root / "abdom_hist.npz"]
    assert cli(args) == 0
    assert sorted(p.name for p in (out / "models").iterdir()) == ["pixel_abdom", "pixel_brain", "sample_abdom", "sample_brain"]
    assert cli([*args[:-1], root / "missing.npz"]) == 2  # a bad slot: one-line error, earlier context intact
    assert (out / "models" / "pixel_brain" / "model.yaml").is_file()
