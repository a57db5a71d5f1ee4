// xrdid web page: upload a pattern to /api/predict, show the space groups and plot the pattern.
// Vanilla JS, no dependencies, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const AXIS_LABEL = { two_theta: "2θ (°)", q: "Q (Å⁻¹)", d: "d (Å)" };

let currentFile = null;
let lastResult = null;

// ---- space-group symbols: "P2_1/c" → P2₁/c with a real subscript, "-3" → 3 with an overbar ----------
function symbolNode(symbol) {
  const span = document.createElement("span");
  span.className = "sym";
  const re = /_(\d)|-(\d)/g;
  let last = 0;
  for (let m; (m = re.exec(symbol)); ) {
    span.append(symbol.slice(last, m.index));
    const el = document.createElement(m[1] ? "sub" : "span");
    if (!m[1]) el.className = "ov";
    el.textContent = m[1] || m[2];
    span.append(el);
    last = re.lastIndex;
  }
  span.append(symbol.slice(last));
  return span;
}

// ---- status, errors ----------------------------------------------------------------------------------
function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setBusy(busy) {
  $("busy").hidden = !busy;
  $("classify").disabled = busy || !currentFile;
}

async function checkHealth() {
  const el = $("model-status");
  try {
    const r = await fetch("/api/health");
    const h = await r.json();
    if (!r.ok) throw new Error(h.detail || r.statusText);
    const [a, b] = h.two_theta_deg;
    el.textContent = `model: 2θ ${a.toFixed(0)}–${b.toFixed(0)}° at λ ${h.wavelength_A.toFixed(4)} Å · Q ${h.q_range[0].toFixed(2)}–${h.q_range[1].toFixed(2)} Å⁻¹`;
    // The phase search's options only where the server has a phase library.
    if (h.phase_library) {
      $("phase-library").textContent = h.phase_library;
      $("phase-controls").hidden = false;
      $("phase-hint").hidden = false;
    }
  } catch (e) {
    el.textContent = `no model: ${e.message}`;
    el.classList.add("bad");
  }
}

// ---- upload ----------------------------------------------------------------------------------------
function chooseFile(file) {
  if (!file) return;
  currentFile = file;
  const name = $("file-name");
  name.textContent = file.name;
  name.hidden = false;
  classify();
}

async function classify() {
  if (!currentFile) return;
  showError("");
  $("wl-field").classList.remove("needs");
  setBusy(true);
  const form = new FormData();
  form.append("file", currentFile, currentFile.name);
  const wl = $("wavelength").value.trim();
  if (wl) form.append("wavelength", wl);
  if (!$("phase-controls").hidden) {
    const elements = $("elements").value.trim();
    if (elements) form.append("elements", elements);
    if ($("textured").checked) form.append("textured", "true");
  }
  try {
    const r = await fetch("/api/predict", { method: "POST", body: form });
    let body;
    try { body = await r.json(); } catch { body = { detail: `${r.status} ${r.statusText}` }; }
    if (!r.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      if (body.code === "wavelength_required") {
        $("wl-field").classList.add("needs");
        $("wavelength").focus();
        showError(detail + "\nType it above and press Enter, or pick a preset: the file is sent again.");
      } else {
        showError(detail);
      }
      return;
    }
    lastResult = body;
    render(body);
  } catch (e) {
    showError(`Could not reach the server: ${e.message}`);
  } finally {
    setBusy(false);
  }
}

// ---- results ---------------------------------------------------------------------------------------
function pct(p) {
  const v = 100 * p;
  return v >= 10 || v === 0 ? `${v.toFixed(0)} %` : v >= 0.1 ? `${v.toFixed(1)} %` : "<0.1 %";
}

function noveltyNote(n) {
  const s = n.score;
  // The VAE's score is calibrated: 0.99 = less typical than 99 % of patterns of known structures
  // (xrdid.novelty); the max-softmax fallback is 1 − the top probability.
  const [cls, word, text] =
    n.method === "vae"
      ? n.level === "unlike_known" ? ["bad", "unlike known", "unlike the patterns of known structures."]
        : n.level === "unusual" ? ["warn", "unusual", "less typical than most patterns of known structures."]
        : ["good", "typical", "looks like the patterns of known structures."]
      : s < 0.3 ? ["good", "familiar", "the model is confident about this pattern."]
        : s < 0.7 ? ["warn", "uncertain", "several space groups fit comparably; check the runners-up."]
        : ["bad", "unusual", "the pattern is ambiguous or unlike the training data; treat the answer with caution."];
  const dd = $("r-novelty");
  dd.replaceChildren();
  const tag = document.createElement("span");
  tag.className = `tag ${cls}`;
  tag.textContent = word;
  dd.append(tag, `${s.toFixed(2)}`);
  const note = document.createElement("span");
  note.className = "note";
  const how = n.method === "max_softmax" ? "1 − top probability" : n.method === "vae" ? "VAE, calibrated on known structures" : n.method;
  note.textContent = `${text[0].toUpperCase()}${text.slice(1)} (${how})`;
  dd.append(note);
  const banner = $("r-novelty-warning");
  banner.hidden = !n.warning;
  banner.className = `novelty-warning ${cls}`;
  banner.textContent = n.warning || "";
}

