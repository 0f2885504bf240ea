"""Tables for `discover` and `accounts`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from migrator.model.scope import Scope
from migrator.report.console import plain, safe


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

    batches = Table(
        title=f"Accounts in scope per batch ({len(report.batches):,} batches)", title_justify="left"
    )
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
        examples = Table(
            title="Invalid entries (examples; `migrator accounts --status invalid` lists all)",
            title_justify="left",
        )
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


# `accounts` columns: (title, width); the last one takes what is left of its 60 characters
ACCOUNT_COLUMNS = (("address", 40), ("name", 28), ("batch", 20), ("state", 9), ("reason", 60))


def _pad(text: str, width: int) -> str:
    # cell_len counts a wide (CJK) character as two columns; plain ASCII needs no counting
    return text + " " * (width - (len(text) if text.isascii() else cell_len(text)))


def render_accounts(stream: IO[str], rows: Iterable[Any]) -> int:
    """The accounts as fixed-width lines, written one by one as they are read: 100,000 of them
    print in seconds, in constant memory (a rich Table would hold and measure every row
    first, minutes at that size), and `grep`/`less` get one account per line."""
    *lead, (last, last_width) = ACCOUNT_COLUMNS
    stream.write(" ".join(_pad(title, width) for title, width in lead) + " " + last + "\n")
    stream.write(" ".join("-" * width for _, width in lead) + " " + "-" * len(last) + "\n")
    count = 0
    for row in rows:
        count += 1
        values = (row.address or row.dn, row.name, row.batch, row.state)
        cells = [_pad(plain(v, width), width) for v, (_, width) in zip(values, lead, strict=True)]
        # why it is out of scope, or why it failed
        why = row.detail or row.reason or (row.last_error_reason if row.state == "failed" else None)
        stream.write((" ".join(cells) + " " + plain(why, last_width)).rstrip() + "\n")
    stream.write(f"{count:,} accounts\n")
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
