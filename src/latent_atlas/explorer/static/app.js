// latent-atlas explorer: plain JavaScript, no build step. Talks only to this app's /api endpoints.
"use strict";

(() => {
  const VIRIDIS = [68, 1, 84, 72, 24, 106, 71, 45, 123, 66, 64, 134, 59, 82, 139, 51, 99, 141, 44, 114, 142,
    38, 130, 142, 33, 145, 140, 31, 160, 136, 40, 174, 128, 63, 188, 115, 94, 201, 98, 132, 212, 75, 173, 220,
    48, 216, 226, 25, 253, 231, 37];
  const RUN_COLOURS = ["#3b528b", "#e07b00"];
  const FACTOR_COLOURS = {var_x: "#1f77b4", var_y: "#2ca02c", rho: "#9467bd", df: "#8c564b"};
  const VERDICT_COLOURS = {valid: "oracle: valid", shape_ok: "oracle: shape ok", in_range: "oracle: in range"};
  const PLANE_GRID = 20;
  const PLANE_MARGIN = 34;
  const ARROW_PIXELS = 56;
  const EXTRAPOLATING = 3;  // code spacings from the run's nearest code beyond which the alignment extrapolates
  const STEP_CAP_SPACINGS = 5;
  const CLICK_REPEAT_MS = 400;  // a second plotly_click on the same point within this is the same press

  const state = {
    notice: "",         // a note for the status line once the next decode is shown (e.g. a capped step)
    listing: [],        // every run found (/api/runs)
    limits: null,
    info: new Map(),    // run id -> full run info (loaded runs)
    data: new Map(),    // run id -> {codes, projected, colours, isTest}
    verdicts: new Map(),  // run id -> promise of {shape_ok, in_range, valid}
    run: null,          // the run whose codes the scatter, sliders and plane show
    other: null,        // the run compared with it through the alignment, or null
    alignment: null,    // the alignment of run -> other
    colour: "rho",      // a colour name of the run, "test", or a verdict key
    code: [],           // the current latent point of `run`
    source: null,       // dataset index the current code came from, or null
    sliceAxes: [0, 1],
    shading: null,      // validity grid of the slice plane
    path: null,         // last sampled path
    pathEnds: {a: null, b: null, center: null},
    clickTarget: "code",
    compass: null,
    hoverCache: new Map(),
    version: 0,
    compassVersion: 0,
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
  const listed = (id) => state.listing.find((r) => r.id === id);
  const info = () => state.info.get(state.run);
  const otherInfo = () => (state.other ? state.info.get(state.other) : null);
  const dim = () => info().latent_dim;

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
  const runPath = (id, rest = "") => `/api/runs/${encodeURIComponent(id)}${rest ? "/" + rest : ""}`;

  async function pages(id, endpoint, keys) {
    const parts = Object.fromEntries(keys.map((k) => [k, []]));
    let offset = 0;
    for (;;) {
      const page = await api(runPath(id, `${endpoint}?offset=${offset}&limit=${state.limits.max_page}`));
      for (const k of keys) parts[k].push(...page[k]);
      offset += page.count;
      if (page.count === 0 || offset >= page.total) break;
    }
    return parts;
  }

  async function loadRun(id) {
    if (!state.info.has(id)) state.info.set(id, await api(runPath(id)));
    return state.info.get(id);
  }

  async function loadCodes(id) {
    if (!state.data.has(id)) {
      const parts = await pages(id, "codes", ["codes", "projected", "colours", "is_test"]);
      state.data.set(id, {codes: parts.codes, projected: parts.projected, colours: parts.colours, isTest: parts.is_test});
    }
    return state.data.get(id);
  }

  function loadVerdicts(id) {
    if (!state.verdicts.has(id)) {
      const pending = pages(id, "verdicts", ["shape_ok", "in_range", "valid"]);
      pending.catch(() => state.verdicts.delete(id));
      state.verdicts.set(id, pending);
    }
    return state.verdicts.get(id);
  }

  // ---------- the page state in the URL ----------

  const numbers = (text, n) => {
    if (!text) return null;
    const pieces = text.split(",");
    if (pieces.some((piece) => piece.trim() === "")) return null;  // Number("") is 0, not a number the link gave
    const values = pieces.map(Number);
    return values.length === n && values.every(Number.isFinite) ? values : null;
  };
  const numberText = (values) => values.map((v) => Number(v.toPrecision(6))).join(",");

  function readHash() {
    return new URLSearchParams(window.location.hash.replace(/^#/, ""));
  }

  let hashTimer = null;
  function saveHash() {
    if (hashTimer !== null) return;
    hashTimer = setTimeout(() => {
      hashTimer = null;
      const p = new URLSearchParams();
      p.set("run", state.run);
      p.set("other", state.other || "none");
      p.set("code", numberText(state.code));
      if (state.source !== null) p.set("image", String(state.source));
      p.set("slice", state.sliceAxes.join(","));
      p.set("colour", state.colour);
      p.set("path", $("path-kind").value);
      p.set("n", $("path-n").value);
      for (const key of ["a", "b", "center"]) if (state.pathEnds[key]) p.set(key, numberText(state.pathEnds[key]));
      p.set("arc", [$("path-axis-1").value, $("path-axis-2").value, $("path-radius").value,
        $("path-start-angle").value, $("path-end-angle").value].join(","));
      p.set("iso", [$("path-tolerance").value, $("path-bins").value, $("path-axis").value].join(","));
      if (state.path) p.set("sampled", "1");
      p.set("step", $("compass-delta").value);
      window.history.replaceState(null, "", `#${p.toString()}`);
    }, 120);
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

  // ---------- exports (made in the page, nothing is written on the server) ----------

  function download(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = el("a", {href: url, download: name});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function canvasDownload(canvas, name) {
    canvas.toBlob((blob) => download(blob, name), "image/png");
  }

  // Sources (H x W canvases) scaled up by nearest neighbour onto one canvas: rows of images with a label above each,
  // a red frame round each image the row's `invalid` (one boolean per image) marks, and the rows' `captions` (one
  // string per image, e.g. the step) under the images.
  function composeRows(rows, scale) {
    const gap = 6, label = 16, caption = 14;
    const below = (r) => (r.captions ? caption : 0);
    const w = Math.max(...rows.map((r) => r.images.reduce((sum, c) => sum + c.width * scale + gap, gap)));
    const h = rows.reduce((sum, r) => sum + label + Math.max(...r.images.map((c) => c.height)) * scale + below(r) + gap, gap);
    const out = el("canvas", {width: String(w), height: String(h)});
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = false;
    ctx.font = "12px system-ui, sans-serif";
    let y = gap;
    for (const row of rows) {
      ctx.fillStyle = "#1d2330";
      ctx.fillText(row.label, gap, y + 12);
      y += label;
      let x = gap;
      const tallest = Math.max(...row.images.map((c) => c.height)) * scale;
      row.images.forEach((c, i) => {
        ctx.drawImage(c, x, y, c.width * scale, c.height * scale);
        if (row.invalid && row.invalid[i]) {
          ctx.strokeStyle = "#d62728";
          ctx.lineWidth = 3;
          ctx.strokeRect(x - 1.5, y - 1.5, c.width * scale + 3, c.height * scale + 3);
        }
        if (row.captions) {
          ctx.fillStyle = "#1d2330";
          ctx.fillText(row.captions[i], x, y + tallest + caption - 2);
        }
        x += c.width * scale + gap;
      });
      y += tallest + below(row) + gap;
    }
    return out;
  }

  function exportDecoded(k) {
    const canvas = $(`decoded-image${suffix(k)}`);
    const id = k === 0 ? state.run : state.other;
    const badge = $(`validity${suffix(k)}`);
    const verdict = badge.dataset.valid === "false" ? `not a valid heatmap (${badge.dataset.failure})` : badge.textContent;
    const what = k === 0 ? "decoded" : "decoded at the corresponding point";
    canvasDownload(composeRows([{label: `${id}: ${what}; ${verdict}`, images: [canvas],
      invalid: [badge.dataset.valid === "false"]}], 8), `decoded-${id}.png`);
  }

  function exportStrip() {
    if (!state.path) return;
    const rows = state.path.decoded.map((answer, k) => ({
      label: `${state.path.order[k]}: ${k === 0 ? `${state.path.kind} path, decoded along it`
        : "decoded at the corresponding points"} (red frame: not a valid heatmap)`,
      images: Array.from(document.querySelectorAll(`#path-strip${suffix(k)} canvas`)),
      invalid: answer.valid === null ? null : answer.valid.map((v) => !v),
      captions: answer.images.map((_, n) => String(n)),
    }));
    canvasDownload(composeRows(rows, 4), `path-${state.path.kind}.png`);
  }

  const csvCell = (v) => (v === null || v === undefined ? "" : typeof v === "number" ? String(v) : `"${String(v).replace(/"/g, '""')}"`);

  function pathCsv() {
    const {points, decoded, order, mapped, kind} = state.path;
    const head = ["step", ...points[0].map((_, i) => `${order[0]}:z${i}`)];
    if (mapped) head.push(...mapped.codes[0].map((_, i) => `${order[1]}:z${i}`), `${order[0]}:support`);
    decoded.forEach((answer, k) => {
      head.push(...answer.factor_names.map((name) => `${order[k]}:${name}`),
        ...["residual", "shape_residual", "shape_ok", "in_range", "valid"].map((name) => `${order[k]}:${name}`));
    });
    const lines = [head.map(csvCell).join(",")];
    points.forEach((point, n) => {
      const row = [n, ...point];
      if (mapped) row.push(...mapped.codes[n], mapped.support[n]);
      for (const answer of decoded) {
        row.push(...answer.factors[n], answer.residual[n], answer.shape_residual[n], answer.shape_ok[n] ? 1 : 0,
          answer.in_range[n] ? 1 : 0, answer.valid[n] ? 1 : 0);
      }
      lines.push(row.map(csvCell).join(","));
    });
    return {text: lines.join("\n") + "\n", name: `path-${kind}.csv`};
  }

  function exportCsv() {
    if (!state.path) return;
    const {text, name} = pathCsv();
    download(new Blob([text], {type: "text/csv"}), name);
  }

  // ---------- decoded panels ----------

  const suffix = (k) => (k === 0 ? "" : `-${k + 1}`);
  const panelRuns = () => (state.other ? [state.run, state.other] : [state.run]);

  function buildDecodedPanels() {
    const box = $("decoded-panels");
    box.replaceChildren();
    panelRuns().forEach((id, k) => {
      const run = state.info.get(id);
      const canvas = el("canvas", {id: `decoded-image${suffix(k)}`, class: "heatmap", width: "36", height: "36",
        "data-version": "0", "aria-label": `decoded image, ${id}`});
      const title = k === 0 ? "the current code" : "the corresponding point (through the alignment)";
      const exportButton = el("button", {type: "button", class: "small", id: `export-decoded${suffix(k)}`, text: "PNG"});
      exportButton.addEventListener("click", () => exportDecoded(k));
      const parts = [
        el("h3", {}, [`${id} `, el("span", {text: `${run.kind.toUpperCase()} · D=${run.latent_dim} · ${title}`})]),
        canvas,
        el("div", {class: "row"}, [el("span", {id: `validity${suffix(k)}`, class: "badge", text: "not decoded yet"}), exportButton]),
        el("div", {id: `recovered-factors${suffix(k)}`}),
      ];
      if (k === 1) parts.splice(1, 0, el("p", {id: "alignment-note", class: "alignment-note", text: "aligning…"}));
      box.append(el("div", {class: "decoded-panel"}, parts));
    });
  }

  function trueFactors() {
    if (state.source === null) return null;
    const run = info();
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
      (valid === false ? `: ${reasons[answer.failure[row]]}` : "") + `; oracle: ${state.info.get(answer.run).oracle.source}`;
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

  function alignmentText(alignment) {
    const s = alignment.score;
    return `${alignment.method} map fitted on ${alignment.n_train} shared training images; held out (${s.n} test images): ` +
      `R² ${fmt(s.r2, 4)}, median error ${fmt(s.median_error, 2)} code spacings (90 % within ${fmt(s.p90_error, 2)})`;
  }

  function showAlignment(alignment, support) {
    const note = $("alignment-note");
    if (!note) return;
    const far = support > EXTRAPOLATING;
    note.replaceChildren(
      el("span", {class: "alignment-score", text: alignmentText(alignment)}),
      el("br"),
      el("span", {class: far ? "alignment-far" : "muted",
        text: `this code is ${fmt(support, 2)} spacings from ${state.run}'s nearest code` +
          (far ? ": the map extrapolates here, trust it less" : "")}),
    );
    note.dataset.method = alignment.method;
    note.dataset.r2 = String(alignment.score.r2);
    note.dataset.medianError = String(alignment.score.median_error);
    note.dataset.support = String(support);
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
    const theirs = state.other ? api(runPath(state.run, "correspond"), {target: state.other, codes: [code]}) : null;
    if (theirs) theirs.catch(() => null);  // awaited below; its failure is shown in its own panel
    try {
      const answer = await api(runPath(state.run, "decode"), {codes: [code]});
      showDecoded(0, answer, 0);
      status(state.notice, false);  // a note on the move that led here, or nothing
      state.notice = "";
    } catch (error) {
      status(`Decoding failed: ${error.message}`);
    }
    if (theirs) {
      try {
        const other = await theirs;
        showDecoded(1, other.decoded, 0);
        state.alignment = other.alignment;
        showAlignment(other.alignment, other.support[0]);
      } catch (error) {
        const note = $("alignment-note");
        if (note) note.textContent = `No corresponding point: ${error.message}`;
      }
    }
    state.version += 1;
    $("decoded-image").dataset.version = String(state.version);
    decoder.busy = false;
    if (decoder.again) { decoder.again = false; runDecode(); return; }
    requestCompass();
  }

  // ---------- the factor compass ----------

  const compassRunner = {busy: false, again: false};
  function requestCompass() {
    if (compassRunner.busy) { compassRunner.again = true; return; }
    runCompass();
  }
  async function runCompass() {
    compassRunner.busy = true;
    const code = state.code.slice();
    try {
      state.compass = await api(runPath(state.run, "compass"), {code});
      showCompass();
      drawPlane();
      state.compassVersion += 1;
      $("compass-card").dataset.version = String(state.compassVersion);
    } catch (error) {
      status(`The compass failed: ${error.message}`);
    }
    compassRunner.busy = false;
    if (compassRunner.again) { compassRunner.again = false; runCompass(); }
  }

  const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

  function showCompass() {
    const c = state.compass;
    const note = $("compass-status");
    note.textContent = c.status === "ok" ? `every one of the ${c.shape_ok.length} decodes is a valid heatmap ` +
      `(finite-difference step ${fmt(c.step, 4)})` : c.message;
    note.className = `compass-status ${c.status}`;
    $("compass-card").dataset.status = c.status;
    const [a, b] = state.sliceAxes;
    const head = el("tr", {}, [el("th", {text: "factor"}), el("th", {text: "at code"}), el("th", {text: `∂/∂z${a}`}),
      el("th", {text: `∂/∂z${b}`}), el("th", {text: "|∇|"}), el("th", {text: "step"})]);
    const rows = c.units.map((unit, k) => {
      const g = c.gradient ? c.gradient[k] : null;
      const cells = [el("td", {}, [el("span", {class: "swatch", style: `background:${FACTOR_COLOURS[c.factor_names[k]] || "#333"}`}), unit]),
        el("td", {text: fmt(c.value[k])}), el("td", {text: g ? fmt(g[a]) : "–"}), el("td", {text: g ? fmt(g[b]) : "–"}),
        el("td", {text: g ? fmt(norm(g)) : "–"})];
      const minus = el("button", {type: "button", class: "small", "data-step": `${c.factor_names[k]}-`, text: "−"});
      const plus = el("button", {type: "button", class: "small", "data-step": `${c.factor_names[k]}+`, text: "+"});
      minus.disabled = plus.disabled = !g || norm(g) === 0;
      minus.title = `move the code so that ${unit} falls by the step`;
      plus.title = `move the code so that ${unit} rises by the step`;
      minus.addEventListener("click", () => stepAlong(k, -1));
      plus.addEventListener("click", () => stepAlong(k, +1));
      cells.push(el("td", {}, [minus, plus]));
      const tr = el("tr", {}, cells);
      if (g) tr.title = `gradient over z0..z${g.length - 1}: (${g.map((v) => fmt(v, 3)).join(", ")})`;
      return tr;
    });
    $("compass-table").replaceChildren(el("table", {class: "factors compass"}, [el("thead", {}, [head]), el("tbody", {}, rows)]));
  }

  // Move the code along factor k's gradient g by delta g / |g|^2: to first order the factor changes by delta.
  function stepAlong(k, sign) {
    const c = state.compass;
    if (!c || !c.gradient) return;
    const g = c.gradient[k];
    const g2 = g.reduce((s, x) => s + x * x, 0);
    if (!(g2 > 0)) return;
    const delta = sign * Math.abs(Number($("compass-delta").value) || 0.1);
    let move = g.map((x) => (delta * x) / g2);
    const cap = STEP_CAP_SPACINGS * info().code_spacing;
    const length = norm(move);
    if (length > cap) {
      move = move.map((x) => (x * cap) / length);
      state.notice = `Step capped at ${STEP_CAP_SPACINGS} code spacings: a change of ${fmt(Math.abs(delta))} in ` +
        `${c.units[k]} would need ${fmt(length / info().code_spacing, 1)} spacings at its gradient here ` +
        `(${fmt(Math.sqrt(g2), 3)} per code unit).`;
    }
    setCode(c.code.map((x, i) => x + move[i]), null);
  }

  // ---------- the current code: sliders ----------

  function buildSliders() {
    const box = $("sliders");
    box.replaceChildren();
    const run = info();
    for (let i = 0; i < dim(); i++) {
      const lo = run.code_min[i], hi = run.code_max[i];
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
    saveHash();
  }

  // ---------- the 3-D scatter ----------

  const project = (run, code) => run.projection.components.map(
    (row, r) => row.reduce((sum, c, j) => sum + c * code[j], run.projection.offset[r]));

  function colourOptions(run) {
    return [...run.colour_names.map((name) => [name, name]), ["test", "test split"],
      ...Object.entries(VERDICT_COLOURS)];
  }

  async function colourMarker(run) {
    const data = state.data.get(run.id);
    const j = run.colour_names.indexOf(state.colour);
    // A yes/no value: two blocks of colour, not a gradient, with "no" and "yes" at their middles.
    const twoColours = (no, yes) => [[0, no], [0.5, no], [0.5, yes], [1, yes]];
    const discrete = (values, title, no = "#c0392b", yes = "#1a7f4b") => ({
      color: values.map((v) => (v ? 1 : 0)), cmin: -0.5, cmax: 1.5, colorscale: twoColours(no, yes),
      colorbar: {title: {text: title}, thickness: 12, len: 0.6, tickvals: [0, 1], ticktext: ["no", "yes"]}});
    if (j >= 0) {
      return {color: data.colours.map((row) => row[j]), colorscale: "Viridis", cmin: null, cmax: null,
        colorbar: {title: {text: state.colour}, thickness: 12, len: 0.6}};
    }
    if (state.colour in VERDICT_COLOURS) {
      status(`Computing the oracle's verdict on the ${data.codes.length} reconstructions of ${run.id}…`, false);
      const verdicts = await loadVerdicts(run.id);
      const share = verdicts[state.colour].filter(Boolean).length / verdicts[state.colour].length;
      status(`${run.id}: ${(100 * share).toFixed(1)} % of the reconstructions pass "${VERDICT_COLOURS[state.colour]}".`, false);
      return discrete(verdicts[state.colour], VERDICT_COLOURS[state.colour]);
    }
    return discrete(data.isTest, "test split", "#9aa3b2", "#e07b00");
  }

  function endTraces(run) {
    const ends = Object.entries({A: state.pathEnds.a, B: state.pathEnds.b, C: state.pathEnds.center})
      .filter(([, code]) => code && code.length === run.latent_dim);
    const placed = ends.map(([, code]) => project(run, code));
    return {type: "scatter3d", mode: "markers+text", name: "path ends", hoverinfo: "skip",
      x: placed.map((p) => p[0]), y: placed.map((p) => p[1]), z: placed.map((p) => p[2]), text: ends.map(([k]) => k),
      textposition: "top center", marker: {size: 5, color: "#111827", symbol: "circle-open"}};
  }

  async function drawScatter() {
    const run = info();
    const data = state.data.get(run.id);
    const column = (c) => data.projected.map((p) => p[c]);
    const here = project(run, state.code);
    let marker;
    try {
      marker = await colourMarker(run);
    } catch (error) {
      status(`Colouring by ${state.colour} failed: ${error.message}`);
      state.colour = run.colour_names.includes("rho") ? "rho" : run.colour_names[0];
      $("colour-by").value = state.colour;
      marker = await colourMarker(run);
    }
    if (info().id !== run.id) return;  // another run was chosen while the colours loaded: its draw shows it
    const points = {
      type: "scatter3d", mode: "markers", name: "codes",
      x: column(0), y: column(1), z: column(2),
      text: data.projected.map((_, i) => `image #${i}`),
      hoverinfo: "text",
      marker: {size: 2.2, opacity: 0.75, ...marker},
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
    return Plotly.react("scatter", [points, current, path, endTraces(run)], layout, {displaylogo: false, responsive: true});
  }

  let overlayQueued = false;
  function scheduleOverlays() {
    if (overlayQueued) return;
    overlayQueued = true;
    requestAnimationFrame(() => {
      overlayQueued = false;
      const run = info();
      const here = project(run, state.code);
      Plotly.restyle("scatter", {x: [[here[0]]], y: [[here[1]]], z: [[here[2]]]}, [1]);
      drawPlane();
    });
  }

  function setEnd(key, code, what) {
    state.pathEnds[key] = code.slice();
    showPathEnds();
    const run = info();
    const ends = endTraces(run);
    Plotly.restyle("scatter", {x: [ends.x], y: [ends.y], z: [ends.z], text: [ends.text]}, [3]);
    drawPlane();
    status(`${key === "center" ? "Centre" : key.toUpperCase()} set to ${what}.`, false);
    setClickTarget("code");
    saveHash();
  }

  function pickIndex(index) {
    const run = info();
    const data = state.data.get(run.id);
    if (!(index >= 0 && index < data.codes.length)) return;
    if (state.clickTarget !== "code") setEnd(state.clickTarget, data.codes[index], `the code of image #${index}`);
    else setCode(data.codes[index], index);
  }

  async function showHover(index) {
    const run = info();
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
    // Plotly's 3-D scene emits the click from its render loop while the button is still down, and every render
    // until the button is up emits it again: a restyle made inside the handler renders, so it would recurse (a
    // stack overflow), and one made later would see a second click (after "set A", one that moves the code).
    // So the handler acts after Plotly's dispatch, once per press of a point.
    let lastClick = {index: -1, time: 0};
    gd.on("plotly_click", (event) => {
      const point = event && event.points && event.points[0];
      if (!point || point.curveNumber !== 0) return;
      const index = point.pointNumber, now = performance.now();
      if (index === lastClick.index && now - lastClick.time < CLICK_REPEAT_MS) return;
      lastClick = {index, time: now};
      setTimeout(() => pickIndex(index), 0);
    });
    gd.on("plotly_hover", (event) => {
      const point = event && event.points && event.points[0];
      if (point && point.curveNumber === 0) showHover(point.pointNumber);
    });
  }

  // ---------- the slice plane ----------

  function planeRanges() {
    const [a, b] = state.sliceAxes;
    const run = info();
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
      scale: [inner / (x1 - x0), inner / (y1 - y0)],
      ranges: [[x0, x1], [y0, y1]],
    };
  }

  function sameOthers(shading) {
    const [a, b] = state.sliceAxes;
    return shading.axes[0] === a && shading.axes[1] === b && shading.run === state.run &&
      state.code.every((v, i) => i === a || i === b || Math.abs(v - shading.code[i]) < 1e-9);
  }

  function arrow(ctx, x0, y0, x1, y1, colour) {
    const angle = Math.atan2(y1 - y0, x1 - x0);
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = 2.2;
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x1 - 8 * Math.cos(angle - 0.4), y1 - 8 * Math.sin(angle - 0.4));
    ctx.lineTo(x1 - 8 * Math.cos(angle + 0.4), y1 - 8 * Math.sin(angle + 0.4));
    ctx.closePath(); ctx.fill();
  }

  const LABEL_HEIGHT = 12;
  const LABEL_SHIFTS = [0, 13, -13, 26, -26, 39, -39];  // pixels sideways, tried in turn
  const overlaps = (p, q) => p.x < q.x + q.w && q.x < p.x + p.w && p.y < q.y + q.h && q.y < p.y + p.h;

  // Where each arrow's label goes: just beyond its tip, moved sideways (across the arrow, to either side in
  // turn) while its box would overlap a label already placed, so that arrows pointing alike stay readable.
  // arrows: [{x, y, angle, width}] (tip, direction, the label's width in pixels) -> [{x, y, w, h, cx, cy}].
  function placeLabels(arrows) {
    const placed = [];
    for (const {x, y, angle, width} of arrows) {
      const ux = Math.cos(angle), uy = Math.sin(angle);
      let box = null;
      for (const shift of LABEL_SHIFTS) {
        const cx = x + 10 * ux - uy * shift, cy = y + 10 * uy + 4 + ux * shift;
        box = {x: cx - width / 2, y: cy - LABEL_HEIGHT + 2, w: width, h: LABEL_HEIGHT, cx, cy};
        if (!placed.some((p) => overlaps(p, box))) break;
      }
      placed.push(box);
    }
    return placed;
  }

  // The compass in the plane: each factor's gradient direction (as a displacement of the code along the two
  // plane axes); the arrow's length is the share of the gradient's norm that lies in this plane.
  function drawCompass(ctx, g, cx, cy) {
    const c = state.compass;
    const canvas = $("slice-plane");
    canvas.dataset.arrows = "0";
    canvas.dataset.labels = "[]";
    if (!c || !c.gradient || c.code.length !== state.code.length ||
        c.code.some((v, i) => Math.abs(v - state.code[i]) > 1e-9)) return;
    const [a, b] = state.sliceAxes;
    const arrows = [];
    c.gradient.forEach((grad, k) => {
      const full = norm(grad);
      const inPlane = Math.hypot(grad[a], a === b ? 0 : grad[b]);
      if (!(full > 0) || !(inPlane > 0)) return;
      const dx = grad[a] * g.scale[0], dy = -(a === b ? 0 : grad[b]) * g.scale[1];
      const length = ARROW_PIXELS * (inPlane / full);
      const d = Math.hypot(dx, dy);
      arrows.push({x: cx + (dx / d) * length, y: cy + (dy / d) * length, angle: Math.atan2(dy, dx),
        label: c.factor_names[k], colour: FACTOR_COLOURS[c.factor_names[k]] || "#333"});
    });
    ctx.font = "bold 11px system-ui, sans-serif";
    ctx.textAlign = "center";
    const labels = placeLabels(arrows.map((r) => ({...r, width: ctx.measureText(r.label).width})));
    arrows.forEach((r, i) => {
      arrow(ctx, cx, cy, r.x, r.y, r.colour);
      ctx.fillText(r.label, labels[i].cx, labels[i].cy);
    });
    canvas.dataset.arrows = String(arrows.length);
    canvas.dataset.labels = JSON.stringify(labels);
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
    const data = state.data.get(state.run);
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
    ctx.font = "bold 11px system-ui, sans-serif";
    ctx.textAlign = "center";
    for (const [label, code] of [["A", state.pathEnds.a], ["B", state.pathEnds.b], ["C", state.pathEnds.center]]) {
      if (!code || code.length !== state.code.length) continue;
      const [px, py] = g.toPixel(code[a], code[b]);
      ctx.strokeStyle = "#111827"; ctx.lineWidth = 1.2;
      ctx.beginPath(); ctx.arc(px, py, 4, 0, 2 * Math.PI); ctx.stroke();
      ctx.fillStyle = "#111827"; ctx.fillText(label, px, py - 7);
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
    drawCompass(ctx, g, cx, cy);
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
    const codeAt = (event) => {
      const g = planeGeometry(canvas);
      const box = canvas.getBoundingClientRect();
      const [x, y] = g.toData(event.clientX - box.left, event.clientY - box.top);
      const [a, b] = state.sliceAxes;
      const code = state.code.slice();
      code[a] = x;
      code[b] = y;
      return code;
    };
    canvas.addEventListener("pointerdown", (event) => {
      if (state.clickTarget !== "code") {
        setEnd(state.clickTarget, codeAt(event), "a point of the slice plane");
        return;
      }
      dragging = true;
      canvas.setPointerCapture(event.pointerId);
      setCode(codeAt(event), null);
    });
    canvas.addEventListener("pointermove", (event) => { if (dragging) setCode(codeAt(event), null); });
    const stop = () => { dragging = false; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    for (const id of ["slice-a", "slice-b"]) {
      $(id).addEventListener("change", () => {
        state.sliceAxes = [Number($("slice-a").value), Number($("slice-b").value)];
        state.shading = null;
        if (state.compass) showCompass();
        drawPlane();
        saveHash();
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
      const answer = await decodeAll(state.run, codes);
      const valid = answer.valid === null ? answer.residual.map(() => null) : answer.valid;
      state.shading = {axes: [a, b], run: state.run, code: state.code.slice(), grid, valid};
      const share = valid.filter((v) => v).length / valid.length;
      status(`${state.run}: ${(100 * share).toFixed(0)} % of this plane decodes to valid heatmaps.`, false);
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

  function setClickTarget(value) {
    state.clickTarget = value;
    for (const input of document.querySelectorAll("input[name='click-target']")) input.checked = input.value === value;
    $("slice-plane").dataset.clickTarget = value;
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

  const DECODE_KEYS = ["images", "factors", "residual", "shape_residual", "shape_ok", "in_range", "failure"];

  function mergeDecoded(parts) {
    const merged = {...parts[0]};
    for (const key of DECODE_KEYS) merged[key] = parts.flatMap((p) => p[key]);
    merged.valid = parts[0].valid === null ? null : parts.flatMap((p) => p.valid);
    return merged;
  }

  async function decodeAll(runId, points) {
    const parts = [];
    for (let start = 0; start < points.length; start += state.limits.max_batch) {
      parts.push(await api(runPath(runId, "decode"), {codes: points.slice(start, start + state.limits.max_batch)}));
    }
    return mergeDecoded(parts);
  }

  async function correspondAll(points) {
    const parts = [];
    for (let start = 0; start < points.length; start += state.limits.max_batch) {
      parts.push(await api(runPath(state.run, "correspond"),
        {target: state.other, codes: points.slice(start, start + state.limits.max_batch)}));
    }
    return {codes: parts.flatMap((p) => p.codes), support: parts.flatMap((p) => p.support),
      decoded: mergeDecoded(parts.map((p) => p.decoded)), alignment: parts[0].alignment};
  }

  async function samplePath() {
    const button = $("path-run");
    button.disabled = true;
    try {
      const answer = await api(runPath(state.run, "paths"), pathRequest());
      const decoded = [answer.decoded];
      let mapped = null;
      if (state.other) {
        mapped = await correspondAll(answer.points);
        decoded.push(mapped.decoded);
      }
      state.path = {kind: answer.kind, points: answer.points, decoded, mapped, order: panelRuns()};
      $("path-description").textContent = answer.description +
        (mapped ? ` ${state.other} decodes the corresponding points (${alignmentText(mapped.alignment)}).` : "");
      drawStrips();
      drawPathChart();
      drawScatter();
      drawPlane();
      $("export-strip").disabled = false;
      $("export-csv").disabled = false;
      saveHash();
      status("");
    } catch (error) {
      clearPath();  // not the previous path's strips and chart under a request that failed
      status(`Path failed: ${error.message}`);
    }
    button.disabled = false;
  }

  function clearPath() {
    state.path = null;
    $("path-strips").replaceChildren();
    $("path-factors").classList.remove("filled");
    Plotly.purge("path-factors");
    $("path-description").textContent = "";
    $("export-strip").disabled = true;
    $("export-csv").disabled = true;
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
      const what = k === 0 ? "decoded along the path" : "decoded at the corresponding points";
      box.append(el("div", {class: "strip-label", text: `${state.path.order[k]}: ${what} (red frame: not a valid heatmap; click to decode)`}), strip);
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
          showlegend: false, legendgroup: state.path.order[k],
        });
      });
      // the legend's entry: the run's line and a plain marker (a trace's own first marker may be an invalid "x")
      traces.push({type: "scatter", mode: "lines+markers", name: state.path.order[k], x: [null], y: [null],
        xaxis: "x", yaxis: "y", line: {color: RUN_COLOURS[k], dash: k === 0 ? "solid" : "dash"},
        marker: {size: 7, color: RUN_COLOURS[k], symbol: "circle"}, legendgroup: state.path.order[k], hoverinfo: "skip"});
    });
    const layout = {
      grid: {rows: names.length, columns: 1, shared_xaxes: true, roworder: "top to bottom"},
      margin: {l: 60, r: 10, t: 10, b: 30}, height: 80 + 75 * names.length,
      legend: {orientation: "h", y: -0.12},
      xaxis: {title: {text: "step along the path"}, dtick: 1},
    };
    // df spans decades (2 and 200 in the data, up to 10^4 fitted): a log axis keeps the data's range readable
    names.forEach((name, j) => {
      layout[`yaxis${j === 0 ? "" : j + 1}`] = {title: {text: name}, zeroline: false, type: name === "df" ? "log" : "linear"};
    });
    const box = $("path-factors");
    box.classList.add("filled");
    box.style.height = `${layout.height}px`;
    Plotly.react(box, traces, layout, {displaylogo: false, responsive: true});
  }

  function wirePaths() {
    $("path-kind").addEventListener("change", () => { showPathKind(); saveHash(); });
    $("path-set-a").addEventListener("click", () => setEnd("a", state.code, "the current code"));
    $("path-set-b").addEventListener("click", () => setEnd("b", state.code, "the current code"));
    $("path-set-center").addEventListener("click", () => setEnd("center", state.code, "the current code"));
    $("path-run").addEventListener("click", samplePath);
    $("export-strip").addEventListener("click", exportStrip);
    $("export-csv").addEventListener("click", exportCsv);
    for (const input of document.querySelectorAll("input[name='click-target']")) {
      input.addEventListener("change", () => setClickTarget(input.value));
    }
    for (const id of ["path-n", "path-axis-1", "path-axis-2", "path-radius", "path-start-angle", "path-end-angle",
      "path-tolerance", "path-bins", "path-axis", "compass-delta"]) {
      $(id).addEventListener("change", saveHash);
    }
  }

  function showPathKind() {
    for (const section of document.querySelectorAll(".path-params")) section.hidden = section.dataset.kind !== $("path-kind").value;
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

  // ---------- runs ----------

  function fillAxisSelect(select, chosen, withAuto = false) {
    select.replaceChildren();
    if (withAuto) select.append(el("option", {value: "auto", text: "auto (rho)"}));
    for (let i = 0; i < dim(); i++) select.append(el("option", {value: String(i), text: `z${i}`}));
    select.value = String(chosen);
  }

  const runLabel = (r) => `${r.id} · ${r.dataset_kind} ${r.kind.toUpperCase()} D=${r.latent_dim} s${r.seed}` +
    (r.kind === "vae" && r.beta !== 1 ? ` β=${r.beta}` : "") + (r.ready ? "" : " (not trained yet)");

  function fillRunSelects() {
    $("run-a").replaceChildren(...state.listing.map((r) => el("option", {value: r.id, text: runLabel(r)})));
    $("run-a").value = state.run;
    const mine = listed(state.run);
    const choices = state.listing.filter((r) => r.id !== state.run && r.dataset_hash === mine.dataset_hash);
    $("run-b").replaceChildren(el("option", {value: "none", text: "nothing"}),
      ...choices.map((r) => el("option", {value: r.id, text: runLabel(r)})));
    $("run-b").value = state.other || "none";
  }

  function showRunsTable() {
    const head = el("tr", {}, ["run", "folder", "dataset", "model", "seed", "β", "D", "test error (median)", "", ""]
      .map((text) => el("th", {text})));
    const rows = state.listing.map((r) => {
      const fro = r.metrics.test_frobenius;
      const asRun = el("button", {type: "button", class: "small", text: "show", "data-run": r.id});
      const asOther = el("button", {type: "button", class: "small", text: "compare", "data-compare": r.id});
      asRun.disabled = !r.ready || r.id === state.run;
      asOther.disabled = !r.ready || r.id === state.run || r.id === state.other ||
        r.dataset_hash !== listed(state.run).dataset_hash;
      if (r.dataset_hash !== listed(state.run).dataset_hash) asOther.title = "trained on other data: no shared images to align through";
      asRun.addEventListener("click", () => {
        const keep = state.other && state.other !== r.id && listed(state.other).dataset_hash === r.dataset_hash;
        chooseRuns(r.id, keep ? state.other : null).catch((error) => status(`Could not show ${r.id}: ${error.message}`));
      });
      asOther.addEventListener("click", () => {
        chooseRuns(state.run, r.id).catch((error) => status(`Could not compare with ${r.id}: ${error.message}`));
      });
      const tr = el("tr", {"data-run": r.id}, [el("td", {text: r.id}), el("td", {class: "muted", text: r.collection || "(named)"}),
        el("td", {text: r.dataset_kind}), el("td", {text: r.kind.toUpperCase()}), el("td", {text: String(r.seed)}),
        el("td", {text: r.kind === "vae" ? String(r.beta) : "–"}), el("td", {text: String(r.latent_dim)}),
        el("td", {text: fro && fro.median !== undefined ? fmt(fro.median, 3) : "–"}), el("td", {}, [asRun]), el("td", {}, [asOther])]);
      if (r.id === state.run) tr.classList.add("shown");
      if (r.id === state.other) tr.classList.add("compared");
      if (!r.ready) tr.classList.add("unready");
      return tr;
    });
    $("runs-table").replaceChildren(el("table", {class: "runs"}, [el("thead", {}, [head]), el("tbody", {}, rows)]));
    $("runs-note").textContent = `${state.listing.length} run${state.listing.length === 1 ? "" : "s"} found; each is loaded when first shown`;
  }

  function describeRun() {
    const run = info();
    $("projection-note").textContent = run.projection.method === "pca"
      ? `first 3 principal components of the ${run.latent_dim}-D codes of ${run.id}`
      : `latent axes of ${run.id}`;
  }

  // Show `runId` (and compare it with `otherId`); `restore` holds the state read from the URL, if any, and
  // `notice` a message to leave on the status line once shown. Only the latest call shows anything: one that a
  // newer call overtook while it was loading stops there, so quick picks cannot leave a mix of two runs.
  let chooseTicket = 0;
  async function chooseRuns(runId, otherId, restore = null, notice = "") {
    const ticket = ++chooseTicket;
    const overtaken = () => ticket !== chooseTicket;
    status(`Loading ${[runId, otherId].filter(Boolean).join(" and ")}…`, false);
    const run = await loadRun(runId);
    await loadCodes(runId);
    if (otherId) await loadRun(otherId);
    if (overtaken()) return;
    const runChanged = runId !== state.run;
    state.run = runId;
    state.other = otherId;
    state.alignment = null;
    if (runChanged) {
      state.source = null;
      state.shading = null;
      state.compass = null;
      clearPath();
      const names = run.colour_names;
      if (!names.includes(state.colour) && !(state.colour in VERDICT_COLOURS) && state.colour !== "test") {
        state.colour = names.includes("rho") ? "rho" : names[0];
      }
      $("colour-by").replaceChildren(...colourOptions(run).map(([value, text]) => el("option", {value, text})));
      $("colour-by").value = state.colour;
      state.sliceAxes = [0, Math.min(1, run.latent_dim - 1)];
      state.code = run.code_median.slice();
      defaultPathEnds(run);
      const ignored = restore ? applyRestore(restore, run) : [];
      if (ignored.length) notice = `${notice} The link's ${ignored.join(", ")} could not be used.`.trim();
      fillAxisSelect($("slice-a"), state.sliceAxes[0]);
      fillAxisSelect($("slice-b"), state.sliceAxes[1]);
      fillAxisSelect($("path-axis-1"), restore && restore.arc ? restore.arc[0] : 0);
      fillAxisSelect($("path-axis-2"), restore && restore.arc ? restore.arc[1] : Math.min(2, run.latent_dim - 1));
      fillAxisSelect($("path-axis"), restore && restore.isoAxis !== undefined ? restore.isoAxis : "auto", true);
      buildSliders();
      syncSliders();
      showPathEnds();
      describeRun();
      await drawScatter();
      if (overtaken()) return;
    } else if (state.path) {
      clearPath();
    }
    fillRunSelects();
    showRunsTable();
    buildDecodedPanels();
    drawPlane();
    saveHash();
    status("");
    await runDecode();
    if (notice && !overtaken()) status(notice);
  }

  // Applies what the link says; returns the names of the link's entries it could not use.
  function applyRestore(restore, run) {
    const d = run.latent_dim;
    const ignored = [];
    const code = numbers(restore.get("code"), d);
    if (code) state.code = code;
    else if (restore.has("code")) ignored.push(`code (${d} numbers expected)`);
    const image = Number(restore.get("image"));
    if (restore.has("image") && restore.get("image") !== "" && Number.isInteger(image) && image >= 0 && image < run.n_codes) {
      // the image's code is what the link's code should be (to the 6 digits links keep); else it is not its source
      const own = state.data.get(run.id).codes[image];
      if (!code || own.every((v, i) => Math.abs(v - code[i]) <= 1e-5 * Math.max(1, Math.abs(v)))) {
        state.source = image;
        if (!code) state.code = own.slice();
      }
      else ignored.push(`image (#${image}'s code is not the link's code)`);
    } else if (restore.has("image")) ignored.push(`image (an index in 0..${run.n_codes - 1} expected)`);
    const axes = numbers(restore.get("slice"), 2);
    if (axes && axes[0] !== axes[1] && axes.every((v) => Number.isInteger(v) && v >= 0 && v < d)) state.sliceAxes = axes;
    else if (restore.has("slice")) ignored.push(`slice (two different axes in 0..${d - 1} expected)`);
    for (const key of ["a", "b", "center"]) {
      const end = numbers(restore.get(key), d);
      if (end) state.pathEnds[key] = end;
      else if (restore.has(key)) ignored.push(`${key} (${d} numbers expected)`);
    }
    const kind = restore.get("path");
    if (["line", "angular", "isovariance"].includes(kind)) $("path-kind").value = kind;
    showPathKind();
    const n = Number(restore.get("n"));
    if (Number.isInteger(n) && n >= 2 && n <= state.limits.max_path_points) $("path-n").value = String(n);
    const arc = (restore.get("arc") || "").split(",");
    if (arc.length === 5 && arc.every((v) => v !== "" && Number.isFinite(Number(v)))) {
      const [i, j] = arc.slice(0, 2).map(Number);
      if (Number.isInteger(i) && Number.isInteger(j) && i >= 0 && j >= 0 && i < d && j < d) restore.arc = [i, j];
      $("path-radius").value = arc[2];
      $("path-start-angle").value = arc[3];
      $("path-end-angle").value = arc[4];
    }
    const iso = (restore.get("iso") || "").split(",");
    if (iso.length === 3) {
      if (Number(iso[0]) > 0) $("path-tolerance").value = iso[0];
      if (Number.isInteger(Number(iso[1])) && Number(iso[1]) >= 2) $("path-bins").value = iso[1];
      const axis = Number(iso[2]);
      restore.isoAxis = iso[2] === "auto" || !(Number.isInteger(axis) && axis >= 0 && axis < d) ? "auto" : axis;
    }
    const step = Number(restore.get("step"));
    if (step > 0) $("compass-delta").value = String(step);
    return ignored;
  }

  async function start() {
    const answer = await api("/api/runs");
    state.listing = answer.runs;
    state.limits = answer.limits;
    $("path-n").max = String(state.limits.max_path_points);
    const restore = readHash();
    const known = (id) => state.listing.some((r) => r.id === id && r.ready);
    let runId = answer.default.a, otherId = answer.default.b, notice = "";
    if (restore.has("run")) {
      if (known(restore.get("run"))) {
        runId = restore.get("run");
        const other = restore.get("other");
        const sameData = (id) => listed(id).dataset_hash === listed(runId).dataset_hash;
        otherId = other && other !== "none" && known(other) && other !== runId && sameData(other) ? other : null;
        if (other && other !== "none" && !otherId) {
          notice = `The link compares with ${other}, which ${!known(other) ? "this explorer does not serve"
            : other === runId ? "is the run itself" : "was trained on other data"}; comparing with none.`;
        }
      } else {
        notice = `The link names run ${restore.get("run")}, which this explorer does not serve; showing ${runId}.`;
      }
    }
    const colour = restore.get("colour");
    if (colour) state.colour = colour;
    wirePlane();
    wirePaths();
    $("reset-code").addEventListener("click", () => setCode(info().code_median, null));
    $("encode-button").addEventListener("click", async () => {
      const typed = $("encode-index").value.trim();
      const index = Number(typed);
      if (typed === "" || !Number.isInteger(index)) {
        status("Type an image index (a whole number) to encode.");
        return;
      }
      try {
        const found = await api(runPath(state.run, "encode"), {index});
        setCode(found.code, index);
      } catch (error) {
        status(`Encoding failed: ${error.message}`);
      }
    });
    $("colour-by").addEventListener("change", async () => {
      state.colour = $("colour-by").value;
      saveHash();
      await drawScatter();
      $("scatter").dataset.colour = state.colour;
    });
    $("run-a").addEventListener("change", () => {
      const id = $("run-a").value;
      const keep = state.other && state.other !== id && listed(state.other).dataset_hash === listed(id).dataset_hash;
      chooseRuns(id, keep ? state.other : null).catch((error) => status(`Could not show ${id}: ${error.message}`));
    });
    $("run-b").addEventListener("change", () => {
      const id = $("run-b").value;
      chooseRuns(state.run, id === "none" ? null : id).catch((error) => status(`Could not compare with ${id}: ${error.message}`));
    });
    await chooseRuns(runId, otherId, restore, notice);
    wireScatterEvents();
    window.addEventListener("resize", () => drawPlane());
    if (restore.get("sampled") === "1") await samplePath();
    $("scatter").dataset.colour = state.colour;
    document.body.dataset.ready = "1";
  }

  window.atlasExplorer = {state, pickIndex, setCode, pathCsv, placeLabels};
  window.addEventListener("DOMContentLoaded", () => {
    start().catch((error) => status(`The explorer could not start: ${error.message}`));
  });
})();