function mixtureNote(m) {
  // How likely the pattern holds more than one phase (xrdid.mixture_detector, else xrdid.mixture_probe); absent without either.
  const dd = $("r-mixture");
  const banner = $("r-mixture-warning");
  dd.replaceChildren();
  banner.hidden = !(m && m.warning);
  banner.textContent = (m && m.warning) || "";
  if (!m) {
    dd.textContent = "–";
    return;
  }
  const tag = document.createElement("span");
  tag.className = `tag ${m.warning ? "warn" : "good"}`;
  tag.textContent = m.warning ? "likely a mixture" : "one phase";
  const note = document.createElement("span");
  note.className = "note";
  note.textContent = `${pct(m.probability)} that it holds more than one phase (${m.method})`;
  dd.append(tag, note);
}

function render(res) {
  $("results").hidden = false;
  $("r-file").textContent = res.file;
  const sg = res.space_group;
  $("r-sg").replaceChildren(symbolNode(sg.symbol));
  $("r-sg-no").textContent = `No. ${sg.number}`;
  $("r-sg-p").textContent = `probability ${pct(sg.probability)}`;

  const list = $("r-topk");
  list.replaceChildren();
  const pmax = Math.max(...res.top_k.map((t) => t.probability), 1e-9);
  for (const t of res.top_k) {
    const li = document.createElement("li");
    li.title = `${t.symbol} (No. ${t.number}): ${(100 * t.probability).toFixed(2)} %`;
    const name = document.createElement("span");
    name.className = "name";
    name.append(symbolNode(t.symbol));
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    // Bars are scaled to the top probability when it is small, so a flat answer still reads.
    fill.style.width = `${(100 * t.probability) / Math.max(pmax, 0.25)}%`;
    track.append(fill);
    const p = document.createElement("span");
    p.className = "pct";
    p.textContent = pct(t.probability);
    li.append(name, track, p);
    list.append(li);
  }

  const cs = res.crystal_system;
  $("r-cs").textContent = `${cs.name} (${pct(cs.probability)})`;
  noveltyNote(res.novelty);
  mixtureNote(res.mixture);
  $("r-coverage").textContent =
    res.coverage == null ? "–" : `${pct(res.coverage)} of the model's range`;
  $("r-cell").textContent = cellText(res.cell);

  // Phases, once the server identifies them: a list of xrdid.mixtures PhaseResult dicts, bare or
  // inside the fit's dict ({phases: [...], rwp, ...}).
  const phases = Array.isArray(res.phases) ? res.phases : res.phases && Array.isArray(res.phases.phases) ? res.phases.phases : null;
  $("r-phases").hidden = !phases;
  if (phases) {
    const ul = $("r-phase-list");
    ul.replaceChildren();
    for (const ph of phases) {
      const li = document.createElement("li");
      const parts = [ph.formula || ph.name || ph.id || "phase"];
      if (ph.space_group != null) parts.push(`No. ${ph.space_group}`);
      if (ph.weight_fraction != null) parts.push(`${pct(ph.weight_fraction)} by weight`);
      if (ph.confidence != null) parts.push(`confidence ${ph.confidence.toFixed(2)}`);
      const alts = (ph.alternatives || []).map((a) => a.formula + (a.space_group != null ? ` (No. ${a.space_group})` : ""));
      if (alts.length) parts.push(`or ${alts.join(", ")}`);
      if (ph.same_structure && ph.same_structure.length) parts.push(`same structure as ${ph.same_structure.join(", ")} (not told apart)`);
      li.textContent = parts.join(" · ");
      ul.append(li);
    }
    if (phases.length === 0) ul.textContent = "no library phase found";
    // The fit's verdict (unexplained peaks: a phase not in the library?) and its figure.
    const fit = Array.isArray(res.phases) ? null : res.phases;
    const hints = fit && Array.isArray(fit.superstructure) ? fit.superstructure.map((h) => ` Hint: ${h.text}.`) : [];
    // Phases the fit placed but withdrew: stand-ins for a phase the library lacks (named in the verdict too).
    for (const ph of (fit && Array.isArray(fit.stand_ins) ? fit.stand_ins : [])) {
      const li = document.createElement("li");
      li.className = "stand-in";
      li.textContent = `not ${ph.formula}${ph.space_group != null ? ` (No. ${ph.space_group})` : ""}: its lines belong to a phase the library lacks`;
      ul.append(li);
    }
    $("r-phase-verdict").textContent = (fit && fit.verdict ? fit.verdict : "") + hints.join("");
    const img = $("r-phase-figure");
    img.hidden = !(fit && fit.figure);
    if (fit && fit.figure) img.src = fit.figure;
  }
  drawPlot($("plot"), res.pattern, res.cell && res.cell.reflections);
}

