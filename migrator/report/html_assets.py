"""The inline CSS and JavaScript of the HTML report (no network: everything lives in the file).

The script reads the report from a <script type="application/json"> block and builds every
element with textContent/setAttribute, never innerHTML, so directory and mail values stay text.
The URL hash drives search and sort (report.html#search=garcia&sort=-bytes), which also makes a
view shareable and lets a headless browser check the page without clicking.
"""

CSS = """
:root { --ok: #2e7d32; --bad: #c62828; --run: #f9a825; --todo: #cfd8dc; --ink: #1f2933; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1500px; padding: 1.5rem; }
h1 { font-size: 1.7rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #e0e6eb; }
.meta { color: #52606d; margin: 0; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eef1f4; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#failures td:first-child, #skipped td:first-child { white-space: nowrap; }
#accounts th { cursor: pointer; user-select: none; white-space: nowrap; position: sticky; top: 0; background: #fff; }
#accounts th[aria-sort=ascending]::after { content: " \\25B2"; }
#accounts th[aria-sort=descending]::after { content: " \\25BC"; }
.scroll { overflow-x: auto; }
td.nowrap { white-space: nowrap; }
#accounts td.err { min-width: 16rem; max-width: 24rem; overflow-wrap: anywhere; color: #7b1f1f; }
#search { font-size: 1rem; padding: .35rem .6rem; width: 24rem; max-width: 100%; }
.state-synced, .state-verified { color: var(--ok); }
.state-failed { color: var(--bad); font-weight: 600; }
.state-running { color: #8d6e00; }
svg text { font-size: 11px; fill: #52606d; }
.legend span { display: inline-block; margin-right: 1rem; }
.legend i { display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem; vertical-align: -1px; }
.empty { color: #52606d; font-style: italic; }
@media (max-width: 800px) { .two { grid-template-columns: 1fr; } }
"""

