"""The `status` screen."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.model.cutover import WaveStatus
from migrator.report.console import safe
from migrator.report.run import human_bytes


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render_status(con: Console, data: dict[str, Any]) -> None:
    con.print(f"[bold]{safe(data['headline'], 200)}[/bold]")
    a = data["accounts"]
    con.print(
        f"accounts: {a['verified']:,} verified, {a['synced']:,} synced, {a['running']:,} running"
        + (
            f" ({a['interrupted']:,} interrupted: run again to resume them)"
            if a.get("interrupted")
            else ""
        )
        + f", {a['pending']:,} pending, {a['failed']:,} failed; not in scope: {a['excluded']:,} "
        f"excluded, {a['invalid']:,} invalid, {a['vanished']:,} vanished"
    )
    m = data["messages"]
    con.print(
        f"messages: {m['done']:,} migrated ({human_bytes(m['bytes'])}), {m['skipped']:,} skipped, "
        f"{m['failed']:,} failed"
    )
    recent = data["last_hour"]
    con.print(
        f"last hour: {recent['accounts']:,} accounts migrated, {recent['messages']:,} messages, "
        f"{human_bytes(recent['bytes'])}; runs at work {_duration(recent['running_seconds'])}"
    )
    f = data.get("filters") or {}
    if f.get("accounts"):
        con.print(
            f"Sieve filters: {f['applied'] + f['reported']:,} accounts carried, {f['none']:,} "
            f"without Sieve, {f['broken']:,} with a script that does not parse, {f['failed']:,} "
            f"failed; {f['translated']:,} of {f['statements']:,} statements carried, "
            f"{f['refused']:,} not carried in {f['accounts_with_refusals']:,} accounts (`migrator "
            "show ADDRESS` lists them)"
        )
    remaining = a["total"] - a["migrated"]
    if data["eta_hours"] is not None:
        con.print(
            f"at this pace ({safe(data['eta_basis'], 200)}) the remaining {remaining:,} accounts "
            f"take about {data['eta_hours']:,.1f} h of running"
        )
    elif remaining:
        con.print(safe(data["eta_basis"], 300))
    if data["by"] == "status":
        table = Table(title="Accounts by state", title_justify="left")
        table.add_column("state")
        table.add_column("accounts", justify="right")
        for row in data["groups"]:
            table.add_row(safe(row["status"]), f"{row['accounts']:,}")
    else:
        key = "ou" if data["by"] == "ou" else "batch"
        plural = "OUs" if key == "ou" else "batches"
        table = Table(title=f"Progress by {'OU' if key == 'ou' else 'batch'}", title_justify="left")
        for column in (key, "accounts", "migrated", "failed", "pending", "%"):
            table.add_column(column, justify="left" if column == key else "right")
        rows = sorted(
            data["groups"],
            key=lambda r: (r["migrated"] / r["total"] if r["total"] else 1, r[key] or ""),
        )
        for row in rows[:25]:
            pct = 100.0 * row["migrated"] / row["total"] if row["total"] else 100.0
            table.add_row(
                safe(row[key]),
                f"{row['total']:,}",
                f"{row['migrated']:,}",
                f"{row['failed']:,}",
                f"{row['pending']:,}",
                f"{pct:.0f}",
            )
        if len(rows) > 25:
            table.caption = f"the 25 least advanced of {len(rows):,} {plural}; --json lists all"
    con.print(table)
    if data["skipped_by_reason"]:
        table = Table(title="Skipped messages by reason", title_justify="left")
        table.add_column("reason")
        table.add_column("messages", justify="right")
        for reason, n in sorted(data["skipped_by_reason"].items(), key=lambda kv: -kv[1]):
            table.add_row(safe(reason), f"{n:,}")
        con.print(table)
    if data["failures_by_reason"]:
        table = Table(title="Failed accounts by reason", title_justify="left")
        for column in ("reason", "accounts", "example"):
            table.add_column(column)
        for row in data["failures_by_reason"]:
            table.add_row(safe(row["reason"]), f"{row['accounts']:,}", safe(row["example"], 90))
        con.print(table)
    render_cutover_status(con, data.get("cutover"))
    verify = data["last_verification"]
    if verify:
        line = (
            f"last verification: {verify['started_at']:%Y-%m-%d %H:%M} UTC "
            f"({safe(verify['status'])})"
        )
        totals = verify.get("totals")
        if isinstance(totals, dict) and "accounts" in totals:
            line += (
                f": {totals['accounts']:,} accounts checked, {totals.get('ok', 0):,} match the "
                f"source, {totals.get('differ', 0):,} differ, {totals.get('errors', 0):,} could "
                "not be checked"
            )
        con.print(line)


def render_cutover_status(con: Console, cutover: dict[str, Any] | None) -> None:
    """Cut-over by batch: pre-staged, switched (final delta to come), cut over."""
    if not cutover:
        return
    t = cutover["totals"]
    con.print(
        f"cut-over: {t['cut_over']:,} of {t['total']:,} accounts cut over, {t['switched']:,} "
        f"switched (final delta to come), {t['pre_staged']:,} pre-staged"
        + (f", {t['in_progress']:,} being switched or switched back" if t["in_progress"] else "")
    )
    rows = [b for b in cutover["batches"] if b["switched"] or b["cut_over"] or b["in_progress"]]
    table = Table(title="Cut-over by batch", title_justify="left")
    for column in ("batch", "accounts", "pre-staged", "switched", "cut over"):
        table.add_column(column, justify="left" if column == "batch" else "right")
    for row in rows[:25]:
        table.add_row(
            safe(row["batch"]),
            f"{row['total']:,}",
            f"{row['pre_staged']:,}",
            f"{row['switched']:,}",
            f"{row['cut_over']:,}",
        )
    rest = [b for b in cutover["batches"] if b not in rows]
    if rest:
        table.caption = (
            f"{len(rest):,} more batches not switched yet ({sum(b['pre_staged'] for b in rest):,} "
            "accounts pre-staged)"
            + ("; the first 25 switched are shown, --json lists all" if len(rows) > 25 else "")
        )
    con.print(table)
    for wave in cutover["waves"][-3:]:
        selection = wave["selection"]
        names = ", ".join([*selection.get("batches", []), *selection.get("accounts", [])][:5])
        started = wave["started_at"]
        con.print(
            f"wave {wave['id']} ({safe(wave['kind'])} {safe(names, 120)}): {safe(wave['status'])}"
            + (
                f" at step {safe(wave['step'])}"
                if wave["status"] in (WaveStatus.RUNNING, WaveStatus.FAILED) and wave["step"]
                else ""
            )
            + (f", started {started:%Y-%m-%d %H:%M} UTC" if started else "")
            + (
                f"; {safe(wave['error'], 200)}"
                if wave["status"] == WaveStatus.FAILED and wave["error"]
                else ""
            )
        )
