"""The case browser in a real browser: headless Chromium opens the folder from disk (file://), a user moves
the slice and threshold sliders, clicks a plane, sorts the list and steps through cases; the picture
changes as it should and no script error is logged. Needs Debian's `chromium` (skipped, with the reason,
where it is absent)."""

from __future__ import annotations

import json
import shutil

import pytest
from viewer_set import make_viewer_set

from mood_dpa.viewer.headless import Chromium, find_chromium

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")

READY = "window.moodViewer && window.moodViewer.firstPaint !== null && !document.querySelector('#status').textContent"
# a fingerprint of a plane's pixels and the number of pixels coloured by the score map (red above green: the
# map's colours; grey, the green crosshair and the cyan outline are not)
PIXELS = """(() => { const c = document.querySelector('canvas[data-axis="%d"]');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let h = 0, coloured = 0;
  for (let i = 0; i < d.length; i += 4) { h = (Math.imul(h, 31) + d[i] * 7 + d[i + 1] * 3 + d[i + 2]) >>> 0;
    if (d[i] > d[i + 1]) coloured++; }
  return [h, coloured]; })()"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from conftest import run_cli

    root = tmp_path_factory.mktemp("browser_set")
    s = make_viewer_set(root)
    out = root / "view"
    assert run_cli(["view", "-i", s["toy"], "--labels", s["valset"], "-p", f"Histogram={s['histogram']}",
                    "-p", f"Brightness={s['brightness']}", "-o", out]) == 0
    return out


@pytest.fixture(scope="module")
def page(folder):
    with Chromium(width=1400, height=900) as browser:
        yield browser


def index_of(folder):
    text = (folder / "data" / "index.js").read_text()
    return json.loads(text[text.index("{"): text.rindex("}") + 1])


def test_sliders_threshold_and_clicks_change_the_picture(folder, page):
    page.open((folder / "index.html").as_uri() + "#case=00003_ellipsoid&map=Brightness&thr=0.001", ready=READY)
    state = "moodViewer.state"
    assert page.evaluate(f"{state}.cases[{state}.current].name") == "00003_ellipsoid"
    start = page.evaluate(f"{state}.point")
    before = [page.evaluate(PIXELS % a) for a in range(3)]
    assert all(coloured > 0 for _, coloured in before)  # the map is drawn over the volume

    # the axial slice slider, moved by a click right of its thumb: that plane shows another slice
    page.click_element('input[data-axis="2"]', fx=0.65)
    moved = page.evaluate(f"{state}.point")
    assert moved[2] > start[2] and moved[:2] == start[:2]
    assert page.evaluate("+document.querySelector('input[data-axis=\"2\"]').value") == moved[2]
    assert page.evaluate(PIXELS % 2)[0] != before[2][0]

    # the threshold slider near its top: fewer voxels coloured on every plane, the value shown changes
    shown = page.evaluate("document.querySelector('#threshold-value').textContent")
    mid = [page.evaluate(PIXELS % a) for a in range(3)]
    page.click_element("#threshold", fx=0.9)
    assert page.evaluate("document.querySelector('#threshold-value').textContent") != shown
    after = [page.evaluate(PIXELS % a) for a in range(3)]
    assert all(a[1] < m[1] for a, m in zip(after, mid)), (mid, after)

    # a click on the axial plane moves the sagittal and coronal planes to that point
    shape = page.evaluate(f"{state}.data.shape")
    target = (8, 20)  # axis 0 runs to the right, axis 1 upwards; click the middle of that voxel
    page.click_element('canvas[data-axis="2"]', fx=(target[0] + 0.5) / shape[0], fy=1 - (target[1] + 0.5) / shape[1])
    point = page.evaluate(f"{state}.point")
    assert point == [*target, moved[2]]
    assert page.evaluate("[0, 1].map(a => +document.querySelector(`input[data-axis=\"${a}\"]`).value)") == point[:2]
    assert page.errors == [] and page.evaluate("moodViewer.errors") == []


def test_list_sorts_by_ap_and_arrows_step_through_it(folder, page):
    page.open((folder / "index.html").as_uri() + "#map=Histogram", ready=READY)
    cases = index_of(folder)["cases"]
    page.click_element('#cases th[data-key="ap"]')
    rows = page.evaluate("[...document.querySelectorAll('#cases tbody tr')].map(r => r.cells[0].textContent)")
    aps = {e["name"]: e["methods"][0]["ap"] for e in cases}
    ranked = [n for n in sorted(aps, key=lambda n: (aps[n] is None, aps[n] or 0.0, n))]
    assert rows == ranked  # ascending: the worst misses first, normal cases (no AP) last
    page.click_element('#cases tbody tr:nth-child(1)')
    page.wait_for(f"moodViewer.state.cases[moodViewer.state.current].name === {json.dumps(rows[0])}")
    page.key("ArrowDown")
    page.wait_for(f"moodViewer.state.cases[moodViewer.state.current].name === {json.dumps(rows[1])} && {READY}")
    # every method side by side: one row of three planes per method
    page.click_element('#method-buttons button[data-m="-1"]')
    assert page.evaluate("document.querySelectorAll('#planes canvas').length") == 6
    assert page.errors == [] and page.evaluate("moodViewer.errors") == []


def test_the_page_reads_score_codes_as_python_writes_them(folder, page):
    """render.js's code -> score and score -> code agree with mood_dpa.viewer.encode (the readout and the threshold)."""
    import numpy as np

    from mood_dpa.viewer.encode import code_scores, score_codes

    page.open((folder / "index.html").as_uri(), ready=READY)
    codes = np.arange(256)
    js = np.array(page.evaluate("[...Array(256).keys()].map(c => moodViewerRender.codeScore(c))"))
    assert np.allclose(js, code_scores(codes), rtol=1e-12, atol=0)
    scores = [float(x) for x in np.array([1e-4, 3e-4, 0.01, 0.2, 0.5, 0.77, 0.999], np.float16)]  # as MOOD reads them
    back = page.evaluate(f"{json.dumps(scores)}.map(s => moodViewerRender.scoreCode(s))")
    assert back == [max(1, int(c)) for c in score_codes(np.array(scores, np.float64))]


