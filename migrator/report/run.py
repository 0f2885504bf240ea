"""Progress while `run` works, and its summary afterwards.

On a terminal: a live view (accounts N of M, messages and bytes per second, ETA, accounts in
flight). Elsewhere (cron, CI, a pipe): one plain line per finished account, no colour or
animation. `--quiet` prints only the summary.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from migrator.engine.progress import AccountOutcome
from migrator.report.console import safe


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n):,} B"
        n /= 1024
    return f"{n:.1f} TB"


class RunProgress:
    """Implements engine.progress.Progress for the terminal or a log."""

    def __init__(self, console: Console, *, quiet: bool = False, live: bool | None = None) -> None:
        self.console = console
        self.quiet = quiet
        self.live_enabled = console.is_terminal if live is None else live
        self._lock = threading.Lock()
        self.total = 0
        self.migrated_before = 0
        self.finished = 0
        self.synced = 0
        self.newly_migrated = 0
        self.failed = 0
        self.messages = 0
        self.bytes = 0
        self.in_flight: dict[str, tuple[float, int]] = {}
        self.started = time.monotonic()
        self._live: Live | None = None

    # --- Progress protocol ---------------------------------------------------------------
    def run_started(self, total_accounts: int, migrated_before: int) -> None:
        self.total, self.migrated_before = total_accounts, migrated_before
        self.started = time.monotonic()
        if self.live_enabled and not self.quiet:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
            self._live.start()

    def account_started(self, address: str) -> None:
        with self._lock:
            self.in_flight[address] = (time.monotonic(), 0)
        self._refresh()

    def messages_done(self, address: str, count: int, nbytes: int) -> None:
        with self._lock:
            self.messages += count
            self.bytes += nbytes
            since, done = self.in_flight.get(address, (time.monotonic(), 0))
            self.in_flight[address] = (since, done + count)
        self._refresh()

    def account_finished(self, outcome: AccountOutcome) -> None:
        with self._lock:
            self.in_flight.pop(outcome.address, None)
            self.finished += 1
            if outcome.status == "synced":
                self.synced += 1
                self.newly_migrated += outcome.first_pass
            elif outcome.status == "failed":
                self.failed += 1
        if not self.quiet and self._live is None:
            self._line(outcome)
        elif self._live is not None and outcome.status == "failed":
            self._live.console.print(self._failure_text(outcome))
        self._refresh()

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(safe(message, 500))

    # --- rendering -----------------------------------------------------------------------
    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _rates(self) -> tuple[float, float, float]:
        elapsed = max(0.001, time.monotonic() - self.started)
        return elapsed, self.messages / elapsed, self.bytes / elapsed

    def _render(self) -> Any:
        elapsed, mps, bps = self._rates()
        migrated = self.migrated_before + self.newly_migrated
        head = Text(
            f"{migrated:,} of {self.total:,} accounts migrated"
            f" | this run: {self.finished:,} finished, {self.failed:,} failed"
            f" | {self.messages:,} messages ({mps:,.1f}/s), {human_bytes(self.bytes)} ({human_bytes(bps)}/s)"
        )
        remaining = max(0, self.total - migrated)
        per_account = elapsed / self.finished if self.finished else None
        eta = f"ETA {per_account * remaining / 60:,.1f} min" if per_account and remaining else ""
        table = Table(show_header=True, box=None)
        table.add_column("in flight")
        table.add_column("messages", justify="right")
        table.add_column("for", justify="right")
        now = time.monotonic()
        with self._lock:
            flights = sorted(self.in_flight.items())[:12]
        for address, (since, done) in flights:
            table.add_row(safe(address, 50), f"{done:,}", f"{now - since:,.0f} s")
        return Group(head, Text(eta), table)

    def _failure_text(self, outcome: AccountOutcome) -> str:
        text = f"[red]failed[/red] {safe(outcome.address)}: {safe(outcome.error, 300)}"
        if outcome.hint:
            text += f" ({safe(outcome.hint, 200)})"
        return text

    def _line(self, outcome: AccountOutcome) -> None:
        migrated = self.migrated_before + self.newly_migrated
        if outcome.status == "failed":
            self.console.print(self._failure_text(outcome))
            return
        skipped = f", {len(outcome.skipped)} skipped" if outcome.skipped else ""
        self.console.print(
            f"{outcome.status} {safe(outcome.address)}: {outcome.messages_done:,} new messages"
            f" ({human_bytes(outcome.bytes_done)}){skipped}, {outcome.seconds:.1f} s"
            f" [{migrated:,} of {self.total:,} migrated]"
        )


def render_run_summary(con: Console, summary: Any) -> None:
    """`summary` is an engine.runner.RunSummary."""
    con.print(
        f"run finished in {summary.seconds:,.1f} s: {summary.accounts:,} accounts"
        f" ({summary.synced:,} synced, {summary.failed:,} failed"
        + (f", {summary.interrupted:,} interrupted" if summary.interrupted else "")
        + f"), {summary.messages_done:,} messages, {human_bytes(summary.bytes_done)}"
        + (f" ({summary.messages_adopted:,} found in the target already, not sent again)"
           if getattr(summary, "messages_adopted", 0) else "")
        + (f", {summary.messages_skipped:,} skipped" if summary.messages_skipped else "")
        + (f"; the target throttled us {summary.throttled:,} times" if summary.throttled else "")
    )
    if summary.failures:
        table = Table(title="Failed accounts", title_justify="left")
        for column in ("account", "reason", "error", "what to do"):
            table.add_column(column)
        for failure in summary.failures[:50]:
            table.add_row(
                safe(failure["account"], 50), safe(failure["reason"]), safe(failure["error"], 100), safe(failure["hint"], 80)
            )
        con.print(table)
    if summary.skipped:
        table = Table(title="Skipped messages", title_justify="left")
        for column in ("account", "folder", "message", "reason", "detail"):
            table.add_column(column)
        for skip in summary.skipped[:50]:
            table.add_row(
                safe(skip["account"], 40), safe(skip["folder"], 30), safe(skip["key"], 40), safe(skip["reason"]), safe(skip["detail"], 80)
            )
        con.print(table)
    if summary.stopped:
        con.print("stopped on request: the state is consistent; run again to resume")

