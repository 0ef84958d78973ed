"""Nothing is lost, nothing silently wrong (issue 10, parts 1, 2 and 5).

Each test names a defect seen on the old main: data loss when input and output overlap, foreign folders
replaced, PermissionError tracebacks, clamped Hounsfield volumes, image folders accepted as labels,
non-finite options, empty prediction folders, name collisions without names, stale temporaries, threads.
Every refusal is one ``error:`` line, exit code 2, and leaves the disk exactly as it was.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mood_dpa
from conftest import blob_volume
from mood_dpa.volumes import write_volume

SRC = Path(mood_dpa.__file__).resolve().parents[1]
DOCKER = SRC.parent / "docker"


def snapshot(root: Path) -> dict:
    """Every file and folder under ``root`` (hidden ones too) with its content hash and permission bits."""
    out = {}
    for p in sorted(root.rglob("*")):
        mode = stat.S_IMODE(p.lstat().st_mode)
        digest = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (digest, mode)
    return out


def refused(cli, capsys, args, *needles) -> str:
    """Run the CLI, expect exit 2 with one ``error:`` line containing every needle; return that line."""
    code = cli(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    assert "Traceback" not in err and [x for x in lines if x.startswith("error: ")] == lines[-1:], err
    line = lines[-1]  # warnings may come before the one error line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.fixture
def work(tmp_path):
    """tmp/d/a: three small scans; tmp/model.npz: the histogram baseline fitted on them."""
    from conftest import fit_baseline

    scans = tmp_path / "d" / "a"
    scans.mkdir(parents=True)
    for i in range(3):
        write_volume(scans / f"{i:05d}.nii.gz", blob_volume((16, 16, 16), seed=i), np.eye(4))
    fit_baseline(sorted(scans.iterdir()), tmp_path / "model.npz", bins=32, sigma=0.0, seed=0, progress=False)
    return tmp_path


# ----------------------------------------------------------------------------------- nothing is lost


def test_predict_into_its_own_input_folder_is_refused(work, cli, capsys):
    before = snapshot(work)
    scans = work / "d" / "a"
    refused(cli, capsys, ["predict", "--model", work / "model.npz", "--task", "both", "-i", scans, "-o", scans], "is the input")
    refused(cli, capsys, ["predict", "--model", work / "model.npz", "--task", "pixel", "-i", scans, "-o", scans / "pred"], "inside the input")
    refused(cli, capsys, ["predict", "--model", work / "model.npz", "--task", "pixel", "-i", scans, "-o", work / "d"], "contains the input")
    assert snapshot(work) == before


def test_slices_never_replaces_its_input_or_a_parent(work, cli, capsys):
    before = snapshot(work)
    refused(cli, capsys, ["slices", "-i", work / "d" / "a", "-o", work / "d" / "a", "--axis", "0", "--size", "8"], "is the input")
    refused(cli, capsys, ["slices", "-i", work / "d" / "a", "-o", work / "d", "--axis", "0", "--size", "8"], "contains the input")
    assert snapshot(work) == before


def test_a_foreign_folder_is_refused_and_overwrite_keeps_its_other_files(work, cli, capsys):
    e = work / "d" / "e"
    e.mkdir()
    (e / "thesis.tex").write_text("years of work")
    before = snapshot(work)
    models = ["--brain-pixel", work / "model.npz", "--brain-sample", work / "model.npz",
              "--abdom-pixel", work / "model.npz", "--abdom-sample", work / "model.npz"]
    refused(cli, capsys, ["submission", "-o", e, *models], "thesis.tex", "--overwrite")
    refused(cli, capsys, ["slices", "-i", work / "d" / "a", "-o", e, "--axis", "0", "--size", "8"], "not made by mood-dpa")
    refused(cli, capsys, ["predict", "--model", work / "model.npz", "--task", "sample", "-i", work / "d" / "a", "-o", e], "--overwrite")
    refused(cli, capsys, ["phantoms", "--kind", "brain", "-n", "1", "--size", "32", "-o", e], "--overwrite")
    assert snapshot(work) == before
    # --overwrite writes the store's files into the folder and keeps the foreign one
    assert cli(["slices", "-i", work / "d" / "a", "-o", e, "--axis", "0", "--size", "8", "--overwrite"]) == 0
    assert (e / "thesis.tex").read_text() == "years of work"
    assert {"slices.npy", "index.csv", "meta.json"} <= {p.name for p in e.iterdir()}
    # the folder still holds someone else's file, so it is not marked: a later command cannot replace it whole
    assert not (e / ".mood-dpa").exists()
    refused(cli, capsys, ["slices", "-i", work / "d" / "a", "-o", e, "--axis", "1", "--size", "8"], "not made by mood-dpa")
    assert cli(["predict", "--model", work / "model.npz", "--task", "sample", "-i", work / "d" / "a", "-o", e, "--overwrite"]) == 0
    assert not (e / ".mood-dpa").exists() and (e / "thesis.tex").read_text() == "years of work"


def test_a_folder_the_tool_made_is_replaced_on_rerun(work, cli):
    store = work / "store"
    for size in (8, 12):
        assert cli(["slices", "-i", work / "d" / "a", "-o", store, "--axis", "0", "--size", str(size)]) == 0
    assert np.load(store / "slices.npy").shape[1:] == (12, 12)
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []  # nothing set aside left
    out = work / "pred"
    for _ in range(2):
        assert cli(["predict", "--model", work / "model.npz", "--task", "sample", "-i", work / "d" / "a", "-o", out]) == 0
    assert len(list(out.glob("*.txt"))) == 3


def _deny_writes_in(monkeypatch, folder: Path) -> None:
    """Make ``folder`` read-only; as root (which ignores the bits) also make the write probe fail there."""
    folder.chmod(0o555)
    if os.geteuid() == 0:
        import mood_dpa.outputs as outputs

        real = outputs.tempfile.mkstemp

        def mkstemp(*args, dir=None, **kw):
            if dir is not None and Path(dir).resolve() == folder.resolve():
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return real(*args, dir=dir, **kw)

        monkeypatch.setattr(outputs.tempfile, "mkstemp", mkstemp)


def test_read_only_outputs_give_one_line_before_any_work(work, cli, capsys, monkeypatch):
    ro = work / "ro"
    ro.mkdir()
    write_volume(work / "img.nii.gz", blob_volume((16, 16, 16)), np.eye(4))
    (work / "lab").mkdir()
    write_volume(work / "lab" / "00000.nii.gz", np.zeros((16, 16, 16)), np.eye(4), dtype=np.uint8)
    _deny_writes_in(monkeypatch, ro)
    before = snapshot(work)
    scans = work / "d" / "a"
    try:
        for args in (
            ["predict", "--model", work / "model.npz", "--task", "pixel", "-i", scans, "-o", ro / "pred"],
            ["slices", "-i", scans, "-o", ro / "store", "--axis", "0"],
            ["synth", "-i", scans, "-o", ro / "val"],
            ["folds", "-i", scans, "-o", ro / "folds.csv", "--n-folds", "2"],
            ["phantoms", "--kind", "brain", "-n", "1", "--size", "32", "-o", ro / "ph"],
            ["show", work / "img.nii.gz", "-o", ro / "img.png"],
            ["baseline", "fit", "-i", scans, "-o", ro / "b.npz"],
            ["evaluate", "--pred", scans, "--labels", work / "lab", "--task", "pixel", "--json", ro / "r.json"],
            ["ensemble", work / "model.npz", "-o", ro / "e.yaml"],
            ["submission", "-o", ro / "sub", "--brain-pixel", work / "model.npz", "--brain-sample", work / "model.npz",
             "--abdom-pixel", work / "model.npz", "--abdom-sample", work / "model.npz"],
        ):
            refused(cli, capsys, args, "cannot write", str(ro))
        # the read-only folder itself as OUT: never replaced, even with --overwrite
        (ro).chmod(0o755)
        (ro / "keep.txt").write_text("mine")
        ro.chmod(0o555)
        before = snapshot(work)
        refused(cli, capsys, ["predict", "--model", work / "model.npz", "--task", "pixel", "-i", scans, "-o", ro, "--overwrite"], "cannot write")
        refused(cli, capsys, ["slices", "-i", scans, "-o", ro, "--axis", "0", "--overwrite"], "cannot write")
        assert snapshot(work) == before
    finally:
        ro.chmod(0o755)


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(work, cli):
    out = work / "pred"
    out.mkdir()
    (out / ".mood-dpa").write_text("ours")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = [out / f".00000.nii.gz.{dead.stdout.strip()}-abcd1234.tmp", out / ".00001.nii.gz.k3j2h1g0.tmp",
             out / f".00000.nii.gz.{dead.stdout.strip()}-zzzz9999.tmp.nii.gz"]
    live = out / f".00002.nii.gz.{os.getpid()}-abcd1234.tmp"
    for p in (*stale, live):
        p.write_bytes(b"half")
    foreign = out / ".notes.tmp"
    foreign.write_text("not ours: no mood-dpa temp name")
    assert cli(["predict", "--model", work / "model.npz", "--task", "pixel", "-i", work / "d" / "a", "-o", out]) == 0
    assert not any(p.exists() for p in stale)
    assert live.exists() and foreign.exists()
    assert len(list(out.glob("0000*.nii.gz"))) == 3



def test_files_that_only_look_temporary_are_someone_elses(work, cli, capsys):
    out = work / "backup"
    out.mkdir()
    (out / "thesis.old").write_text("mine")
    (out / "draft.tmp").write_text("mine too")
    refused(cli, capsys, ["predict", "--model", work / "model.npz", "--task", "sample", "-i", work / "d" / "a", "-o", out],
            "draft.tmp, thesis.old")
    assert sorted(p.name for p in out.iterdir()) == ["draft.tmp", "thesis.old"]


def test_run_script_relative_input_and_same_folder(work, tmp_path):
    models = tmp_path / "models" / "pixel_brain"
    models.mkdir(parents=True)
    (models / "model.npz").write_bytes((work / "model.npz").read_bytes())
    wrapper = tmp_path / "mood-dpa"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{SRC}" exec "{sys.executable}" -m mood_dpa "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", ""), "MOOD_DPA_BIN": str(wrapper), "MOOD_DPA_MODELS": str(tmp_path / "models"),
           "MOOD_DPA_DEVICE": "cpu"}
    script = str(DOCKER / "mood_run.sh")
    ok = subprocess.run(["sh", script, "pixel", "brain", "d/a", "out"], cwd=work, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # the challenge's OUT holds the predictions only (the run script removes the marker predict made)
    assert sorted(p.name for p in (work / "out").iterdir()) == ["00000.nii.gz", "00001.nii.gz", "00002.nii.gz"]
    before = snapshot(work)
    same = subprocess.run(["sh", script, "pixel", "brain", "d/a", str(work / "d" / "a")], cwd=work, env=env, capture_output=True, text=True)
    assert same.returncode == 2 and "error:" in same.stderr
    inner = subprocess.run(["sh", script, "pixel", "brain", "d", "d/a/out"], cwd=work, env=env, capture_output=True, text=True)
    assert inner.returncode == 2 and "error:" in inner.stderr
    assert snapshot(work) == before  # no work folder left, no score written over a scan


# ------------------------------------------------------------------------------ nothing silently wrong


def _hounsfield(folder: Path) -> Path:
    folder.mkdir(parents=True)
    vol = blob_volume((16, 16, 16)) * 2000 - 1000  # a CT in Hounsfield units
    write_volume(folder / "ct.nii.gz", vol, np.eye(4))
    return folder


def test_volumes_outside_0_1_are_refused_where_they_train_or_score(work, cli, capsys):
    hu = _hounsfield(work / "hu")
    before = snapshot(work)
    for args in (
        ["slices", "-i", hu, "-o", work / "store", "--axis", "0", "--size", "8"],
        ["synth", "-i", hu, "-o", work / "val"],
        ["baseline", "fit", "-i", hu, "-o", work / "b.npz"],
    ):
        line = refused(cli, capsys, args, "ct.nii.gz", "outside [0, 1]", "mood-dpa prepare", "--no-range-check")
        assert "[-1000, 1000]" in line or "-1000" in line
    assert snapshot(work) == before
    # predict reports each bad input and goes on with the others (exit 2), writing no score for it
    mixed = work / "mixed"
    mixed.mkdir()
    (mixed / "ct.nii.gz").write_bytes((hu / "ct.nii.gz").read_bytes())
    (mixed / "ok.nii.gz").write_bytes((work / "d" / "a" / "00000.nii.gz").read_bytes())
    assert cli(["predict", "--model", work / "model.npz", "--task", "pixel", "-i", mixed, "-o", work / "pred"]) == 2
    err = capsys.readouterr().err
    assert "ct.nii.gz" in err and "outside [0, 1]" in err and "mood-dpa prepare" in err
    assert sorted(p.name for p in (work / "pred").iterdir()) == [".mood-dpa", ".mood-dpa-predict.json", "ok.nii.gz"]
    assert cli(["slices", "-i", hu, "-o", work / "store", "--axis", "0", "--size", "8", "--no-range-check"]) == 0
    # a later command that does not score (show) is not affected by an earlier command's setting
    assert cli(["show", hu / "ct.nii.gz", "-o", work / "ct.png"]) == 0


def test_evaluate_refuses_an_image_folder_as_labels(work, cli, capsys):
    scans = work / "d" / "a"
    assert cli(["predict", "--model", work / "model.npz", "--task", "pixel", "-i", scans, "-o", work / "pred"]) == 0
    refused(cli, capsys, ["evaluate", "--pred", work / "pred", "--labels", scans, "--task", "pixel"], "00000.nii.gz", "0 or 1")


def test_evaluate_refuses_empty_or_mistyped_prediction_folders(work, cli, capsys):
    labels = work / "lab"
    labels.mkdir()
    for i in range(2):
        (labels / f"{i:05d}.nii.gz.txt").write_text(f"{i}\n")
    (work / "empty").mkdir()
    refused(cli, capsys, ["evaluate", "--pred", work / "empty", "--labels", labels, "--task", "sample"], "has a prediction here")
    other = work / "other"
    other.mkdir()
    (other / "x.nii.gz.txt").write_text("0.5\n")
    refused(cli, capsys, ["evaluate", "--pred", other, "--labels", labels, "--task", "sample"], "none of the 2 cases")
    (other / "00000.nii.gz.txt").write_text("0.5\n")
    (labels / "00002.nii.gz.txt").write_text("2\n")
    refused(cli, capsys, ["evaluate", "--pred", other, "--labels", labels, "--task", "sample"], "00002.nii.gz.txt", "0 or 1")


def test_one_class_labels_are_warned_about(work, cli, capsys):
    labels, pred = work / "lab", work / "pred"
    labels.mkdir()
    pred.mkdir()
    for i in range(3):
        (labels / f"{i}.nii.gz.txt").write_text("1\n")
        (pred / f"{i}.nii.gz.txt").write_text(f"{i / 4}\n")
    assert cli(["evaluate", "--pred", pred, "--labels", labels, "--task", "sample"]) == 0
    assert "one class only" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--weights", "-1"], ["--weights", "0"], ["--weights", "nan"], ["--weights", "inf"],
                                    ["--weights", "1,2"], ["--background", "nan"], ["--background", "inf"]])
def test_ensemble_numbers_are_checked(work, cli, capsys, option):
    before = snapshot(work)
    refused(cli, capsys, ["ensemble", work / "model.npz", "-o", work / "e.yaml", *option], option[0])
    assert snapshot(work) == before


@pytest.mark.parametrize("args", [
    ["slices", "--axis", "0", "--min-fraction", "nan"],
    ["slices", "--axis", "0", "--threshold", "inf"],
    ["baseline", "fit", "--sigma", "nan"],
    ["baseline", "fit", "--sigma", "-1"],
    ["evaluate", "--labels", "L", "--task", "pixel", "--bootstrap", "-3"],
    ["predict", "--model", "M", "--task", "pixel", "--batch-size", "0"],
    ["slices", "--axis", "0", "--threads", "0"],
])
def test_other_numeric_options_are_checked(work, cli, capsys, args):
    io = {"slices": ["-i", work / "d" / "a", "-o", work / "s"], "baseline": ["-i", work / "d" / "a", "-o", work / "b.npz"],
          "evaluate": ["--pred", work / "d" / "a"], "predict": ["-i", work / "d" / "a", "-o", work / "p"]}[args[0]]
    args = [work / "model.npz" if a == "M" else work / "d" / "a" if a == "L" else a for a in args]
    before = snapshot(work)
    refused(cli, capsys, [*args, *io])
    assert snapshot(work) == before


def test_names_that_share_a_volume_id_are_refused_naming_both(tmp_path, cli, capsys):
    d = tmp_path / "subs"
    d.mkdir()
    for name in ("sub_01.nii.gz", "sub_02.nii.gz", "x.nii.gz"):
        write_volume(d / name, blob_volume((16, 16, 16)), np.eye(4))
    before = snapshot(tmp_path)
    for args in (["folds", "-i", d, "-o", tmp_path / "f.csv", "--n-folds", "2"],
                 ["slices", "-i", d, "-o", tmp_path / "s", "--axis", "0"],
                 ["synth", "-i", d, "-o", tmp_path / "v"],
                 ["baseline", "fit", "-i", d, "-o", tmp_path / "b.npz"]):
        refused(cli, capsys, args, "sub_01.nii.gz", "sub_02.nii.gz", "volume id")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------- threads


COMPUTE = [["predict"], ["calibrate"], ["evaluate"], ["slices"], ["synth"], ["baseline", "fit"], ["train"], ["pretrain"], ["demo"]]


@pytest.mark.parametrize("command", COMPUTE, ids=[" ".join(c) for c in COMPUTE])
def test_every_compute_command_takes_threads(cli, capsys, command):
    assert cli([*command, "--help"]) == 0
    assert "--threads" in capsys.readouterr().out


def test_threads_option_and_environment(monkeypatch):
    import torch

    from mood_dpa.errors import MoodError
    from mood_dpa.runtime import set_threads

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # restored after the test, whatever set_threads writes
    monkeypatch.setenv("MKL_NUM_THREADS", "")
    try:
        assert set_threads(None) is None  # nothing asked: torch's default stays
        assert set_threads(2) == 2 and torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_threads(None) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setenv("MKL_NUM_THREADS", "3")
        assert set_threads(None) == 3 and torch.get_num_threads() == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "lots")
        with pytest.raises(MoodError, match="OMP_NUM_THREADS"):
            set_threads(None)
        with pytest.raises(MoodError, match="--threads"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_predict_runs_with_the_threads_it_is_given(work, cli, monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert cli(["predict", "--model", work / "model.npz", "--task", "sample", "-i", work / "d" / "a", "-o", work / "p", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_sigterm_is_turned_into_an_interrupt_by_every_command():
    # a subprocess so that the handler is installed by the real entry point
    code = (
        "import os, signal, sys\n"
        "from mood_dpa.cli import main\n"
        "from mood_dpa.cli.app import app\n"
        "@app.command('sleep-test')\n"
        "def sleep_test():\n"
        "    import time\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "main(['sleep-test'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, proc.stderr  # the Ctrl-C exit code, not a kill by signal (-15)
    assert "Traceback" not in proc.stderr