JS = r"""
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var LIMIT = 500;
  var NUMERIC = {passes: 1, messages_source: 1, messages_done: 1, messages_skipped: 1,
                 messages_failed: 1, bytes: 1};
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var columns = data.columns;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = String(text); }
    return e;
  }
  function num(n) { return n === null || n === undefined ? "" : Number(n).toLocaleString("en"); }
  function bytes(n) {
    if (n === null || n === undefined) { return ""; }
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : String(v)) + " " + units[i];
  }

  function drawProgress() {
    var box = document.getElementById("progress-chart");
    var pts = data.timeline.points;
    var total = data.accounts.total || 1;
    var W = 900, H = 240, L = 56, R = 16, T = 12, B = 28;
    box.setAttribute("viewBox", "0 0 " + W + " " + H);
    box.appendChild(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#9aa5b1"}));
    box.appendChild(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#9aa5b1"}));
    box.appendChild(svg("text", {x: L - 6, y: T + 8, "text-anchor": "end"}, num(total)));
    box.appendChild(svg("text", {x: L - 6, y: H - B, "text-anchor": "end"}, "0"));
    if (!pts.length) {
      box.appendChild(svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no account synced yet"));
      return;
    }
    // the axis runs to the end of the last bucket, so a single bucket still shows as a step
    var unit = data.timeline.unit === "day" ? 86400000 : 3600000;
    var t0 = Date.parse(pts[0][0]), t1 = Date.parse(pts[pts.length - 1][0]) + unit;
    var span = Math.max(t1 - t0, 1);
    function x(t) { return L + (W - L - R) * (Date.parse(t) - t0) / span; }
    function y(n) { return H - B - (H - B - T) * n / total; }
    var d = [L + "," + y(0)];
    var prev = 0;
    pts.forEach(function (p) { d.push(x(p[0]) + "," + y(prev)); d.push(x(p[0]) + "," + y(p[1])); prev = p[1]; });
    d.push((W - R) + "," + y(prev));
    var area = d.concat([(W - R) + "," + y(0)]);
    box.appendChild(svg("polygon", {points: area.join(" "), fill: "#c8e6c9"}));
    box.appendChild(svg("polyline", {points: d.join(" "), fill: "none", stroke: "#2e7d32", "stroke-width": 2,
                                     "class": "progress-line"}));
    box.appendChild(svg("text", {x: L, y: H - 8}, pts[0][0].slice(0, 16).replace("T", " ")));
    box.appendChild(svg("text", {x: W - R, y: H - 8, "text-anchor": "end"},
                        new Date(t1).toISOString().slice(0, 16).replace("T", " ") + " UTC"));
    box.appendChild(svg("text", {x: W - R - 4, y: y(prev) + 14, "text-anchor": "end"},
                        num(prev) + " synced"));
    box.setAttribute("data-points", String(pts.length));
  }

  function drawBatches() {
    var box = document.getElementById("batch-chart");
    var batches = data.batches.slice().sort(function (a, b) {
      return String(a.batch || "").localeCompare(String(b.batch || ""));
    });
    if (!batches.length) { box.appendChild(el("p", "no batches", "empty")); return; }
    var row = 18, W = 900, L = 220, R = 70;
    var chart = svg("svg", {viewBox: "0 0 " + W + " " + (batches.length * row + 4), width: "100%",
                            role: "img", "aria-label": "accounts per batch by state"});
    batches.forEach(function (b, i) {
      var y = i * row + 2, w = W - L - R, tot = b.total || 1, xo = L;
      var label = b.batch === null || b.batch === "" ? "(no batch)" : String(b.batch);
      chart.appendChild(svg("text", {x: L - 6, y: y + 12, "text-anchor": "end"}, label.slice(0, 34)));
      [["migrated", "var(--ok)"], ["running", "var(--run)"], ["failed", "var(--bad)"],
       ["pending", "var(--todo)"]].forEach(function (part) {
        var n = b[part[0]] || 0;
        if (!n) { return; }
        var pw = w * n / tot;
        var r = svg("rect", {x: xo, y: y, width: pw, height: row - 4, fill: part[1], "class": "bar-" + part[0]});
        r.appendChild(svg("title", {}, label + ": " + num(n) + " " + part[0]));
        chart.appendChild(r);
        xo += pw;
      });
      chart.appendChild(svg("text", {x: W - R + 6, y: y + 12},
                            Math.round(100 * (b.migrated || 0) / tot) + " % of " + num(b.total)));
    });
    box.appendChild(chart);
  }

  function reasonTable(id, rows, label) {
    var t = document.getElementById(id);
    if (!rows.length) { t.appendChild(el("caption", "none", "empty")); return; }
    var head = el("tr"); head.appendChild(el("th", "reason")); head.appendChild(el("th", label, "n"));
    if (rows[0].length > 2) { head.appendChild(el("th", "example")); }
    t.appendChild(head);
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("td", r[0])); tr.appendChild(el("td", num(r[1]), "n"));
      if (r.length > 2) { tr.appendChild(el("td", r[2] || "", "err")); }
      t.appendChild(tr);
    });
  }

  // --- the account table
  var rows = data.rows, haystack = null, view = rows;
  var state = {search: "", sort: null, desc: false};
  var tbody = document.querySelector("#accounts tbody");
  var heads = document.querySelectorAll("#accounts th");
  var input = document.getElementById("search");

  function lowerText() {
    if (!haystack) {
      haystack = rows.map(function (r) {
        return [r[0], r[1], r[2], r[3], r[12], r[13]].join("\u0001").toLowerCase();
      });
    }
    return haystack;
  }
  function compare(i, desc) {
    var numeric = NUMERIC[columns[i]];
    return function (a, b) {
      var x = a[i], y = b[i];
      if (x === null || x === undefined || x === "") { return (y === null || y === undefined || y === "") ? 0 : 1; }
      if (y === null || y === undefined || y === "") { return -1; }
      var c = numeric ? x - y : String(x).localeCompare(String(y));
      return desc ? -c : c;
    };
  }
  function cell(r, i) {
    var name = columns[i], v = r[i], td;
    if (name === "bytes") { td = el("td", bytes(v), "n"); td.title = num(v) + " bytes"; return td; }
    if (NUMERIC[name]) { return el("td", num(v), "n"); }
    if ((name === "first_pass" || name === "last_pass") && v) {
      td = el("td", String(v).slice(0, 16).replace("T", " ")); td.title = v; td.className = "nowrap"; return td;
    }
    if (name === "state") { return el("td", v, "state-" + v); }
    if (name === "last_error") {
      var s = v ? String(v) : "";
      td = el("td", s.length > 160 ? s.slice(0, 159) + "\u2026" : s, "err");
      if (s) { td.title = s; }
      return td;
    }
    return el("td", v === null ? "" : v);
  }
  function render() {
    var q = state.search.trim().toLowerCase();
    var picked = rows;
    if (q) {
      var text = lowerText();
      picked = [];
      for (var k = 0; k < rows.length; k++) { if (text[k].indexOf(q) >= 0) { picked.push(rows[k]); } }
    }
    if (state.sort !== null) { picked = picked.slice().sort(compare(state.sort, state.desc)); }
    view = picked;
    var frag = document.createDocumentFragment();
    for (var j = 0; j < Math.min(view.length, LIMIT); j++) {
      var tr = el("tr");
      for (var i = 0; i < columns.length; i++) { tr.appendChild(cell(view[j], i)); }
      frag.appendChild(tr);
    }
    tbody.textContent = "";
    tbody.appendChild(frag);
    document.getElementById("count").textContent =
      num(view.length) + " of " + num(rows.length) + " accounts" + (q ? " match" : "");
    document.getElementById("more").textContent = view.length > LIMIT
      ? "showing the first " + num(LIMIT) + "; search or sort to find the others" : "";
    heads.forEach(function (th, i) {
      if (i === state.sort) { th.setAttribute("aria-sort", state.desc ? "descending" : "ascending"); }
      else { th.removeAttribute("aria-sort"); }
    });
  }
  function toHash() {
    var p = [];
    if (state.search) { p.push("search=" + encodeURIComponent(state.search)); }
    if (state.sort !== null) { p.push("sort=" + (state.desc ? "-" : "") + columns[state.sort]); }
    var h = p.join("&");
    if (("#" + h) !== location.hash && !(h === "" && location.hash === "")) {
      history.replaceState(null, "", h ? "#" + h : location.pathname + location.search);
    }
  }
  function fromHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.search = params.get("search") || "";
    var sort = params.get("sort") || "";
    state.desc = sort.charAt(0) === "-" || params.get("desc") === "1";
    var name = sort.replace(/^-/, "");
    var i = columns.indexOf(name);
    state.sort = i >= 0 ? i : null;
    input.value = state.search;
  }
  heads.forEach(function (th, i) {
    th.addEventListener("click", function () {
      state.desc = state.sort === i ? !state.desc : !!NUMERIC[columns[i]];
      state.sort = i;
      render(); toHash();
    });
  });
  var timer = null;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.search = input.value; render(); toHash(); }, 120);
  });
  window.addEventListener("hashchange", function () { fromHash(); render(); });

  drawProgress();
  drawBatches();
  reasonTable("failures", data.failures_by_reason.map(function (f) { return [f.reason, f.accounts, f.example]; }),
              "accounts");
  reasonTable("skipped", Object.keys(data.skipped_by_reason).map(function (k) {
    return [k, data.skipped_by_reason[k]];
  }).sort(function (a, b) { return b[1] - a[1]; }), "messages");
  fromHash();
  render();
  document.body.setAttribute("data-ready", "1");
})();
"""
