"""The HTML report: one self-contained file (inline CSS, JS and data; no network to view it)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from datetime import datetime
from html import escape
from itertools import chain, islice
from typing import IO, Any

from migrator.model.status import Status
from migrator.report.html_assets import CSS, JS

# The table's columns as shown: (id, sorted by, title). Address and name share a column, and so
# do the failure's reason and text, so that 12 columns fit a 1,280 px window without sideways
# scrolling; every field of a row is still there (CSV/JSON keep one column each).
DISPLAY = (
    ("account", "address", "account"),
    ("batch", "batch", "batch"),
    ("state", "state", "state"),
    ("passes", "passes", "passes"),
    ("messages_source", "messages_source", "in source"),
    ("messages_done", "messages_done", "migrated"),
    ("messages_skipped", "messages_skipped", "skipped"),
    ("messages_failed", "messages_failed", "failed"),
    ("bytes", "bytes", "bytes"),
    ("first_pass", "first_pass", "first pass"),
    ("last_pass", "last_pass", "last pass"),
    ("last_error", "last_error_reason", "last error"),
)
_NUMERIC = {
    "passes",
    "messages_source",
    "messages_done",
    "messages_skipped",
    "messages_failed",
    "bytes",
}


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `</script>`, `<!--` or `&` can end or bend it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# Columns whose few distinct values (a campaign has hundreds of batches, five states, a dozen
# reasons) are embedded once, the rows holding their index; and the times, embedded as seconds
# after the report's earliest one. A 100,000-account report is then a quarter smaller, which the
# browser reads and parses that much faster; the page turns them back into values (html_assets).
CODED = ("batch", "state", "last_error_reason")
TIMES = ("first_pass", "last_pass")


# Rows are encoded this many at a time: a few json.dumps calls, never the whole table at once.
_CHUNK = 1000


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def _time_base(data: dict[str, Any], rows: list[list[Any]] | None) -> int:
    """The UTC epoch second the page's times count from: the earliest time of the rows, or
    when they are streamed (not known in advance), `earliest_time` as build_report read it."""
    if rows is None:
        earliest = data.get("earliest_time")
        return _epoch(earliest) if earliest else 0
    columns = data["columns"]
    timed = [columns.index(c) for c in TIMES if c in columns]
    return min((_epoch(r[i]) for r in rows for i in timed if r[i] is not None), default=0)


def write_embedded(
    data: dict[str, Any], rows: Iterable[list[Any]], base: int, stream: IO[str]
) -> int:
    """The report as the page embeds it, written as the rows come: every key of `data`, then
    `time_base`, `rows` with CODED columns as indexes into `codes` and TIMES as whole seconds
    after `time_base`, and last `codes` (known once every row is seen; JSON keys have no
    order for the page). Returns the number of rows."""
    columns = data["columns"]
    coded = [(columns.index(c), c) for c in CODED if c in columns]
    timed = [columns.index(c) for c in TIMES if c in columns]
    codes: dict[str, dict[Any, int]] = {c: {} for _, c in coded}
    head = {k: v for k, v in data.items() if k not in ("rows", "earliest_time")}
    head["time_base"] = base
    stream.write(embed_json(head)[:-1] + ',"rows":[')
    count = 0
    source = iter(rows)
    while chunk := list(islice(source, _CHUNK)):
        out = []
        for row in chunk:
            r = list(row)
            for i, name in coded:
                if r[i] is not None:
                    table = codes[name]
                    r[i] = table.setdefault(r[i], len(table))
            for i in timed:
                if r[i] is not None:
                    r[i] = _epoch(r[i]) - base
            out.append(r)
        stream.write(("," if count else "") + embed_json(out)[1:-1])
        count += len(out)
    stream.write('],"codes":' + embed_json({n: list(t) for n, t in codes.items()}) + "}")
    return count


def render_html(data: dict[str, Any]) -> str:
    """The whole page as text (write_html writes it to a file as the rows come)."""
    out = io.StringIO()
    write_html(data, out)
    return out.getvalue()


def write_html(data: dict[str, Any], stream: IO[str]) -> int:
    """The page, written to `stream`; `data["rows"]` may be a list or an iterator read once
    (build_report(stream_rows=True)): a report of 100,000 accounts is then written without
    holding its rows. Returns the number of account rows."""
    given = data["rows"]
    rows = iter(given)
    first = list(islice(rows, STATIC_ROWS + 1))
    small = len(first) <= STATIC_ROWS
    known = first if small else (given if isinstance(given, list) else None)
    count = len(known) if known is not None else int(data["accounts"]["total"])
    stream.write(_page_top(data, count, static_rows(data["columns"], first) if small else ""))
    stream.write('<script type="application/json" id="report-data">')
    written = write_embedded(data, chain(first, rows), _time_base(data, known), stream)
    stream.write(f"</script>\n<script>{JS}</script>\n</body>\n</html>\n")
    return written


def _page_top(data: dict[str, Any], count: int, static: str) -> str:
    """The page up to its embedded data."""
    e = escape
    m = data["messages"]
    a = data["accounts"]
    heads = "".join(
        f'<th scope="col" data-col="{e(ident)}" '
        f'data-sort="{e(sort)}"{" class=n" if ident in _NUMERIC else ""}>{e(title)}</th>'
        for ident, sort, title in DISPLAY
        if sort in data["columns"]
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>migrator report: {e(data["plan"])}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1 id="headline">{e(data["headline"])}</h1>
<p class="meta">plan <b>{e(data["plan"])}</b> &middot; generated {e(str(data["generated_at"]))} UTC &middot;
{a[Status.VERIFIED]:,} verified, {a[Status.SYNCED]:,} synced, {a[Status.RUNNING]:,} running, {a[Status.PENDING]:,} pending,
{a[Status.FAILED]:,} failed &middot; messages: {m["done"]:,} migrated, {m["skipped"]:,} skipped, {m["failed"]:,} failed</p>
</header>
<noscript><p>{e(noscript_note(count))}</p></noscript>
<section>
<h2>Progress over time</h2>
<p class="meta">accounts synced at least once, cumulative per {e(data["timeline"]["unit"])}</p>
<svg id="progress-chart" role="img" aria-label="accounts synced over time"></svg>
</section>
<section>
<h2>Batches</h2>
<p class="legend"><span><i style="background:var(--ok)"></i>migrated</span><span><i style="background:var(--run)"></i>running</span><span><i style="background:var(--bad)"></i>failed</span><span><i style="background:var(--todo)"></i>pending</span></p>
<div id="batch-chart" role="list" aria-label="accounts per batch by state"></div>
</section>
{cutover_section(data.get("cutover") or [])}
<section class="two">
<div><h2>Failed accounts by reason</h2><table id="failures"></table></div>
<div><h2>Skipped messages by reason</h2><table id="skipped"></table></div>
</section>
<section>
<h2>Accounts</h2>
<p><input id="search" type="search" placeholder="search address, name, batch, state, error" aria-label="search accounts">
<select id="state" aria-label="only accounts in this state"><option value="">every state</option></select>
<span id="count" class="meta"></span></p>
<table id="accounts"><thead><tr>{heads}</tr></thead><tbody>{static}</tbody></table>
<nav id="pages" aria-label="pages of the account table"><button type="button" id="first">&laquo; first</button><button type="button" id="prev">&lsaquo; previous</button>
<span id="page"></span><button type="button" id="next">next &rsaquo;</button><button type="button" id="last">last &raquo;</button>
<label>rows per page <select id="per"><option>50</option><option selected>100</option><option>250</option><option>500</option></select></label></nav>
</section>
"""


