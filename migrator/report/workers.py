"""The `workers` screen: the fleet of `migrator run` processes of a plan."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.model.status import LIVE_WORKERS, WorkerState
from migrator.report.console import safe


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_workers(con: Console, data: dict[str, Any]) -> None:
    t = data["totals"]
    con.print(
        f"[bold]{t['running']} running, {t['stale']} stale, {t.get('gone', 0)} gone, "
        f"{t['stopped']} stopped[/bold]; "
        f"{t['accounts_in_hand']} account(s) in hand, {t['rate']:,.1f} messages/s together"
        f" (over the last {data.get('rate_window_s', 60)} s)"
    )
    con.print(
        f"target {safe(data['target'], 200)}: at most {data['ceiling']} concurrent requests "
        f"shared by the running workers; a worker reports every {data.get('beat_seconds', 5):g} "
        f"s: stale = not heard from for {data.get('stale_after_s', 15):g} s, gone = not for "
        f"longer than the lease ({data['lease_seconds']} s)"
    )
    if not data["workers"]:
        con.print("no worker has run this plan yet")
        return
    table = Table(title="Workers", title_justify="left")
    for column in (
        "worker",
        "state",
        "started (UTC)",
        "heartbeat",
        "accounts",
        "messages",
        "msg/s",
        "share",
    ):
        table.add_column(
            column, justify="right" if column in ("messages", "msg/s", "share") else "left"
        )
    for w in data["workers"]:
        state = w["state"]
        shown = {
            WorkerState.STALE: "[bold red]STALE[/bold red]",
            WorkerState.GONE: "[dim]gone[/dim]",
        }.get(state, state)
        accounts = ", ".join(w["accounts"])
        table.add_row(
            safe(w.get("id") or w["name"], 80),
            shown,
            w["started_at"][:19].replace("T", " "),
            _age(w["heartbeat_age_s"]),
            safe(accounts, 80) or "-",
            f"{w['messages_done']:,}",
            f"{w['rate']:,.1f}" if state in LIVE_WORKERS else "-",
            str(w["share"]) if w["share"] is not None else "-",
        )
    con.print(table)
    if t[WorkerState.STALE]:
        con.print(
            "stale workers hang, are frozen or lost the database; if they do not come back, their "
            "accounts are taken over by the others when the leases expire (nothing to do)"
        )
    if t.get(WorkerState.GONE):
        con.print(
            "gone workers died or lost the database for longer than the lease: they hold nothing, "
            "the others took their accounts over; their rows are listed for a day (--all: always)"
        )
