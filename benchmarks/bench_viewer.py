"""The case browser: how fast the demo's report and browser open from disk, what a case weighs, and the
docs' screenshots (one case per method family), all from one headless Chromium run.

    python benchmarks/bench_viewer.py --demo mood_demo [--repeats 5] [--big 256] [--screenshots docs/images]

``--demo``: the output folder of ``mood-dpa demo`` (default preset). Open time is measured inside the
page: from the start of the navigation (``performance`` time origin) to the first case drawn on its
three planes (the browser), or to the end of the load event (report.html); each repeat is a fresh
navigation of an already started browser, files in the OS page cache. ``--big N`` also builds a small
N^3 set (phantoms, one ellipsoid case and its normal copy, histogram-baseline predictions) to state
the size per case on a 128^3 display grid. ``--screenshots DIR`` writes viewer_dpa.png,
viewer_segmenter.png and viewer_histogram.png: for each family, its best case by per-case AP (the
list sorted by that column), as the README shows. Needs Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from mood_dpa.errors import MoodError

READY = "window.moodViewer && moodViewer.firstPaint !== null && !document.querySelector('#status').textContent"
FAMILIES = (("dpa", "DPA"), ("segmenter", "Segmenter 2-D"), ("histogram", "Histogram baseline"))


def read_index(viewer: Path) -> dict:
    text = (viewer / "data" / "index.js").read_text()
    return json.loads(text[text.index("{"): text.rindex("}") + 1])


def case_parts(viewer: Path, index: dict) -> dict:
    """Mean bytes per case of each part of the case files: volume, label, each method's map, and the whole file."""
    totals: dict[str, float] = {}
    for entry in index["cases"]:
        text = (viewer / entry["file"]).read_text()
        payload = json.loads(text[text.index(",") + 1: text.rindex(")")])
        parts = {"volume": payload["volume"], "label": payload["label"] or ""}
        parts.update({f"map {m}": s or "" for m, s in zip(index["methods"], payload["scores"])})
        for k, v in parts.items():
            totals[k] = totals.get(k, 0) + len(v)
        totals["whole file"] = totals.get("whole file", 0) + len(text)
    return {k: v / len(index["cases"]) for k, v in totals.items()}


