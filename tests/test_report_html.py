"""The HTML report, checked in a real headless Chromium: it renders, charts draw, the table
searches and sorts (driven by the URL hash), directory values stay text, no network is used."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import pytest

from migrator.commands.report import build_report
from migrator.plan import load_plan
from migrator.report.html import render_html, write_html
from tests.fixtures.browser import Browser, BrowserError
from tests.fixtures.reports import (
    ARTIFACTS,
    BATCHES,
    HOSTILE_NAME,
    Reported,
    chromium,
    invoke,
    realistic_state,
    synthetic_state,
)

# the shared campaign fixture (one per session, whichever module asks first)


def _report(plan: Path, out: Path) -> Path:
    result = invoke("report", "--plan", str(plan), "--format", "html", "--output", str(out))
    assert result.exit_code == 0, result.output
    return out


def _id(dom: lxml.html.HtmlElement, ident: str) -> lxml.html.HtmlElement:
    found = dom.xpath(f"//*[@id='{ident}']")
    assert found, f"no element #{ident} in the rendered page"
    return found[0]


def _rows(dom: lxml.html.HtmlElement) -> list[dict[str, str]]:
    """The account table's rows as {column: text}; the account cell gives address and name."""
    rows = []
    for tr in dom.xpath("//table[@id='accounts']/tbody/tr"):
        row = {td.get("class", "").split()[0]: td.text_content() for td in tr.findall("td")}
        row["address"] = "".join(
            tr.xpath("./td[contains(@class,'account')]/span[@class='addr']//text()")
        )
        row["name"] = "".join(
            tr.xpath("./td[contains(@class,'account')]/span[@class='who']//text()")
        )
        row["reason"] = "".join(
            tr.xpath("./td[contains(@class,'last_error')]//span[@class='reason']//text()")
        )
        rows.append(row)
    return rows


def test_real_campaign_report_renders_with_charts(
    reported_campaign: Reported, tmp_path: Path
) -> None:
    page = _report(reported_campaign.plan_path, tmp_path / "report.html")
    text = page.read_text(encoding="utf-8")
    # self-contained: nothing is loaded from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text, re.I)
    assert "<link" not in text
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-campaign.png"
    shot.unlink(missing_ok=True)
    chromium(page, "", tmp_path / "shot-profile", f"--screenshot={shot}", "--window-size=1280,1400")
    assert shot.stat().st_size > 10_000
    dom = lxml.html.fromstring(chromium(page, "", tmp_path / "profile", "--dump-dom"))

    assert dom.get("data-pwned") is None
    assert dom.xpath("//body")[0].get("data-ready") == "1", "the report's script did not finish"
    assert _id(dom, "headline").text_content() == "3 of 4 accounts migrated (75.0 %)"
    line = dom.xpath("//*[@id='progress-chart']//polyline[@class='progress-line']")
    assert line and len(line[0].get("points").split()) >= 3
    assert dom.xpath("//*[@id='batch-chart']//span[@class='bar-migrated']")
    assert len(dom.xpath("//*[@id='batch-chart']//span[@class='bar-failed']")) == 1
    failures = _id(dom, "failures").text_content()
    assert "no-mailbox" in failures
    assert "too-large" in _id(dom, "skipped").text_content()
    rows = _rows(dom)
    assert sorted(r["address"] for r in rows) == reported_campaign.campaign.accounts
    by_address = {r["address"]: r for r in rows}
    failed = by_address[reported_campaign.failed]
    assert failed["state"] == "failed" and failed["reason"] == "no-mailbox"
    for address in reported_campaign.migrated:
        assert by_address[address]["state"] == "verified"
        assert by_address[address]["messages_skipped"] == "1"  # the message over the size limit


