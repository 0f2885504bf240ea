"""What `cutover` prints: its steps as they happen, then what the wave did."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.report.console import safe


def render_cutover(con: Console, report: Any) -> None:
    kind = "rollback" if report.kind == "rollback" else "cut-over"
    con.print(
        f"[bold]{kind} wave {report.wave}[/bold]{' (resumed)' if report.resumed else ''}: "
        f"map {safe(report.transport_map, 300)}, next hop {safe(report.nexthop, 200)}"
    )
    if report.steps:
        table = Table(title="Steps", title_justify="left")
        for column in ("step", "status", "seconds", "detail"):
            table.add_column(column, justify="right" if column == "seconds" else "left")
        for step in report.steps:
            detail = ", ".join(
                f"{k}={v}"
                for k, v in step.items()
                if k not in ("step", "status", "seconds") and not isinstance(v, dict)
            )
            table.add_row(
                safe(step["step"]),
                safe(step["status"]),
                f"{step.get('seconds', 0):.1f}",
                safe(detail, 160),
            )
        con.print(table)
    if report.left_out:
        _problems(con, "Left out (their address cannot be routed)", report.left_out)
    if report.exceptions:
        _problems(con, "Switched despite (--force)", report.exceptions)
    if report.not_finished:
        _problems(con, "Final delta pass not completed (run cutover again)", report.not_finished)
    parts = []
    if report.switched:
        parts.append(f"{report.switched:,} accounts switched")
    if report.cut_over:
        parts.append(f"{report.cut_over:,} cut over (final delta done)")
    if report.reverted:
        parts.append(f"{report.reverted:,} rolled back")
    if report.waiting_final:
        parts.append(f"{report.waiting_final:,} wait for the final delta pass")
    if report.final_delta_at is not None:
        parts.append(f"final delta pass at {report.final_delta_at:%Y-%m-%d %H:%M:%S} UTC")
    con.print("; ".join(parts) if parts else "nothing changed")


def _problems(con: Console, title: str, rows: list[dict[str, str]]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("account")
    table.add_column("why")
    for row in rows[:50]:
        table.add_row(safe(row["account"], 200), safe(row["problem"], 200))
    if len(rows) > 50:
        table.caption = f"the first 50 of {len(rows):,}; --json lists all"
    con.print(table)