def open_times(page, url: str, ready: str, measure: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        page.open("about:blank")
        page.open(url, ready=ready)
        times.append(float(page.evaluate(measure)))
    return times


def next_case_ms(page, url: str, repeats: int) -> list[float]:
    """Time from a key press (next case) to that case drawn, in the page's own clock."""
    page.open("about:blank")
    page.open(url, ready=READY)
    out = []
    for _ in range(repeats):
        before = page.evaluate("[moodViewer.draws, moodViewer.state.current, performance.now()]")
        page.key("ArrowDown")
        page.wait_for(f"moodViewer.state.current !== {before[1]} && moodViewer.draws > {before[0]}")
        out.append(page.evaluate(f"performance.now() - {before[2]}"))
    return out


def build_big(size: int, root: Path) -> Path:
    """A two-case N^3 browser (one ellipsoid case and its normal copy, histogram-baseline map) in ``root``."""
    from mood_dpa.data.phantoms import write_phantoms
    from mood_dpa.data.synth.layout import make_synthetic_set
    from mood_dpa.inference.loading import load_detector
    from mood_dpa.inference.predict import predict_folder
    from mood_dpa.methods.histogram.model import fit_histogram
    from mood_dpa.viewer import Method, find_cases, find_manifest, write_viewer

    train = write_phantoms("brain", 2, size, 0, root / "train")
    test = write_phantoms("brain", 1, size, 0, root / "test", start=2)
    make_synthetic_set(test, root / "valset", ["ellipsoid"], (1, 1), seed=1, progress=False)
    fit_histogram(train, root / "hist.npz", seed=0, progress=False)
    predict_folder(load_detector(root / "hist.npz", device="cpu"), root / "valset" / "toy", root / "pred", "both", progress=False)
    valset = root / "valset"
    write_viewer(root / "viewer", find_cases(valset / "toy", valset, find_manifest(valset)),
                 [Method("Histogram baseline", root / "pred")])
    return root / "viewer"


def screenshots(page, viewer: Path, index: dict, out_dir: Path) -> list[Path]:
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for family, label in FAMILIES:
        m = next((i for i, name in enumerate(index["methods"]) if name == label), None)
        if m is None:
            print(f"no method {label!r} in this browser; screenshot skipped", file=sys.stderr)
            continue
        best = max((e for e in index["cases"] if e["methods"][m]["ap"] is not None), key=lambda e: e["methods"][m]["ap"])
        page.open("about:blank")
        page.open(viewer.joinpath("index.html").as_uri() + f"#case={quote(best['name'])}&map={quote(label)}&thr=0.001",
                  ready=READY)
        page.click_element('#cases th[data-key="ap"]')  # ascending, then descending: the best first
        page.click_element('#cases th[data-key="ap"]')
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.call("Input.dispatchMouseEvent", type="mouseMoved", x=5, y=5)
        time.sleep(0.2)
        written.append(page.screenshot(out_dir / f"viewer_{family}.png"))
        if page.errors:
            raise MoodError(f"script errors in the page: {page.errors}")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, required=True, help="output folder of 'mood-dpa demo'")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--height", type=int, default=760, help="window height of the measurements and screenshots (CSS pixels)")
    ap.add_argument("--big", type=int, default=0, help="also build an N^3 two-case browser and state its size (e.g. 256)")
    ap.add_argument("--screenshots", type=Path, default=None, help="write the three docs screenshots into this folder")
    args = ap.parse_args(argv)
    from mood_dpa.viewer.headless import Chromium, find_chromium

    report, viewer = args.demo / "report" / "report.html", args.demo / "report" / "viewer"
    if not (viewer / "index.html").is_file():
        print(f"error: {viewer}/index.html not found: run 'mood-dpa demo -o {args.demo}' first", file=sys.stderr)
        return 2
    if find_chromium() is None or args.repeats < 1:
        print("error: needs Chromium (apt-get install -y chromium) and --repeats >= 1", file=sys.stderr)
        return 2
    index = read_index(viewer)
    rows = []
    with Chromium(width=1400, height=args.height) as page:
        url = viewer.joinpath("index.html").as_uri()
        t = open_times(page, url, READY, "moodViewer.firstPaint", args.repeats)
        rows.append(("browser: navigation -> first case drawn", f"median {statistics.median(t):.0f} ms, max {max(t):.0f} ms"))
        t = next_case_ms(page, url, args.repeats)
        rows.append(("browser: key press -> next case drawn", f"median {statistics.median(t):.0f} ms, max {max(t):.0f} ms"))
        t = open_times(page, report.as_uri(), "document.readyState === 'complete'",
                       "performance.getEntriesByType('navigation')[0].loadEventEnd", args.repeats)
        rows.append(("report.html: navigation -> load event end", f"median {statistics.median(t):.0f} ms, max {max(t):.0f} ms"))
        shape = "x".join(map(str, index["cases"][0]["display"]))
        parts = case_parts(viewer, index)
        total = sum(p.stat().st_size for p in viewer.rglob("*") if p.is_file())
        rows.append((f"size per case, {shape} ({len(index['methods'])} maps)", f"{parts['whole file'] / 1e6:.3f} MB "
                     f"(the {len(index['cases'])} cases: {total / 1e6:.1f} MB with the page)"))
        rows += [(f"  of which {k}", f"{v / 1e3:.1f} kB") for k, v in parts.items() if k != "whole file"]
        if args.big:
            with tempfile.TemporaryDirectory(prefix="bench_viewer_") as tmp:
                big = build_big(args.big, Path(tmp))
                big_index = read_index(big)
                big_parts = case_parts(big, big_index)
                grid = "x".join(map(str, big_index["cases"][0]["display"]))
                rows.append((f"size per case, {args.big}^3 shown at {grid} (1 map)", f"{big_parts['whole file'] / 1e6:.3f} MB"))
                rows += [(f"  of which {k}", f"{v / 1e3:.1f} kB") for k, v in big_parts.items() if k != "whole file"]
                t = open_times(page, big.joinpath("index.html").as_uri(), READY, "moodViewer.firstPaint", args.repeats)
                rows.append((f"browser {args.big}^3: navigation -> first case drawn",
                             f"median {statistics.median(t):.0f} ms, max {max(t):.0f} ms"))
        if args.screenshots is not None:
            for path in screenshots(page, viewer, index, args.screenshots):
                rows.append(("screenshot", str(path)))
        if page.errors:
            print(f"error: script errors in the page: {page.errors}", file=sys.stderr)
            return 1
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.repeats} repeats")
    print("| what | measured |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
