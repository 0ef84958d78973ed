/* mood-dpa case browser, drawing: score codes, colours, one plane of a case on a canvas, the colour bar.
 * Pure functions of their inputs (no page state); viewer.js owns the state and calls them.
 * Scores are logit codes (mood_dpa/viewer/encode.py): code 0 = at most 1e-4, codes 1-255 span
 * log10(s / (1 - s)) from -span to +span. */
(function () {
  "use strict";

  // ---------------------------------------------------------------- score coding and colours
  const TICKS = [1e-4, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999];
  let span = 4; // the index's scale.span (setSpan)
  function setSpan(value) { span = value; }
  function codeScore(c) { return c <= 0 ? 0 : 1 / (1 + Math.pow(10, -(((c - 1) / 254) * 2 * span - span))); }
  function scoreCode(s) {
    if (!(s > 0)) return 1;
    const l = Math.log10(s) - Math.log10(Math.max(1 - s, 1e-12));
    return Math.min(255, Math.max(1, 1 + Math.round(((Math.min(span, Math.max(-span, l)) + span) / (2 * span)) * 254)));
  }
  function fmtScore(s) {
    if (s === null || s === undefined || Number.isNaN(s)) return "–";
    if (s === 0) return "0";
    if (s < 0.001) return s.toExponential(1);
    if (s > 0.999 && s < 1) return "1-" + (1 - s).toExponential(1);
    return s.toFixed(s < 0.1 ? 4 : 3);
  }
  // a sequential map from deep violet through red and orange to pale yellow (inferno's upper part)
  const STOPS = [[0, 72, 18, 110], [0.3, 160, 42, 98], [0.55, 226, 84, 40], [0.8, 250, 166, 20], [1, 252, 250, 170]];
  const LUT = new Uint8Array(256 * 3);
  for (let c = 1; c < 256; c++) {
    const t = (c - 1) / 254;
    let k = 0;
    while (k < STOPS.length - 2 && t > STOPS[k + 1][0]) k++;
    const [t0, ...a] = STOPS[k], [t1, ...b] = STOPS[k + 1];
    const f = (t - t0) / (t1 - t0);
    for (let j = 0; j < 3; j++) LUT[c * 3 + j] = Math.round(a[j] + f * (b[j] - a[j]));
  }

  // ---------------------------------------------------------------- geometry
  const others = (axis) => [0, 1, 2].filter((a) => a !== axis); // [horizontal, vertical (upwards)]
  function strides(shape) { return [shape[1] * shape[2], shape[2], 1]; }
  function unravel(k, shape) { return [Math.floor(k / (shape[1] * shape[2])), Math.floor(k / shape[2]) % shape[1], k % shape[2]]; }

  // ---------------------------------------------------------------- drawing
  // one plane of one view: v = {axis, method, canvas, scale} (v keeps its small canvas between calls);
  // D = a decoded case {shape, volume, label, maps}; S = {point, opacity, thr, outline, crosshair}
  function drawPlane(v, D, S) {
    const shape = D.shape, st = strides(shape);
    const [h, u] = others(v.axis), W = shape[h], H = shape[u];
    if (!v.small || v.small.width !== W || v.small.height !== H) {
      v.small = document.createElement("canvas");
      v.small.width = W; v.small.height = H;
      v.img = v.small.getContext("2d").createImageData(W, H);
    }
    const px = v.img.data, vol = D.volume, map = v.method >= 0 ? D.maps[v.method] : null;
    const a = S.opacity, thr = S.thr, base = S.point[v.axis] * st[v.axis];
    for (let y = 0; y < H; y++) {
      const row = base + (H - 1 - y) * st[u];
      for (let x = 0; x < W; x++) {
        const k = row + x * st[h], g = vol[k], o = (y * W + x) * 4;
        let r = g, gg = g, b = g;
        if (map) {
          const c = map[k];
          if (c >= thr) { r = g + a * (LUT[c * 3] - g); gg = g + a * (LUT[c * 3 + 1] - g); b = g + a * (LUT[c * 3 + 2] - g); }
        }
        px[o] = r; px[o + 1] = gg; px[o + 2] = b; px[o + 3] = 255;
      }
    }
    v.small.getContext("2d").putImageData(v.img, 0, 0);
    const cv = v.canvas, scale = v.scale;
    const cw = Math.round(W * scale), ch = Math.round(H * scale);
    if (cv.width !== cw || cv.height !== ch) { cv.width = cw; cv.height = ch; }
    const ctx = cv.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(v.small, 0, 0, cw, ch);
    if (S.outline && D.label) {
      const lab = D.label, inside = (x, y) => x >= 0 && y >= 0 && x < W && y < H && lab[base + (H - 1 - y) * st[u] + x * st[h]] > 0;
      ctx.beginPath();
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
        if (!inside(x, y)) continue;
        const x0 = x * scale, x1 = (x + 1) * scale, y0 = y * scale, y1 = (y + 1) * scale;
        if (!inside(x - 1, y)) { ctx.moveTo(x0, y0); ctx.lineTo(x0, y1); }
        if (!inside(x + 1, y)) { ctx.moveTo(x1, y0); ctx.lineTo(x1, y1); }
        if (!inside(x, y - 1)) { ctx.moveTo(x0, y0); ctx.lineTo(x1, y0); }
        if (!inside(x, y + 1)) { ctx.moveTo(x0, y1); ctx.lineTo(x1, y1); }
      }
      ctx.strokeStyle = "#2ee6ff"; ctx.lineWidth = Math.max(1.5, scale / 3); ctx.stroke();
    }
    if (S.crosshair) {
      const cx = (S.point[h] + 0.5) * scale, cy = (H - 1 - S.point[u] + 0.5) * scale;
      ctx.save(); ctx.strokeStyle = "rgba(120,255,140,0.55)"; ctx.lineWidth = 1; ctx.setLineDash([4, 4]);
      ctx.beginPath(); ctx.moveTo(cx, 0); ctx.lineTo(cx, ch); ctx.moveTo(0, cy); ctx.lineTo(cw, cy); ctx.stroke(); ctx.restore();
    }
  }
  function drawColourbar(cv, thr) {
    const ctx = cv.getContext("2d"), W = cv.width, barH = 12;
    ctx.clearRect(0, 0, W, cv.height);
    for (let x = 0; x < W; x++) {
      const c = 1 + Math.round((x / (W - 1)) * 254);
      ctx.fillStyle = `rgb(${LUT[c * 3]},${LUT[c * 3 + 1]},${LUT[c * 3 + 2]})`;
      ctx.globalAlpha = c >= thr ? 1 : 0.15;
      ctx.fillRect(x, 0, 1, barH);
    }
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#555"; ctx.font = "10px system-ui, sans-serif"; ctx.textAlign = "center";
    for (const t of TICKS) {
      const x = ((scoreCode(t) - 1) / 254) * (W - 1);
      ctx.fillRect(Math.round(x), barH, 1, 3);
      ctx.textAlign = x < 12 ? "left" : x > W - 12 ? "right" : "center";
      ctx.fillText(t < 0.01 ? t.toExponential(0) : String(t), x, barH + 13);
    }
    const tx = ((thr - 1) / 254) * (W - 1);
    ctx.fillStyle = "#000"; ctx.fillRect(Math.round(tx) - 1, 0, 2, barH);
  }

  window.moodViewerRender = { setSpan, codeScore, scoreCode, fmtScore, others, strides, unravel, drawPlane, drawColourbar };
})();