// The unit cell found by powder indexing (xrdid.indexing), or why there is none.
function cellText(c) {
  if (!c) return "–";
  if (!c.indexed) return c.message || "not indexed";
  const f = (v, d) => Number(v).toFixed(d);
  let t = `${c.bravais}  a ${f(c.a, 4)}  b ${f(c.b, 4)}  c ${f(c.c, 4)} Å  α ${f(c.alpha, 2)}  β ${f(c.beta, 2)}  γ ${f(c.gamma, 2)}°`;
  t += `  V ${f(c.volume, 1)} Å³ · M${c.F_N.N} ${f(c.M20, 1)} · ${c.indexed} of ${c.indexed + c.unindexed} lines indexed`;
  if (c.zero_shift_deg != null) t += ` · zero ${c.zero_shift_deg >= 0 ? "+" : ""}${f(c.zero_shift_deg, 3)}°`;
  // A cell that could be a chance fit (few lines) says so before anything else is read into it.
  if (c.confidence === "tentative") t = `tentative: ${c.confidence_reason} — ${t}`;
  return t;
}

// Tick marks of the indexed cell's reflections, under the trace.
function drawReflections(svg, refl, sx, x0, x1, yBase) {
  const g = el("g", { class: "reflections" }, svg);
  for (const r of refl) {
    if (r.x < Math.min(x0, x1) || r.x > Math.max(x0, x1)) continue;
    const t = el("line", { x1: sx(r.x), x2: sx(r.x), y1: yBase - 10, y2: yBase - 2 }, g);
    el("title", {}, t).textContent = `${r.hkl.join(" ")}  d = ${r.d} Å`;
  }
}

// ---- plot ------------------------------------------------------------------------------------------
function niceTicks(lo, hi, n) {
  const span = hi - lo || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => span / s <= n) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(+v.toPrecision(12));
  return { ticks: out, step };
}

function fmtTick(v, step) {
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return Math.abs(v) >= 1e5 ? v.toExponential(1) : v.toFixed(digits);
}

function el(tag, attrs, parent) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.append(e);
  return e;
}

