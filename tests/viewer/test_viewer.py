"""The case browser's data (`mood-dpa view`): coding, per-case numbers against scikit-learn, the folder, --serve."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from viewer_set import KINDS, make_viewer_set

from mood_dpa.viewer.encode import block_reduce, code_scores, display_factor, intensity_codes, score_codes, unpack


@pytest.fixture(scope="module")
def prediction_set(tmp_path_factory):
    return make_viewer_set(tmp_path_factory.mktemp("viewer_set"))


@pytest.fixture(scope="module")
def browser_folder(prediction_set, tmp_path_factory):
    from conftest import run_cli

    out = tmp_path_factory.mktemp("browser") / "view"
    s = prediction_set
    assert run_cli(["view", "-i", s["toy"], "--labels", s["valset"], "-p", f"Histogram={s['histogram']}",
                    "-p", s["brightness"], "-o", out]) == 0
    return out


def read_index(folder: Path) -> dict:
    text = (folder / "data" / "index.js").read_text()
    prefix = "window.moodViewerIndex = "
    assert text.startswith(prefix)
    return json.loads(text[len(prefix):].rstrip().rstrip(";"))


def read_case_file(folder: Path, entry: dict) -> dict:
    text = (folder / entry["file"]).read_text()
    return json.loads(text[text.index(",") + 1: text.rindex(")")])


def test_score_codes_are_monotone_and_read_back_within_their_bin():
    s = np.r_[0.0, 1e-5, 1e-4, np.logspace(-3.9, -0.31, 400), 0.5, 1 - np.logspace(-0.31, -3.9, 400), 1 - 1e-5, 1.0]
    codes = score_codes(s)
    assert codes[0] == 0 and codes[1] == 0 and codes[-1] == 255
    assert np.all(np.diff(codes.astype(int)) >= 0)
    assert score_codes(np.array([0.5]))[0] == 128  # the middle code is 0.5: logit 0
    # a decoded code is the score at its bin centre: log10-odds within half a bin (8/254/2) of the float16 score
    inner = (s > 2e-4) & (s < 1 - 2e-3)
    s16 = s.astype(np.float16).astype(np.float64)
    err = np.log10(code_scores(codes[inner]) / (1 - code_scores(codes[inner]))) - np.log10(s16[inner] / (1 - s16[inner]))
    assert np.abs(err).max() <= 8 / 254 / 2 + 1e-9


def test_block_reduce_against_loops_and_the_size_bound():
    rng = np.random.default_rng(0)
    a = rng.random((5, 7, 4)).astype(np.float32)
    got_max, got_mean = block_reduce(a, 2, "max"), block_reduce(a, 2, "mean")
    padded = np.pad(a, [(0, 1), (0, 1), (0, 0)], mode="edge")
    for i in range(3):
        for j in range(4):
            for k in range(2):
                block = padded[2 * i:2 * i + 2, 2 * j:2 * j + 2, 2 * k:2 * k + 2]
                assert got_max[i, j, k] == block.max()
                assert abs(got_mean[i, j, k] - block.mean()) < 1e-6
    assert display_factor((256, 256, 256), 128) == 2 and display_factor((64, 64, 64), 128) == 1
    assert display_factor((300, 120, 90), 128) == 3


def test_per_case_ap_and_sample_scores_match_scikit_learn(prediction_set, browser_folder):
    from sklearn.metrics import average_precision_score

    from mood_dpa.volumes import read_volume

    index = read_index(browser_folder)
    assert index["methods"] == ["Histogram", "pred_brightness"]
    assert len(index["cases"]) == 2 * (1 + len(KINDS))
    anomalous = 0
    for entry in index["cases"]:
        name = entry["name"]
        label = read_volume(prediction_set["valset"] / "toy_label" / "pixel" / f"{name}.nii.gz").data > 0.5
        assert entry["kind"] == name.split("_")[1] and entry["label"] == int(label.any())
        for m, folder in enumerate((prediction_set["histogram"], prediction_set["brightness"])):
            fact = entry["methods"][m]
            pred = read_volume(folder / f"{name}.nii.gz").data
            assert fact["score"] == pytest.approx(float((folder / f"{name}.nii.gz.txt").read_text().split()[0]), abs=1e-6)
            if not label.any():
                assert fact["ap"] is None and fact["hit"] is None
                continue
            as_mood = np.clip(pred.astype(np.float16), 0, 1).astype(np.float64)  # the MOOD reading
            assert fact["ap"] == pytest.approx(average_precision_score(label.ravel(), as_mood.ravel()), abs=1e-6)
            anomalous += 1
    assert anomalous == 2 * 2 * len(KINDS)


def test_case_files_decode_to_the_volumes_label_and_maps(prediction_set, browser_folder):
    from mood_dpa.volumes import read_volume

    index = read_index(browser_folder)
    entry = next(e for e in index["cases"] if e["kind"] == "ellipsoid")
    payload = read_case_file(browser_folder, entry)
    shape = tuple(payload["shape"])
    assert shape == tuple(entry["display"]) == tuple(entry["shape"]) and entry["factor"] == 1
    name = entry["name"]
    vol = read_volume(prediction_set["toy"] / f"{name}.nii.gz").data
    got = unpack(payload["volume"], shape)
    lo, hi = payload["range"]
    assert (lo, hi) == pytest.approx((vol.min(), vol.max()))
    assert np.abs(lo + got / 255.0 * (hi - lo) - vol).max() <= (hi - lo) / 255 / 2 + 1e-6
    label = read_volume(prediction_set["valset"] / "toy_label" / "pixel" / f"{name}.nii.gz").data > 0.5
    assert np.array_equal(unpack(payload["label"], shape) > 0, label)
    pred = read_volume(prediction_set["histogram"] / f"{name}.nii.gz").data
    assert np.array_equal(unpack(payload["scores"][0], shape), score_codes(pred))
    # the case opens on the anomaly
    assert label[tuple(entry["start"])]


def test_a_coarser_display_grid_keeps_the_lesion_and_bounds_the_size(prediction_set, tmp_path, cli):
    s = prediction_set
    out = tmp_path / "small"
    assert cli(["view", "-i", s["toy"], "--labels", s["valset"], "-p", s["histogram"], "--max-size", "16",
                "--cases", "00003_ellipsoid,00004_normal", "-o", out]) == 0
    index = read_index(out)
    assert [e["name"] for e in index["cases"]] == ["00003_ellipsoid", "00004_normal"]
    entry = index["cases"][0]
    assert entry["factor"] == 2 and entry["display"] == [16, 16, 16] and entry["shape"] == [32, 32, 32]
    payload = read_case_file(out, entry)
    label = unpack(payload["label"], (16, 16, 16))
    assert label.any() and label[tuple(entry["start"])]
    vol_codes, _, _ = intensity_codes(np.zeros((2, 2, 2), np.float32))
    assert not vol_codes.any()  # a flat volume codes to zeros, not to a division by zero


def test_limit_takes_cases_in_turn_from_each_kind(prediction_set):
    from mood_dpa.viewer import choose_cases, find_cases, find_manifest

    s = prediction_set
    cases = find_cases(s["toy"], s["valset"], find_manifest(s["valset"]))
    chosen = choose_cases(cases, limit=3)
    assert sorted(c.kind for c in chosen) == ["ellipsoid", "normal", "uniform"]
    assert [c.name for c in choose_cases(cases, limit=100)] == [c.name for c in cases]


def test_view_refusals_are_one_line_and_leave_nothing(prediction_set, tmp_path, cli, capsys):
    s = prediction_set
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    cases = [
        (["view", "-i", s["toy"], "-o", tmp_path / "a"], "at least one prediction folder"),
        (["view", "-i", s["toy"], "-p", tmp_path / "nope", "-o", tmp_path / "a"], "is not a folder"),
        (["view", "-i", s["toy"], "-p", s["histogram"], "-p", s["histogram"], "-o", tmp_path / "a"], "share the name"),
        (["view", "-i", s["toy"], "-p", s["histogram"], "--cases", "nobody", "-o", tmp_path / "a"], "no case named"),
        (["view", "-i", s["toy"], "-p", s["histogram"], "--max-size", "2", "-o", tmp_path / "a"], "--max-size"),
        (["view", "-i", s["toy"], "-p", s["histogram"], "-o", precious], "--overwrite"),
        (["view", "-i", s["toy"], "-p", s["histogram"], "-o", s["toy"] / "inside"], "inside the input"),
        (["view", "-i", s["toy"], "-p", s["valset"], "-o", tmp_path / "a"], "no prediction for any of the 6 cases"),
        (["view", "-o", tmp_path / "a"], "-i/--input is required"),
        (["view", "--serve", "70000", "-o", tmp_path / "a"], "--serve"),
    ]
    for args, message in cases:
        assert cli(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], (args, err)
    assert not (tmp_path / "a").exists() and sorted(p.name for p in precious.iterdir()) == ["notes.txt"]
    assert not (s["toy"] / "inside").exists()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read()


def test_serve_folder_answers_on_localhost_and_stops(browser_folder):
    from mood_dpa.viewer import serve_folder

    urls, stop = [], threading.Event()
    worker = threading.Thread(target=serve_folder, args=(browser_folder, 0), kwargs={"on_ready": urls.append, "stop": stop})
    worker.start()
    try:
        for _ in range(200):
            if urls:
                break
            worker.join(0.05)
        assert urls and urls[0].startswith("http://127.0.0.1:") and urls[0].endswith("/index.html")
        assert b"viewer.js" in _get(urls[0])
        assert _get(urls[0].replace("index.html", "data/index.js")) == (browser_folder / "data" / "index.js").read_bytes()
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()


def test_cli_serve_prints_its_url_and_stops_on_interrupt(browser_folder):
    """`mood-dpa view --serve 0 -o FOLDER` (no -i) serves a built folder on 127.0.0.1; SIGINT stops it cleanly."""
    import signal

    # a test run started as a background job (`cmd &` in a script) inherits an IGNORED SIGINT, and Python then
    # installs no Ctrl-C handler: give the server the default disposition, as a terminal would
    proc = subprocess.Popen([sys.executable, "-m", "mood_dpa", "view", "--serve", "0", "-o", str(browser_folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        assert "serving" in line and "http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        assert b"moodViewerIndex" in _get(url.replace("index.html", "data/index.js"))
    finally:
        proc.send_signal(signal.SIGINT)  # a loaded machine can take a while to stop the server: 60 s
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped serving" in out, (out, err)


def test_a_missing_prediction_is_shown_as_missing_and_said_once(prediction_set, tmp_path, cli, capsys):
    import shutil

    s = prediction_set
    partial = tmp_path / "partial"
    shutil.copytree(s["histogram"], partial)
    (partial / "00004_uniform.nii.gz").unlink()
    assert cli(["view", "-i", s["toy"], "--labels", s["valset"], "-p", partial, "-o", tmp_path / "out"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "no prediction for 1 of 6 cases (e.g. 00004_uniform)" in err
    facts = {e["name"]: e["methods"][0] for e in read_index(tmp_path / "out")["cases"]}
    assert facts["00004_uniform"]["missing"] and facts["00004_uniform"]["ap"] is None
    assert not facts["00004_ellipsoid"]["missing"] and facts["00004_ellipsoid"]["ap"] > 0
    entry = next(e for e in read_index(tmp_path / "out")["cases"] if e["name"] == "00004_uniform")
    payload = read_case_file(tmp_path / "out", entry)
    assert payload["scores"] == [None]
