"""Tables for `discover` and `accounts`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.model.scope import Scope
from migrator.report.console import safe


def _n(value: int) -> str:
    return f"{value:,}"


def render_discovery(con: Console, report: Any) -> None:
    """`report` is a commands.discover.DiscoveryReport."""
    total_excluded = sum(report.excluded.values())
    total_invalid = sum(report.invalid.values())
    con.print(
        f"[bold]{_n(report.in_scope)}[/bold] accounts in scope for plan {safe(report.plan)}; "
        f"{_n(total_excluded)} excluded, {_n(total_invalid)} invalid"
        + (f", {_n(report.vanished)} vanished from the directory" if report.vanished else "")
    )
    scope = Table(title="Directory entries", title_justify="left")
    scope.add_column("outcome")
    scope.add_column("reason")
    scope.add_column("entries", justify="right")
    scope.add_row("in scope", "", _n(report.in_scope))
    for reason, count in sorted(report.excluded.items(), key=lambda kv: -kv[1]):
        scope.add_row(Scope.EXCLUDED, safe(reason), _n(count))
    for reason, count in sorted(report.invalid.items(), key=lambda kv: -kv[1]):
        scope.add_row(Scope.INVALID, safe(reason), _n(count))
    if report.vanished:
        scope.add_row(Scope.VANISHED, "no longer in the directory", _n(report.vanished))
    con.print(scope)

    batches = Table(title=f"Accounts in scope per batch ({len(report.batches):,} batches)", title_justify="left")
    batches.add_column("batch")
    batches.add_column("accounts", justify="right")
    ordered = sorted(report.batches.items(), key=lambda kv: (-kv[1], kv[0]))
    for name, count in ordered[:15]:
        batches.add_row(safe(name), _n(count))
    if len(ordered) > 15:
        rest = sum(count for _, count in ordered[15:])
        batches.add_row(f"… {len(ordered) - 15:,} more", _n(rest))
    con.print(batches)

    if report.examples:
        examples = Table(title="Invalid entries (examples; `migrator accounts --status invalid` lists all)", title_justify="left")
        examples.add_column("reason")
        examples.add_column("entry")
        examples.add_column("why")
        for reason, rows in sorted(report.examples.items()):
            for row in rows:
                examples.add_row(safe(reason), safe(row["dn"], 50), safe(row["detail"], 80))
        con.print(examples)
    con.print(
        f"changes since the last discovery: {_n(report.new)} new, {_n(report.updated)} updated, "
        f"{_n(report.unchanged)} unchanged ({report.seconds:.1f} s)"
    )


def render_accounts(con: Console, rows: Iterable[Any]) -> int:
    table = Table()
    for column in ("address", "name", "batch", "state", "reason"):
        table.add_column(column)
    count = 0
    for row in rows:
        count += 1
        table.add_row(
            safe(row.address or row.dn, 50),
            safe(row.name, 30),
            safe(row.batch, 20),
            safe(row.state),
            safe(row.detail or row.reason, 60),
        )
    con.print(table)
    con.print(f"{count:,} accounts")
    return count


def account_json(row: Any) -> dict[str, Any]:
    return {
        "address": row.address,
        "target_address": row.target_address,
        "dn": row.dn,
        "uid": row.uid,
        "name": row.name,
        "batch": row.batch,
        "state": row.state,
        "reason": row.reason,
        "detail": row.detail,
        "aliases": list(row.aliases or []),
    }