# A campaign this small has its whole table written into the page as well, for a reader without
# JavaScript (a mail client's preview, an archive viewer); the script draws it again, pageable.
STATIC_ROWS = 100


def noscript_note(rows: int) -> str:
    if rows <= STATIC_ROWS:
        return (
            "This report draws its charts with JavaScript, and makes its table searchable and "
            "sortable with it."
        )
    return (
        f"This report draws its charts and its table of {rows:,} accounts with JavaScript; enable "
        "it, or use the CSV/JSON report (`migrator report --format csv`)."
    )


def static_rows(columns: list[str], rows: list[list[Any]]) -> str:
    """The account table's rows as markup, when there are at most STATIC_ROWS of them."""
    if len(rows) > STATIC_ROWS:
        return ""
    e = escape
    at = {name: i for i, name in enumerate(columns)}
    shown = [(ident, title) for ident, sort, title in DISPLAY if sort in at]

    def cell(row: list[Any], ident: str, title: str) -> str:
        def value(name: str) -> Any:
            return row[at[name]] if name in at else None

        numeric = ident in _NUMERIC
        if ident == "account":
            who = value("name")
            text = f'<span class="addr">{e(str(value("address") or ""))}</span>' + (
                f'<span class="who">{e(str(who))}</span>' if who else ""
            )
        elif ident == "last_error":
            reason, error = value("last_error_reason"), value("last_error")
            text = (f'<span class="reason">{e(str(reason))}</span> ' if reason else "") + (
                f'<span class="err clip3">{e(str(error))}</span>' if error else ""
            )
        elif ident in ("first_pass", "last_pass"):
            text = e(str(value(ident) or "")[:16].replace("T", " "))
        elif numeric:
            v = value(ident)
            text = "" if v is None else f"{v:,}"
        else:
            text = e(str(value(ident) or ""))
        classes = (
            ident
            + (" n" if numeric else "")
            + (" state-" + e(str(value("state"))) if ident == "state" else "")
        )
        return (
            f'<td class="{classes}{"" if text else " blank"}" data-label="{e(title)}">{text}</td>'
        )

    return "".join(
        "<tr>" + "".join(cell(row, ident, title) for ident, title in shown) + "</tr>"
        for row in rows
    )


def cutover_section(waves: list[dict[str, Any]]) -> str:
    """The cut-over timeline: each wave (switch or rollback) and its steps with their times."""
    if not waves:
        return ""
    e = escape
    rows = []
    for wave in waves:
        selection = wave.get("selection") or {}
        names = ", ".join([*selection.get("batches", []), *selection.get("accounts", [])])
        steps = "; ".join(
            f"{e(str(s['step']))} {e(str(s['status']))} {e(str(s['started_at'] or ''))}"
            + (f"&rarr;{e(str(s['finished_at'])[11:])}" if s.get("finished_at") else "")
            for s in wave["steps"]
        )
        rows.append(
            "<tr><td "
            f"class=n>{int(wave['id'])}</td><td>{e(str(wave['kind']))}</td><td>{e(names)}</td>"
            f"<td class=n>{int(wave['accounts']):,}</td><td>{e(str(wave['status']))}</td>"
            f"<td>{e(str(wave['started_at'] or ''))}</td>"
            f"<td>{e(str(wave['switched_at'] or ''))}</td>"
            f"<td>{e(str(wave['finished_at'] or ''))}</td><td>{steps}</td></tr>"
        )
    return f"""<section id="cutover">
<h2>Cut-over timeline</h2>
<p class="meta">each wave of `migrator cutover`: when it started, when Postfix began sending its accounts' mail to the target (switched), when the final delta pass ended (finished); times in UTC</p>
<div class="scroll"><table id="cutover-waves"><thead><tr><th>wave</th><th>kind</th><th>batches / accounts</th><th class=n>accounts</th><th>status</th><th>started</th><th>switched</th><th>finished</th><th>steps</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></div>
</section>"""
