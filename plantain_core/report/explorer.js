/* plantain explorer: turns the embedded data into plotly traces and wires the controls.
   Every string in the data comes from a run folder and is untrusted: it is written with
   textContent, and where plotly renders it (plotly reads a few HTML tags in labels) it
   goes through esc() first. Plotly draws everything; this script only feeds it.

   Test hook: the URL fragment #layout=L&step=S&metric=M&panel=I&click=UNIT&hover=1 picks
   the controls, then sends plotly_click on the unit's cell (the handler a mouse click
   reaches) and hovers it; <pre id="plantain-state"> then holds a JSON summary of what the
   page shows, which a headless browser's --dump-dom can read. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("plantain-data").textContent);
  var METRICS = [["t", "t"], ["d", "d_z"], ["t_specific", "specific t"]];
  var ALPHA = 0.05;
  var state = {layout: DATA.layouts[0], metric: "t", step: 0, clicked: null, hover: null};
  var graphs = [];

  function el(id) { return document.getElementById(id); }
  function esc(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
  function fmt(v) { return v === null || v === undefined ? "n/a" : Number(v).toPrecision(4); }
  function column(L, name, u) { return L[name] ? L[name][u] : null; }
  function add(parent, tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    parent.appendChild(node);
    return node;
  }
  function metricLabel() { return METRICS.filter(function (m) { return m[0] === state.metric; })[0][1]; }
  function stepName() { return DATA.steps.length ? state.layout + "@step" + DATA.steps[state.step] : state.layout; }

  /* The panel's data for the chosen layout and step; a single-step run in a sweep with
     trajectory cells shows its one map at every step. */
  function current(p) {
    var name = stepName();
    if (p.layouts[name]) return {name: name, L: p.layouts[name]};
    if (p.layouts[state.layout]) return {name: state.layout, L: p.layouts[state.layout]};
    return null;
  }

  function hoverText(L, u) {
    return ["<b>" + esc(L.units[u]) + "</b>", "t = " + fmt(column(L, "t", u)),
      "d_z = " + fmt(column(L, "d", u)) + " [" + fmt(column(L, "d_low", u)) + ", " + fmt(column(L, "d_high", u)) + "]",
      "p_fwer = " + fmt(column(L, "p_fwer", u)), "q = " + fmt(column(L, "q", u)),
      "specific t = " + fmt(column(L, "t_specific", u))].join("<br>");
  }

  /* Blocks (rows) × position in the block (columns); padding cells are null. */
  function grid(L) {
    var width = 0, r, u, z = [], unit = [], text = [], values = L[state.metric] || [];
    for (u = 0; u < L.col.length; u++) width = Math.max(width, L.col[u] + 1);
    for (r = 0; r < L.blocks.length; r++) {
      z.push(new Array(width).fill(null));
      unit.push(new Array(width).fill(null));
      text.push(new Array(width).fill(""));
    }
    for (u = 0; u < L.units.length; u++) {
      z[L.row[u]][L.col[u]] = values[u] === undefined ? null : values[u];
      unit[L.row[u]][L.col[u]] = u;
      text[L.row[u]][L.col[u]] = hoverText(L, u);
    }
    return {z: z, unit: unit, text: text, width: width};
  }

  /* Colour clipped at the 99th percentile of |value| over every panel shown, as the card's
     heatmap clips; one scale for all panels, so a sweep's seeds compare by colour. */
  function limit() {
    var a = [];
    graphs.forEach(function (g) {
      var values = g.cur ? g.cur.L[state.metric] || [] : [];
      values.forEach(function (v) { if (v !== null) a.push(Math.abs(v)); });
    });
    if (!a.length) return 1;
    a.sort(function (x, y) { return x - y; });
    return Math.max(a[Math.ceil(0.99 * (a.length - 1))], 1e-9);
  }

  function drawPanel(i, lim) {
    var g = graphs[i], cur = g.cur;
    if (!cur) {
      g.note.textContent = "layout " + state.layout + " was not captured in this run";
      Plotly.purge(g.div);
      g.wired = false;
      return Promise.resolve();
    }
    var L = cur.L, G = grid(L), sig = state.metric === "t_specific" ? "p_fwer_specific" : "p_fwer";
    var sx = [], sy = [], u, rows = [];
    g.note.textContent = L.omitted ? "per-pair values left out (" + L.omitted + " values; raise plantain view --max-values)" : "";
    for (u = 0; u < L.units.length; u++) {
      if (L[sig] && L[sig][u] !== null && L[sig][u] < ALPHA) { sx.push(L.col[u]); sy.push(L.row[u]); }
    }
    for (u = 0; u < L.blocks.length; u++) rows.push(u);
    var traces = [
      {type: "heatmap", z: G.z, customdata: G.unit, text: G.text, hovertemplate: "%{text}<extra></extra>",
        hoverongaps: false, colorscale: "RdBu", zmin: -lim, zmax: lim,
        colorbar: {title: {text: esc(metricLabel()) + "<br>(±" + lim.toPrecision(3) + ")"}, thickness: 12,
          tickvals: [-lim, 0, lim], ticktext: [(-lim).toPrecision(3), "0", lim.toPrecision(3)]}},
      {type: "scatter", mode: "markers", x: sx, y: sy, hoverinfo: "skip", showlegend: false,
        marker: {symbol: "circle-open", color: "black", size: 8}}];
    var layout = {height: Math.max(220, 90 + 18 * L.blocks.length), margin: {l: 100, r: 10, t: 10, b: 45},
      xaxis: {title: {text: "unit index within block"}, zeroline: false,
        dtick: Math.max(1, Math.ceil(G.width / 16))},
      yaxis: {tickmode: "array", tickvals: rows, ticktext: L.blocks.map(esc), autorange: "reversed",
        zeroline: false, tickfont: {size: 9}}, showlegend: false};
    return Plotly.react(g.div, traces, layout, {displaylogo: false, responsive: true}).then(function () {
      if (!g.wired) {
        g.div.on("plotly_click", function (ev) { onClick(i, ev); });
        g.wired = true;
      }
    });
  }

  function drawAll() {
    if (DATA.steps.length) {
      el("step-label").textContent = "step " + DATA.steps[state.step] + " (" + (state.step + 1) + " of " + DATA.steps.length + ")";
    }
    graphs.forEach(function (g, i) { g.cur = current(DATA.panels[i]); });
    var lim = limit();
    return Promise.all(graphs.map(function (g, i) { return drawPanel(i, lim); })).then(function () {
      var c = state.clicked;
      if (c && graphs[c.index].cur && graphs[c.index].cur.L.units.indexOf(c.unit) >= 0) {
        showUnit(c.index, graphs[c.index].cur.L.units.indexOf(c.unit));
      }
      writeState();
    });
  }

  function onClick(i, ev) {
    var pt = ((ev && ev.points) || []).filter(function (q) { return q.data && q.data.type === "heatmap"; })[0];
    if (pt && pt.customdata !== null && pt.customdata !== undefined) showUnit(i, pt.customdata);
    writeState();
  }

  /* The unit's A − B per pair: a bar per pair and a table. */
  function showUnit(i, u) {
    var p = DATA.panels[i], cur = graphs[i].cur, L = cur.L, name = L.units[u], table = el("detail-table");
    var dir = p.direction.length === 2 ? p.direction[0] + " − " + p.direction[1] : "A − B";
    el("detail-title").textContent = p.name + " · " + cur.name + " · " + name + ": " + dir + " per pair (t = " +
      fmt(column(L, "t", u)) + ", d_z = " + fmt(column(L, "d", u)) + ")";
    table.textContent = "";
    // the colour plotly holds for the cell, to check the map against units.csv
    var z = graphs[i].div.calcdata ? graphs[i].div.calcdata[0][0].z[L.row[u]][L.col[u]] : null;
    state.clicked = {index: i, panel: p.name, layout: cur.name, unit: name, z: z};
    if (!L.diff) {
      add(add(table, "tr"), "td", "per-pair values were left out of this page (raise plantain view --max-values)");
      Plotly.purge(el("detail-plot"));
      return;
    }
    var head = add(table, "tr");
    add(head, "th", "pair");
    add(head, "th", dir);
    L.pairs.forEach(function (pair, k) {
      var row = add(table, "tr");
      add(row, "td", pair);
      add(row, "td", fmt(L.diff[u][k]));
    });
    var ticks = L.pairs.map(function (pair, k) { return k; });
    Plotly.react(el("detail-plot"), [{type: "bar", x: ticks, y: L.diff[u], text: L.pairs.map(esc), textposition: "none",
      hovertemplate: "%{text}: %{y:.4g}<extra></extra>", marker: {color: "#4a78b5"}}],
    {height: 260, margin: {l: 60, r: 10, t: 10, b: 90}, yaxis: {title: {text: esc(dir)}},
      xaxis: {tickmode: "array", tickvals: ticks, ticktext: L.pairs.map(esc), tickangle: -45}},
    {displaylogo: false, responsive: true});
  }

  function writeState() {
    var slider = el("step");
    el("plantain-state").textContent = JSON.stringify({
      layout: state.layout, metric: state.metric, step: DATA.steps.length ? DATA.steps[state.step] : null,
      layouts: Array.prototype.map.call(el("layout").options, function (o) { return o.value; }),
      slider: el("step-box").hidden ? null : {min: +slider.min, max: +slider.max, positions: +slider.max - +slider.min + 1},
      panels: graphs.map(function (g, i) {
        var gd = g.div, d = gd.data && gd.data[0], cells = 0, values = 0;
        if (d) {
          d.customdata.forEach(function (row) { row.forEach(function (v) { if (v !== null) cells++; }); });
          gd.calcdata[0][0].z.forEach(function (row) { row.forEach(function (v) { if (v !== null && isFinite(v)) values++; }); });
        }
        return {name: DATA.panels[i].name, layout: g.cur ? g.cur.name : null, cells: cells, finite: values,
          zmax: d ? d.zmax : null,
          rows: Array.prototype.map.call(gd.querySelectorAll(".yaxislayer-above .ytick text"), function (t) {
            return t.textContent;
          }), drawn: !!gd.querySelector("g.hm image")};
      }),
      clicked: state.clicked, hover: state.hover, detail: el("detail-title").textContent,
      // what the reader sees: the table's cells and the bars plotly drew
      table: Array.prototype.map.call(el("detail-table").querySelectorAll("tr"), function (tr) {
        return Array.prototype.map.call(tr.children, function (td) { return td.textContent; });
      }),
      bars: el("detail-plot").querySelectorAll(".bars .point").length});
  }

  function params() {
    var out = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return;
      var j = kv.indexOf("=");
      out[decodeURIComponent(j < 0 ? kv : kv.slice(0, j))] = j < 0 ? "" : decodeURIComponent(kv.slice(j + 1));
    });
    return out;
  }

  function setup(P) {
    var first = DATA.panels[0], select = el("layout"), metric = el("metric"), slider = el("step");
    el("title").textContent = DATA.title;
    el("subtitle").textContent = DATA.panels.length === 1
      ? "probe " + first.probe + " on " + first.model + ", seed " + first.seed +
        (first.direction.length === 2 ? "; t = mean(" + first.direction[0] + " − " + first.direction[1] + ")" : "")
      : DATA.panels.length + " runs: seeds side by side, one row per probe and model";
    DATA.layouts.forEach(function (name) { add(select, "option", name).value = name; });
    METRICS.forEach(function (m) { add(metric, "option", m[1]).value = m[0]; });
    if (DATA.layouts.indexOf(P.layout) >= 0) state.layout = P.layout;
    if (METRICS.some(function (m) { return m[0] === P.metric; })) state.metric = P.metric;
    if (DATA.steps.indexOf(Number(P.step)) >= 0 && P.step !== "") state.step = DATA.steps.indexOf(Number(P.step));
    select.value = state.layout;
    metric.value = state.metric;
    if (DATA.steps.length) {
      el("step-box").hidden = false;
      slider.max = String(DATA.steps.length - 1);
      slider.value = String(state.step);
    }
    var groups = {}, main = el("panels");
    DATA.panels.forEach(function (p, i) {
      if (!groups[p.group]) {
        var box = add(main, "section", undefined, "group");
        if (p.group) add(box, "h2", p.group);
        groups[p.group] = add(box, "div", undefined, "group-row");
      }
      var panel = add(groups[p.group], "div", undefined, "panel");
      add(panel, "h3", p.name);
      graphs.push({note: add(panel, "p", "", "note"), div: add(panel, "div"), wired: false, cur: null});
    });
    select.addEventListener("change", function () { state.layout = select.value; drawAll(); });
    metric.addEventListener("change", function () { state.metric = metric.value; drawAll(); });
    slider.addEventListener("input", function () { state.step = Number(slider.value); drawAll(); });
  }

  /* The test hook: click (through plotly's own event) and hover the unit named in the fragment. */
  function hook(P) {
    var i = Number(P.panel || 0), g = graphs[i];
    if (P.click === undefined || !g || !g.cur) return;
    var L = g.cur.L, u = L.units.indexOf(P.click);
    if (u < 0) { state.hover = "no unit " + P.click; return; }
    g.div.emit("plotly_click", {points: [{data: g.div.data[0], customdata: u, pointNumber: [L.row[u], L.col[u]],
      x: L.col[u], y: L.row[u]}]});
    if (P.hover !== undefined) {
      Plotly.Fx.hover(g.div, {xval: L.col[u], yval: L.row[u]});
      var label = g.div.querySelector(".hoverlayer .hovertext");
      state.hover = label ? Array.prototype.map.call(label.querySelectorAll("tspan.line"), function (t) {
        return t.textContent;
      }) : null;
    }
  }

  var P = params();
  setup(P);
  drawAll().then(function () { hook(P); writeState(); });
})();
