// latent-atlas explorer: plain JavaScript, no build step. Talks only to this app's /api endpoints.
"use strict";

(() => {
  const VIRIDIS = [68, 1, 84, 72, 24, 106, 71, 45, 123, 66, 64, 134, 59, 82, 139, 51, 99, 141, 44, 114, 142,
    38, 130, 142, 33, 145, 140, 31, 160, 136, 40, 174, 128, 63, 188, 115, 94, 201, 98, 132, 212, 75, 173, 220,
    48, 216, 226, 25, 253, 231, 37];
  const RUN_COLOURS = ["#3b528b", "#e07b00"];
  const PLANE_GRID = 20;
  const PLANE_MARGIN = 34;

  const state = {
    runs: [],           // run info from /api/runs
    limits: null,
    data: new Map(),    // run id -> {codes, projected, colours, isTest}
    scatterRun: null,   // id of the run whose codes the scatter and the slice plane show
    colour: null,       // index into colour_names
    code: [],           // the current latent point
    source: null,       // dataset index the current code came from, or null
    sliceAxes: [0, 1],
    shading: null,      // validity grid of the slice plane
    path: null,         // last sampled path (for the overlays)
    pathEnds: {a: null, b: null, center: null},
    hoverCache: new Map(),
    version: 0,
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, children = []) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  };
  const fmt = (x, digits = 3) => (x === null || x === undefined || !Number.isFinite(x) ? "–" : Number(x).toFixed(digits));
  const runById = (id) => state.runs.find((r) => r.id === id);
  const scatterInfo = () => runById(state.scatterRun);
  const dim = () => state.runs[0].latent_dim;

  // ---------- talking to the app ----------

  function status(message, isError = true) {
    $("status").textContent = message || "";
    $("status").classList.toggle("error", Boolean(message) && isError);
  }

  async function api(path, body) {
    const options = body === undefined ? {} : {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    };
    const response = await fetch(path, options);
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = payload.message || (typeof payload.detail === "string" ? payload.detail : response.statusText);
      throw new Error(`${response.status}: ${detail}`);
    }
    return payload;
  }
  const runPath = (id, rest) => `/api/runs/${encodeURIComponent(id)}/${rest}`;

  async function loadCodes(run) {
    const parts = {codes: [], projected: [], colours: [], isTest: []};
    let offset = 0;
    for (;;) {
      const page = await api(runPath(run.id, `codes?offset=${offset}&limit=${state.limits.max_page}`));
      parts.codes.push(...page.codes);
      parts.projected.push(...page.projected);
      parts.colours.push(...page.colours);
      parts.isTest.push(...page.is_test);
      offset += page.count;
      if (page.count === 0 || offset >= page.total) break;
    }
    return parts;
  }

  // Decoding the current code: one request at a time per page; moves made meanwhile collapse into the next.
  const decoder = {busy: false, again: false};
  function requestDecode() {
    if (decoder.busy) { decoder.again = true; return; }
    runDecode();
  }
  async function runDecode() {
    decoder.busy = true;
    const code = state.code.slice();
    try {
      const answers = await Promise.all(state.runs.map((run) => api(runPath(run.id, "decode"), {codes: [code]})));
      answers.forEach((answer, k) => showDecoded(k, answer, 0));
      state.version += 1;
      $("decoded-image").dataset.version = String(state.version);
      status("");
    } catch (error) {
      status(`Decoding failed: ${error.message}`);
    }
    decoder.busy = false;
    if (decoder.again) { decoder.again = false; runDecode(); }
  }

  // ---------- images ----------

  function viridis(t) {
    const x = Math.min(Math.max(t, 0), 1) * 16;
    const i = Math.min(Math.floor(x), 15);
    const f = x - i;
    const c = (k) => Math.round(VIRIDIS[3 * i + k] * (1 - f) + VIRIDIS[3 * (i + 1) + k] * f);
    return [c(0), c(1), c(2)];
  }
  const LUT = Array.from({length: 256}, (_, v) => viridis(v / 255));

  function bytesOf(b64) {
    const text = atob(b64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  // Row 0 of the image is y = -extent: draw it at the bottom.
  function drawHeatmap(canvas, b64, shape) {
    const [h, w] = shape;
    const bytes = bytesOf(b64);
    canvas.width = w;
    canvas.height = h;
    const context = canvas.getContext("2d");
    const pixels = context.createImageData(w, h);
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const [r, g, b] = LUT[bytes[i * w + j]];
        const o = 4 * ((h - 1 - i) * w + j);
        pixels.data[o] = r; pixels.data[o + 1] = g; pixels.data[o + 2] = b; pixels.data[o + 3] = 255;
      }
    }
    context.putImageData(pixels, 0, 0);
  }

  // ---------- decoded panels ----------

  const suffix = (k) => (k === 0 ? "" : `-${k + 1}`);

  function buildDecodedPanels() {
    const box = $("decoded-panels");
    box.replaceChildren();
    state.runs.forEach((run, k) => {
      const canvas = el("canvas", {id: `decoded-image${suffix(k)}`, class: "heatmap", width: "36", height: "36",
        "data-version": "0", "aria-label": `decoded image, ${run.id}`});
      box.append(el("div", {class: "decoded-panel"}, [
        el("h3", {}, [run.id + " ", el("span", {text: `${run.kind.toUpperCase()}`})]),
        canvas,
        el("span", {id: `validity${suffix(k)}`, class: "badge", text: "not decoded yet"}),
        el("div", {id: `recovered-factors${suffix(k)}`}),
      ]));
    });
  }

  function trueFactors() {
    if (state.source === null) return null;
    const run = scatterInfo();
    const row = state.data.get(run.id).colours[state.source];
    return Object.fromEntries(run.colour_names.map((name, j) => [name, row[j]]));
  }

  function showDecoded(k, answer, row) {
    drawHeatmap($(`decoded-image${suffix(k)}`), answer.images[row], answer.image_shape);
    const badge = $(`validity${suffix(k)}`);
    const valid = answer.valid === null ? null : answer.valid[row];
    badge.className = "badge " + (valid === null ? "" : valid ? "valid" : "invalid");
    const reasons = {"shape": "not a heatmap of the family", "range": "factors out of the data's range",
      "shape+range": "not a heatmap of the family, factors out of range"};
    badge.textContent = valid === null ? "validity unknown" : valid ? "valid heatmap" : "not a valid heatmap";
    badge.title = `shape residual ${fmt(answer.shape_residual[row])} (threshold ${fmt(answer.threshold)})` +
      (valid === false ? `: ${reasons[answer.failure[row]]}` : "") + `; oracle: ${runById(answer.run).oracle.source}`;
    badge.dataset.failure = valid === null ? "" : answer.failure[row];
    badge.dataset.valid = String(valid);
    const truth = trueFactors();
    const head = el("tr", {}, [el("th", {text: "factor"}), el("th", {text: "recovered"})]);
    if (truth) head.append(el("th", {text: `true (#${state.source})`}));
    const body = answer.factor_names.map((name, j) => {
      const tr = el("tr", {}, [el("td", {text: name}), el("td", {text: fmt(answer.factors[row][j])})]);
      if (truth) tr.append(el("td", {text: fmt(truth[name])}));
      return tr;
    });
    body.push(el("tr", {}, [el("td", {text: "residual"}), el("td", {text: fmt(answer.residual[row])})]));
    const table = el("table", {class: "factors"}, [el("thead", {}, [head]), el("tbody", {}, body)]);
    $(`recovered-factors${suffix(k)}`).replaceChildren(table);
  }

  // ---------- the current code: sliders ----------

  function buildSliders() {
    const box = $("sliders");
    box.replaceChildren();
    const run = state.runs[0];
    for (let i = 0; i < dim(); i++) {
      const lo = Math.min(...state.runs.map((r) => r.code_min[i]));
      const hi = Math.max(...state.runs.map((r) => r.code_max[i]));
      const slider = el("input", {id: `slider-${i}`, type: "range", min: String(lo), max: String(hi),
        step: String((hi - lo) / 400 || 0.01), value: String(run.code_median[i]), "data-axis": String(i)});
      slider.addEventListener("input", () => {
        state.code[i] = Number(slider.value);
        state.source = null;
        codeChanged(true);
      });
      box.append(el("label", {for: slider.id, text: `z${i}`}), slider, el("output", {id: `slider-value-${i}`}));
    }
  }

  function syncSliders() {
    state.code.forEach((value, i) => {
      $(`slider-${i}`).value = String(value);
      $(`slider-value-${i}`).textContent = fmt(value, 2);
    });
    $("code-source").textContent = state.source === null ? "chosen by hand" : `code of image #${state.source}`;
  }

  function setCode(code, source = null) {
    state.code = code.map(Number);
    state.source = source;
    codeChanged(false);
  }

  function codeChanged(fromSlider) {
    if (fromSlider) {
      state.code.forEach((value, i) => { $(`slider-value-${i}`).textContent = fmt(value, 2); });
      $("code-source").textContent = "chosen by hand";
    } else {
      syncSliders();
    }
    if (state.shading && !sameOthers(state.shading)) state.shading = null;
    requestDecode();
    scheduleOverlays();
  }

  // ---------- the 3-D scatter ----------

  const project = (run, code) => run.projection.components.map(
    (row, r) => row.reduce((sum, c, j) => sum + c * code[j], run.projection.offset[r]));

  function colourValues(run) {
    const data = state.data.get(run.id);
    const j = state.colour;
    if (j >= run.colour_names.length) return data.isTest.map((t) => (t ? 1 : 0));
    return data.colours.map((row) => row[j]);
  }
  const colourName = (run) => (state.colour >= run.colour_names.length ? "test split" : run.colour_names[state.colour]);

  function drawScatter() {
    const run = scatterInfo();
    const data = state.data.get(run.id);
    const column = (c) => data.projected.map((p) => p[c]);
    const here = project(run, state.code);
    const points = {
      type: "scatter3d", mode: "markers", name: "codes",
      x: column(0), y: column(1), z: column(2),
      text: data.projected.map((_, i) => `image #${i}`),
      hoverinfo: "text",
      marker: {size: 2.2, opacity: 0.75, color: colourValues(run), colorscale: "Viridis",
        colorbar: {title: {text: colourName(run)}, thickness: 12, len: 0.6}},
    };
    const current = {type: "scatter3d", mode: "markers", name: "current code", hoverinfo: "skip",
      x: [here[0]], y: [here[1]], z: [here[2]],
      marker: {size: 7, color: "#d62728", symbol: "diamond", line: {color: "white", width: 1}}};
    const pathPoints = state.path ? state.path.points.map((p) => project(run, p)) : [];
    const path = {type: "scatter3d", mode: "lines+markers", name: "path", hoverinfo: "skip",
      x: pathPoints.map((p) => p[0]), y: pathPoints.map((p) => p[1]), z: pathPoints.map((p) => p[2]),
      line: {color: "#e07b00", width: 5}, marker: {size: 3, color: "#e07b00"}};
    const axisTitle = (c) => (run.projection.method === "pca" ? `PC${c + 1}` : c < run.latent_dim ? `z${c}` : "(none)");
    const layout = {
      margin: {l: 0, r: 0, t: 0, b: 0}, showlegend: false, uirevision: run.id,
      scene: {xaxis: {title: {text: axisTitle(0)}}, yaxis: {title: {text: axisTitle(1)}},
        zaxis: {title: {text: axisTitle(2)}}, aspectmode: "cube"},
    };
    return Plotly.react("scatter", [points, current, path], layout, {displaylogo: false, responsive: true});
  }

  let overlayQueued = false;
  function scheduleOverlays() {
    if (overlayQueued) return;
    overlayQueued = true;
    requestAnimationFrame(() => {
      overlayQueued = false;
      const run = scatterInfo();
      const here = project(run, state.code);
      Plotly.restyle("scatter", {x: [[here[0]]], y: [[here[1]]], z: [[here[2]]]}, [1]);
      drawPlane();
    });
  }

  function pickIndex(index) {
    const run = scatterInfo();
    const data = state.data.get(run.id);
    if (!(index >= 0 && index < data.codes.length)) return;
    setCode(data.codes[index], index);
  }

  async function showHover(index) {
    const run = scatterInfo();
    const key = `${run.id}/${index}`;
    try {
      if (!state.hoverCache.has(key)) {
        if (state.hoverCache.size > 500) state.hoverCache.clear();
        state.hoverCache.set(key, api(runPath(run.id, `images/${index}`)));
      }
      const found = await state.hoverCache.get(key);
      drawHeatmap($("hover-image"), found.image, found.image_shape);
      const lines = [el("div", {}, [el("b", {text: `image #${found.index}`}), ` (${found.is_test ? "test" : "train"})`])];
      for (const [name, value] of Object.entries(found.factors)) lines.push(el("div", {text: `${name} = ${fmt(value)}`}));
      lines.push(el("div", {class: "muted", text: `code (${found.code.map((v) => fmt(v, 2)).join(", ")})`}));
      $("hover-factors").replaceChildren(...lines);
    } catch (error) {
      state.hoverCache.delete(key);
      status(`Could not load image #${index}: ${error.message}`);
    }
  }

  function wireScatterEvents() {
    const gd = $("scatter");
    gd.on("plotly_click", (event) => {
      const point = event && event.points && event.points[0];
      if (point && point.curveNumber === 0) pickIndex(point.pointNumber);
    });
    gd.on("plotly_hover", (event) => {
      const point = event && event.points && event.points[0];
      if (point && point.curveNumber === 0) showHover(point.pointNumber);
    });
  }

  // ---------- the slice plane ----------

  function planeRanges() {
    const [a, b] = state.sliceAxes;
    const run = scatterInfo();
    const range = (i) => {
      const pad = 0.05 * (run.code_max[i] - run.code_min[i] || 1);
      return [run.code_min[i] - pad, run.code_max[i] + pad];
    };
    return [range(a), range(b)];
  }

  function planeGeometry(canvas) {
    const size = canvas.clientWidth || 360;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(size * ratio)) {
      canvas.width = Math.round(size * ratio);
      canvas.height = Math.round(size * ratio);
    }
    const [[x0, x1], [y0, y1]] = planeRanges();
    const inner = size - PLANE_MARGIN - 8;
    return {
      size, ratio, inner,
      toPixel: (x, y) => [PLANE_MARGIN + ((x - x0) / (x1 - x0)) * inner, 8 + (1 - (y - y0) / (y1 - y0)) * inner],
      toData: (px, py) => [x0 + ((px - PLANE_MARGIN) / inner) * (x1 - x0), y0 + (1 - (py - 8) / inner) * (y1 - y0)],
      ranges: [[x0, x1], [y0, y1]],
    };
  }

  function sameOthers(shading) {
    const [a, b] = state.sliceAxes;
    return shading.axes[0] === a && shading.axes[1] === b &&
      state.code.every((v, i) => i === a || i === b || Math.abs(v - shading.code[i]) < 1e-9);
  }

  function drawPlane() {
    const canvas = $("slice-plane");
    const g = planeGeometry(canvas);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(g.ratio, 0, 0, g.ratio, 0, 0);
    ctx.clearRect(0, 0, g.size, g.size);
    ctx.fillStyle = "#fafbfc";
    ctx.fillRect(PLANE_MARGIN, 8, g.inner, g.inner);
    const [a, b] = state.sliceAxes;
    if (state.shading) {
      const {grid, valid} = state.shading;
      const cell = g.inner / grid.length;
      valid.forEach((ok, n) => {
        const r = Math.floor(n / grid.length), c = n % grid.length;
        ctx.fillStyle = ok === null ? "rgba(140,140,140,0.2)" : ok ? "rgba(26,127,75,0.22)" : "rgba(192,57,43,0.32)";
        ctx.fillRect(PLANE_MARGIN + c * cell, 8 + (grid.length - 1 - r) * cell, cell + 0.5, cell + 0.5);
      });
    }
    const run = scatterInfo();
    const data = state.data.get(run.id);
    ctx.fillStyle = "rgba(60,60,70,0.28)";
    for (const code of data.codes) {
      const [px, py] = g.toPixel(code[a], code[b]);
      ctx.fillRect(px - 0.8, py - 0.8, 1.6, 1.6);
    }
    if (state.path) {
      ctx.strokeStyle = "#e07b00";
      ctx.lineWidth = 2;
      ctx.beginPath();
      state.path.points.forEach((p, n) => {
        const [px, py] = g.toPixel(p[a], p[b]);
        if (n === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      });
      ctx.stroke();
    }
    const [cx, cy] = g.toPixel(state.code[a], state.code[b]);
    ctx.strokeStyle = "#d62728";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(cx, 8); ctx.lineTo(cx, 8 + g.inner);
    ctx.moveTo(PLANE_MARGIN, cy); ctx.lineTo(PLANE_MARGIN + g.inner, cy);
    ctx.stroke();
    ctx.fillStyle = "#d62728";
    ctx.beginPath(); ctx.arc(cx, cy, 4, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = "#374151";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(`z${a}`, PLANE_MARGIN + g.inner / 2, g.size - 4);
    ctx.fillText(fmt(g.ranges[0][0], 1), PLANE_MARGIN + 10, g.size - 16);
    ctx.fillText(fmt(g.ranges[0][1], 1), PLANE_MARGIN + g.inner - 10, g.size - 16);
    ctx.save();
    ctx.translate(12, 8 + g.inner / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(`z${b}`, 0, 0);
    ctx.restore();
    ctx.textAlign = "right";
    ctx.fillText(fmt(g.ranges[1][1], 1), PLANE_MARGIN - 3, 18);
    ctx.fillText(fmt(g.ranges[1][0], 1), PLANE_MARGIN - 3, 8 + g.inner);
  }

  function wirePlane() {
    const canvas = $("slice-plane");
    let dragging = false;
    const moveTo = (event) => {
      const g = planeGeometry(canvas);
      const box = canvas.getBoundingClientRect();
      const [x, y] = g.toData(event.clientX - box.left, event.clientY - box.top);
      const [a, b] = state.sliceAxes;
      const code = state.code.slice();
      code[a] = x;
      code[b] = y;
      setCode(code, null);
    };
    canvas.addEventListener("pointerdown", (event) => {
      dragging = true;
      canvas.setPointerCapture(event.pointerId);
      moveTo(event);
    });
    canvas.addEventListener("pointermove", (event) => { if (dragging) moveTo(event); });
    const stop = () => { dragging = false; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    for (const id of ["slice-a", "slice-b"]) {
      $(id).addEventListener("change", () => {
        state.sliceAxes = [Number($("slice-a").value), Number($("slice-b").value)];
        state.shading = null;
        drawPlane();
      });
    }
    $("map-plane").addEventListener("click", mapPlane);
  }

  async function mapPlane() {
    const [a, b] = state.sliceAxes;
    if (a === b) { status("Choose two different axes for the slice plane."); return; }
    const button = $("map-plane");
    button.disabled = true;
    const [[x0, x1], [y0, y1]] = planeRanges();
    const grid = Array.from({length: PLANE_GRID}, (_, n) => n);
    const codes = [];
    for (const r of grid) {
      for (const c of grid) {
        const code = state.code.slice();
        code[a] = x0 + ((c + 0.5) / PLANE_GRID) * (x1 - x0);
        code[b] = y0 + ((r + 0.5) / PLANE_GRID) * (y1 - y0);
        codes.push(code);
      }
    }
    try {
      const valid = [];
      for (let start = 0; start < codes.length; start += state.limits.max_batch) {
        const answer = await api(runPath(state.scatterRun, "decode"), {codes: codes.slice(start, start + state.limits.max_batch)});
        valid.push(...(answer.valid === null ? answer.residual.map(() => null) : answer.valid));
      }
      state.shading = {axes: [a, b], code: state.code.slice(), grid, valid};
      const share = valid.filter((v) => v).length / valid.length;
      status(`${state.scatterRun}: ${(100 * share).toFixed(0)} % of this plane decodes to valid heatmaps.`, false);
      drawPlane();
    } catch (error) {
      status(`Mapping the plane failed: ${error.message}`);
    }
    button.disabled = false;
  }

  // ---------- paths ----------

  const codeText = (code) => (code ? `(${code.map((v) => fmt(v, 2)).join(", ")})` : "not set");

  function showPathEnds() {
    $("path-a").textContent = codeText(state.pathEnds.a);
    $("path-b").textContent = codeText(state.pathEnds.b);
    $("path-center").textContent = codeText(state.pathEnds.center);
  }

  function pathRequest() {
    const n = Number($("path-n").value);
    const kind = $("path-kind").value;
    if (kind === "line") return {kind, start: state.pathEnds.a, end: state.pathEnds.b, n_points: n};
    if (kind === "angular") {
      return {kind, center: state.pathEnds.center, axes: [Number($("path-axis-1").value), Number($("path-axis-2").value)],
        radius: Number($("path-radius").value), start_angle: (Number($("path-start-angle").value) * Math.PI) / 180,
        end_angle: (Number($("path-end-angle").value) * Math.PI) / 180, n_points: n};
    }
    const axis = $("path-axis").value;
    return {kind, tolerance: Number($("path-tolerance").value), n_bins: Number($("path-bins").value), n_points: n,
      axis: axis === "auto" ? null : Number(axis)};
  }

  async function decodeAll(runId, points) {
    const parts = [];
    for (let start = 0; start < points.length; start += state.limits.max_batch) {
      parts.push(await api(runPath(runId, "decode"), {codes: points.slice(start, start + state.limits.max_batch)}));
    }
    const merged = {...parts[0]};
    for (const key of ["images", "factors", "residual", "shape_residual", "shape_ok", "in_range", "failure"]) {
      merged[key] = parts.flatMap((p) => p[key]);
    }
    merged.valid = parts[0].valid === null ? null : parts.flatMap((p) => p.valid);
    return merged;
  }

  async function samplePath() {
    const button = $("path-run");
    button.disabled = true;
    try {
      const answer = await api(runPath(state.scatterRun, "paths"), pathRequest());
      const decoded = [answer.decoded];
      for (const run of state.runs) {
        if (run.id !== state.scatterRun) decoded.push(await decodeAll(run.id, answer.points));
      }
      const order = [state.scatterRun, ...state.runs.map((r) => r.id).filter((id) => id !== state.scatterRun)];
      state.path = {points: answer.points, decoded, order};
      $("path-description").textContent = answer.description;
      drawStrips();
      drawPathChart();
      drawScatter();
      drawPlane();
      status("");
    } catch (error) {
      status(`Path failed: ${error.message}`);
    }
    button.disabled = false;
  }

  function drawStrips() {
    const box = $("path-strips");
    box.replaceChildren();
    state.path.decoded.forEach((answer, k) => {
      const strip = el("div", {class: "strip", id: `path-strip${suffix(k)}`});
      answer.images.forEach((image, n) => {
        const canvas = el("canvas", {width: "36", height: "36", title: `step ${n}: residual ${fmt(answer.residual[n])}`});
        if (answer.valid !== null && !answer.valid[n]) canvas.classList.add("invalid");
        drawHeatmap(canvas, image, answer.image_shape);
        const figure = el("figure", {}, [canvas, el("figcaption", {text: String(n)})]);
        figure.addEventListener("click", () => setCode(state.path.points[n], null));
        strip.append(figure);
      });
      box.append(el("div", {class: "strip-label", text: `${state.path.order[k]}: decoded along the path (red frame: not a valid heatmap; click to decode)`}), strip);
    });
  }

  function drawPathChart() {
    const names = state.path.decoded[0].factor_names;
    const traces = [];
    state.path.decoded.forEach((answer, k) => {
      names.forEach((name, j) => {
        const axis = j === 0 ? "" : String(j + 1);
        traces.push({
          type: "scatter", mode: "lines+markers", name: state.path.order[k],
          x: answer.factors.map((_, n) => n), y: answer.factors.map((row) => row[j]),
          xaxis: "x", yaxis: `y${axis}`,
          line: {color: RUN_COLOURS[k], dash: k === 0 ? "solid" : "dash"},
          marker: {size: 7, color: answer.valid === null ? RUN_COLOURS[k] : answer.valid.map((v) => (v ? RUN_COLOURS[k] : "#c0392b")),
            symbol: answer.valid === null ? "circle" : answer.valid.map((v) => (v ? "circle" : "x"))},
          showlegend: j === 0, legendgroup: state.path.order[k],
        });
      });
    });
    const layout = {
      grid: {rows: names.length, columns: 1, shared_xaxes: true, roworder: "top to bottom"},
      margin: {l: 60, r: 10, t: 10, b: 30}, height: 80 + 75 * names.length,
      legend: {orientation: "h", y: -0.12},
      xaxis: {title: {text: "step along the path"}, dtick: 1},
    };
    names.forEach((name, j) => { layout[`yaxis${j === 0 ? "" : j + 1}`] = {title: {text: name}, zeroline: false}; });
    const box = $("path-factors");
    box.classList.add("filled");
    box.style.height = `${layout.height}px`;
    Plotly.react(box, traces, layout, {displaylogo: false, responsive: true});
  }

  function wirePaths() {
    $("path-kind").addEventListener("change", () => {
      for (const section of document.querySelectorAll(".path-params")) section.hidden = section.dataset.kind !== $("path-kind").value;
    });
    $("path-set-a").addEventListener("click", () => { state.pathEnds.a = state.code.slice(); showPathEnds(); });
    $("path-set-b").addEventListener("click", () => { state.pathEnds.b = state.code.slice(); showPathEnds(); });
    $("path-set-center").addEventListener("click", () => { state.pathEnds.center = state.code.slice(); showPathEnds(); });
    $("path-run").addEventListener("click", samplePath);
    $("path-n").max = String(state.limits.max_path_points);
  }

  function defaultPathEnds(run) {
    const codes = state.data.get(run.id).codes;
    const first = codes.map((c) => c[0]).sort((x, y) => x - y);
    const at = (q) => first[Math.min(first.length - 1, Math.floor(q * first.length))];
    state.pathEnds.a = run.code_median.slice();
    state.pathEnds.b = run.code_median.slice();
    state.pathEnds.a[0] = at(0.02);
    state.pathEnds.b[0] = at(0.98);
    state.pathEnds.center = run.code_median.slice();
    const spans = run.code_max.map((hi, i) => hi - run.code_min[i]);
    $("path-radius").value = fmt(0.3 * Math.min(...spans.slice(0, Math.max(2, Math.min(3, spans.length)))), 2);
  }

  // ---------- start ----------

  function fillAxisSelect(select, chosen, withAuto = false) {
    select.replaceChildren();
    if (withAuto) select.append(el("option", {value: "auto", text: "auto (rho)"}));
    for (let i = 0; i < dim(); i++) select.append(el("option", {value: String(i), text: `z${i}`}));
    select.value = String(chosen);
  }

  function describeRuns() {
    $("run-summary").replaceChildren(...state.runs.map((run) => {
      const fro = run.metrics.test_frobenius;
      const chip = el("span", {class: "run-chip"}, [el("b", {text: run.id}), ` ${run.kind.toUpperCase()} · D=${run.latent_dim}`]);
      if (fro && fro.median !== undefined) chip.append(` · test error median ${fmt(fro.median, 2)}`);
      chip.title = `oracle: ${run.oracle.source}; shape threshold ${fmt(run.oracle.threshold)}`;
      return chip;
    }));
    const run = scatterInfo();
    $("projection-note").textContent = run.projection.method === "pca"
      ? `first 3 principal components of the ${run.latent_dim}-D codes of ${run.id}`
      : `latent axes of ${run.id}`;
  }

  async function start() {
    const info = await api("/api/runs");
    state.runs = info.runs;
    state.limits = info.limits;
    state.scatterRun = state.runs[0].id;
    for (const run of state.runs) state.data.set(run.id, await loadCodes(run));
    const first = state.runs[0];
    state.colour = Math.max(0, first.colour_names.indexOf("rho"));
    $("scatter-run").replaceChildren(...state.runs.map((r) => el("option", {value: r.id, text: r.id})));
    $("colour-by").replaceChildren(...first.colour_names.map((name, j) => el("option", {value: String(j), text: name})),
      el("option", {value: String(first.colour_names.length), text: "test split"}));
    $("colour-by").value = String(state.colour);
    state.sliceAxes = [0, Math.min(1, dim() - 1)];
    fillAxisSelect($("slice-a"), state.sliceAxes[0]);
    fillAxisSelect($("slice-b"), state.sliceAxes[1]);
    fillAxisSelect($("path-axis-1"), 0);
    fillAxisSelect($("path-axis-2"), Math.min(2, dim() - 1));
    fillAxisSelect($("path-axis"), "auto", true);
    describeRuns();
    buildDecodedPanels();
    buildSliders();
    state.code = first.code_median.slice();
    syncSliders();
    defaultPathEnds(first);
    showPathEnds();
    wirePlane();
    wirePaths();
    $("reset-code").addEventListener("click", () => setCode(scatterInfo().code_median, null));
    $("encode-button").addEventListener("click", async () => {
      const index = Number($("encode-index").value);
      try {
        const answer = await api(runPath(state.scatterRun, "encode"), {index});
        setCode(answer.code, index);
      } catch (error) {
        status(`Encoding failed: ${error.message}`);
      }
    });
    $("colour-by").addEventListener("change", () => {
      state.colour = Number($("colour-by").value);
      const run = scatterInfo();
      Plotly.restyle("scatter", {"marker.color": [colourValues(run)], "marker.colorbar.title.text": colourName(run)}, [0]);
    });
    $("scatter-run").addEventListener("change", async () => {
      state.scatterRun = $("scatter-run").value;
      state.source = null;
      state.shading = null;
      describeRuns();
      await drawScatter();
      drawPlane();
    });
    await drawScatter();
    wireScatterEvents();
    drawPlane();
    window.addEventListener("resize", () => drawPlane());
    await runDecode();
    document.body.dataset.ready = "1";
  }

  window.atlasExplorer = {state, pickIndex, setCode};
  window.addEventListener("DOMContentLoaded", () => {
    start().catch((error) => status(`The explorer could not start: ${error.message}`));
  });
})();
