"""The account report at campaign scale: 100,000 accounts (issue 6).

Builds a synthetic state database (tests/fixtures/reports.synthetic_state), then times
`build_report`, the HTML rendering, and headless Chromium loading the page with a search and a
sort applied (#search=garc&sort=-bytes) until its script has finished.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from migrator.commands.report import build_report
from migrator.plan import load_plan
from migrator.report.html import render_html
from tests.fixtures.reports import chromium, synthetic_state

ACCOUNTS = 100_000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        data = synthetic_state(root / "s", ACCOUNTS)
        print(f"synthetic state, {ACCOUNTS:,} accounts: {time.perf_counter() - started:.1f} s")
        plan = load_plan(data.plan_path)
        started = time.perf_counter()
        report = build_report(plan)
        print(f"build_report: {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        page = root / "report.html"
        page.write_text(render_html(report), encoding="utf-8")
        print(
            f"render_html: {time.perf_counter() - started:.2f} s, {page.stat().st_size / 1e6:.1f} MB"
        )
        started = time.perf_counter()
        dom = chromium(page, "search=garc&sort=-bytes", root / "profile", "--dump-dom")
        ok = 'data-ready="1"' in dom and "10,000 of 100,000 accounts match" in dom
        print(
            f"chromium load + search + sort: {time.perf_counter() - started:.2f} s ({'ok' if ok else 'WRONG'})"
        )
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
