"""Table for `run --dry-run`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.report.console import safe
from migrator.report.run import human_bytes


def render_dry_run(con: Console, report: Any) -> None:
    table = Table(title="Dry run: nothing was written", title_justify="left")
    for column in (
        "account",
        "ready",
        "folders",
        "messages",
        "new",
        "size",
        "too large",
        "unreadable",
        "problem",
    ):
        table.add_column(
            column,
            justify="right"
            if column in ("folders", "messages", "new", "size", "too large", "unreadable")
            else "left",
        )
    for a in report.accounts:
        table.add_row(
            safe(a.address, 50),
            "yes" if a.ok else "[red]no[/red]",
            f"{a.folders:,}",
            f"{a.messages:,}",
            f"{a.new_messages:,}",
            human_bytes(a.bytes),
            f"{a.too_large:,}",
            f"{a.unreadable:,}",
            safe((a.error or "") + (f" ({a.hint})" if a.hint else ""), 100),
        )
    con.print(table)
    totals = report.as_json()["totals"]
    con.print(
        f"{totals['ok']:,} of {totals['accounts']:,} accounts ready; {totals['new_messages']:,} of "
        f"{totals['messages']:,} messages to send ({human_bytes(totals['bytes'])} in the sources)"
    )