def test_large_report_search_sort_and_escaping(tmp_path: Path) -> None:
    data = synthetic_state(tmp_path / "s", 3000)
    page = _report(data.plan_path, tmp_path / "report.html")
    text = page.read_text(encoding="utf-8")
    assert HOSTILE_NAME not in text and "</script><script>" not in text

    dom = lxml.html.fromstring(
        chromium(page, "search=garc&sort=-bytes&rows=500", tmp_path / "p1", "--dump-dom")
    )
    assert dom.get("data-pwned") is None
    assert not dom.xpath("//img")
    garcia = [a for a in data.statuses if int(a[4:9]) % 10 == 0 and int(a[4:9]) != 7]
    assert _id(dom, "count").text_content() == f"{len(garcia):,} of 3,000 accounts match"
    rows = _rows(dom)
    assert len(rows) == len(garcia)
    assert all("García" in r["name"] for r in rows)
    synced = sorted((a for a in garcia if data.statuses[a] == "synced"), key=lambda a: -int(a[4:9]))
    assert [
        r["address"] for r in rows[: len(synced)]
    ] == synced  # biggest first, accounts without bytes last
    assert (
        dom.xpath("//table[@id='accounts']//th[@data-col='bytes']")[0].get("aria-sort")
        == "descending"
    )

    dom = lxml.html.fromstring(chromium(page, "search=user00007", tmp_path / "p2", "--dump-dom"))
    assert dom.get("data-pwned") is None
    rows = _rows(dom)
    assert len(rows) == 1 and rows[0]["name"] == HOSTILE_NAME

    dom = lxml.html.fromstring(chromium(page, "sort=address", tmp_path / "p3", "--dump-dom"))
    rows = _rows(dom)
    assert len(rows) == 100  # the table shows a page of 100; search narrows it
    assert [r["address"] for r in rows] == sorted(data.statuses)[:100]
    assert _id(dom, "page").text_content() == "page 1 of 30 (1–100)"
    points = (
        dom.xpath("//*[@id='progress-chart']//polyline[@class='progress-line']")[0]
        .get("points")
        .split()
    )
    assert len(points) >= 2 * 30  # about 31 hourly steps over the 30 hours


@pytest.mark.parametrize("value", ["</script>", "<!--<script>", "a&b", "\u2028"])
def test_embedded_json_cannot_end_its_script_block(value: str) -> None:
    from migrator.report.html import embed_json

    text = embed_json({"name": value})
    assert "<" not in text and ">" not in text and "&" not in text
    import json

    assert json.loads(text) == {"name": value}


# What a reader checks on the page, measured in the browser: the page's width, where the table's
# columns end, whether the batch numbers show whole, how many lines a name takes.
MEASURE = """JSON.stringify((function () {
  function box(e) { var r = e.getBoundingClientRect(); return {left: r.left, right: r.right, height: r.height}; }
  function lines(e) { return Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)); }
  var table = document.getElementById("accounts");
  var asTable = getComputedStyle(table).display === "table", narrowest = null;
  if (asTable) {  // how narrow the table can get: what it needs, whatever the window
    table.style.width = "min-content";
    narrowest = table.getBoundingClientRect().width;
    table.style.width = "";
  }
  var body = getComputedStyle(document.body);
  return {
    inner: window.innerWidth,
    narrowest: narrowest,
    room: document.body.clientWidth - parseFloat(body.paddingLeft) - parseFloat(body.paddingRight),
    scroll: document.documentElement.scrollWidth,
    table: box(table),
    heads: Array.from(table.querySelectorAll("th")).map(function (th) {
      return {col: th.dataset.col, text: th.textContent, box: box(th)}; }),
    cells: Array.from(table.querySelectorAll("td.last_pass:not(.blank), td.last_error:not(.blank)")).map(function (td) {
      return {col: td.className.split(" ")[0], box: box(td)}; }),
    values: Array.from(document.querySelectorAll("#batch-chart .bar-value")).map(function (e) {
      return {text: e.textContent, scroll: e.scrollWidth, client: e.clientWidth, box: box(e)}; }),
    names: Array.from(table.querySelectorAll(".who")).map(function (e) {
      return {text: e.textContent, lines: lines(e), clipped: e.scrollHeight > e.clientHeight + 1}; }),
    addresses: Array.from(table.querySelectorAll(".addr")).map(function (e) { return {text: e.textContent, lines: lines(e)}; })
  };
})())"""


