"""`mood-dpa demo --quick`: the whole pipeline end to end on tiny phantoms (the CI smoke test)."""

import json

from mood_dpa.data.synth.layout import ALL_KINDS, LOCAL_KINDS


def test_quick_demo_runs_end_to_end_and_reports_every_kind(tmp_path, cli, capsys):
    """Also THE test over every registered method: the quick preset trains every recipe of the registry
    through fit, calibrates its detector (a sample-level one joins the cross-method detector), predicts
    the held-out test set with it and evaluates it."""
    from mood_dpa.inference.detector_file import read_spec
    from mood_dpa.methods.registry import recipes

    out = tmp_path / "demo"
    assert cli(["demo", "--quick", "-o", out, "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "Pixel AP per local anomaly kind" in printed and "…" not in printed  # no number cut off in the tables
    html = (out / "report" / "report.html").read_text()
    for kind in LOCAL_KINDS:
        assert f"AP {kind}" in html, kind
    every = recipes()
    maps = {name: r.display for name, (entry, r) in every.items() if entry.voxel_map}
    methods = [*maps.values(), "Ensemble"]
    for method in methods:
        assert method in html
    assert "AP unseen kinds" in html and "seen</sup>" in html  # the segmenters' trained-on kinds are marked
    assert (out / "report" / "pr_pixel.png").stat().st_size > 1000
    # the case browser lives in the report folder (it opens from there, offline) and is linked from the report
    assert "href='viewer/index.html'" in html
    browser = (out / "report" / "viewer" / "data" / "index.js").read_text()
    index = json.loads(browser[browser.index("{"): browser.rindex("}") + 1])
    assert index["methods"] == methods_in_order(html) and len(index["cases"]) == 3 * (1 + len(ALL_KINDS))
    assert all((out / "report" / "viewer" / e["file"]).is_file() for e in index["cases"])
    results = json.loads((out / "results.json").read_text())["results"]
    assert sorted(results) == sorted(methods)
    first = next(iter(results.values()))
    for method, res in results.items():
        for task in ("pixel", "sample"):
            r = res[task]
            assert 0.0 <= r["ap"] <= 1.0 and set(r["per_kind"]) == set(ALL_KINDS), (method, task)
            assert r["cases"] == first[task]["cases"]
        h = res["headline"]  # the pixel headline is the local kinds'; the sample level is read per scope
        assert h["pixel_ap"] == res["pixel"]["per_scope"]["local"]["ap"]
        assert 0.0 <= h["sample_auc_local"] <= 1.0 and 0.0 <= h["sample_auc_global"] <= 1.0
        seen = set(res["seen"])
        if method.startswith(("Segmenter", "Ensemble")):
            assert {"patch", "uniform", "noise"} <= seen
        else:
            assert seen == set()
        assert res["pixel"]["per_group"]["unseen"]["kinds"] == sorted(set(LOCAL_KINDS) - seen)
    # every test case got a pixel map and a sample score from every detector
    cases = sorted(p.name for p in (out / "valset" / "toy").iterdir() if not p.name.startswith("."))
    for method in [*maps, "ensemble"]:
        pred = out / "predictions" / method
        assert sorted(p.name for p in pred.glob("*.nii.gz")) == cases
        assert sorted(p.name for p in pred.glob("*.txt")) == [f"{c}.txt" for c in cases]
    # the models were fitted on other subjects than the test set's, and the detectors are calibrated
    train = {p.name for p in (out / "volumes").glob("*.nii.gz")}
    sources = {r.split(",")[2] for r in (out / "valset" / "manifest.csv").read_text().splitlines()[1:]}
    assert len(train) == 12 and len(sources) == 3 and not train & sources
    ens = read_spec(out / "fit" / "detector.yaml")
    assert ens.calibration is not None and len(ens.members) >= 2
    # every member recipe of the registry is in the cross-method detector, the sample-level ones as sample members
    assert {m.name for m in ens.members} == {name for name, (_, r) in every.items() if r.member}
    assert ens.info["calibration"]["tuned_on"]["cases"]  # the family tuning set chose its rules
    assert "anomalies of the segmenter&#x27;s TRAINING families" in html or "segmenter's TRAINING families" in html
    import csv

    with open(out / "fit" / "tuning" / "manifest.csv", newline="") as fh:
        tuned_kinds = {row["kind"] for row in csv.DictReader(fh)}
    assert tuned_kinds and all(k == "normal" or k.startswith("family:") for k in tuned_kinds), tuned_kinds
    # the new-scanner test set: the same subjects' indices in the shifted style, every detector evaluated on it
    assert "New scanner (phantoms --style shifted)" in html
    shifted_sources = {r.split(",")[2] for r in (out / "valset_shifted" / "manifest.csv").read_text().splitlines()[1:]}
    assert {s.rsplit("/", 1)[-1] for s in shifted_sources} == {s.rsplit("/", 1)[-1] for s in sources}
    import nibabel as nib
    import numpy as np

    a = nib.load(out / "test_volumes" / "00012.nii.gz").get_fdata()
    b = nib.load(out / "test_volumes_shifted" / "00012.nii.gz").get_fdata()
    assert not np.allclose(a, b)  # another scanner: other intensities
    for method, res in results.items():
        ns = res["new_scanner"]
        assert ns["pixel"]["cases"] == res["pixel"]["cases"] and 0.0 <= ns["headline"]["pixel_ap"] <= 1.0, method
        assert sorted(p.name for p in (out / "predictions_shifted" / next(
            k for k in [*maps, "ensemble"] if (maps.get(k) or "Ensemble") == method)).glob("*.txt")) == [f"{c}.txt" for c in cases]


def methods_in_order(html: str) -> list[str]:
    """The method names of the report's first table, in its row order."""
    import re

    table = html[html.index("<table><tr><th>method</th>"):]
    table = table[: table.index("</table>")]
    return re.findall(r"<tr><th>([^<]+)</th><td>", table)


def test_demo_presets_and_a_bad_one(tmp_path, cli, capsys):
    """--preset picks a plan (long: the demo's data, every method trained to early stopping); a bad name is
    one error line and exit 2, before anything is written."""
    from mood_dpa.demo import PRESETS
    from mood_dpa.fit import PRESETS as FIT
    from mood_dpa.fit import parse_methods
    from mood_dpa.methods.registry import recipes

    assert {"quick", "default", "long"} <= set(PRESETS)
    default, long = PRESETS["default"], PRESETS["long"]
    assert (long.train_volumes, long.test_volumes, long.size) == (default.train_volumes, default.test_volumes, default.size)
    long_fit, cpu_fit = FIT[long.fit_preset], FIT["cpu"]
    assert parse_methods(None, long_fit) == tuple(recipes())  # every method
    for _, recipe in recipes().values():  # at the cpu preset's sizes
        assert recipe.overrides.get(long_fit.name) == recipe.overrides.get(cpu_fit.name)
    assert long_fit.simclr_overrides == cpu_fit.simclr_overrides
    assert cli(["demo", "--preset", "forever", "-o", tmp_path / "d"]) == 2
    assert "--preset 'forever'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_demo_refuses_a_foreign_non_empty_folder(tmp_path, cli):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert cli(["demo", "--quick", "-o", precious]) == 2
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]


def test_a_rerun_replaces_only_the_demo_folders(tmp_path):
    from mood_dpa.demo import MARKER, _prepare_output

    out = tmp_path / "demo"
    _prepare_output(out)
    (out / "fit" / "runs" / "dpa_axis0" / "checkpoints").mkdir(parents=True)
    (out / "user_notes.txt").write_text("x")
    _prepare_output(out)  # an earlier demo's folder: its run folders go, other files stay
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "user_notes.txt"]
