"""The HTML report, checked in a real headless Chromium: it renders, charts draw, the table
searches and sorts (driven by the URL hash), directory values stay text, no network is used."""

from __future__ import annotations

import re
from pathlib import Path

import lxml.html
import pytest

from tests.fixtures.reports import (
    ARTIFACTS,
    HOSTILE_NAME,
    Reported,
    chromium,
    invoke,
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


def _rows(dom: lxml.html.HtmlElement) -> list[list[str]]:
    return [[td.text_content() for td in tr.findall("td")] for tr in dom.xpath("//table[@id='accounts']/tbody/tr")]


def test_real_campaign_report_renders_with_charts(reported_campaign: Reported, tmp_path: Path) -> None:
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
    assert dom.xpath("//*[@id='batch-chart']//rect[@class='bar-migrated']")
    assert len(dom.xpath("//*[@id='batch-chart']//rect[@class='bar-failed']")) == 1
    failures = _id(dom, "failures").text_content()
    assert "no-mailbox" in failures
    assert "too-large" in _id(dom, "skipped").text_content()
    rows = _rows(dom)
    assert sorted(r[0] for r in rows) == reported_campaign.campaign.accounts
    by_address = {r[0]: r for r in rows}
    failed = by_address[reported_campaign.failed]
    assert failed[3] == "failed" and failed[12] == "no-mailbox"
    for address in reported_campaign.migrated:
        assert by_address[address][3] == "verified"
        assert by_address[address][7] == "1"  # the message over the size limit


def test_large_report_search_sort_and_escaping(tmp_path: Path) -> None:
    data = synthetic_state(tmp_path / "s", 3000)
    page = _report(data.plan_path, tmp_path / "report.html")
    text = page.read_text(encoding="utf-8")
    assert HOSTILE_NAME not in text and "</script><script>" not in text

    dom = lxml.html.fromstring(chromium(page, "search=garc&sort=-bytes", tmp_path / "p1", "--dump-dom"))
    assert dom.get("data-pwned") is None
    assert not dom.xpath("//img")
    garcia = [a for a in data.statuses if int(a[4:9]) % 10 == 0 and int(a[4:9]) != 7]
    assert _id(dom, "count").text_content() == f"{len(garcia):,} of 3,000 accounts match"
    rows = _rows(dom)
    assert len(rows) == len(garcia)
    assert all("García" in r[1] for r in rows)
    synced = sorted((a for a in garcia if data.statuses[a] == "synced"), key=lambda a: -int(a[4:9]))
    assert [r[0] for r in rows[: len(synced)]] == synced  # biggest first, accounts without bytes last
    assert dom.xpath("//table[@id='accounts']//th[@data-col='bytes']")[0].get("aria-sort") == "descending"

    dom = lxml.html.fromstring(chromium(page, "search=user00007", tmp_path / "p2", "--dump-dom"))
    assert dom.get("data-pwned") is None
    rows = _rows(dom)
    assert len(rows) == 1 and rows[0][1] == HOSTILE_NAME

    dom = lxml.html.fromstring(chromium(page, "sort=address", tmp_path / "p3", "--dump-dom"))
    rows = _rows(dom)
    assert len(rows) == 500  # the table shows a page; search narrows it
    assert [r[0] for r in rows] == sorted(data.statuses)[:500]
    assert "first 500" in _id(dom, "more").text_content()
    points = dom.xpath("//*[@id='progress-chart']//polyline[@class='progress-line']")[0].get("points").split()
    assert len(points) >= 2 * 30  # about 31 hourly steps over the 30 hours


@pytest.mark.parametrize("value", ["</script>", "<!--<script>", "a&b", "\u2028"])
def test_embedded_json_cannot_end_its_script_block(value: str) -> None:
    from migrator.report.html import embed_json

    text = embed_json({"name": value})
    assert "<" not in text and ">" not in text and "&" not in text
    import json

    assert json.loads(text) == {"name": value}