@pytest.mark.parametrize("width", [1280, 390])
def test_report_layout_fits_the_window(width: int, tmp_path: Path) -> None:
    """A realistic campaign (400 accounts, long Spanish names and batch names, long errors,
    whole batches done) in a window 1,280 px wide (a laptop) or 390 px (a phone)."""
    import json

    data = realistic_state(tmp_path / "s", 400)
    page = _report(data.plan_path, tmp_path / "report.html")
    with Browser(tmp_path / "browser", width=width) as browser:
        browser.resize(width)
        # failed accounts first: their rows carry both a last pass and a last error
        browser.open(page, "sort=-last_error_reason&rows=500")  # all 400 on one page
        top = browser.screenshot(tmp_path / f"top-{width}.png")
        browser.evaluate("document.getElementById('batch-chart').scrollIntoView()")
        bars = browser.screenshot(tmp_path / f"batches-{width}.png")
        browser.evaluate("document.getElementById('accounts').scrollIntoView()")
        table = browser.screenshot(tmp_path / f"accounts-{width}.png")
        m = json.loads(browser.evaluate(MEASURE))
    for shot in (top, bars, table):
        assert shot.stat().st_size > 20_000, f"{shot.name} looks blank"
    inner = m["inner"]
    assert inner == width
    assert m["scroll"] <= inner, (
        f"the page scrolls sideways: {m['scroll']} px wide in a {inner} px window"
    )
    assert m["table"]["right"] <= inner, (
        f"the account table ends at {m['table']['right']:.0f} px, past {inner}"
    )
    if width == 1280:
        # a table, with room to spare for a browser's classic 17 px scrollbar (hidden here)
        assert m["narrowest"] is not None and m["narrowest"] <= m["room"] - 17, (
            m["narrowest"],
            m["room"],
        )

    heads = {h["col"]: h for h in m["heads"]}
    for col, title in (("last_pass", "last pass"), ("last_error", "last error")):
        assert heads[col]["text"].startswith(title)
        assert heads[col]["box"]["left"] >= 0 and heads[col]["box"]["right"] <= inner, (
            f"{title} is off screen"
        )
    assert {c["col"] for c in m["cells"]} == {"last_pass", "last_error"}
    for c in m["cells"]:
        assert c["box"]["left"] >= 0 and c["box"]["right"] <= inner, (
            f"a {c['col']} cell is off screen: {c['box']}"
        )

    values = {v["text"] for v in m["values"]}
    assert len(m["values"]) == len(BATCHES)
    assert values >= {"100 % of 67"}, values
    for v in m["values"]:
        assert v["scroll"] <= v["client"], f"batch label {v['text']!r} is clipped"
        assert v["box"]["right"] <= inner, f"batch label {v['text']!r} is off screen"

    assert len(m["names"]) == 400
    for name in m["names"]:
        assert name["lines"] <= 2, f"{name['text']!r} takes {name['lines']} lines"
    # the names of this campaign (up to 60 characters) show whole, not cut to two lines
    assert not [n["text"] for n in m["names"] if n["clipped"]]
    for address in m["addresses"]:
        assert address["lines"] <= 2, f"{address['text']!r} takes {address['lines']} lines"


ADDRESSES = "Array.from(document.querySelectorAll('#accounts tbody tr .addr')).map(function (e) { return e.textContent; })"


def _type(browser: Browser, ident: str, value: str, event: str) -> None:
    """What a user does: put a value in the search box or the state list."""
    browser.evaluate(
        f"(function (e) {{ e.value = {json.dumps(value)}; e.dispatchEvent(new Event({json.dumps(event)})); }})"
        f"(document.getElementById({json.dumps(ident)}))"
    )


def _until(browser: Browser, expression: str, wanted: object) -> None:
    """Wait until the page shows what a search asked (the box waits for a pause in typing)."""
    deadline = time.monotonic() + 30
    while (got := browser.evaluate(expression)) != wanted:
        assert time.monotonic() < deadline, f"{expression} is {got!r}, not {wanted!r}"
        time.sleep(0.02)


