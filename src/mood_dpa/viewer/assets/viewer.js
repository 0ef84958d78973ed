/* mood-dpa case browser: three orthogonal planes of a volume, each method's score map over them, the
 * true anomaly's outline, and a sortable case list. Plain browser JavaScript, no library, no network:
 * data/index.js (the case list) and data/case_NNNN.js (one case, loaded when opened) come in through
 * <script> tags so the folder works from file://. Arrays are uint8 C-order, gzip + base64
 * (mood_dpa/viewer/encode.py). This file holds the page's state, loading, list and controls;
 * render.js draws. */
(function () {
  "use strict";

  const INDEX = window.moodViewerIndex;
  const R = window.moodViewerRender;
  if (INDEX) R.setSpan(INDEX.scale.span);
  const { codeScore, scoreCode, fmtScore, others, unravel } = R;
  const PLANES = [{ axis: 0, name: "sagittal" }, { axis: 1, name: "coronal" }, { axis: 2, name: "axial" }];
  const CACHE = 6;
  const $ = (id) => document.getElementById(id);
  const api = (window.moodViewer = { errors: [], firstPaint: null, draws: 0 });

  function fail(message) {
    api.errors.push(String(message));
    const s = $("status");
    if (s) { s.textContent = String(message); s.className = "error"; }
  }
  window.addEventListener("error", (e) => fail("script error: " + e.message));
  window.addEventListener("unhandledrejection", (e) => fail("error: " + (e.reason && e.reason.message || e.reason)));

  // ---------------------------------------------------------------- state
  const S = {
    cases: INDEX ? INDEX.cases : [],
    methods: INDEX ? INDEX.methods : [],
    current: -1, data: null, method: 0, lastMethod: 0,
    opacity: 0.6, thr: scoreCode(1e-3), outline: true, crosshair: true,
    point: [0, 0, 0], sort: { key: "name", dir: 1 }, kind: "", order: [], views: [], hover: null,
  };
  const cache = new Map();
  const waiting = new Map();

  // ---------------------------------------------------------------- loading a case
  window.moodViewerCase = function (i, payload) {
    const w = waiting.get(i);
    if (w) { waiting.delete(i); w.resolve(payload); }
  };
  function loadScript(i) {
    return new Promise((resolve, reject) => {
      waiting.set(i, { resolve, reject });
      const el = document.createElement("script");
      el.src = S.cases[i].file;
      el.onerror = () => { waiting.delete(i); reject(new Error("cannot load " + S.cases[i].file)); };
      el.onload = () => { el.remove(); if (waiting.has(i)) { waiting.delete(i); reject(new Error(S.cases[i].file + " holds no case " + i)); } };
      document.head.appendChild(el);
    });
  }
  async function inflate(b64) {
    if (b64 === null || b64 === undefined) return null;
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) bytes[k] = bin.charCodeAt(k);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  function hottest(map) {
    if (!map) return -1;
    let best = -1, at = -1;
    for (let k = 0; k < map.length; k++) if (map[k] > best) { best = map[k]; at = k; }
    return best > 0 ? at : -1;
  }
  function getCase(i) {
    if (!cache.has(i)) {
      const p = loadScript(i).then(async (raw) => {
        const [volume, label, ...maps] = await Promise.all([raw.volume, raw.label, ...raw.scores].map(inflate));
        const n = raw.shape[0] * raw.shape[1] * raw.shape[2];
        for (const a of [volume, label, ...maps]) if (a && a.length !== n) throw new Error("case " + i + ": array size mismatch");
        return { shape: raw.shape, range: raw.range, volume, label, maps, hot: maps.map(hottest) };
      });
      p.catch(() => cache.delete(i));
      cache.set(i, p);
      while (cache.size > CACHE) cache.delete(cache.keys().next().value);
    }
    return cache.get(i);
  }

  // ---------------------------------------------------------------- drawing
  function drawAll() {
    if (!S.data) return;
    for (const v of S.views) R.drawPlane(v, S.data, S);
    S.views.forEach((v) => { if (v.slider) { v.slider.value = S.point[v.axis]; v.label.textContent = `${PLANES[v.axis].name} · axis ${v.axis} = ${S.point[v.axis]} / ${S.data.shape[v.axis] - 1}`; } });
    R.drawColourbar($("colourbar"), S.thr);
    showReadout(S.hover || S.point);
    api.draws++;
    if (api.firstPaint === null) { api.firstPaint = performance.now(); document.body.dataset.ready = "1"; }
    saveHash();
  }

  function layout() {
    const box = $("planes");
    box.textContent = "";
    S.views = [];
    if (!S.data) return;
    const shape = S.data.shape, rows = S.method < 0 ? S.methods.map((_, m) => m) : [S.method];
    const colWidth = (box.clientWidth - 20) / 3;
    const target = Math.max(120, Math.min(colWidth, S.method < 0 && rows.length > 1 ? 260 : 420)) * (window.devicePixelRatio || 1);
    const scale = target / Math.max(...shape);
    const heads = [];
    for (const p of PLANES) {
      const head = document.createElement("div");
      head.className = "plane-head";
      const label = document.createElement("span");
      const slider = document.createElement("input");
      Object.assign(slider, { type: "range", min: 0, max: shape[p.axis] - 1, value: S.point[p.axis] });
      slider.setAttribute("aria-label", p.name + " slice");
      slider.dataset.axis = p.axis;
      slider.addEventListener("input", () => { S.point[p.axis] = +slider.value; drawAll(); });
      head.append(label, slider);
      box.append(head);
      heads.push({ label, slider });
    }
    for (const m of rows) {
      for (const p of PLANES) {
        const wrap = document.createElement("div");
        wrap.className = "view";
        const canvas = document.createElement("canvas");
        canvas.dataset.axis = p.axis; canvas.dataset.method = m;
        wrap.append(canvas);
        if (p.axis === 0) { // the method's name on the row's first plane
          const tag = document.createElement("span");
          tag.className = "tag";
          tag.textContent = S.methods[m] + (S.data.maps[m] ? "" : ": no map for this case");
          wrap.append(tag);
        }
        box.append(wrap);
        const v = { axis: p.axis, method: m, canvas, scale, slider: null, label: null };
        if (m === rows[0]) { v.slider = heads[p.axis].slider; v.label = heads[p.axis].label; }
        attachMouse(v);
        S.views.push(v);
      }
    }
  }

  function voxelAt(v, ev) {
    const r = v.canvas.getBoundingClientRect(), shape = S.data.shape, [h, u] = others(v.axis);
    const x = Math.floor(((ev.clientX - r.left) / r.width) * shape[h]);
    const y = Math.floor(((ev.clientY - r.top) / r.height) * shape[u]);
    if (x < 0 || y < 0 || x >= shape[h] || y >= shape[u]) return null;
    const p = S.point.slice();
    p[h] = x; p[u] = shape[u] - 1 - y;
    return p;
  }
  function attachMouse(v) { // pointer events: mouse, pen and touch alike
    const c = v.canvas;
    const move = (ev) => { const p = voxelAt(v, ev); if (p) { S.point = p; drawAll(); } };
    c.addEventListener("pointerdown", (ev) => {
      ev.preventDefault(); move(ev); c.dataset.drag = "1";
      try { c.setPointerCapture(ev.pointerId); } catch (e) { /* a synthetic event has no capturable pointer */ }
    });
    c.addEventListener("pointerup", () => { delete c.dataset.drag; });
    c.addEventListener("pointermove", (ev) => {
      if (c.dataset.drag && ev.buttons) return move(ev);
      S.hover = voxelAt(v, ev); showReadout(S.hover || S.point);
    });
    c.addEventListener("pointerleave", () => { delete c.dataset.drag; S.hover = null; showReadout(S.point); });
    c.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const n = S.data.shape[v.axis] - 1;
      S.point[v.axis] = Math.min(n, Math.max(0, S.point[v.axis] + (ev.deltaY > 0 ? -1 : 1)));
      drawAll();
    }, { passive: false });
  }

  function showReadout(p) {
    const D = S.data;
    if (!D || !p) return;
    const k = p[0] * D.shape[1] * D.shape[2] + p[1] * D.shape[2] + p[2];
    const e = S.cases[S.current], f = e.factor > 1 ? ` (block of ${e.factor}³ voxels)` : "";
    const inten = D.range[0] + (D.volume[k] / 255) * (D.range[1] - D.range[0]);
    const parts = [`voxel (${p.join(", ")})${f}`, `intensity ${inten.toFixed(3)}`];
    if (D.label) parts.push(D.label[k] ? "inside the anomaly" : "outside the anomaly");
    S.methods.forEach((name, m) => { if (D.maps[m]) parts.push(`${name} ${fmtScore(codeScore(D.maps[m][k]))}`); });
    $("readout").textContent = parts.join(" · ");
  }

  // ---------------------------------------------------------------- case list
  function fact(i, key) {
    const e = S.cases[i], m = e.methods[S.lastMethod] || {};
    if (key === "name") return e.name;
    if (key === "kind") return e.kind || "";
    if (key === "hit") return m.hit === null || m.hit === undefined ? null : (m.hit ? 1 : 0);
    const v = m[key];
    return v === null || v === undefined ? null : v;
  }
  function sortList() {
    const { key, dir } = S.sort;
    const idx = S.cases.map((_, i) => i).filter((i) => !S.kind || S.cases[i].kind === S.kind);
    idx.sort((a, b) => {
      const x = fact(a, key), y = fact(b, key);
      if (x === null && y !== null) return 1;
      if (y === null && x !== null) return -1;
      if (x !== null && y !== null && x !== y) return (x < y ? -1 : 1) * dir;
      return S.cases[a].name < S.cases[b].name ? -1 : S.cases[a].name > S.cases[b].name ? 1 : 0;
    });
    S.order = idx;
    renderList();
  }
  function renderList() {
    const body = document.querySelector("#cases tbody");
    body.textContent = "";
    for (const i of S.order) {
      const e = S.cases[i], m = e.methods[S.lastMethod] || {};
      const tr = document.createElement("tr");
      tr.dataset.i = i;
      if (i === S.current) tr.className = "current";
      const cells = [e.name, e.kind || "–", m.missing ? "missing" : fmtScore(m.score), m.ap === null || m.ap === undefined ? "–" : m.ap.toFixed(3),
        m.hit === null || m.hit === undefined ? "" : (m.hit ? "✓" : "✗")];
      if (!S.labelled) cells.length = 3; // no labels: no AP, no hit
      cells.forEach((txt, c) => {
        const td = document.createElement("td");
        td.textContent = txt;
        if (c >= 2) td.className = "num";
        if ((c === 2 || c === 3) && typeof (c === 2 ? m.score : m.ap) === "number") {
          td.classList.add("bar-cell");
          td.style.backgroundSize = `${Math.round(100 * (c === 2 ? m.score : m.ap))}% 100%`;
        }
        if (c === 4 && txt) td.classList.add(m.hit ? "hit" : "miss");
        tr.append(td);
      });
      tr.addEventListener("click", () => openCase(i));
      body.append(tr);
    }
    $("count").textContent = `${S.order.length} of ${S.cases.length} cases`;
    document.querySelectorAll("#cases th").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === S.sort.key && S.sort.dir > 0);
      th.classList.toggle("sorted-desc", th.dataset.key === S.sort.key && S.sort.dir < 0);
    });
  }
  function markCurrent() {
    document.querySelectorAll("#cases tbody tr").forEach((tr) => {
      const on = +tr.dataset.i === S.current;
      tr.classList.toggle("current", on);
      if (on) tr.scrollIntoView({ block: "nearest" });
    });
  }

  function showCaseInfo() {
    const e = S.cases[S.current], box = $("caseinfo");
    box.textContent = "";
    const title = document.createElement("b");
    title.textContent = e.name;
    const what = e.label === 1 ? "anomalous" : e.label === 0 ? "normal" : "no label";
    const shape = e.shape.join("×") + (e.factor > 1 ? ` shown at ${e.display.join("×")}` : "");
    box.append(title, ` · ${e.kind || what}${e.kind && e.kind !== what && e.label !== null ? " (" + what + ")" : ""} · ${shape}  `, document.createElement("br"));
    e.methods.forEach((m, k) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = m.missing ? `${S.methods[k]}: no map` :
        `${S.methods[k]}: score ${fmtScore(m.score)}` + (m.ap !== null && m.ap !== undefined ? ` · AP ${m.ap.toFixed(3)}` : "") +
        (m.hit === true ? " · hit" : m.hit === false ? " · miss" : "");
      box.append(chip);
    });
  }

  let opening = 0;
  async function openCase(i, point) {
    const ticket = ++opening;
    $("status").textContent = "loading " + S.cases[i].name + " …";
    $("status").className = "";
    const data = await getCase(i);
    if (ticket !== opening) return;
    S.current = i; S.data = data; S.hover = null;
    S.point = point ? point.map((c, a) => Math.min(data.shape[a] - 1, Math.max(0, c))) : S.cases[i].start.slice();
    $("status").textContent = "";
    showCaseInfo();
    markCurrent();
    layout();
    drawAll();
    const next = S.order[S.order.indexOf(i) + 1];
    if (next !== undefined) getCase(next).catch(() => {}); // read ahead: the next case opens at once
  }

  function step(delta) {
    if (!S.order.length) return;
    const at = S.order.indexOf(S.current);
    const k = at < 0 ? 0 : Math.min(S.order.length - 1, Math.max(0, at + delta));
    if (S.order[k] !== S.current) openCase(S.order[k]);
  }

  // ---------------------------------------------------------------- controls
  function setMethod(m) {
    S.method = m;
    if (m >= 0) S.lastMethod = m;
    document.querySelectorAll("#method-buttons button").forEach((b) => b.classList.toggle("active", +b.dataset.m === m));
    sortList(); markCurrent(); layout(); drawAll();
  }
  function setThreshold(code) {
    S.thr = Math.min(255, Math.max(1, Math.round(code)));
    $("threshold").value = S.thr;
    $("threshold-value").textContent = "≥ " + fmtScore(codeScore(S.thr));
  }
  function goTo(which) {
    const D = S.data;
    if (!D) return;
    if (which === "anomaly") {
      const e = S.cases[S.current];
      if (!D.label || !D.label.some((x) => x > 0)) return;
      S.point = e.start.slice();
    } else {
      const k = D.hot[S.method >= 0 ? S.method : S.lastMethod];
      if (k < 0) return;
      S.point = unravel(k, D.shape);
    }
    drawAll();
  }

  function saveHash() {
    if (S.current < 0) return;
    const parts = [`case=${encodeURIComponent(S.cases[S.current].name)}`, `map=${S.method < 0 ? "all" : encodeURIComponent(S.methods[S.method])}`,
      `at=${S.point.join(",")}`, `thr=${codeScore(S.thr).toPrecision(3)}`, `opacity=${S.opacity}`];
    try { history.replaceState(null, "", "#" + parts.join("&")); } catch (e) { /* some file:// setups refuse it: the view still works */ }
  }
  function readHash() {
    const q = {};
    for (const kv of location.hash.replace(/^#/, "").split("&")) {
      const [k, v] = kv.split("=");
      if (k) q[k] = decodeURIComponent(v || "");
    }
    return q;
  }

  function init() {
    if (!INDEX) return fail("data/index.js is missing or broken: rebuild this folder with mood-dpa view");
    if (typeof DecompressionStream === "undefined") return fail("this browser lacks DecompressionStream (Chromium 80+, Firefox 113+, Safari 16.4+)");
    document.title = INDEX.title;
    S.labelled = S.cases.some((e) => e.label !== null && e.label !== undefined);
    document.body.classList.toggle("no-labels", !S.labelled);
    $("title").textContent = INDEX.title;
    $("note").textContent = INDEX.note || "";
    const kinds = [...new Set(S.cases.map((e) => e.kind).filter(Boolean))].sort();
    for (const k of kinds) { const o = document.createElement("option"); o.value = o.textContent = k; $("kind-filter").append(o); }
    $("kind-filter").addEventListener("change", (ev) => { S.kind = ev.target.value; sortList(); });
    const bar = $("method-buttons");
    const names = [...S.methods, ...(S.methods.length > 1 ? ["all"] : [])];
    names.forEach((name, k) => {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = name; b.dataset.m = k < S.methods.length ? k : -1;
      b.title = k < S.methods.length ? `show ${name}'s score map (key ${k + 1})` : "every method side by side (key 0)";
      b.addEventListener("click", () => setMethod(+b.dataset.m));
      bar.append(b);
    });
    $("opacity").addEventListener("input", (ev) => { S.opacity = ev.target.value / 100; drawAll(); });
    $("threshold").addEventListener("input", (ev) => { setThreshold(+ev.target.value); drawAll(); });
    $("outline").addEventListener("change", (ev) => { S.outline = ev.target.checked; drawAll(); });
    $("crosshair").addEventListener("change", (ev) => { S.crosshair = ev.target.checked; drawAll(); });
    $("goto-anomaly").addEventListener("click", () => goTo("anomaly"));
    $("goto-max").addEventListener("click", () => goTo("max"));
    document.querySelectorAll("#cases th").forEach((th) => th.addEventListener("click", () => {
      const key = th.dataset.key;
      S.sort = { key, dir: S.sort.key === key ? -S.sort.dir : (key === "score" ? -1 : 1) };
      sortList();
    }));
    document.addEventListener("keydown", (ev) => {
      // a focused slider or list keeps its own keys (arrows move the slider)
      if (["SELECT", "INPUT", "BUTTON"].includes(ev.target.tagName) && ev.key.startsWith("Arrow")) return;
      if (ev.target.tagName === "SELECT" || ev.altKey || ev.ctrlKey || ev.metaKey) return;
      if (ev.key === "ArrowDown" || ev.key === "j") { ev.preventDefault(); step(1); }
      else if (ev.key === "ArrowUp" || ev.key === "k") { ev.preventDefault(); step(-1); }
      else if (ev.key === "m") goTo("max");
      else if (ev.key === "a") goTo("anomaly");
      else if (/^[0-9]$/.test(ev.key)) { const m = +ev.key - 1; if (m < S.methods.length && (m >= 0 || S.methods.length > 1)) setMethod(m); }
    });
    let resizing = 0;
    window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(() => { layout(); drawAll(); }, 100); });

    if (!S.cases.length) return fail("no cases in this folder");
    window.addEventListener("hashchange", applyHash); // a pasted link (our own updates use replaceState: no event)
    applyHash();
  }

  // the view a link names: #case=NAME&map=METHOD|all&at=i,j,k&thr=SCORE&opacity=0..1 (every part optional)
  function applyHash() {
    const q = readHash();
    const m = q.map === "all" && S.methods.length > 1 ? -1 : Math.max(0, S.methods.indexOf(q.map));
    S.method = m; S.lastMethod = m >= 0 ? m : 0;
    if (q.opacity !== undefined && !Number.isNaN(+q.opacity)) { S.opacity = Math.min(1, Math.max(0, +q.opacity)); $("opacity").value = Math.round(S.opacity * 100); }
    setThreshold(q.thr !== undefined && !Number.isNaN(+q.thr) ? scoreCode(+q.thr) : S.thr);
    document.querySelectorAll("#method-buttons button").forEach((b) => b.classList.toggle("active", +b.dataset.m === S.method));
    sortList();
    const named = S.cases.findIndex((e) => e.name === q.case);
    const at = q.at ? q.at.split(",").map(Number) : null;
    openCase(named >= 0 ? named : S.order[0], at && at.length === 3 && at.every(Number.isFinite) ? at : null).catch((e) => fail(e.message));
  }

  api.state = S;
  api.openCase = openCase;
  init();
})();