function drawPlot(container, pat, reflections) {
  const W = Math.max(360, Math.round(container.clientWidth || 700));
  const H = Math.round(Math.min(440, Math.max(300, W * 0.52)));
  const m = { l: 64, r: 18, t: 14, b: 50 };
  const x = pat.x, y = pat.y, n = x.length;
  const x0 = x[0], x1 = x[n - 1];
  let y0 = Infinity, y1 = -Infinity;
  for (const v of y) { if (v < y0) y0 = v; if (v > y1) y1 = v; }
  y0 = Math.min(0, y0);
  const pad = (y1 - y0) * 0.05 || 1;
  y1 += pad;
  const sx = (v) => m.l + ((v - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const sy = (v) => H - m.b - ((v - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);

  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "diffraction pattern" });
  const clipId = "plot-clip";
  const clip = el("clipPath", { id: clipId }, el("defs", {}, svg));
  el("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b }, clip);

  // The model's range, shaded.
  if (pat.model_range) {
    const a = Math.max(x0, Math.min(...pat.model_range)), b = Math.min(x1, Math.max(...pat.model_range));
    if (b > a) el("rect", { class: "range", x: sx(a), y: m.t, width: sx(b) - sx(a), height: H - m.t - m.b }, svg);
  }

  // Grid and ticks.
  const grid = el("g", { class: "grid" }, svg);
  const axes = el("g", { class: "axis" }, svg);
  const xt = niceTicks(x0, x1, Math.max(4, Math.floor((W - m.l - m.r) / 80)));
  for (const v of xt.ticks) {
    el("line", { x1: sx(v), x2: sx(v), y1: m.t, y2: H - m.b }, grid);
    const g = el("g", { class: "tick" }, axes);
    el("line", { x1: sx(v), x2: sx(v), y1: H - m.b, y2: H - m.b + 5 }, g);
    el("text", { x: sx(v), y: H - m.b + 18, "text-anchor": "middle" }, g).textContent = fmtTick(v, xt.step);
  }
  const yt = niceTicks(y0, y1, 5);
  for (const v of yt.ticks) {
    el("line", { x1: m.l, x2: W - m.r, y1: sy(v), y2: sy(v) }, grid);
    const g = el("g", { class: "tick" }, axes);
    el("line", { x1: m.l - 5, x2: m.l, y1: sy(v), y2: sy(v) }, g);
    el("text", { x: m.l - 8, y: sy(v) + 4, "text-anchor": "end" }, g).textContent = fmtTick(v, yt.step);
  }
  el("path", { d: `M${m.l},${m.t} V${H - m.b} H${W - m.r}`, fill: "none" }, axes);

  // The trace: min and max per pixel column, so a 100 000-point scan draws as fast as a small one.
  const cols = new Map();
  for (let i = 0; i < n; i++) {
    const px = Math.round(sx(x[i]) * 2) / 2;
    const c = cols.get(px);
    if (!c) cols.set(px, [y[i], y[i], y[i], y[i]]);
    else { c[1] = Math.min(c[1], y[i]); c[2] = Math.max(c[2], y[i]); c[3] = y[i]; }
  }
  let d = "";
  for (const [px, [first, lo, hi, lastY]] of cols) {
    d += `${d ? "L" : "M"}${px},${sy(first).toFixed(1)}`;
    if (hi !== lo) d += `L${px},${sy(lo).toFixed(1)}L${px},${sy(hi).toFixed(1)}`;
    d += `L${px},${sy(lastY).toFixed(1)}`;
  }
  el("path", { class: "trace", d, "clip-path": `url(#${clipId})` }, svg);
  if (reflections && reflections.length) drawReflections(svg, reflections, sx, x0, x1, H - m.b);
  $("tick-legend").hidden = !(reflections && reflections.length);

  // Axis labels.
  let xl = AXIS_LABEL[pat.axis] || pat.axis;
  if (pat.axis === "two_theta" && pat.wavelength_A) xl += `   ·   λ = ${pat.wavelength_A} Å`;
  el("text", { class: "label", x: (m.l + W - m.r) / 2, y: H - 10, "text-anchor": "middle" }, svg).textContent = xl;
  el("text", { class: "label", transform: `translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)`, "text-anchor": "middle" }, svg)
    .textContent = "Intensity (a.u.)";

  // Hover read-out.
  const cross = el("line", { class: "cross", y1: m.t, y2: H - m.b, visibility: "hidden" }, svg);
  const readout = el("text", { class: "readout", x: W - m.r - 4, y: m.t + 14, "text-anchor": "end" }, svg);
  svg.addEventListener("mousemove", (ev) => {
    const r = svg.getBoundingClientRect();
    const px = ((ev.clientX - r.left) / r.width) * W;
    if (px < m.l || px > W - m.r) { cross.setAttribute("visibility", "hidden"); readout.textContent = ""; return; }
    const xv = x0 + ((px - m.l) / (W - m.l - m.r)) * (x1 - x0);
    let lo = 0, hi = n - 1;
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (x[mid] < xv) lo = mid; else hi = mid; }
    const i = Math.abs(x[lo] - xv) < Math.abs(x[hi] - xv) ? lo : hi;
    cross.setAttribute("x1", sx(x[i])); cross.setAttribute("x2", sx(x[i]));
    cross.setAttribute("visibility", "visible");
    readout.textContent = `${AXIS_LABEL[pat.axis] ? AXIS_LABEL[pat.axis].split(" ")[0] : "x"} = ${x[i].toFixed(3)}   I = ${+y[i].toPrecision(4)}`;
  });
  svg.addEventListener("mouseleave", () => { cross.setAttribute("visibility", "hidden"); readout.textContent = ""; });

  container.replaceChildren(svg);
}

// ---- wiring ----------------------------------------------------------------------------------------
function init() {
  const drop = $("drop");
  const input = $("file-input");
  input.addEventListener("change", () => { chooseFile(input.files[0]); input.value = ""; });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => chooseFile(e.dataTransfer.files[0]));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  // A file dropped outside the zone must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  for (const b of document.querySelectorAll(".preset")) {
    b.addEventListener("click", () => { $("wavelength").value = b.dataset.wavelength; classify(); });
  }
  $("wavelength").addEventListener("keydown", (e) => { if (e.key === "Enter") classify(); });
  $("elements").addEventListener("keydown", (e) => { if (e.key === "Enter") classify(); });
  $("classify").addEventListener("click", classify);

  let resizeTimer;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (lastResult) drawPlot($("plot"), lastResult.pattern, lastResult.cell && lastResult.cell.reflections); }, 150);
  });
  checkHealth();
}

init();
