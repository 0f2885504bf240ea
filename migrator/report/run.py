"""Progress while `run` works, and its summary afterwards.

On a terminal: a live view (accounts N of M, messages and bytes per second, ETA, accounts in
flight). Elsewhere (cron, CI, a pipe): one plain line per finished account, no colour or
animation. `--quiet` prints only the summary, and what the run is waiting for (a throttled or
unreachable server) on stderr, so that a run that seems stuck says why.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from migrator.engine.delta import describe
from migrator.engine.progress import AccountOutcome
from migrator.report.console import error_console, safe


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n):,} B"
        n /= 1024
    return f"{n:.1f} TB"


class RunProgress:
    """Implements engine.progress.Progress for the terminal or a log."""

    def __init__(
        self, console: Console, *, quiet: bool = False, live: bool | None = None, err: Console | None = None
    ) -> None:
        self.console = console
        self.err = err or error_console()
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
            # drawn when it refreshes (4 times a second), from the counts of that moment: built
            # on every account event instead, it cost more than a small account's own work
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4,
                              transient=True)
            self._live.start()

    def account_started(self, address: str) -> None:
        with self._lock:
            self.in_flight[address] = (time.monotonic(), 0)

    def messages_done(self, address: str, count: int, nbytes: int) -> None:
        with self._lock:
            self.messages += count
            self.bytes += nbytes
            since, done = self.in_flight.get(address, (time.monotonic(), 0))
            self.in_flight[address] = (since, done + count)

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

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(safe(message, 500))

    def waiting(self, message: str) -> None:
        if self._live is not None:  # above the live view, which owns the terminal
            self._live.console.print(safe(message, 500), soft_wrap=True)
        else:
            self.err.print(safe(message, 500), soft_wrap=True)

    # --- rendering -----------------------------------------------------------------------
    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

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
        if outcome.status == "deferred":
            self.console.print(
                f"deferred {safe(outcome.address)}: {safe(outcome.error, 300)} (given back unchanged, "
                "no attempt charged)"
            )
            return
        skipped = f", {len(outcome.skipped)} skipped" if outcome.skipped else ""
        self.console.print(
            f"{outcome.status} {safe(outcome.address)}: {outcome.messages_done:,} new messages"
            f" ({human_bytes(outcome.bytes_done)}){skipped}, {outcome.seconds:.1f} s"
            f" [{migrated:,} of {self.total:,} migrated]"
        )


# what the operator does about messages skipped for each reason ({addr} and {plan} filled in)
SKIP_ADVICE: dict[str, str] = {
    "too-large": "over the target's size limit: raise [target] max_message_size and the mailbox's limit in "
    "Exchange, then `migrator retry --plan {plan} --account {addr} --skipped`",
    "rejected": "the target refused them for good; `migrator show {addr} --plan {plan}` gives each one's "
    "reason; once fixed, `migrator retry --plan {plan} --account {addr} --skipped`",
    "unreadable": "the source could not be read (permissions, I/O error): let the migrator's user read the "
    "mailbox, then `migrator retry --plan {plan} --account {addr} --skipped`",
    "not-a-file": "not a message file (a directory, FIFO or dangling link in the Maildir): nothing to migrate "
    "unless it should be a message; fix it, then `migrator retry --plan {plan} --account {addr} --skipped`",
    "vanished": "deleted or moved in the source while the run read it (a user at work, a folder renamed): "
    "what is still in the source is migrated by the next run; nothing to do",
    "changed": "the folder was being rewritten while it was read: the next run reads it again; "
    "`migrator retry --plan {plan} --account {addr} --skipped` tries these messages again",
    "empty": "0-byte files a failed delivery left behind: there is nothing to migrate; nothing to do",
    "symlink": "symbolic links inside the source mailbox are never followed (one could point at any file): "
    "replace a legitimate one by the real file or folder, then "
    "`migrator retry --plan {plan} --account {addr} --skipped`",
    "not-a-folder": "directories in the source mailbox that are no folder of its layout but hold something: "
    "make them folders or move the mail into one, then `migrator retry --plan {plan} --account {addr} --skipped`",
    "not-mail": "files that hold no message (binary data, text without a header block): nothing to migrate; "
    "look at them and remove them if you like",
}
DEFAULT_SKIP_ADVICE = "`migrator show {addr} --plan {plan}` lists them with the detail"
NAMES_SHOWN = 5  # accounts named per failure reason, folders per skip reason


def _wrapped(con: Console, text: str, indent: int) -> None:
    """A line of its own, wrapped to the console's width with a hanging indent: readable in
    full on an 80-column terminal and in a pipe, where a table cell would cut it."""
    width = max(20, con.width - indent)
    for line in Text.from_markup(text).wrap(con, width, overflow="fold"):
        line.rstrip()
        con.print(Text(" " * indent) + line, soft_wrap=True)


def _more(shown: int, total: int, what: str) -> str:
    return f" and {total - shown:,} more {what}" if total > shown else ""


def render_run_summary(con: Console, summary: Any, *, plan_file: str | None = None) -> None:
    """`summary` is an engine.runner.RunSummary. Failures and skips come by reason (and by
    folder), each with what to do on a line of its own; `show` and `report` have the full lists."""
    plan = plan_file or "PLAN"
    con.print(
        f"run finished in {summary.seconds:,.1f} s: {summary.accounts:,} accounts"
        f" ({summary.synced:,} synced, {summary.failed:,} failed"
        + (f", {summary.interrupted:,} interrupted" if summary.interrupted else "")
        + (f", {summary.deferred:,} deferred" if summary.deferred else "")
        + f"), {summary.messages_done:,} messages, {human_bytes(summary.bytes_done)}"
        + (f" ({summary.messages_adopted:,} found in the target already, not sent again)"
           if getattr(summary, "messages_adopted", 0) else "")
        + (f", {summary.messages_skipped:,} skipped" if summary.messages_skipped else "")
        + (f"; the target throttled us {summary.throttled:,} times" if summary.throttled else "")
    )
    changes = getattr(summary, "changes", None)
    if changes:
        con.print(f"users' changes carried: {describe(changes)}")
    if summary.failures:
        _render_failures(con, summary.failures)
    if summary.messages_skipped:
        _render_skips(con, summary, plan)
    if summary.failures or summary.messages_skipped:
        example = (summary.failures[0]["account"] if summary.failures else
                   next(iter(summary.skipped_by_folder), ("ADDRESS",))[0])  # fmt: skip
        con.print()
        _wrapped(
            con,
            f"the full lists: `migrator show {example} --plan {plan}` (one account: its error, folders and every "
            f"skipped message with subject and date); `migrator report --plan {plan} --format csv --output "
            f"report.csv` (every account)",
            0,
        )
    if summary.deferred:
        con.print()
        _wrapped(
            con,
            f"{summary.deferred:,} account(s) were given back unchanged while a server was unavailable "
            f"({safe(summary.deferred_because, 300)}); no attempt was charged, the next run takes them",
            0,
        )
    if summary.stopped:
        con.print("stopped on request: the state is consistent; run again to resume")


def _render_failures(con: Console, failures: list[dict[str, str]]) -> None:
    by_reason: dict[str, list[dict[str, str]]] = {}
    for failure in failures:
        by_reason.setdefault(failure["reason"] or "unknown", []).append(failure)
    con.print()
    con.print(f"[bold]Failed accounts: {len(failures):,}[/bold], by reason")
    for reason, group in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        names = ", ".join(safe(f["account"], 80) for f in group[:NAMES_SHOWN])
        _wrapped(con, f"{safe(reason)}: {len(group):,} account(s): {names}{_more(NAMES_SHOWN, len(group), 'accounts')}", 2)
        _wrapped(con, ("error of the first: " if len(group) > 1 else "error: ") + safe(group[0]["error"], 600), 4)
        hints = list(dict.fromkeys(f["hint"] for f in group if f["hint"]))
        for hint in hints[:3]:
            _wrapped(con, f"what to do: {safe(hint, 600)}", 4)


def _render_skips(con: Console, summary: Any, plan: str) -> None:
    by_reason: dict[str, list[tuple[str, str, int]]] = {}
    for (account, folder, reason), n in summary.skipped_by_folder.items():
        by_reason.setdefault(reason, []).append((account, folder, n))
    con.print()
    con.print(f"[bold]Skipped messages: {summary.messages_skipped:,}[/bold], by reason and folder")
    for reason, places in sorted(by_reason.items(), key=lambda kv: (-sum(n for *_, n in kv[1]), kv[0])):
        places.sort(key=lambda p: (-p[2], p[0], p[1]))
        total = sum(n for *_, n in places)
        accounts = len({account for account, _, _ in places})
        _wrapped(con, f"{safe(reason)}: {total:,} message(s) in {len(places):,} folder(s) of {accounts:,} account(s)", 2)
        for account, folder, n in places[:NAMES_SHOWN]:
            _wrapped(con, f"{n:,} in {safe(account, 80)}, folder {safe(folder, 120)}", 4)
        if len(places) > NAMES_SHOWN:
            _wrapped(con, f"and {sum(n for *_, n in places[NAMES_SHOWN:]):,} in {len(places) - NAMES_SHOWN:,} more folder(s)", 4)
        advice = SKIP_ADVICE.get(reason, DEFAULT_SKIP_ADVICE).format(addr=places[0][0], plan=plan)
        _wrapped(con, f"what to do: {safe(advice, 600)}", 4)