# Firefox has no DevTools pipe here; its `--screenshot` shoots when the load event fires, so a copy of the
# page keeps the load event pending (a chain of script loads) until the first case is drawn, then paints
# its verdict into the page's corner: green when a plane shows the map's colours and no error was
# logged, red otherwise.
VERDICT = """<script>
(function hold() {
  const v = window.moodViewer;
  window.__ticks = (window.__ticks || 0) + 1;
  if (v.firstPaint === null && !v.errors.length && window.__ticks < 3000) {
    const s = document.createElement("script");
    s.src = "tick.js?" + window.__ticks; s.onload = hold; document.head.append(s);
    return;
  }
  const c = document.querySelector('#planes canvas'), d = c ? c.getContext('2d').getImageData(0, 0, c.width, c.height).data : [];
  let coloured = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] > d[i + 1]) coloured++;
  const ok = v.firstPaint !== null && !v.errors.length && coloured > 0;
  const mark = document.createElement("div");
  mark.style.cssText = "position:fixed;left:0;top:0;width:40px;height:40px;z-index:9;background:" + (ok ? "#00ff00" : "#ff0000");
  document.body.append(mark);
})();
</script>"""


@pytest.mark.skipif(shutil.which("firefox") is None and shutil.which("firefox-esr") is None,
                    reason="Firefox is not installed (apt-get install -y firefox-esr): the page is checked in Chromium only")
def test_firefox_draws_a_case_from_disk(folder, tmp_path):
    import subprocess

    from matplotlib.image import imread

    copy = tmp_path / "view"
    shutil.copytree(folder, copy)
    page = copy / "firefox_check.html"
    page.write_text((copy / "index.html").read_text().replace("</body>", VERDICT + "\n</body>"))
    (copy / "tick.js").write_text("window.__tick = 1;\n")
    shot, profile = tmp_path / "firefox.png", tmp_path / "profile"
    profile.mkdir()
    exe = shutil.which("firefox") or shutil.which("firefox-esr")
    subprocess.run([exe, "--headless", "--no-remote", "--profile", str(profile), "--window-size", "1200,800",
                    "--screenshot", str(shot), page.as_uri() + "#case=00003_ellipsoid&map=Brightness"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=True)
    pixel = imread(shot)[5, 5, :3]
    assert list((pixel * 255).round()) == [0, 255, 0], f"Firefox verdict pixel {pixel} (red: not drawn or an error)"
