"""The inline CSS and JavaScript of the HTML report (no network: everything lives in the file).

The script reads the report from a <script type="application/json"> block and builds every
element with textContent/setAttribute, never innerHTML, so directory and mail values stay text.
The URL hash drives search and sort (report.html#search=garcia&sort=-bytes), which also makes a
view shareable and lets a headless browser check the page without clicking.
"""

import json

from migrator.model.status import Status

# the filter's states in the order an operator looks for them: what needs attention first
_STATE_ORDER = [Status.FAILED, Status.RUNNING, Status.PENDING, Status.SYNCED, Status.VERIFIED]

CSS = """
:root { --ok: #2e7d32; --bad: #c62828; --run: #f9a825; --todo: #cfd8dc; --ink: #1f2933; --muted: #52606d;
        --line: #e0e6eb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1500px; padding: 1.5rem; }
h1 { font-size: 1.7rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid var(--line); }
.meta { color: var(--muted); margin: 0; }
.two { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eef1f4; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
#failures td:first-child, #skipped td:first-child { white-space: nowrap; }
.err { overflow-wrap: anywhere; color: #7b1f1f; }
svg text { font-size: 11px; fill: var(--muted); }
#progress-chart { display: block; width: 100%; }
.legend span { display: inline-block; margin-right: 1rem; }
.legend i { display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem; vertical-align: -1px; }
.empty { color: var(--muted); font-style: italic; }
#search { font-size: 1rem; padding: .35rem .6rem; width: 24rem; max-width: 100%; }
#state, #per { font-size: .95rem; padding: .3rem; max-width: 100%; }
#pages { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem .6rem; margin: .6rem 0; }
#pages button { font-size: .95rem; padding: .25rem .7rem; }
#page { font-variant-numeric: tabular-nums; color: var(--muted); }

/* batches: name | bar | "100 % of 1,234"; the numbers always show in full */
#batch-chart { display: grid; grid-template-columns: fit-content(22rem) minmax(6rem, 1fr) max-content;
               gap: .25rem .6rem; align-items: center; }
.bar-row { display: contents; }
.bar-label { text-align: right; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; color: var(--muted); }
.bar { display: flex; height: .95rem; background: #f1f4f6; }
.bar > span { display: block; height: 100%; }
.bar-migrated { background: var(--ok); } .bar-running { background: var(--run); }
.bar-failed { background: var(--bad); } .bar-pending { background: var(--todo); }
.more-batches { grid-column: 1 / -1; justify-self: start; margin-top: .3rem; }
.bar-value { white-space: nowrap; font-variant-numeric: tabular-nums; color: var(--muted); }

/* the account table: twelve columns that fit 1,280 px; long values wrap, names on two lines */
#accounts { font-size: 13px; }
#accounts th, #accounts td { padding: .3rem .25rem; }
#accounts th.n { white-space: normal; }  /* "in source" may take two lines */
#accounts th { cursor: pointer; user-select: none; position: sticky; top: 0; background: #fff; vertical-align: bottom; }
#accounts th[aria-sort=ascending]::after { content: " \\25B2"; }
#accounts th[aria-sort=descending]::after { content: " \\25BC"; }
#accounts td.account { min-width: 16.5rem; }
.addr { display: block; overflow-wrap: anywhere; }
.who { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 2; overflow: hidden; color: var(--muted); }
#accounts td.batch { min-width: 6rem; overflow-wrap: anywhere; }
.nw { white-space: nowrap; }
#accounts td.last_error { min-width: 12rem; }
.reason { font-weight: 600; color: var(--bad); }
.clip3 { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 3; overflow: hidden; }
.state-synced, .state-verified { color: var(--ok); }
.state-failed { color: var(--bad); font-weight: 600; }
.state-running { color: #8d6e00; }

@media (max-width: 800px) { .two { grid-template-columns: minmax(0, 1fr); } }
@media (max-width: 600px) {
  body { padding: 1rem .75rem; }
  #batch-chart { grid-template-columns: minmax(0, 1fr) max-content; gap: .1rem .6rem; }
  .bar-label { grid-column: 1 / -1; text-align: left; margin-top: .3rem; }
  /* the example error under its reason, across the width */
  #failures tr { display: grid; grid-template-columns: minmax(0, 1fr) max-content; }
  #failures th:nth-child(3) { display: none; }
  #failures td.err { grid-column: 1 / -1; padding-top: 0; }
}
/* narrower than the table (with room for a scrollbar): one card per account, the headers
   become sort buttons */
@media (max-width: 1219px) {
  #accounts, #accounts thead, #accounts tbody { display: block; }
  #accounts thead tr { display: flex; flex-wrap: wrap; gap: .3rem; }
  #accounts th { position: static; border: 1px solid #cbd2d9; border-radius: 1rem; padding: .1rem .6rem;
                 font-weight: normal; text-align: left; }
  #accounts tbody { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 20rem), 1fr));
                    gap: .6rem; margin-top: .6rem; }
  #accounts tbody tr { display: block; border: 1px solid var(--line); border-radius: .4rem; padding: .4rem .6rem; }
  #accounts td { display: grid; grid-template-columns: 5.5rem minmax(0, 1fr); gap: .6rem; border: 0;
                 padding: .05rem 0; min-width: 0; text-align: left; white-space: normal; }
  #accounts td::before { content: attr(data-label); color: var(--muted); font-weight: normal; }
  #accounts td.account { display: block; margin-bottom: .2rem; }
  #accounts .addr { font-weight: 600; }
  #accounts td.account::before { content: none; }
  #accounts td.blank { display: none; }
}
"""