def test_report_of_thousands_pages_and_searches(tmp_path: Path) -> None:
    """5,000 accounts: the table holds one page at a time, pages on, and its search finds an
    account of a later page by address, by name, and by state."""
    data = synthetic_state(tmp_path / "s", 5000)
    page = _report(data.plan_path, tmp_path / "report.html")
    addresses = sorted(data.statuses)
    with Browser(tmp_path / "browser", width=1280) as browser:
        browser.open(page)
        assert browser.evaluate(ADDRESSES) == addresses[:100]
        assert (
            browser.evaluate("document.getElementById('page').textContent")
            == "page 1 of 50 (1–100)"
        )
        assert (
            browser.evaluate("document.getElementById('count').textContent")
            == "5,000 of 5,000 accounts"
        )

        browser.evaluate("document.getElementById('next').click()")
        assert browser.evaluate(ADDRESSES) == addresses[100:200]
        browser.evaluate("document.getElementById('last').click()")
        assert browser.evaluate(ADDRESSES) == addresses[4900:]
        assert browser.evaluate("location.hash") == "#page=50"
        assert browser.evaluate("document.getElementById('next').disabled") is True

        # an account of page 44, not in the document until searched for
        browser.evaluate("document.getElementById('first').click()")
        wanted = "user04321@ife.org.mx"
        assert wanted not in browser.evaluate(ADDRESSES)
        _type(browser, "search", "user04321", "input")
        _until(browser, ADDRESSES, [wanted])
        assert (
            browser.evaluate("document.getElementById('count').textContent")
            == "1 of 5,000 accounts match"
        )
        # by name (every tenth account is a García)
        _type(browser, "search", "persona 04320 garcía", "input")
        _until(browser, ADDRESSES, ["user04320@ife.org.mx"])

        # by state: every third account failed; the last page of them
        _type(browser, "search", "", "input")
        _until(browser, "document.getElementById('count').textContent", "5,000 of 5,000 accounts")
        _type(browser, "state", "failed", "change")
        failed = [a for a in addresses if data.statuses[a] == "failed"]
        assert (
            browser.evaluate("document.getElementById('count').textContent")
            == f"{len(failed):,} of 5,000 accounts match"
        )
        assert browser.evaluate(ADDRESSES) == failed[:100]
        browser.evaluate("document.getElementById('last').click()")
        assert browser.evaluate(ADDRESSES) == failed[1600:]
        assert browser.evaluate("location.hash") == "#state=failed&page=17"

        # a shared view opens as it was left; more rows per page keep the first row shown
        browser.open(page, "state=failed&page=17")
        assert browser.evaluate(ADDRESSES) == failed[1600:]
        _type(browser, "per", "500", "change")
        assert browser.evaluate(ADDRESSES) == failed[1500:]
        assert (
            browser.evaluate("document.getElementById('page').textContent")
            == "page 4 of 4 (1,501–1,667)"
        )

        # sorted, then searched: the matches keep the order
        browser.open(page, "sort=-address")
        assert browser.evaluate(ADDRESSES) == addresses[::-1][:100]
        _type(browser, "search", "user0432", "input")
        _until(browser, ADDRESSES, [f"user0432{n}@ife.org.mx" for n in range(9, -1, -1)])
        browser.evaluate(
            "document.querySelector(\"#accounts th[data-col='account']\").click()"
        )  # ascending
        assert browser.evaluate(ADDRESSES) == [f"user0432{n}@ife.org.mx" for n in range(10)]


