"""Progress while `run` works, and its summary afterwards.

On a terminal: a live view (accounts N of M, messages and bytes per second, ETA, accounts in
flight). Elsewhere (cron, CI, a pipe): one plain line per finished account, no colour or
animation. `--quiet` prints only the summary, and what the run is waiting for (a throttled or
unreachable server) on stderr, so that a run that seems stuck says why.
"""

from __future__ import annotations

import textwrap
import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from migrator.engine.delta import describe
from migrator.engine.progress import AccountOutcome
from migrator.model.reasons import advice
from migrator.model.status import PassOutcome
from migrator.report.console import error_console, safe


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n):,} B"
        n /= 1024
    return f"{n:.1f} TB"


# the live view stays a screenful whatever the campaign's size
IN_FLIGHT_SHOWN = 12
LIVE_FAILURES_SHOWN = 20


class RunProgress:
    """Implements engine.progress.Progress for the terminal or a log."""

    def __init__(
        self,
        console: Console,
        *,
        quiet: bool = False,
        live: bool | None = None,
        err: Console | None = None,
        plan_file: str | None = None,
    ) -> None:
        self.console = console
        self.plan_file = plan_file or "PLAN"
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
            self._live = Live(
                get_renderable=self._render,
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
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
            if outcome.status == PassOutcome.SYNCED:
                self.synced += 1
                self.newly_migrated += outcome.first_pass
            elif outcome.status == PassOutcome.FAILED:
                self.failed += 1
        if not self.quiet and self._live is None:
            self._line(outcome)
        elif self._live is not None and outcome.status == PassOutcome.FAILED:
            # above the live view: the first failures as they come, then only their count (a
            # target that is down would otherwise scroll 100,000 lines past)
            if self.failed <= LIVE_FAILURES_SHOWN:
                self._live.console.print(self._failure_text(outcome))
            if self.failed == LIVE_FAILURES_SHOWN:
                self._live.console.print(
                    "further failures are counted, not printed; the summary groups them by "
                    f"reason, and `migrator accounts --plan {safe(self.plan_file, 200)} --status "
                    "failed` lists them"
                )

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
            f" | {self.messages:,} messages ({mps:,.1f}/s), {human_bytes(self.bytes)} "
            f"({human_bytes(bps)}/s)"
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
            flying = len(self.in_flight)
            flights = sorted(self.in_flight.items())[:IN_FLIGHT_SHOWN]
        for address, (since, done) in flights:
            table.add_row(safe(address, 50), f"{done:,}", f"{now - since:,.0f} s")
        if flying > len(flights):
            table.caption = f"and {flying - len(flights):,} more in flight"
        return Group(head, Text(eta), table)

    def _failure_text(self, outcome: AccountOutcome) -> str:
        text = f"[red]failed[/red] {safe(outcome.address)}: {safe(outcome.error, 300)}"
        if outcome.hint:
            text += f" ({safe(outcome.hint, 200)})"
        return text

    def _line(self, outcome: AccountOutcome) -> None:
        migrated = self.migrated_before + self.newly_migrated
        if outcome.status == PassOutcome.FAILED:
            self.console.print(self._failure_text(outcome))
            return
        if outcome.status == PassOutcome.DEFERRED:
            self.console.print(
                f"deferred {safe(outcome.address)}: {safe(outcome.error, 300)} (given back "
                "unchanged, no attempt charged)"
            )
            return
        skipped = f", {len(outcome.skipped)} skipped" if outcome.skipped else ""
        self.console.print(
            f"{outcome.status} {safe(outcome.address)}: {outcome.messages_done:,} new messages"
            f" ({human_bytes(outcome.bytes_done)}){skipped}, {outcome.seconds:.1f} s"
            f" [{migrated:,} of {self.total:,} migrated]"
        )


NAMES_SHOWN = 5  # accounts named per failure reason, folders per skip reason


def _wrapped(con: Console, text: str, indent: int) -> None:
    """A line of its own, wrapped to the console's width with a hanging indent: readable in
    full on an 80-column terminal and in a pipe, where a table cell would cut it. A word longer
    than the width (a deep plan path in a command to copy) gets a line of its own, whole:
    folded, it would paste as two words."""
    width = max(20, con.width - indent)
    styled = Text.from_markup(text)
    plain, at = styled.plain, 0
    for words in textwrap.wrap(
        plain, width, break_long_words=False, break_on_hyphens=False, replace_whitespace=False
    ):
        at = plain.index(words, at)
        con.print(Text(" " * indent) + styled[at : at + len(words)], soft_wrap=True)
        at += len(words)


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
        + (
            f" ({summary.messages_adopted:,} found in the target already, not sent again)"
            if getattr(summary, "messages_adopted", 0)
            else ""
        )
        + (f", {summary.messages_skipped:,} skipped" if summary.messages_skipped else "")
        + (f"; the target throttled us {summary.throttled:,} times" if summary.throttled else "")
    )
    changes = getattr(summary, "changes", None)
    if changes:
        con.print(f"users' changes carried: {describe(changes)}")
    if summary.failures:
        _render_failures(con, summary.failures, getattr(summary, "failed_by_reason", None))
    if summary.messages_skipped:
        _render_skips(con, summary, plan)
    if summary.failures or summary.messages_skipped:
        example = (summary.failures[0]["account"] if summary.failures else
                   next(iter(summary.skipped_by_folder), ("ADDRESS",))[0])  # fmt: skip
        con.print()
        _wrapped(
            con,
            f"the full lists: `migrator show {example} --plan {plan}` (one account: its error, "
            "folders and every skipped message with subject and date); `migrator accounts --plan "
            f"{plan} --status failed` (every failed account, one per line; --json for a file); "
            f"`migrator report --plan {plan} --format csv --output report.csv` (every account)",
            0,
        )
    if summary.deferred:
        con.print()
        _wrapped(
            con,
            f"{summary.deferred:,} account(s) were given back unchanged while a server was "
            f"unavailable ({safe(summary.deferred_because, 300)}); no attempt was charged, the "
            "next run takes them",
            0,
        )
    if summary.stopped:
        con.print("stopped on request: the state is consistent; run again to resume")


