"""Table for `verify`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.report.console import safe


def render_verify(con: Console, report: Any) -> None:
    table = Table(title="Verification: source vs ledger vs target", title_justify="left")
    for column in ("account", "folder", "source", "migrated", "skipped", "in target", "ok", "note"):
        table.add_column(
            column,
            justify="right" if column in ("source", "migrated", "skipped", "in target") else "left",
        )
    bad = 0
    rows = 0
    for account in report.accounts:
        if account.error:
            table.add_row(
                safe(account.address, 40),
                "",
                "",
                "",
                "",
                "",
                "[red]no[/red]",
                safe(account.error, 80),
            )
            rows += 1
        for f in account.folders:
            if f.ok and not f.note and len(report.accounts) > 20:
                continue  # on a big verification, show only what needs a look
            table.add_row(
                safe(account.address, 40),
                safe(f.folder, 30),
                f"{f.source:,}",
                f"{f.ledger_done:,}",
                f"{f.ledger_skipped:,}",
                f"{f.target_found:,}",
                "yes" if f.ok else "[red]no[/red]",
                safe(f.note, 60),
            )
            rows += 1
        bad += not account.ok
    if rows:  # a big verification where everything agrees needs no empty table
        con.print(table)
    total = len(report.accounts)
    if not total:
        con.print("nothing to verify: no migrated account is waiting for verification")
        return
    con.print(
        f"{total - bad:,} of {total:,} accounts verified"
        + (f"; {bad:,} disagree (see above)" if bad else "")
    )
