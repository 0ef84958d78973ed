"""`mood-dpa demo --quick`: the whole pipeline end to end on tiny phantoms (the CI smoke test)."""

import json

from mood_dpa.data.synth import KINDS


def test_quick_demo_runs_end_to_end_and_reports_every_kind(tmp_path, cli):
    out = tmp_path / "demo"
    assert cli(["demo", "--quick", "-o", out, "--seed", "3"]) == 0
    html = (out / "report" / "report.html").read_text()
    for kind in KINDS:
        assert f"AP {kind}" in html, kind
    for method in ["DPA", "Histogram baseline", "L1-AE"]:
        assert method in html
    assert (out / "report" / "pr_pixel.png").stat().st_size > 1000
    results = json.loads((out / "results.json").read_text())["results"]
    for method, res in results.items():
        for task in ("pixel", "sample"):
            r = res[task]
            assert 0.0 <= r["ap"] <= 1.0 and set(r["per_kind"]) == set(KINDS), (method, task)
            assert r["cases"] == results["DPA"][task]["cases"]
    # every validation case got a pixel map and a sample score from every method
    cases = sorted(p.name for p in (out / "valset" / "toy").iterdir())
    for method in ["dpa", "histogram", "l1-ae"]:
        pred = out / "predictions" / method
        assert sorted(p.name for p in pred.glob("*.nii.gz")) == cases
        assert sorted(p.name for p in pred.glob("*.txt")) == [f"{c}.txt" for c in cases]
    # the trained models carry what inference needs and the ensembles are calibrated
    ens = (out / "models" / "dpa.yaml").read_text()
    assert "quantile-log-tail" in ens and "sample_rule" in ens


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
    (out / "runs" / "dpa_axis0" / "checkpoints").mkdir(parents=True)
    (out / "user_notes.txt").write_text("x")
    _prepare_output(out)  # an earlier demo's folder: its run folders go, other files stay
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "user_notes.txt"]
