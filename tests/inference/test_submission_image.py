"""What the submission image is built from, checked without building it: the FROM line
(``--base-image``), the runtime requirements (complete for a real prediction, no training packages,
pinned to this machine), a torch wheel, and the commit that ``mood-dpa --version`` names inside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mood_dpa
from mood_dpa.data.phantoms import write_phantoms
from conftest import fit_baseline
from mood_dpa.errors import MoodError
from mood_dpa.inference.image_requirements import RUNTIME_PACKAGES, pinned_closure
from mood_dpa.inference.submission import build_submission, project_root
from mood_dpa.version import version_line

HEAVY = ("lightning", "pytorch-lightning", "kornia", "matplotlib", "tensorboard", "scikit-learn")
ROOT = project_root()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def histogram_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hist")
    train = write_phantoms("brain", 3, 32, 1, root / "train")
    fit_baseline(train, root / "hist.npz", calibration_volumes=2, seed=0, progress=False)
    return root / "hist.npz"


def slots(model: Path) -> dict:
    return {s: model for s in ("pixel_brain", "sample_brain", "pixel_abdom", "sample_abdom")}


def test_base_image_is_the_from_line(histogram_model, tmp_path, cli):
    args = ["submission", "--brain-pixel", histogram_model, "--brain-sample", histogram_model,
            "--abdom-pixel", histogram_model, "--abdom-sample", histogram_model]
    assert cli([*args, "-o", tmp_path / "default"]) == 0
    assert cli([*args, "-o", tmp_path / "local", "--base-image", "localhost/mood-dpa-base:bookworm"]) == 0
    froms = {name: [line for line in (tmp_path / name / "Dockerfile").read_text().splitlines() if line.startswith("FROM")]
             for name in ("default", "local")}
    assert froms == {"default": ["FROM python:3.11-slim"], "local": ["FROM localhost/mood-dpa-base:bookworm"]}
    # everything else in the two Dockerfiles is the same
    strip = [[line for line in (tmp_path / name / "Dockerfile").read_text().splitlines() if not line.startswith("FROM")]
             for name in ("default", "local")]
    assert strip[0] == strip[1]
    assert cli([*args, "-o", tmp_path / "bad", "--base-image", "python:3.11\nRUN rm -rf /"]) == 2
    assert not (tmp_path / "bad").exists()


def test_requirements_are_runtime_only_and_pinned_here(histogram_model, tmp_path):
    from importlib import metadata

    ctx = tmp_path / "ctx"
    build_submission(ctx, slots(histogram_model))
    required = (ctx / "requirements.txt").read_text().splitlines()
    pinned = dict(line.split("==") for line in (ctx / "constraints.txt").read_text().splitlines())
    assert [line.split("==")[0] for line in required] == list(RUNTIME_PACKAGES)
    assert not set(HEAVY) & set(pinned)  # no training-only package, directly or pulled in
    assert pinned["numpy"] == metadata.version("numpy")  # the versions of this machine
    assert pinned["torch"] == metadata.version("torch").split("+")[0]  # the build (cpu/cuda) is the Dockerfile's choice
    assert {"monai", "sympy", "pydantic-core"} <= set(pinned)  # the segmenter's U-Net, torch's and pydantic's needs


def test_a_prediction_imports_only_pinned_packages(tmp_path):
    """Score with a segmenter (monai) in a fresh process where only the packages the image installs can
    be imported (others, e.g. matplotlib that monai tries when present, raise ModuleNotFoundError)."""
    from mood_dpa.inference.tuning import calibrate_detector_file
    from mood_dpa.inference.loading import write_detector_file
    from mood_dpa.methods.segmenter.model import SegmenterNet, save_segmenter_model

    net = SegmenterNet(2, [4, 4, 8, 8, 8, 4], seed=0)
    meta = {"dim": 2, "axis": 0, "axes": [0], "size": 32, "rule": {"min_fraction": 0.05, "threshold": 0.0},
            "arch": {"features": [4, 4, 8, 8, 8, 4], "dropout": 0.0}, "name": "tiny", "step": 1}
    seg = save_segmenter_model(tmp_path / "seg.pt", net, meta)
    normals = write_phantoms("brain", 2, 32, 5, tmp_path / "normals")
    ens = write_detector_file(tmp_path / "seg.yaml", [seg])
    calibrate_detector_file(ens, normals, samples_per_volume=500, progress=False)
    allowed = sorted(line.split("==")[0] for line in pinned_closure())
    # the image's view: a module of any installed package outside the pinned closure cannot be imported
    code = f"""
import importlib.abc, re, sys
from importlib.metadata import packages_distributions
allowed, dists, blocked = set({allowed!r}), packages_distributions(), set()
class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        found = {{re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(top, [])}}
        if top in sys.stdlib_module_names or top == "mood_dpa" or not found or found & allowed:
            return None
        blocked.add(top)
        raise ModuleNotFoundError(f"No module named {{top!r}}", name=top)
sys.meta_path.insert(0, NotInTheImage())
import numpy as np
import mood_dpa.cli
from mood_dpa.inference.loading import load_detector
maps = load_detector({str(ens)!r}, "cpu").score_volume(np.zeros((32, 32, 32), np.float32))
print("monai" in sys.modules, "blocked:", sorted(blocked))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("True blocked:"), proc.stdout  # the segmenter's monai was used


def test_torch_wheel_goes_into_the_context_and_a_wrong_one_is_refused(histogram_model, tmp_path):
    from importlib import metadata

    version = metadata.version("torch").split("+")[0]
    wheel = tmp_path / f"torch-{version}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"a stand-in: only copied, never installed here")
    build_submission(tmp_path / "ctx", slots(histogram_model), torch_wheel=wheel)
    assert (tmp_path / "ctx" / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    other = tmp_path / "torch-1.0.0-cp311-cp311-linux_x86_64.whl"
    other.write_bytes(b"x")
    with pytest.raises(MoodError, match="torch 1.0.0"):
        build_submission(tmp_path / "ctx2", slots(histogram_model), torch_wheel=other)
    with pytest.raises(MoodError, match="not a torch wheel"):
        build_submission(tmp_path / "ctx3", slots(histogram_model), torch_wheel=histogram_model)
    assert not (tmp_path / "ctx2").exists() and not (tmp_path / "ctx3").exists()


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_version_names_the_commit_here_and_in_the_copied_package(histogram_model, tmp_path):
    if ROOT is None or not (ROOT / ".git").exists():
        pytest.skip("not run from a git checkout of mood-dpa: there is no commit to name")
    commit = _git("rev-parse", "--short", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    want = f"mood-dpa {mood_dpa.__version__} (commit {commit})"
    host = subprocess.run([sys.executable, "-m", "mood_dpa", "--version"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert host.returncode == 0 and host.stdout.strip() == want
    assert version_line() == want

    ctx = tmp_path / "ctx"
    build_submission(ctx, slots(histogram_model))
    copy = ctx / "mood-dpa" / "src"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(copy)}
    inside = subprocess.run([sys.executable, "-m", "mood_dpa", "--version"], capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.strip() == want  # the image names the same commit as the host, without git
    (copy / "mood_dpa" / "_build_commit.py").unlink()
    bare = subprocess.run([sys.executable, "-m", "mood_dpa", "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bare.stdout.strip() == f"mood-dpa {mood_dpa.__version__}"  # the baked file is what carries it
