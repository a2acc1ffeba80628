/* ewspipe dashboard: vanilla JS and SVG, no third-party code, no network beyond this origin.
 * Reads /dashboard/data/... (see ewspipe/api/dashboard.py) and draws the release status, the
 * forecast map (PRIO-GRID cells from their ids; countries from their cells), one unit's
 * history with its forecast and interval, evaluation by step and the alerts grouped by kind.
 * The map zooms and pans by its SVG viewBox; the chosen view lives in the page's query string
 * (history.replaceState), so a copied address reopens it; "Download CSV" writes the map's
 * values client-side (a Blob), nothing is sent anywhere. */
"use strict";

(() => {
  const SVGNS = "http://www.w3.org/2000/svg";
  const NCOLS = 720;
  const CELL = 0.5;
  const BREAKS = [0.1, 1, 3, 10, 30, 100, 300, 1000];
  const COLOURS = ["#f2efe9", "#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c",
    "#fc4e2a", "#e31a1c", "#b10026"];
  const PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
    "#000000", "#8c6d1f"];

  const $ = (id) => document.getElementById(id);
  const state = {
    overview: null, env: null, level: "cm", model: null, run: null, step: 1,
    unit: null, geometry: null, map: null, evaluation: null,
    mapSeq: 0, unitSeq: 0, // only the newest request of each kind may draw
    view: null, // {level, home: [x, y, w, h], box: [x, y, w, h]}: the map's zoom and pan
  };
  const URL_KEYS = ["env", "level", "model", "run", "step", "unit"];
  const ZOOM_STEP = 1.5;
  const MAX_ZOOM = 40;

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    return node;
  }

  function monthLabel(m) {
    const y = 1980 + Math.floor((m - 1) / 12);
    const mo = ((m - 1) % 12) + 1;
    return `${y}-${String(mo).padStart(2, "0")}`;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a >= 100) return Math.round(v).toLocaleString("en");
    if (a >= 1) return v.toFixed(1);
    if (a === 0) return "0";
    return v.toPrecision(2);
  }

  function setStatus(id, text, isError) {
    const node = $(id);
    node.textContent = text || "";
    node.classList.toggle("error", Boolean(isError));
    node.setAttribute("role", isError ? "alert" : "status");
  }

  function codeText(node, text) {
    // renders `command` spans of a hint as <code>
    node.textContent = "";
    String(text).split("`").forEach((part, i) => {
      node.append(i % 2 ? el("code", {}, part) : document.createTextNode(part));
    });
    return node;
  }

  async function getJSON(path, params) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== null && v !== undefined && v !== "") query.set(k, v);
    }
    const url = query.toString() ? `${path}?${query}` : path;
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      let detail = body && body.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
      throw new Error(detail || `${url}: HTTP ${response.status}`);
    }
    return body;
  }

  function colour(v) {
    if (v === null || v === undefined) return "#c9ced6";
    let i = 0;
    while (i < BREAKS.length && v >= BREAKS[i]) i += 1;
    return COLOURS[i];
  }

  function unitName(level, id) {
    // the map payload's labels name the units ("Ukraine (UKR)", "cell 202022 (Ukraine)")
    const labels = state.map && state.map.level === level ? state.map.labels : null;
    if (labels && labels[String(id)]) return labels[String(id)];
    return level === "cm" ? `Country ${id}` : `Cell ${id}`;
  }

  function cellBox(gid) {
    const row = Math.floor((gid - 1) / NCOLS);
    const col = (gid - 1) % NCOLS;
    return { lon: -180 + CELL * col, lat: -90 + CELL * row };
  }

  // ------------------------------------------------------------------ charts
  function niceTicks(max, count) {
    if (max <= 0) return [0];
    const raw = max / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let t = 0; t <= max + step * 1e-9; t += step) ticks.push(+t.toPrecision(6));
    return ticks;
  }

  /** A chart frame: axes, grid and scales. opts: {xmin, xmax, ymin, ymax, log, xticks,
   * xfmt, ylabel, title}. Returns {root, plot, X, Y}. */
  function chartFrame(container, opts) {
    container.textContent = "";
    const W = Math.max(container.clientWidth || 640, 320);
    const H = 300;
    const m = { l: 58, r: 16, t: 12, b: 38 };
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": opts.title });
    root.append(Object.assign(svg("title"), { textContent: opts.title }));
    const tf = opts.log ? (v) => Math.log10(1 + Math.max(0, v)) : (v) => v;
    const y0 = tf(opts.ymin || 0);
    const y1 = Math.max(tf(opts.ymax), y0 + 1e-9);
    const X = (x) => m.l + ((x - opts.xmin) / Math.max(opts.xmax - opts.xmin, 1e-9))
      * (W - m.l - m.r);
    const Y = (y) => H - m.b - ((tf(y) - y0) / (y1 - y0)) * (H - m.t - m.b);
    const grid = svg("g", { class: "grid" });
    const yaxis = svg("g", { class: "axis y" });
    const xaxis = svg("g", { class: "axis x" });
    let yticks;
    if (opts.log) {
      yticks = [0];
      for (let t = 1; tf(t) <= y1 + 1e-9; t *= 10) yticks.push(t);
    } else {
      yticks = niceTicks(opts.ymax, 5).filter((t) => t >= (opts.ymin || 0));
    }
    for (const t of yticks) {
      grid.append(svg("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t) }));
      const label = svg("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end" });
      label.textContent = Number.isInteger(t) ? t.toLocaleString("en") : fmt(t);
      yaxis.append(label);
    }
    yaxis.append(svg("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }));
    xaxis.append(svg("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
    for (const t of opts.xticks) {
      xaxis.append(svg("line", { x1: X(t), x2: X(t), y1: H - m.b, y2: H - m.b + 4 }));
      const label = svg("text", { x: X(t), y: H - m.b + 16, "text-anchor": "middle" });
      label.textContent = opts.xfmt ? opts.xfmt(t) : String(t);
      xaxis.append(label);
    }
    const ylab = svg("text", { class: "label", x: 12, y: m.t + (H - m.t - m.b) / 2,
      transform: `rotate(-90 12 ${m.t + (H - m.t - m.b) / 2})`, "text-anchor": "middle" });
    ylab.textContent = opts.ylabel;
    const xlab = svg("text", { class: "label", x: m.l + (W - m.l - m.r) / 2, y: H - 4,
      "text-anchor": "middle" });
    xlab.textContent = opts.xlabel || "";
    const plot = svg("g", { class: "plot" });
    root.append(grid, yaxis, xaxis, ylab, xlab, plot);
    container.append(root);
    return { root, plot, X, Y, H, m };
  }

  function linePath(points, X, Y) {
    return points.map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`)
      .join("");
  }

  function legendKey(container, kind, colourValue, text, extraClass) {
    const key = el("span", { class: "key" });
    const mark = el("span", { class: `${kind}${extraClass ? ` ${extraClass}` : ""}` });
    if (kind === "line") mark.style.color = colourValue;
    else mark.style.background = colourValue;
    key.append(mark, document.createTextNode(text));
    container.append(key);
  }

  // ------------------------------------------------------------------ release
  function fact(dl, term, value) {
    dl.append(el("dt", {}, term));
    const dd = el("dd");
    if (value instanceof Node) dd.append(value); else codeText(dd, value);
    dl.append(dd);
  }

  function pill(text, cls) {
    return el("span", { class: `pill ${cls || text}` }, text);
  }

  async function loadRelease() {
    const body = $("release-body");
    try {
      const d = await getJSON("/dashboard/data/release");
      body.textContent = "";
      const left = el("div");
      const right = el("div");
      body.append(left, right);
      const dl = el("dl", { class: "facts" });
      const g = d.git;
      if (g.available) {
        fact(dl, "Production", g.production.version
          ? `${g.production.version} (${g.production.branch} ${(g.production.commit || "").slice(0, 7)})`
          : `no release tag on ${g.production.branch}${g.production.commit ? "" : " (no branch)"}`);
        const dev = g.development;
        fact(dl, "Development", dev.commit
          ? `${dev.ahead} ahead, ${dev.behind} behind production`
          : `no ${dev.branch} branch`);
        fact(dl, "Working tree", `${g.current_branch || "detached"}, `
          + `${g.dirty_files ? `${g.dirty_files} uncommitted file(s)` : "clean"}`);
      } else {
        fact(dl, "Repository", g.note);
      }
      for (const env of (state.overview ? state.overview.environments : [])) {
        const run = env.runs[0];
        if (run) {
          const span = el("span");
          span.append(pill(run.status, run.status), document.createTextNode(
            ` ${run.started_at}${run.qa_passed === false ? ", QA failed" : ""}`));
          fact(dl, `Last run (${env.name})`, span);
        }
        const pub = env.published.filter((p) => p.run);
        if (pub.length) {
          fact(dl, `Published (${env.name})`, pub.map(
            (p) => `${p.level}/${p.target}: ${p.primary} (run ${p.run})`).join("; "));
        }
      }
      left.append(dl);
      if (g.available && g.note) codeText(left.appendChild(el("p", { class: "help" })), g.note);
      const x = d.details;
      if (x && x.error) {
        codeText(left.appendChild(el("p", { class: "status error" })), x.error);
      } else if (x) {
        for (const problem of x.problems) {
          codeText(left.appendChild(el("p", { class: "status error", role: "alert" })),
            `Tags and ledger disagree: ${problem}`);
        }
        for (const op of x.pending_operations) {
          left.append(el("p", { class: "status error" },
            `Unfinished ${op.kind} of ${op.version} (since ${op.created_at}): re-run the `
            + "same release command to finish it"));
        }
        for (const b of x.pending_backports) {
          codeText(left.appendChild(el("p", { class: "help" })),
            `Back-port pending: ${b.tag}: ${b.how}`);
        }
        if (x.unreleased_count) {
          left.append(el("h3", {}, `Unreleased on ${g.development.branch} `
            + `(${x.unreleased_count})`));
          const ul = el("ul", { class: "commits" });
          for (const c of x.unreleased) ul.append(el("li", {}, `${c.sha} ${c.subject}`));
          left.append(ul);
        }
      }
      const led = d.ledger;
      const staging = led.last_staging;
      right.append(el("h3", {}, "Last staging report"));
      if (staging) {
        const p = el("p");
        const atHead = x && x.staging_is_development_head;
        p.append(pill(staging.passed ? "PASS" : "FAIL"), document.createTextNode(
          ` ${staging.candidate_ref || ""} ${(staging.candidate_commit || "").slice(0, 7)},`
          + ` ${staging.finished_at || staging.started_at || ""}`
          + `${atHead === false ? " (not the development head: stage again before promoting)"
            : ""}`));
        right.append(p);
        const table = el("table");
        table.append(el("caption", {}, "Gates"));
        const head = el("tr");
        ["Gate", "Result", "Summary"].forEach((h) => head.append(el("th", { scope: "col" }, h)));
        table.append(el("thead"));
        table.tHead.append(head);
        const tb = el("tbody");
        for (const gate of staging.gates) {
          const tr = el("tr");
          tr.append(el("td", {}, gate.gate));
          const td = el("td");
          td.append(pill(gate.status));
          tr.append(td, el("td", {}, gate.summary));
          tb.append(tr);
        }
        table.append(tb);
        right.append(table);
      } else {
        codeText(right.appendChild(el("p", { class: "help" })), led.note
          || "no staging report yet: run `ewspipe release stage`");
      }
      if (led.releases && led.releases.length) {
        right.append(el("h3", {}, "Releases"));
        const ul = el("ul");
        for (const r of led.releases) {
          const li = el("li");
          li.append(pill(r.status, r.status), document.createTextNode(
            ` ${r.version} (${r.kind}) ${r.completed_at || r.created_at}`));
          ul.append(li);
        }
        right.append(ul);
      }
      setStatus("release-status", "");
    } catch (err) {
      setStatus("release-status", `Release status unavailable: ${err.message}`, true);
    }
  }

  // ------------------------------------------------------------------ forecast map
  function envInfo() {
    return state.overview.environments.find((e) => e.name === state.env);
  }

  function fillSelect(select, values, chosen, label) {
    select.textContent = "";
    for (const v of values) {
      const option = el("option", { value: v }, label ? label(v) : v);
      if (v === chosen) option.selected = true;
      select.append(option);
    }
  }

  function setupMapControls() {
    const info = envInfo();
    const levels = Object.keys(info.levels);
    const levelSelect = $("level");
    for (const option of levelSelect.options) option.disabled = !levels.includes(option.value);
    for (const id of ["map-layout", "unit"]) $(id).hidden = !levels.length;
    if (!levels.length) {
      $("map").textContent = "";
      $("map").dataset.ready = "empty";
      $("map-csv").disabled = true;
      $("top-units").tBodies[0].textContent = "";
      $("model").textContent = "";
      $("run").textContent = "";
      codeText($("map-status"), `No forecasts in ${state.env} yet: run `
        + `\`ewspipe run --env ${state.env}\``);
      return false;
    }
    if (!levels.includes(state.level)) state.level = levels[0];
    levelSelect.value = state.level;
    const lv = info.levels[state.level];
    // the run first, then a model that run holds: a pair the map can always draw
    if (!lv.runs.includes(state.run)) state.run = lv.default_run;
    fillSelect($("run"), lv.runs, state.run);
    const names = lv.run_models[state.run];
    if (!names.includes(state.model)) {
      state.model = names.includes(lv.default_model) ? lv.default_model : names[0];
    }
    fillSelect($("model"), names, state.model, (n) => {
      const m = lv.models.find((x) => x.model === n);
      return `${n} (${m.kind === "ensemble" ? "ensemble, " : ""}${m.status})`;
    });
    return true;
  }

  async function loadMap() {
    const container = $("map");
    const seq = ++state.mapSeq;
    container.dataset.ready = "0";
    $("map-csv").disabled = true;
    setStatus("map-status", "Loading forecasts…");
    try {
      const d = await getJSON("/dashboard/data/map", {
        env: state.env, level: state.level, model: state.model, run: state.run,
        step: state.step,
      });
      if (!state.geometry) await loadGeometry();
      if (seq !== state.mapSeq) return;
      state.map = d;
      const step = $("step");
      step.max = String(d.months.length);
      step.value = String(d.step);
      $("step-label").textContent = `${d.step} (${d.month_label})`;
      step.setAttribute("aria-valuetext", `step ${d.step}, ${d.month_label}`);
      drawMap(d);
      drawTopUnits(d);
      $("map-csv").disabled = false;
      $("map-csv-help").textContent = `all ${d.units.length} units of the map, `
        + `${d.month_label}, raw counts`;
      container.dataset.ready = "1";
    } catch (err) {
      if (seq !== state.mapSeq) return;
      if (state.step > 1 && /^step: /.test(err.message)) {
        // a shared address (or the previous model) asked for a step this forecast lacks
        state.step = 1;
        writeUrl();
        loadMap();
        return;
      }
      container.dataset.ready = "error";
      setStatus("map-status", `Map unavailable: ${err.message}`, true);
    }
  }

  async function loadGeometry() {
    try {
      state.geometry = await getJSON("/dashboard/data/geometry");
    } catch (err) {
      state.geometry = { countries: {}, bbox: null, note: err.message };
    }
  }

  function drawMap(d) {
    const container = $("map");
    container.textContent = "";
    const geo = state.geometry || { countries: {} };
    let minX = Infinity; let minY = Infinity; let maxX = -Infinity; let maxY = -Infinity;
    const grow = (x0, y0, x1, y1) => {
      minX = Math.min(minX, x0); minY = Math.min(minY, y0);
      maxX = Math.max(maxX, x1); maxY = Math.max(maxY, y1);
    };
    const title = `Predicted ${d.target || "fatalities"}, ${d.model}, ${d.month_label} `
      + `(step ${d.step} from ${monthLabel(d.origin)})`;
    const root = svg("svg", { role: "img", "aria-label": title, tabindex: "0",
      "aria-keyshortcuts": "+ - 0 ArrowLeft ArrowRight ArrowUp ArrowDown",
      preserveAspectRatio: "xMidYMid meet" });
    root.append(Object.assign(svg("title"), { textContent: title }));
    const units = svg("g", { class: "units", "shape-rendering": "crispEdges" });
    const outlines = svg("g", { class: "outlines" });
    let missing = 0;
    if (d.level === "pgm") {
      for (const [gid, v] of d.units) {
        const { lon, lat } = cellBox(gid);
        units.append(svg("rect", { class: "cell", x: lon, y: -(lat + CELL), width: CELL,
          height: CELL, fill: colour(v), "data-unit": gid, "data-value": v }));
        grow(lon, -(lat + CELL), lon + CELL, -lat);
      }
      for (const shape of Object.values(geo.countries)) {
        outlines.append(svg("path", { class: "outline", d: shape.outline }));
      }
      outlines.setAttribute("class", "outlines borders");
    } else {
      for (const [cid, v] of d.units) {
        const shape = geo.countries[String(cid)];
        if (!shape) { missing += 1; continue; }
        units.append(svg("path", { class: "country", d: shape.fill, fill: colour(v),
          "data-unit": cid, "data-value": v }));
        outlines.append(svg("path", { class: "outline", d: shape.outline,
          "data-outline": cid }));
      }
      if (geo.bbox) grow(geo.bbox[0], -geo.bbox[3], geo.bbox[2], -geo.bbox[1]);
    }
    root.append(units, outlines);
    if (Number.isFinite(minX)) {
      const pad = Math.max(maxX - minX, maxY - minY) * 0.04 + CELL;
      const home = [minX - pad, minY - pad, maxX - minX + 2 * pad, maxY - minY + 2 * pad];
      // another month keeps the zoom; another level (or other bounds) starts from the whole map
      const v = state.view;
      const same = v && v.level === d.level && v.home.every((x, i) => x === home[i]);
      state.view = { level: d.level, home, box: same ? v.box : home.slice() };
    } else {
      state.view = null;
    }
    container.append(root);
    applyView();
    wireZoom(root);
    markSelected();
    root.addEventListener("click", (ev) => {
      if (dragged) { dragged = false; return; } // the end of a pan, not a click on a unit
      const target = ev.target.closest("[data-unit]");
      if (target) selectUnit(Number(target.dataset.unit));
    });
    const tip = $("tooltip");
    root.addEventListener("mousemove", (ev) => {
      const target = ev.target.closest("[data-unit]");
      if (!target) { tip.hidden = true; return; }
      const box = container.getBoundingClientRect();
      tip.textContent = `${unitName(d.level, target.dataset.unit)}: `
        + `${fmt(Number(target.dataset.value))}`;
      tip.style.left = `${ev.clientX - box.left + 12}px`;
      tip.style.top = `${ev.clientY - box.top + 12}px`;
      tip.hidden = false;
    });
    root.addEventListener("mouseleave", () => { tip.hidden = true; });
    drawLegend(d);
    const drawn = d.units.length - missing;
    let status = `${drawn} ${d.level === "cm" ? "countries" : "cells"} · ${d.month_label} · `
      + `total ${fmt(d.total)} predicted`;
    if (missing) status += ` · ${missing} countries have no cells to draw`;
    if (d.level === "cm" && !Object.keys(geo.countries).length && geo.note) status += ` · ${geo.note}`;
    setStatus("map-status", status);
  }

  // ------------------------------------------------------------------ zoom and pan
  let dragged = false;

  function mapSvg() {
    return document.querySelector("#map svg");
  }

  function applyView() {
    const root = mapSvg();
    if (!root || !state.view) return;
    root.setAttribute("viewBox", state.view.box.map((x) => +x.toFixed(4)).join(" "));
    const zoom = state.view.home[2] / state.view.box[2];
    $("zoom-out").disabled = zoom <= 1.0001;
    $("zoom-in").disabled = zoom >= MAX_ZOOM - 1e-6;
    $("zoom-reset").disabled = state.view.box.every((x, i) => x === state.view.home[i]);
  }

  /** Keep the view's centre inside the whole map, so the map cannot be lost off-screen. */
  function clampView(box) {
    const [hx, hy, hw, hh] = state.view.home;
    const [, , w, h] = box;
    const x = Math.min(Math.max(box[0], hx - w / 2), hx + hw - w / 2);
    const y = Math.min(Math.max(box[1], hy - h / 2), hy + hh - h / 2);
    return [x, y, w, h];
  }

  /** Zoom by ``factor`` (> 1 closer) keeping the map point (cx, cy) where it is. */
  function zoomAt(factor, cx, cy) {
    if (!state.view) return;
    const [x, y, w, h] = state.view.box;
    const hw = state.view.home[2];
    const nw = Math.min(Math.max(w / factor, hw / MAX_ZOOM), hw);
    const k = nw / w;
    const px = cx === undefined ? x + w / 2 : cx;
    const py = cy === undefined ? y + h / 2 : cy;
    state.view.box = nw === hw ? state.view.home.slice()
      : clampView([px - (px - x) * k, py - (py - y) * k, nw, h * k]);
    applyView();
  }

  function panBy(dx, dy) {
    if (!state.view) return;
    const [x, y, w, h] = state.view.box;
    state.view.box = clampView([x + dx, y + dy, w, h]);
    applyView();
  }

  function resetView() {
    if (!state.view) return;
    state.view.box = state.view.home.slice();
    applyView();
  }

  function toMap(root, clientX, clientY) {
    const pt = root.createSVGPoint();
    pt.x = clientX; pt.y = clientY;
    return pt.matrixTransform(root.getScreenCTM().inverse());
  }

  function wireZoom(root) {
    root.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const p = toMap(root, ev.clientX, ev.clientY);
      zoomAt(ev.deltaY < 0 ? 1.25 : 0.8, p.x, p.y);
    }, { passive: false });
    let start = null;
    root.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      dragged = false;
      start = { x: ev.clientX, y: ev.clientY, box: state.view ? state.view.box.slice() : null,
        scale: root.getScreenCTM().a, id: ev.pointerId };
    });
    root.addEventListener("pointermove", (ev) => {
      if (!start || !start.box || ev.pointerId !== start.id) return;
      const dx = ev.clientX - start.x;
      const dy = ev.clientY - start.y;
      if (!dragged && Math.hypot(dx, dy) < 4) return; // a click wobbles: not yet a pan
      if (!dragged) { dragged = true; root.setPointerCapture(ev.pointerId); }
      root.classList.add("panning");
      state.view.box = clampView([start.box[0] - dx / start.scale,
        start.box[1] - dy / start.scale, start.box[2], start.box[3]]);
      applyView();
    });
    const end = () => { start = null; root.classList.remove("panning"); };
    root.addEventListener("pointerup", end);
    root.addEventListener("pointercancel", () => { end(); dragged = false; });
    root.addEventListener("keydown", (ev) => {
      if (!state.view) return;
      const [, , w, h] = state.view.box;
      const moves = { ArrowLeft: [-w / 10, 0], ArrowRight: [w / 10, 0],
        ArrowUp: [0, -h / 10], ArrowDown: [0, h / 10] };
      if (ev.key === "+" || ev.key === "=") zoomAt(ZOOM_STEP);
      else if (ev.key === "-" || ev.key === "_") zoomAt(1 / ZOOM_STEP);
      else if (ev.key === "0") resetView();
      else if (moves[ev.key]) panBy(...moves[ev.key]);
      else return;
      ev.preventDefault();
    });
  }

  function drawLegend(d) {
    const legend = $("legend");
    legend.textContent = "";
    const target = d.target ? ` (${d.target})` : "";
    legend.append(el("span", { class: "legend-title" }, `Predicted fatalities per month${target}, `
      + `raw counts, ${d.month_label}; colour breaks on a log scale:`));
    const labels = [`< ${BREAKS[0]}`];
    for (let i = 0; i < BREAKS.length - 1; i += 1) labels.push(`${BREAKS[i]}–${BREAKS[i + 1]}`);
    labels.push(`≥ ${BREAKS[BREAKS.length - 1]}`);
    labels.forEach((text, i) => legendKey(legend, "swatch", COLOURS[i], text));
  }

  /** The map's units, highest forecast first, units without a value last. */
  function ranked(d) {
    return d.units.slice().sort((a, b) => (b[1] ?? -Infinity) - (a[1] ?? -Infinity)
      || a[0] - b[0]);
  }

  // ------------------------------------------------------------------ CSV download
  function csvField(v) {
    const text = v === null || v === undefined ? "" : String(v);
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  /** Every unit of the shown map (this model, run and month) as CSV, values as the map
   * payload has them (raw counts to 4 decimals, not the table's display rounding); a name
   * column when the payload labels its units. */
  function mapCsv(d) {
    const name = (u) => (d.labels && d.labels[String(u)]) || "";
    const withNames = d.units.some(([u]) => name(u));
    const header = [d.unit_column, ...(withNames ? ["name"] : []), "level", "model", "run",
      "origin", "step", "month_id", "month", `predicted_${d.target || "value"}`];
    const rows = ranked(d).map(([u, v]) => [u, ...(withNames ? [name(u)] : []),
      d.level, d.model, d.run, d.origin, d.step, d.month, d.month_label, v]);
    return `${[header, ...rows].map((r) => r.map(csvField).join(",")).join("\r\n")}\r\n`;
  }

  function downloadCsv() {
    const d = state.map;
    if (!d) return;
    const name = `ewspipe-${d.environment}-${d.level}-${d.model}-${d.month_label}.csv`;
    const url = URL.createObjectURL(new Blob([mapCsv(d)], { type: "text/csv;charset=utf-8" }));
    const link = el("a", { href: url, download: name, hidden: "" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    $("map-csv-help").textContent = `${d.units.length} rows saved as ${name}`;
  }

  function drawTopUnits(d) {
    const tbody = $("top-units").tBodies[0];
    tbody.textContent = "";
    const top = ranked(d).filter((u) => u[1] !== null).slice(0, 10);
    for (const [unit, v] of top) {
      const tr = el("tr");
      const td = el("td");
      const button = el("button", { type: "button", class: "link", "data-unit": unit },
        unitName(d.level, unit));
      button.addEventListener("click", () => selectUnit(unit));
      td.append(button);
      tr.append(td, el("td", { class: "num" }, fmt(v)));
      tbody.append(tr);
    }
  }

  function markSelected() {
    for (const node of document.querySelectorAll("#map .selected")) {
      node.classList.remove("selected");
    }
    if (state.unit === null) return;
    const node = document.querySelector(`#map [data-outline="${state.unit}"]`)
      || document.querySelector(`#map rect[data-unit="${state.unit}"]`);
    if (node) {
      node.classList.add("selected");
      node.parentNode.append(node); // on top, so its outline shows
    }
  }

  // ------------------------------------------------------------------ unit history
  async function selectUnit(unit) {
    state.unit = unit;
    const seq = ++state.unitSeq;
    markSelected();
    writeUrl();
    $("unit-input").value = String(unit);
    const chart = $("unit-chart");
    chart.dataset.unit = "";
    $("unit-h").textContent = `${unitName(state.level, unit)}: history and forecast`;
    setStatus("unit-status", "Loading…");
    try {
      const d = await getJSON("/dashboard/data/series", {
        env: state.env, level: state.level, model: state.model, run: state.run, unit,
      });
      if (seq !== state.unitSeq) return;
      drawSeries(d);
      chart.dataset.unit = String(unit);
    } catch (err) {
      if (seq !== state.unitSeq) return;
      chart.textContent = "";
      $("unit-legend").textContent = "";
      setStatus("unit-status", `No history for ${unitName(state.level, unit)}: ${err.message}`,
        true);
    }
  }

  function drawSeries(d) {
    const obs = d.observed;
    const fc = d.forecast;
    const xmin = obs.length ? obs[0][0] : d.origin;
    const xmax = fc.length ? fc[fc.length - 1].month : d.origin + 1;
    let ymax = 10;
    for (const [, v] of obs) ymax = Math.max(ymax, v);
    for (const f of fc) ymax = Math.max(ymax, f.point || 0, f.q90 || 0);
    const span = xmax - xmin;
    const every = span > 96 ? 24 : 12;
    const xticks = [];
    for (let m = xmin; m <= xmax; m += 1) if ((m - 1) % every === 0) xticks.push(m);
    const title = `${unitName(d.level, d.unit)}: observed ${d.target} and the ${d.model} `
      + `forecast from ${d.origin_label}`;
    const f = chartFrame($("unit-chart"), { xmin, xmax, ymin: 0, ymax, log: true, xticks,
      xfmt: (m) => monthLabel(m).slice(0, 4), ylabel: "fatalities (log scale)",
      xlabel: "month", title });
    const { plot, X, Y } = f;
    const withInterval = fc.length && fc[0].q10 !== undefined;
    if (withInterval) {
      const upper = fc.map((p) => [p.month, p.q90]);
      const lower = fc.map((p) => [p.month, p.q10]).reverse();
      plot.append(svg("path", { class: "interval", d: `${linePath(upper, X, Y)}`
        + `${linePath(lower, X, Y).replace(/^M/, "L")}Z` }));
    }
    plot.append(svg("line", { class: "origin", x1: X(d.origin), x2: X(d.origin),
      y1: f.m.t, y2: f.H - f.m.b }));
    const originText = svg("text", { class: "label", x: X(d.origin) + 4, y: f.m.t + 10 });
    originText.textContent = `origin ${d.origin_label}`;
    plot.append(originText);
    if (obs.length) plot.append(svg("path", { class: "observed", d: linePath(obs, X, Y) }));
    const last = obs.find((o) => o[0] === d.origin);
    const points = fc.map((p) => [p.month, p.point]);
    if (last) points.unshift(last);
    if (points.length) plot.append(svg("path", { class: "forecast", d: linePath(points, X, Y) }));
    const legend = $("unit-legend");
    legend.textContent = "";
    legendKey(legend, "line", "#1d2430", `observed (${d.snapshot || "no snapshot"})`);
    legendKey(legend, "line", "#d55e00", `forecast, ${d.model}, run ${d.run}`, "dashed");
    if (withInterval) legendKey(legend, "band", "rgba(230,159,0,0.35)", `${d.interval} interval`);
    const s1 = fc[0];
    const s36 = fc[fc.length - 1];
    let text = `Step 1 (${monthLabel(s1.month)}): ${fmt(s1.point)}`;
    if (withInterval) text += ` [${fmt(s1.q10)}–${fmt(s1.q90)}]`;
    text += `; step ${s36.step} (${monthLabel(s36.month)}): ${fmt(s36.point)}`;
    if (withInterval) text += ` [${fmt(s36.q10)}–${fmt(s36.q90)}]`;
    if (!withInterval) text += ". This model draws no samples, so no interval is shown.";
    setStatus("unit-status", text);
  }

  // ------------------------------------------------------------------ evaluation
  function statusShown(m) {
    if ($("eval-shadow").checked) return m.status !== "deprecated";
    return m.status === "deployed" || m.status === "baseline";
  }

  const modelColours = new Map();
  function modelColour(name) {
    // one colour per model name across charts, so a model looks the same everywhere
    if (!modelColours.has(name)) {
      modelColours.set(name, PALETTE[modelColours.size % PALETTE.length]);
    }
    return modelColours.get(name);
  }

  function drawByStep(container, legend, models, metric, titleText) {
    const shown = models.filter((m) => m.by_step.length);
    if (!shown.length) { container.textContent = ""; legend.textContent = ""; return 0; }
    let ymax = 0; let ymin = Infinity;
    for (const m of shown) {
      for (const [, v] of m.by_step) {
        if (v !== null) { ymax = Math.max(ymax, v); ymin = Math.min(ymin, v); }
      }
    }
    const steps = shown.flatMap((m) => m.by_step.map((p) => p[0]));
    const xmax = Math.max(...steps);
    const xticks = xmax <= 12 ? Array.from({ length: xmax }, (_, i) => i + 1)
      : [1, 6, 12, 18, 24, 30, 36].filter((t) => t <= xmax);
    const f = chartFrame(container, { xmin: 1, xmax: Math.max(xmax, 2), ymin: ymin >= 0 ? 0 : ymin,
      ymax: ymax * 1.05 || 1, log: false, xticks, ylabel: metric,
      xlabel: "step (months ahead)", title: titleText });
    legend.textContent = "";
    shown.forEach((m) => {
      const c = modelColour(m.model);
      const cls = `series ${m.kind === "ensemble" ? "ensemble" : ""} `
        + `${m.status === "baseline" ? "baseline" : ""}`;
      const pts = m.by_step.filter((p) => p[1] !== null);
      f.plot.append(svg("path", { class: cls, stroke: c, d: linePath(pts, f.X, f.Y),
        "data-model": m.model }));
      legendKey(legend, "line", c, `${m.model} (${m.kind === "ensemble" ? "ensemble, " : ""}`
        + `${m.status}) ${metric} ${fmt(m.pooled)}`, m.status === "baseline" ? "dashed" : "");
    });
    return shown.length;
  }

  async function loadEvaluation() {
    const level = $("eval-level").value;
    setStatus("eval-status", "Loading…");
    try {
      const d = await getJSON("/dashboard/data/evaluation", {
        level, metric: $("eval-metric").value, run: $("eval-run").value || null,
      });
      state.evaluation = d;
      if (d.metrics.length) fillSelect($("eval-metric"), d.metrics, d.metric);
      fillSelect($("eval-run"), d.runs.map((r) => r.run_id), d.run, (id) => {
        const r = d.runs.find((x) => x.run_id === id);
        return `${r.run_type} ${r.started_at}`;
      });
      if (d.hint) {
        $("eval-chart").textContent = "";
        $("eval-legend").textContent = "";
        codeText($("eval-status"), d.hint);
        return;
      }
      const models = d.models.filter(statusShown);
      const n = drawByStep($("eval-chart"), $("eval-legend"), models, d.metric,
        `${d.metric} by step, ${d.run_type} run ${d.run}`);
      const baselines = models.filter((m) => m.status === "baseline").length;
      setStatus("eval-status", `${d.run_type} run ${d.run}: ${n} models`
        + `${baselines ? "" : " (no baseline model in this run)"}; lower is better for losses`);
    } catch (err) {
      setStatus("eval-status", `Evaluation unavailable: ${err.message}`, true);
    }
  }

  async function loadOnline() {
    const level = $("eval-level").value;
    const table = $("online-table");
    try {
      const d = await getJSON("/dashboard/data/online", { level });
      table.textContent = "";
      if (d.hint) {
        $("online-chart").textContent = "";
        $("online-legend").textContent = "";
        codeText($("online-status"), d.hint);
        return;
      }
      drawByStep($("online-chart"), $("online-legend"), d.models, d.metric,
        `online ${d.metric} by step (lead time)`);
      const t = el("table");
      t.append(el("caption", {}, `Online ${d.metric}, computed ${d.computed_at}`));
      const head = el("tr");
      ["Model", "Status", "Scored", "Pending", `Pooled ${d.metric}`, "Window", "Alert"]
        .forEach((h, i) => head.append(el("th", { scope: "col",
          class: i >= 2 && i <= 5 ? "num" : null }, h)));
      t.append(el("thead"));
      t.tHead.append(head);
      const tb = el("tbody");
      for (const m of d.models) {
        const tr = el("tr");
        const alert = m.worse_than_baseline ? "worse than a baseline"
          : (m.beyond_band ? "beyond its band" : "");
        [m.model, m.status, m.scored, m.pending, fmt(m.pooled), fmt(m.window_score), alert]
          .forEach((v, i) => tr.append(el("td", { class: i >= 2 && i <= 5 ? "num" : null },
            v === null || v === undefined ? "–" : String(v))));
        tb.append(tr);
      }
      t.append(tb);
      table.append(t);
      setStatus("online-status", `${d.models.length} models scored against `
        + `${d.actuals ? d.actuals.snapshot : "the newest snapshot"}`);
    } catch (err) {
      setStatus("online-status", `Online evaluation unavailable: ${err.message}`, true);
    }
  }

  // ------------------------------------------------------------------ alerts
  const SEVERITIES = ["INFO", "WARNING", "ERROR", "CRITICAL"];

  /** Alerts by kind (their ``source``, e.g. drift.ks_drift): the worst kinds first, then the
   * most frequent; each group keeps the feed's newest-first order. */
  function alertGroups(alerts) {
    const groups = new Map();
    for (const a of alerts) {
      const kind = a.source || "unknown";
      if (!groups.has(kind)) groups.set(kind, { kind, alerts: [], worst: -1 });
      const g = groups.get(kind);
      g.alerts.push(a);
      g.worst = Math.max(g.worst, SEVERITIES.indexOf(a.severity));
    }
    return [...groups.values()].sort((a, b) => b.worst - a.worst
      || b.alerts.length - a.alerts.length || a.kind.localeCompare(b.kind));
  }

  async function loadAlerts() {
    const list = $("alert-list");
    try {
      const d = await getJSON("/dashboard/data/alerts", {
        env: state.env, limit: 200, severity: $("alert-severity").value || null,
      });
      list.textContent = "";
      const groups = alertGroups(d.alerts);
      for (const g of groups) {
        const details = el("details", { class: "alert-group", "data-kind": g.kind });
        const summary = el("summary");
        summary.append(el("span", { class: "kind" }, g.kind), document.createTextNode(" "),
          el("span", { class: "count", "aria-label": `${g.alerts.length} alerts` },
            String(g.alerts.length)), document.createTextNode(" "),
          pill(SEVERITIES[g.worst] || "unknown"),
          el("span", { class: "meta" }, ` newest ${g.alerts[0].time}`));
        const ol = el("ol", { class: "alerts" });
        for (const a of g.alerts) {
          const li = el("li");
          const meta = el("div", { class: "meta" });
          meta.append(pill(a.severity), document.createTextNode(
            ` ${a.time}${a.offender ? ` · ${a.offender}` : ""} · ${a.log} log`));
          li.append(meta, el("div", {}, a.message));
          ol.append(li);
        }
        details.append(summary, ol);
        list.append(details);
      }
      if (d.hint) codeText($("alerts-status"), d.hint);
      else {
        setStatus("alerts-status", `${d.count} most recent in ${groups.length} kinds, worst `
          + "kind first; open a kind to see its alerts, newest first");
      }
    } catch (err) {
      setStatus("alerts-status", `Alerts unavailable: ${err.message}`, true);
    }
  }

  // ------------------------------------------------------------------ URL state
  /** The view asked for in the address (?env&level&model&run&step&unit); values that
   * cannot be used are dropped here, names the workspace lacks fall back to the defaults. */
  function readUrl() {
    const q = new URLSearchParams(window.location.search);
    const wanted = {};
    for (const key of ["env", "model", "run"]) {
      const v = q.get(key);
      if (v && /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(v)) wanted[key] = v;
    }
    if (["cm", "pgm"].includes(q.get("level"))) wanted.level = q.get("level");
    const step = Number(q.get("step"));
    if (Number.isInteger(step) && step >= 1 && step <= 36) wanted.step = step;
    const unit = Number(q.get("unit"));
    if (q.get("unit") && Number.isInteger(unit) && unit > 0) wanted.unit = unit;
    return wanted;
  }

  /** Write the current view into the address without a new history entry. */
  function writeUrl() {
    const q = new URLSearchParams(window.location.search);
    for (const key of URL_KEYS) q.delete(key);
    const values = { env: state.env, level: state.level, model: state.model, run: state.run,
      step: state.step, unit: state.unit };
    for (const key of URL_KEYS) {
      if (values[key] !== null && values[key] !== undefined) q.set(key, values[key]);
    }
    window.history.replaceState(null, "", `${window.location.pathname}?${q}`
      + `${window.location.hash}`);
  }

  // ------------------------------------------------------------------ wiring
  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  /** Redraw the map (and the chosen unit); ``write`` false leaves the address alone (a
   * page opened without a view in its address keeps a clean one until the user acts). */
  function refreshForecasts(write = true) {
    if (setupMapControls()) {
      loadMap();
      if (state.unit !== null) selectUnit(state.unit);
    }
    if (write) writeUrl();
  }

  function clearUnit() {
    state.unit = null;
    state.unitSeq += 1;
    $("unit-chart").textContent = "";
    $("unit-chart").dataset.unit = "";
    $("unit-legend").textContent = "";
    $("unit-h").textContent = "Unit history and forecast";
    setStatus("unit-status", "Select a unit on the map.");
    markSelected();
    writeUrl();
  }

  function wire() {
    $("env").addEventListener("change", () => {
      state.env = $("env").value;
      clearUnit();
      refreshForecasts();
      loadAlerts();
    });
    $("level").addEventListener("change", () => {
      state.level = $("level").value;
      clearUnit();
      refreshForecasts();
    });
    $("model").addEventListener("change", () => { state.model = $("model").value; refreshForecasts(); });
    $("run").addEventListener("change", () => { state.run = $("run").value; refreshForecasts(); });
    const stepChanged = debounce(() => { loadMap(); }, 150);
    $("step").addEventListener("input", () => {
      state.step = Number($("step").value);
      const months = state.map ? state.map.months : [];
      const m = months[state.step - 1];
      $("step-label").textContent = m ? `${state.step} (${m.label})` : String(state.step);
      writeUrl();
      stepChanged();
    });
    $("unit-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = Number($("unit-input").value);
      if (Number.isInteger(value) && value > 0) selectUnit(value);
      else setStatus("unit-status", "Enter a positive whole number (a country id or a "
        + "PRIO-GRID cell id).", true);
    });
    for (const id of ["map-controls", "eval-controls", "alert-controls"]) {
      $(id).addEventListener("submit", (ev) => ev.preventDefault());
    }
    $("eval-level").addEventListener("change", () => {
      $("eval-run").textContent = "";
      loadEvaluation();
      loadOnline();
    });
    $("eval-metric").addEventListener("change", loadEvaluation);
    $("eval-run").addEventListener("change", loadEvaluation);
    $("eval-shadow").addEventListener("change", loadEvaluation);
    $("alert-severity").addEventListener("change", loadAlerts);
    $("zoom-in").addEventListener("click", () => zoomAt(ZOOM_STEP));
    $("zoom-out").addEventListener("click", () => zoomAt(1 / ZOOM_STEP));
    $("zoom-reset").addEventListener("click", resetView);
    $("map-csv").addEventListener("click", downloadCsv);
  }

  async function init() {
    wire();
    try {
      state.overview = await getJSON("/dashboard/data/overview");
    } catch (err) {
      setStatus("map-status", `Cannot read the workspace: ${err.message}`, true);
      return;
    }
    const ov = state.overview;
    const wanted = readUrl();
    state.env = ov.environments.some((e) => e.name === wanted.env) ? wanted.env
      : ov.default_environment;
    if (wanted.level) state.level = wanted.level;
    state.model = wanted.model || null;
    state.run = wanted.run || null;
    state.step = wanted.step || 1;
    state.unit = wanted.unit || null;
    fillSelect($("env"), ov.environments.map((e) => e.name), state.env, (n) => {
      const e = ov.environments.find((x) => x.name === n);
      return Object.keys(e.levels).length ? n : `${n} (no forecasts)`;
    });
    if (ov.empty) {
      const banner = $("empty");
      codeText(banner, `No forecasts yet. ${ov.hint[0].toUpperCase()}${ov.hint.slice(1)}; `
        + "then reload this page.");
      banner.hidden = false;
    }
    const info = envInfo();
    if (info && info.levels[state.level] === undefined && Object.keys(info.levels).length) {
      state.level = Object.keys(info.levels)[0];
    }
    $("eval-level").value = state.level;
    loadRelease();
    loadEvaluation();
    loadOnline();
    loadAlerts();
    refreshForecasts(Object.keys(wanted).length > 0);
  }

  document.addEventListener("DOMContentLoaded", init);
})();
