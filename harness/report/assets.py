"""The page's CSS and JavaScript, kept as Python strings so the package needs no extra data files.

The JavaScript draws every figure from its JSON block and runs the sample browser. It writes untrusted
text with ``textContent`` only (never ``innerHTML``). It sets ``window.__reportReady`` once every plot
has rendered, which the real-browser test waits for.
"""

from __future__ import annotations

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --best: #d8f3dc; --bad: #ffd9d6; --accent: #2f5fd0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0;
       background: #f7f8fa; }
nav { position: sticky; top: 0; z-index: 10; background: #fff; border-bottom: 1px solid var(--line);
      padding: 6px 24px; display: flex; gap: 16px; flex-wrap: wrap; }
nav a { color: var(--accent); text-decoration: none; }
main { max-width: 1500px; margin: 0 auto; padding: 8px 24px 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 20px; margin: 16px 0; }
h1 { font-size: 22px; margin: 12px 0 4px; } h2 { font-size: 18px; margin: 4px 0 10px; } h3 { font-size: 15px; }
.note { color: var(--muted); font-size: 13px; }
.warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: 6px 10px; }
.error { background: var(--bad); border-left: 4px solid #c62828; padding: 6px 10px; }
.sub { display: block; color: var(--muted); font-size: 12px; font-weight: normal; }
table.summary { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
table.summary caption { caption-side: top; text-align: left; color: var(--muted); font-size: 13px; padding: 4px 0; }
table.summary th, table.summary td { border: 1px solid var(--line); padding: 4px 10px; text-align: right; vertical-align: top; }
table.summary th[scope=row], table.summary:not(.compare) thead th:nth-child(-n+2) { text-align: left; }
table.summary thead th { background: #eef1f6; }
table.summary td.num { color: var(--muted); }
table.summary td.best { background: var(--best); font-weight: 600; }
table.summary .ci { display: block; color: var(--muted); font-size: 11px; font-weight: normal; }
table.summary .missing { display: block; color: #b45309; font-size: 11px; }
table.seed { background: #fbfaf4; }
td.improved { background: var(--best); } td.regressed, td.values-missing { background: var(--bad); }
td.inconclusive { background: #fff3cd; } div.comparison.refused p.note:first-of-type { font-weight: 600; }
.side-by-side { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 12px; }
.grid3 { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 10px; }
.plot { min-height: 320px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; }
dl.meta dt { color: var(--muted); } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.controls { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }
.controls select { max-width: 70vw; }
.prompt-box { background: #eef1f6; border-radius: 6px; padding: 8px 12px; margin-bottom: 10px; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; font: 13px/1.45 ui-monospace, Menlo, Consolas, monospace; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 10px; }
.column { border: 1px solid var(--line); border-top: 4px solid var(--accent); border-radius: 6px; padding: 6px 10px; }
.column h4 { margin: 2px 0 6px; }
.sample { border-top: 1px dashed var(--line); padding-top: 4px; margin-top: 6px; }
.sample table { font-size: 12px; border-collapse: collapse; }
.sample th { text-align: left; font-weight: normal; color: var(--muted); padding-right: 10px; }
.sample td { text-align: right; font-variant-numeric: tabular-nums; }
details summary { cursor: pointer; color: var(--accent); }
.sample.focus { outline: 3px solid #f4b400; outline-offset: 2px; }
pre.tokens span.tok { border-radius: 2px; } pre.tokens span.rep { text-decoration: underline wavy #c62828; }
pre.tokens span.coherence-break { color: #c62828; font-weight: 700; padding: 0 2px; }
table.samples-table tr.sample-row { cursor: pointer; } table.samples-table tr.sample-row:hover { background: #eef1f6; }
table.samples-table td.text { text-align: left; max-width: 40vw; }
"""

APP_JS = r"""
(function () {
  "use strict";
  function byId(id) { return document.getElementById(id); }
  function readJSON(id) { var el = byId(id); return el ? JSON.parse(el.textContent) : null; }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function drawPlots() {
    if (typeof Plotly === "undefined") { console.error("plotly.js is missing from the report"); return; }
    var template = readJSON("plotly-template");
    var config = { displaylogo: false, responsive: true };
    var all = Array.prototype.slice.call(document.querySelectorAll("div.plot"));
    var eager = all.filter(function (div) { return div.getAttribute("data-lazy") !== "true"; });
    var lazy = all.filter(function (div) { return div.getAttribute("data-lazy") === "true"; });
    window.__reportPlots = eager.length;
    function draw(div) {
      if (div.getAttribute("data-drawn")) { return Promise.resolve(div); }
      div.setAttribute("data-drawn", "true");
      var spec = readJSON(div.getAttribute("data-spec"));
      var layout = spec.layout || {};
      if (template && !layout.template) { layout.template = template; }
      return Plotly.newPlot(div, spec.data || [], layout, config).then(function (gd) {
        gd.on("plotly_click", function (event) {
          var cd = event && event.points && event.points[0] && event.points[0].customdata;
          if (cd && cd.length >= 7 && window.__openSample) { window.__openSample(cd[2], cd[3], cd[4], cd[5], cd[6]); }
        });
        return gd;
      });
    }
    // far-down small multiples are drawn when they come near the viewport; everything at once on demand
    window.__drawAllPlots = function () { return Promise.all(lazy.map(draw)); };
    if ("IntersectionObserver" in window) {
      var observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (e) { if (e.isIntersecting) { observer.unobserve(e.target); draw(e.target); } });
      }, { rootMargin: "400px" });
      lazy.forEach(function (div) { observer.observe(div); });
    } else { lazy.forEach(draw); }
    Promise.all(eager.map(draw)).then(function () {
      window.__reportReadyAt = performance.now();  // ms since navigation start (benchmarks/report_load.py)
      window.__reportReady = true;
      document.body.setAttribute("data-plots-ready", "true");
    }, function (err) { console.error("a plot failed to render: " + err); });
  }

  function fmt(value, percent) {
    if (value === null || value === undefined) { return "–"; }
    if (percent) { return (value * 100).toFixed(1) + "%"; }
    if (Math.abs(value) >= 1000) { return Math.round(value).toLocaleString("en-US"); }
    if (value === 0) { return "0"; }
    return String(Number(value.toPrecision(3)));
  }

  function tokenNode(s) {
    var pre = el("pre", "tokens");
    var repeated = {};
    (s.rep || []).forEach(function (i) { repeated[i] = true; });
    s.tok.forEach(function (piece, i) {
      if (s.brk === i) { pre.appendChild(el("span", "coherence-break", "⟂")); }
      var lp = s.lp && s.lp.length && s.lp[i] !== null ? s.lp[i] / 100 : null;  // stored in hundredths
      var span = el("span", "tok" + (repeated[i] ? " rep" : ""), piece);
      if (lp !== null && lp !== undefined) {
        var p = Math.exp(lp);
        span.style.backgroundColor = "hsl(" + Math.round(p * 120) + ", 75%, 82%)";
        span.setAttribute("data-logprob", String(lp));
      }
      var dt = s.dt && s.dt.length && s.dt[i] !== null ? (s.dt[i] / 10).toFixed(1) : null;  // tenths of a ms
      span.title = "token " + i + (lp !== null && lp !== undefined ? " · log-prob " + lp + " · p " + Math.exp(lp).toFixed(3) : "") +
        (dt !== null && dt !== undefined ? " · " + dt + " ms" : "") + (repeated[i] ? " · in a repeated 3-gram" : "");
      pre.appendChild(span);
    });
    return pre;
  }

  function sampleNode(s, metrics) {
    var box = el("div", "sample");
    box.setAttribute("data-i", String(s.i));
    var head = "sample #" + s.i + " · stop: " + (s.stop || "?") + (s.flags.length ? " · flags: " + s.flags.join(", ") : "");
    box.appendChild(el("div", "sub", head));
    var tokens = byId("browser-token-view");
    if (tokens && tokens.checked && s.tok) { box.appendChild(tokenNode(s)); }
    else if (tokens && tokens.checked) { box.appendChild(el("p", "note", "no per-token data in this run (recorded by newer harness versions)")); box.appendChild(el("pre", "output", s.out)); }
    else { box.appendChild(el("pre", "output", s.out === "" ? "(empty output)" : s.out)); }
    var table = el("table");
    metrics.forEach(function (m) {
      if (!Object.prototype.hasOwnProperty.call(s.m, m.name)) { return; }
      var row = el("tr");
      row.appendChild(el("th", null, m.label));
      row.appendChild(el("td", null, fmt(s.m[m.name], m.percent)));
      table.appendChild(row);
    });
    box.appendChild(table);
    Object.keys(s.err).forEach(function (name) { box.appendChild(el("div", "error", name + ": " + s.err[name])); });
    return box;
  }

  function initBrowser() {
    var data = readJSON("browser-data");
    if (!data || !data.prompts.length) { return; }
    var category = byId("browser-category"), select = byId("browser-prompt-select");
    var promptEl = byId("browser-prompt"), metaEl = byId("browser-prompt-meta"), cols = byId("browser-columns");
    var categories = [];
    data.prompts.forEach(function (p) { if (categories.indexOf(p.category) < 0) { categories.push(p.category); } });
    var all = el("option", null, "all categories"); all.value = "\u0000all"; category.appendChild(all);
    categories.forEach(function (c) { var o = el("option", null, c || "(none)"); o.value = c; category.appendChild(o); });

    function fillPrompts() {
      while (select.firstChild) { select.removeChild(select.firstChild); }
      data.prompts.forEach(function (p, i) {
        if (category.value !== "\u0000all" && p.category !== category.value) { return; }
        var short = p.text.length > 70 ? p.text.slice(0, 70) + "…" : p.text;
        var o = el("option", null, p.id + " · " + short); o.value = String(i); select.appendChild(o);
      });
    }
    function show() {
      var i = Number(select.value), p = data.prompts[i];
      if (!p) { return; }
      metaEl.textContent = p.id + " · " + (p.category || "no category");
      promptEl.textContent = p.text;
      while (cols.firstChild) { cols.removeChild(cols.firstChild); }
      data.columns.forEach(function (c, ci) {
        var col = el("div", "column");
        col.setAttribute("data-column", String(ci));
        col.style.borderTopColor = c.color;
        col.appendChild(el("h4", null, c.label));
        var samples = data.cells[i][ci] || [];
        if (!samples.length) { col.appendChild(el("p", "note", "no sample for this prompt")); }
        samples.forEach(function (s) { col.appendChild(sampleNode(s, data.metrics)); });
        cols.appendChild(col);
      });
    }
    function openSample(run, batched, promptId, sampleIndex, model) {
      var pi = -1;
      data.prompts.forEach(function (p, i) { if (p.id === String(promptId)) { pi = i; } });
      if (pi < 0) { return false; }
      if (category.value !== "\u0000all" && data.prompts[pi].category !== category.value) {
        category.value = "\u0000all"; fillPrompts();
      }
      select.value = String(pi);
      show();
      var ci = -1;
      data.columns.forEach(function (c, i) {
        if (c.run === Number(run) && Boolean(c.batched) === Boolean(Number(batched)) && c.model === model) { ci = i; }
      });
      var column = ci >= 0 ? cols.querySelector('[data-column="' + ci + '"]') : null;
      var target = column ? column.querySelector('[data-i="' + Number(sampleIndex) + '"]') : null;
      Array.prototype.forEach.call(cols.querySelectorAll(".sample.focus"), function (n) { n.classList.remove("focus"); });
      if (target) { target.classList.add("focus"); target.scrollIntoView({ block: "center" }); }
      else { byId("sample-browser").scrollIntoView(); }
      return Boolean(target);
    }
    window.__openSample = openSample;

    function initTable() {
      var sortSel = byId("samples-sort"), order = byId("samples-order"), modelSel = byId("samples-model");
      var search = byId("samples-search"), body = document.querySelector("#samples-table tbody");
      if (!sortSel || !body) { return; }
      var rows = [];
      data.cells.forEach(function (perColumn, pi) {
        perColumn.forEach(function (samples, ci) {
          samples.forEach(function (s) { rows.push({ p: data.prompts[pi], c: data.columns[ci], s: s }); });
        });
      });
      data.metrics.forEach(function (m) { var o = el("option", null, m.label); o.value = m.name; sortSel.appendChild(o); });
      var any = el("option", null, "all models"); any.value = "\u0000all"; modelSel.appendChild(any);
      data.columns.forEach(function (c, ci) { var o = el("option", null, c.label); o.value = String(ci); modelSel.appendChild(o); });
      function render() {
        var metric = sortSel.value, meta = data.metrics.filter(function (m) { return m.name === metric; })[0];
        var needle = search.value.trim().toLowerCase(), sign = order.value === "asc" ? 1 : -1;
        byId("samples-metric-head").textContent = meta ? meta.label : "value";
        var shown = rows.filter(function (r) {
          if (modelSel.value !== "\u0000all" && data.columns[Number(modelSel.value)] !== r.c) { return false; }
          if (!needle) { return true; }
          return r.p.text.toLowerCase().indexOf(needle) >= 0 || r.s.out.toLowerCase().indexOf(needle) >= 0 ||
            r.p.id.toLowerCase().indexOf(needle) >= 0;
        });
        shown.sort(function (a, b) {
          var va = a.s.m[metric], vb = b.s.m[metric];
          if (va === null || va === undefined) { return 1; }
          if (vb === null || vb === undefined) { return -1; }
          return sign * (va - vb);
        });
        while (body.firstChild) { body.removeChild(body.firstChild); }
        shown.slice(0, 200).forEach(function (r) {
          var tr = el("tr", "sample-row");
          tr.appendChild(el("td", null, r.p.id));
          tr.appendChild(el("td", null, r.p.category));
          tr.appendChild(el("td", null, r.c.label));
          tr.appendChild(el("td", null, r.s.i));
          tr.appendChild(el("td", "value", fmt(r.s.m[metric], meta && meta.percent)));
          tr.appendChild(el("td", "text", r.s.out.length > 90 ? r.s.out.slice(0, 90) + "…" : r.s.out));
          tr.addEventListener("click", function () { openSample(r.c.run, r.c.batched ? 1 : 0, r.p.id, r.s.i, r.c.model); });
          body.appendChild(tr);
        });
        byId("samples-count").textContent = shown.length + " of " + rows.length + " samples" +
          (shown.length > 200 ? " (first 200 shown)" : "") + "; click a row to open it";
      }
      [sortSel, order, modelSel].forEach(function (node) { node.addEventListener("change", render); });
      search.addEventListener("input", render);
      render();
    }

    function step(delta) {
      var next = select.selectedIndex + delta;
      if (next >= 0 && next < select.options.length) { select.selectedIndex = next; show(); }
    }
    category.addEventListener("change", function () { fillPrompts(); show(); });
    select.addEventListener("change", show);
    byId("browser-prev").addEventListener("click", function () { step(-1); });
    if (byId("browser-token-view")) { byId("browser-token-view").addEventListener("change", show); }
    byId("browser-next").addEventListener("click", function () { step(1); });
    fillPrompts();
    show();
    initTable();
  }

  initBrowser();
  drawPlots();
})();
"""
