"""Table for `dedupe`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.report.console import safe


def render_dedupe(con: Console, report: Any) -> None:
    """`report` is a commands.dedupe.DedupeReport."""
    title = (
        "Duplicates removed" if report.applied else "Duplicates found (dry run: nothing deleted)"
    )
    table = Table(title=title, title_justify="left")
    for column in ("account", "target folder", "messages", "extra copies", "deleted", "note"):
        table.add_column(
            column, justify="right" if column in ("messages", "extra copies", "deleted") else "left"
        )
    rows = 0
    for account in report.accounts:
        if account.error:
            table.add_row(
                safe(account.address, 40), "", "", "", "", f"[red]{safe(account.error, 80)}[/red]"
            )
            rows += 1
        for f in account.folders:
            note = f"[red]{safe(f.error, 80)}[/red]" if f.error else ""
            table.add_row(
                safe(account.address, 40),
                safe(f.folder, 40),
                f"{f.messages:,}",
                f"{len(f.extra):,}",
                f"{f.deleted:,}" if report.applied else "-",
                note,
            )
            rows += 1
    if rows:
        con.print(table)
    accounts = sum(1 for a in report.accounts if a.extra)
    if report.applied:
        con.print(
            f"{report.deleted:,} extra copies deleted in {accounts:,} of {len(report.accounts):,} "
            "accounts"
        )
    elif report.extra:
        con.print(
            f"{report.extra:,} extra copies in {accounts:,} of {len(report.accounts):,} accounts; "
            "run again with --apply to delete them"
        )
    else:
        con.print(f"no extra copies in {len(report.accounts):,} accounts")