def _render_failures(
    con: Console, failures: list[dict[str, str]], counts: dict[str, int] | None = None
) -> None:
    """By reason, most frequent first: how many, the first few accounts, the first error and
    what to do. `failures` may be the first of many (RunSummary keeps 1,000); `counts` has
    every failure by reason."""
    by_reason: dict[str, list[dict[str, str]]] = {}
    for failure in failures:
        by_reason.setdefault(failure["reason"] or "unknown", []).append(failure)
    total: dict[str, int] = {(k or "unknown"): v for k, v in (counts or {}).items()}
    for reason, group in by_reason.items():
        total[reason] = max(total.get(reason, 0), len(group))
    con.print()
    con.print(f"[bold]Failed accounts: {sum(total.values()):,}[/bold], by reason")
    for reason, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])):
        group = by_reason.get(reason, [])
        if not group:  # failures past the first 1,000, all of this reason
            _wrapped(
                con,
                f"{safe(reason)}: {n:,} account(s) (`migrator accounts --status failed` names "
                "them)",
                2,
            )
            continue
        names = ", ".join(safe(f["account"], 80) for f in group[:NAMES_SHOWN])
        _wrapped(
            con,
            f"{safe(reason)}: {n:,} account(s): "
            f"{names}{_more(min(NAMES_SHOWN, len(group)), n, 'accounts')}",
            2,
        )
        _wrapped(
            con, ("error of the first: " if n > 1 else "error: ") + safe(group[0]["error"], 600), 4
        )
        hints = list(dict.fromkeys(f["hint"] for f in group if f["hint"]))
        for hint in hints[:3]:
            _wrapped(con, f"what to do: {safe(hint, 600)}", 4)


def _render_skips(con: Console, summary: Any, plan: str) -> None:
    by_reason: dict[str, list[tuple[str, str, int]]] = {}
    for (account, folder, reason), n in summary.skipped_by_folder.items():
        by_reason.setdefault(reason, []).append((account, folder, n))
    con.print()
    con.print(f"[bold]Skipped messages: {summary.messages_skipped:,}[/bold], by reason and folder")
    for reason, places in sorted(
        by_reason.items(), key=lambda kv: (-sum(n for *_, n in kv[1]), kv[0])
    ):
        places.sort(key=lambda p: (-p[2], p[0], p[1]))
        total = sum(n for *_, n in places)
        accounts = len({account for account, _, _ in places})
        _wrapped(
            con,
            f"{safe(reason)}: {total:,} message(s) in {len(places):,} folder(s) of {accounts:,} "
            "account(s)",
            2,
        )
        for account, folder, n in places[:NAMES_SHOWN]:
            _wrapped(con, f"{n:,} in {safe(account, 80)}, folder {safe(folder, 120)}", 4)
        if len(places) > NAMES_SHOWN:
            _wrapped(
                con,
                f"and {sum(n for *_, n in places[NAMES_SHOWN:]):,} in "
                f"{len(places) - NAMES_SHOWN:,} more folder(s)",
                4,
            )
        what = advice(reason, address=places[0][0], plan_file=plan)
        _wrapped(con, f"what to do: {safe(what, 600)}", 4)
