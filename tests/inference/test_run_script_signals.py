"""The container's run scripts when stopped: SIGTERM (``docker stop``) stops the predictor at once, exits
130 and leaves OUT without work folder or marker; after SIGKILL the next run leaves OUT clean; a live
run's work folder is never removed by another run. A fake ``mood-dpa`` (``$MOOD_DPA_BIN``) stands in for
the predictor, so no model is needed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mood_dpa.inference.submission import docker_dir

FAKE = '''#!{python}
"""Fake `mood-dpa predict ... -o DIR`: marks DIR, writes one prediction per input, then sleeps SLEEP s."""
import os, sys, time
args = sys.argv[1:]
out = args[args.index("-o") + 1]
inp = args[args.index("-i") + 1]
os.makedirs(out, exist_ok=True)
open(os.path.join(out, ".mood-dpa"), "w").write("marker")
open(os.path.join(out, ".half.nii.gz.123-abcdefgh.tmp"), "w").write("half-written")
with open(os.environ["FAKE_PID_FILE"], "w") as f:
    f.write(str(os.getpid()))
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
for name in sorted(os.listdir(inp)):
    open(os.path.join(out, name + ".txt"), "w").write("0.5\\n")
os.remove(os.path.join(out, ".half.nii.gz.123-abcdefgh.tmp"))
'''


@pytest.fixture
def rig(tmp_path):
    """IN with two inputs, an empty OUT, a models folder the script accepts and the fake predictor."""
    inp, out, models = tmp_path / "in", tmp_path / "out", tmp_path / "models" / "sample_brain"
    inp.mkdir()
    out.mkdir()
    models.mkdir(parents=True)
    (models / "model.npz").write_bytes(b"not used by the fake")
    for name in ("a.nii.gz", "b.nii.gz"):
        (inp / name).write_bytes(b"")
    fake = tmp_path / "fake-mood-dpa"
    fake.write_text(FAKE.format(python=sys.executable))
    fake.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MOOD_DPA_BIN": str(fake),
           "MOOD_DPA_MODELS": str(tmp_path / "models"), "FAKE_PID_FILE": str(tmp_path / "fake.pid")}
    return {"in": inp, "out": out, "env": env, "pid_file": tmp_path / "fake.pid", "tmp": tmp_path}


def start(rig, sleep: float, out: Path | None = None) -> subprocess.Popen:
    script = docker_dir() / "run_sample_brain.sh"
    env = {**rig["env"], "FAKE_SLEEP": str(sleep)}
    return subprocess.Popen(["sh", str(script), str(rig["in"]), str(out or rig["out"])], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_child(rig, proc: subprocess.Popen) -> int:
    """The fake predictor's pid, once it has written its files."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if rig["pid_file"].is_file() and rig["pid_file"].read_text():
            return int(rig["pid_file"].read_text())
        time.sleep(0.05)
    raise AssertionError(f"the fake predictor did not start: {proc.communicate()}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    """Wait for the script (a hang guard, not a timing assertion); kill it if it hangs."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return -999, err
    return proc.returncode, err


def test_sigterm_stops_the_predictor_and_leaves_out_clean(rig):
    proc = start(rig, sleep=300)
    child = wait_for_child(rig, proc)
    assert any(p.name.startswith(".mood-dpa-work.") for p in rig["out"].iterdir())
    proc.send_signal(signal.SIGTERM)
    try:
        rc, err = finish(proc)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
    assert rc == 130, err  # not -999: a foreground predictor would keep the script alive for 300 s
    assert "interrupted (SIGTERM)" in err
    assert not alive(child)  # the predictor was stopped, not left running
    assert list(rig["out"].iterdir()) == []  # no work folder, no marker, no temporary


def test_a_run_after_sigkill_leaves_out_clean(rig):
    proc = start(rig, sleep=300)
    child = wait_for_child(rig, proc)
    # docker stop after its grace period: SIGKILL for every process of the container
    proc.kill()
    os.kill(child, signal.SIGKILL)
    proc.communicate()
    left = sorted(p.name for p in rig["out"].iterdir())
    assert len(left) == 1 and left[0].startswith(".mood-dpa-work."), left
    rc, err = finish(start(rig, sleep=0))
    assert rc == 0, err
    assert sorted(p.name for p in rig["out"].iterdir()) == ["a.nii.gz.txt", "b.nii.gz.txt"]


def test_a_live_runs_work_folder_is_kept(rig):
    if shutil.which("flock") is None:
        pytest.skip("util-linux's flock is not installed: the run script cannot tell a live run from a dead one")
    first = start(rig, sleep=300)
    child = wait_for_child(rig, first)
    try:
        live = [p for p in rig["out"].iterdir() if p.name.startswith(".mood-dpa-work.")]
        rig["pid_file"].unlink()
        rc, err = finish(start(rig, sleep=0))
        assert rc == 0, err
        assert all(p.is_dir() for p in live)  # the second run did not remove the first run's folder
        assert (rig["out"] / "a.nii.gz.txt").read_text() == "0.5\n"
    finally:
        first.send_signal(signal.SIGTERM)
        rc_first, _ = finish(first)
        if alive(child):
            os.kill(child, signal.SIGKILL)
    assert rc_first == 130
    assert sorted(p.name for p in rig["out"].iterdir()) == ["a.nii.gz.txt", "b.nii.gz.txt"]