JS = r"""
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var BATCHES_SHOWN = 40;
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
    box.textContent = "";
    var pts = data.timeline.points;
    var total = data.accounts.total || 1;
    // drawn at the width it is shown at, so its text stays legible on a phone
    var W = Math.max(280, Math.round(box.getBoundingClientRect().width) || 900), H = 240, L = 56, R = 16, T = 12, B = 28;
    box.setAttribute("viewBox", "0 0 " + W + " " + H);
    box.setAttribute("height", H);
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
    // a campaign of 100,000 accounts has hundreds of batches: the first ones drawn at once,
    // the others on request (drawing and laying out all of them doubled the time to open)
    var more = null;
    if (batches.length > BATCHES_SHOWN) {
      more = el("button", "show all " + num(batches.length) + " batches", "more-batches");
      more.type = "button";
      more.addEventListener("click", function () {
        box.removeChild(more);
        batches.slice(BATCHES_SHOWN).forEach(drawBar);
      });
    }
    batches.slice(0, BATCHES_SHOWN).forEach(drawBar);
    if (more) { box.appendChild(more); }
    function drawBar(b) {
      var tot = b.total || 0;
      var label = b.batch === null || b.batch === "" ? "(no batch)" : String(b.batch);
      var row = el("div", null, "bar-row");
      row.setAttribute("role", "listitem");
      var name = el("span", label, "bar-label");
      name.title = label;
      var bar = el("span", null, "bar");
      var parts = [];
      ["migrated", "running", "failed", "pending"].forEach(function (part) {
        var n = b[part] || 0;
        parts.push(num(n) + " " + part);
        if (!n || !tot) { return; }
        var piece = el("span", null, "bar-" + part);
        piece.style.width = (100 * n / tot) + "%";
        piece.title = label + ": " + num(n) + " " + part;
        bar.appendChild(piece);
      });
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", label + ": " + parts.join(", "));
      var pct = tot ? Math.floor(100 * (b.migrated || 0) / tot) : 100;
      row.appendChild(name);
      row.appendChild(bar);
      row.appendChild(el("span", pct + " % of " + num(tot), "bar-value"));
      box.appendChild(row);
    }
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
  // The page embeds batch, state and reason as indexes into data.codes and the times as
  // seconds after data.time_base (report/html.py compact); turn the codes back into values
  // once here, and the times into ISO text only for the rows drawn.
  var rows = data.rows, haystack = null, view = rows;
  var at = {};
  columns.forEach(function (name, i) { at[name] = i; });
  var TIMES = {first_pass: 1, last_pass: 1};
  // each row also carries its place in data.rows, where its search text is, in any order
  var PLACE = columns.length;
  (function decode() {
    var coded = Object.keys(data.codes || {}).map(function (name) { return [at[name], data.codes[name]]; });
    for (var k = 0; k < rows.length; k++) {
      for (var c = 0; c < coded.length; c++) {
        var v = rows[k][coded[c][0]];
        if (v !== null && v !== undefined) { rows[k][coded[c][0]] = coded[c][1][v]; }
      }
      rows[k][PLACE] = k;
    }
  })();
  function isoTime(v) {
    return blank(v) ? null : new Date((data.time_base + v) * 1000).toISOString().slice(0, 19) + "Z";
  }
  var PER = [50, 100, 250, 500], PER_DEFAULT = 100;
  var state = {search: "", sort: null, desc: false, only: "", page: 0, per: PER_DEFAULT};
  var tbody = document.querySelector("#accounts tbody");
  var heads = document.querySelectorAll("#accounts th");
  var input = document.getElementById("search");
  var only = document.getElementById("state");
  var perBox = document.getElementById("per");
  // Intl.Collator compares 100,000 names in a fraction of what localeCompare takes (it builds
  // a collator on every call)
  var collator = new Intl.Collator("en");

  function lowerText() {
    if (!haystack) {
      haystack = rows.map(function (r) {
        return [r[at.address], r[at.name], r[at.batch], r[at.state], r[at.last_error_reason],
                r[at.last_error]].join("\u0001").toLowerCase();
      });
    }
    return haystack;
  }
  function compare(i, desc) {
    var numeric = NUMERIC[columns[i]] || TIMES[columns[i]];
    return function (a, b) {
      var x = a[i], y = b[i];
      if (x === null || x === undefined || x === "") { return (y === null || y === undefined || y === "") ? 0 : 1; }
      if (y === null || y === undefined || y === "") { return -1; }
      var c = numeric ? x - y : collator.compare(String(x), String(y));
      return desc ? -c : c;
    };
  }
  function blank(v) { return v === null || v === undefined || v === ""; }
  // an address may break after a dot of its local part and before the @, not inside a word
  function address(text) {
    var span = el("span", null, "addr"), sign = String(text).lastIndexOf("@");
    var local = sign < 0 ? String(text) : String(text).slice(0, sign), domain = sign < 0 ? "" : String(text).slice(sign);
    local.split(/\./).map(function (p, k, all) { return k < all.length - 1 ? p + "." : p; }).concat(
      domain ? [domain] : []).forEach(function (part, k) {
      if (k) { span.appendChild(document.createElement("wbr")); }
      span.appendChild(document.createTextNode(part));
    });
    return span;
  }
  // "2026-11-20 08:15", which may wrap between the date and the time only
  function when(td, v) {
    if (blank(v)) { return; }
    var parts = String(v).slice(0, 16).split("T");
    td.appendChild(el("span", parts[0], "nw"));
    if (parts[1]) { td.appendChild(document.createTextNode(" ")); td.appendChild(el("span", parts[1], "nw")); }
    td.title = v;
  }
  // cells by the header's data-col; each carries its title for the narrow (card) layout
  var CELLS = {
    account: function (r, td) {
      td.appendChild(address(r[at.address] || ""));
      if (!blank(r[at.name])) { var who = el("span", r[at.name], "who"); who.title = r[at.name]; td.appendChild(who); }
    },
    bytes: function (r, td) { td.textContent = bytes(r[at.bytes]); td.title = num(r[at.bytes]) + " bytes"; },
    first_pass: function (r, td) { when(td, isoTime(r[at.first_pass])); },
    last_pass: function (r, td) { when(td, isoTime(r[at.last_pass])); },
    state: function (r, td) { td.textContent = r[at.state]; td.className += " state-" + r[at.state]; },
    last_error: function (r, td) {
      var reason = r[at.last_error_reason], text = blank(r[at.last_error]) ? "" : String(r[at.last_error]);
      if (blank(reason) && !text) { return; }
      var box = el("div");  // one value for the card layout's second column
      if (!blank(reason)) { box.appendChild(el("span", reason, "reason")); box.appendChild(document.createTextNode(" ")); }
      if (text) {
        var e = el("span", text.length > 300 ? text.slice(0, 299) + "\u2026" : text, "err clip3");
        e.title = text;
        box.appendChild(e);
      }
      td.appendChild(box);
    }
  };
  var shown = Array.prototype.map.call(heads, function (th) {
    var id = th.getAttribute("data-col");
    return {id: id, sort: at[th.getAttribute("data-sort")], label: th.textContent,
            numeric: !!NUMERIC[id], when: id === "first_pass" || id === "last_pass"};
  });
  function cell(r, c) {
    var td = el("td", null, c.id + (c.numeric ? " n" : "") + (c.when ? " when" : ""));
    td.setAttribute("data-label", c.label);
    if (CELLS[c.id]) { CELLS[c.id](r, td); }
    else if (c.numeric) { td.textContent = num(r[at[c.id]]); }
    else if (!blank(r[at[c.id]])) { td.textContent = r[at[c.id]]; }
    if (!td.firstChild) { td.className += " blank"; }
    return td;
  }
  function pages() { return Math.max(1, Math.ceil(view.length / state.per)); }
  // filter and sort into `view`; then draw()
  // every row in one sort order, kept once made: sorting 100,000 names takes about a second,
  // so paging, searching and filtering a sorted table use it rather than sort again
  var sorted = {};
  function select() {
    var q = state.search.trim().toLowerCase();
    var key = state.sort === null ? null : (state.desc ? "-" : "+") + state.sort;
    var base = key === null ? rows : sorted[key];  // undefined: this order is not made yet
    var from = base || rows, picked = from;
    if (q || state.only) {
      var text = q ? lowerText() : null, col = at.state;
      picked = [];
      for (var k = 0; k < from.length; k++) {
        var r = from[k];
        if (state.only && r[col] !== state.only) { continue; }
        if (q && text[r[PLACE]].indexOf(q) < 0) { continue; }
        picked.push(r);
      }
    }
    if (key !== null && !base) {
      picked = picked.slice().sort(compare(state.sort, state.desc));
      if (picked.length === rows.length) { sorted[key] = picked; }
    }
    view = picked;
  }

  // only the rows of the current page are ever in the document: 100,000 accounts open as fast as 100
  function draw() {
    state.page = Math.max(0, Math.min(state.page, pages() - 1));
    var start = state.page * state.per, end = Math.min(view.length, start + state.per);
    var frag = document.createDocumentFragment();
    for (var j = start; j < end; j++) {
      var tr = el("tr");
      for (var i = 0; i < shown.length; i++) { tr.appendChild(cell(view[j], shown[i])); }
      frag.appendChild(tr);
    }
    tbody.textContent = "";
    tbody.appendChild(frag);
    var filtered = state.search.trim() || state.only;
    document.getElementById("count").textContent =
      num(view.length) + " of " + num(rows.length) + " accounts" + (filtered ? " match" : "");
    document.getElementById("page").textContent = view.length
      ? "page " + num(state.page + 1) + " of " + num(pages()) + " (" + num(start + 1) + "\u2013" + num(end) + ")" : "";
    document.getElementById("first").disabled = document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = document.getElementById("last").disabled = state.page >= pages() - 1;
    document.getElementById("pages").hidden = pages() < 2 && state.per === PER_DEFAULT;
    heads.forEach(function (th, i) {
      if (shown[i].sort === state.sort) { th.setAttribute("aria-sort", state.desc ? "descending" : "ascending"); }
      else { th.removeAttribute("aria-sort"); }
    });
  }
  function render() { select(); draw(); }
  function toHash() {
    var p = [];
    if (state.search) { p.push("search=" + encodeURIComponent(state.search)); }
    if (state.only) { p.push("state=" + encodeURIComponent(state.only)); }
    if (state.sort !== null) { p.push("sort=" + (state.desc ? "-" : "") + columns[state.sort]); }
    if (state.page) { p.push("page=" + (state.page + 1)); }
    if (state.per !== PER_DEFAULT) { p.push("rows=" + state.per); }
    var h = p.join("&");
    if (("#" + h) !== location.hash && !(h === "" && location.hash === "")) {
      history.replaceState(null, "", h ? "#" + h : location.pathname + location.search);
    }
  }
  function fromHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.search = params.get("search") || "";
    state.only = params.get("state") || "";
    var sort = params.get("sort") || "";
    state.desc = sort.charAt(0) === "-" || params.get("desc") === "1";
    var name = sort.replace(/^-/, "");
    var i = columns.indexOf(name);
    state.sort = i >= 0 ? i : null;
    var per = parseInt(params.get("rows") || "", 10);
    state.per = PER.indexOf(per) >= 0 ? per : PER_DEFAULT;
    state.page = Math.max(0, (parseInt(params.get("page") || "1", 10) || 1) - 1);
    input.value = state.search;
    only.value = state.only;
    perBox.value = String(state.per);
  }
  function fillStates() {
    var counts = {}, col = at.state;
    for (var k = 0; k < rows.length; k++) { counts[rows[k][col]] = (counts[rows[k][col]] || 0) + 1; }
    STATE_ORDER.concat(Object.keys(counts).sort()).forEach(function (name) {
      if (!counts[name] || only.querySelector("option[value='" + name + "']")) { return; }
      var o = el("option", name + " (" + num(counts[name]) + ")");
      o.value = name;
      only.appendChild(o);
    });
  }
  heads.forEach(function (th, i) {
    th.addEventListener("click", function () {
      var col = shown[i].sort;
      state.desc = state.sort === col ? !state.desc : !!(NUMERIC[columns[col]] || TIMES[columns[col]]);
      state.sort = col;
      state.page = 0;
      render(); toHash();
    });
  });
  var timer = null;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.search = input.value; state.page = 0; render(); toHash(); }, 120);
  });
  only.addEventListener("change", function () { state.only = only.value; state.page = 0; render(); toHash(); });
  perBox.addEventListener("change", function () {
    var first = state.page * state.per;  // keep the first row shown in view
    state.per = parseInt(perBox.value, 10) || PER_DEFAULT;
    state.page = Math.floor(first / state.per);
    draw(); toHash();
  });
  function go(page) { state.page = page; draw(); toHash(); }
  document.getElementById("first").addEventListener("click", function () { go(0); });
  document.getElementById("prev").addEventListener("click", function () { go(state.page - 1); });
  document.getElementById("next").addEventListener("click", function () { go(state.page + 1); });
  document.getElementById("last").addEventListener("click", function () { go(pages() - 1); });
  window.addEventListener("hashchange", function () { fromHash(); render(); });
  var drawnAt = null;
  window.addEventListener("resize", function () {
    clearTimeout(drawnAt);
    drawnAt = setTimeout(drawProgress, 100);
  });

  drawProgress();
  drawBatches();
  reasonTable("failures", data.failures_by_reason.map(function (f) { return [f.reason, f.accounts, f.example]; }),
              "accounts");
  reasonTable("skipped", Object.keys(data.skipped_by_reason).map(function (k) {
    return [k, data.skipped_by_reason[k]];
  }).sort(function (a, b) { return b[1] - a[1]; }), "messages");
  fillStates();
  fromHash();
  render();
  document.body.setAttribute("data-ready", "1");
  // the search text of every row, made once the page shows, so that the first search is quick
  setTimeout(lowerText, 0);
})();
"""
JS = JS.replace("STATE_ORDER", json.dumps([str(state) for state in _STATE_ORDER]))