def _without_javascript(page: Path, profile: Path) -> lxml.html.HtmlElement:
    """The page as a browser with JavaScript turned off shows it (the DOM, read over DevTools)."""
    with Browser(profile) as browser:
        browser.call("Emulation.setScriptExecutionDisabled", {"value": True}, page=True)
        browser.call("Page.navigate", {"url": page.resolve().as_uri()}, page=True)
        deadline = time.monotonic() + 30
        while True:
            root = browser.call("DOM.getDocument", {"depth": 0}, page=True)["root"]["nodeId"]
            try:
                html = browser.call("DOM.getOuterHTML", {"nodeId": root}, page=True)["outerHTML"]
            except BrowserError:  # the blank page's node, gone with it: ask the new document
                html = ""
            if "setTimeout(lowerText, 0);" in html:  # the page's last script: all of it is parsed
                return lxml.html.fromstring(html)
            assert time.monotonic() < deadline, "the page did not load"
            time.sleep(0.02)


def test_small_report_reads_without_javascript(tmp_path: Path) -> None:
    """A campaign of up to 100 accounts has its table in the page itself: a reader without
    JavaScript sees every account; a larger one says what it needs and where the data is."""
    small = synthetic_state(tmp_path / "small", 60)
    page = _report(small.plan_path, tmp_path / "small.html")
    dom = _without_javascript(page, tmp_path / "p1")
    assert dom.xpath("//body")[0].get("data-ready") is None  # the script did not run
    assert dom.get("data-pwned") is None and not dom.xpath("//img")
    rows = _rows(dom)
    assert [r["address"] for r in rows] == sorted(small.statuses)
    by_address = {r["address"]: r for r in rows}
    assert by_address["user00007@ife.org.mx"]["name"] == HOSTILE_NAME  # as text
    assert by_address["user00003@ife.org.mx"]["state"] == "failed"
    assert by_address["user00003@ife.org.mx"]["reason"] == "no-mailbox"
    assert by_address["user00001@ife.org.mx"]["messages_done"] == "3"
    assert "makes its table searchable and sortable" in " ".join(dom.xpath("//noscript//text()"))
    # with JavaScript the script draws the same rows again (not twice)
    dom = lxml.html.fromstring(chromium(page, "", tmp_path / "p2", "--dump-dom"))
    assert [r["address"] for r in _rows(dom)] == sorted(small.statuses)

    large = synthetic_state(tmp_path / "large", 150)
    page = _report(large.plan_path, tmp_path / "large.html")
    dom = _without_javascript(page, tmp_path / "p3")
    assert _rows(dom) == []
    assert "its table of 150 accounts with JavaScript" in " ".join(dom.xpath("//noscript//text()"))


def _embedded_rows(page: str) -> list[list[object]]:
    """The page's account rows, decoded as its script decodes them (codes and time_base)."""
    opening = '<script type="application/json" id="report-data">'
    data = json.loads(page.split(opening, 1)[1].split("</script>", 1)[0])
    at = {name: i for i, name in enumerate(data["columns"])}
    rows = []
    for row in data["rows"]:
        for name, values in data["codes"].items():
            if row[at[name]] is not None:
                row[at[name]] = values[row[at[name]]]
        for name in ("first_pass", "last_pass"):
            if row[at[name]] is not None:
                when = datetime.fromtimestamp(data["time_base"] + row[at[name]], UTC)
                row[at[name]] = when.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
        rows.append(row)
    return rows


@pytest.mark.parametrize("accounts", [3000, 80])
def test_the_page_is_written_as_its_rows_are_read(tmp_path: Path, accounts: int) -> None:
    """`report --format html` streams the rows from the state into the file (never all in
    memory): the page holds exactly the rows build_report lists, as a page rendered from
    the list does."""
    data = synthetic_state(tmp_path / "s", accounts)
    page = _report(data.plan_path, tmp_path / "report.html").read_text(encoding="utf-8")
    listed = build_report(load_plan(data.plan_path))
    assert len(listed["rows"]) == accounts
    assert _embedded_rows(page) == listed["rows"] == _embedded_rows(render_html(listed))
    streamed = build_report(load_plan(data.plan_path), stream_rows=True)
    assert not isinstance(streamed["rows"], list)
    out = io.StringIO()
    assert write_html(streamed, out) == accounts
    assert _embedded_rows(out.getvalue()) == listed["rows"]
    assert (f"table of {accounts:,} accounts" in page) == (accounts > 100)
