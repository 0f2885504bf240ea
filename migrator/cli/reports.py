"""The reporting commands: report, show, events, routing. `register(cli)` adds them to the group."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import TextIO

import click

from migrator.cli.errors import handle_errors
from migrator.cli.options import bounded, json_option, plan_option, state_option
from migrator.model import limits
from migrator.model.errors import UsageError
from migrator.plan import load_plan
from migrator.report.console import console, error_console, print_json, safe

# Command and report modules are imported inside each command, as in main.py: every command
# (`status` above all) then starts without loading what only the others use.


@click.command("report")
@plan_option
@state_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "html"]),
    required=True,
    help="The file format.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The file to write ('-' for standard output).",
)
@handle_errors
def report_cmd(plan_path: Path, state_url: str | None, fmt: str, output: Path) -> None:
    """Write a report with one row per account in scope (CSV, JSON or HTML).

    Columns: address, name, batch, state, passes, messages in the source / migrated / skipped /
    failed, bytes, first and last pass, last error. The HTML report is one self-contained file
    (no network needed to view it) with the headline, progress over time, per-batch bars,
    failure and skip reasons and a searchable, sortable account table shown a page at a time
    (100 rows; 50 to 500), which a state list filters; open it with
    #search=TEXT&state=STATE&sort=COLUMN&page=N&rows=N (sort=-COLUMN for descending) to
    preset the table. 100,000 accounts make a file of about 12 MB that opens in seconds.
    Reads the state database only.
    """
    from migrator.commands.report import build_report
    from migrator.report.csv_json import write_csv, write_json
    from migrator.report.html import write_html

    plan = load_plan(plan_path)
    # the HTML page is written as its rows are read (100,000 rows held as lists took ~100 MB)
    data = build_report(plan, state_url=state_url, stream_rows=fmt == "html")
    target = str(output)
    stream = sys.stdout if target == "-" else _open_output(output)
    try:
        if fmt == "csv":
            write_csv(data, stream)
            written = len(data["rows"])
        elif fmt == "json":
            write_json(data, stream)
            written = len(data["rows"])
        else:
            written = write_html(data, stream)
    finally:
        if stream is not sys.stdout:
            stream.close()
    if target != "-":
        error_console().print(
            f"{safe(data['headline'], 200)}; {written:,} accounts written to {safe(target, 300)}"
        )


def _open_output(path: Path) -> TextIO:
    try:
        return open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            hint = f"the folder {path.parent} does not exist: create it, or choose another path"
        else:
            hint = "choose a path this user may write, or '-' for standard output"
        raise UsageError(f"cannot write the report to {path}: {exc.strerror}", hint=hint) from None


@click.command("show")
@click.argument("address", metavar="ADDR")
@plan_option
@state_option
@click.option(
    "--events",
    "events_limit",
    type=bounded(limits.EVENTS_SHOWN),
    default=30,
    show_default=True,
    help="How many of the newest events to show.",
)
@click.option(
    "--no-source", is_flag=True, help="Do not open the source mailbox for subjects and dates."
)
@json_option
@handle_errors
def show_cmd(
    address: str,
    plan_path: Path,
    state_url: str | None,
    events_limit: int,
    no_source: bool,
    as_json: bool,
) -> None:
    """One account: history, folders, skipped messages, last error and what to do.

    Skipped and failed messages (at most 50) show their subject and date when the source
    mailbox can be read (read-only); when it cannot, the command says so and still answers.
    The last error comes with what to do about it.
    """
    from migrator.commands.show import show_account
    from migrator.report.show import render_show

    plan = load_plan(plan_path)
    data = show_account(
        plan, address, state_url=state_url, events_limit=events_limit, read_source=not no_source
    )
    if as_json:
        print_json(data)
    else:
        render_show(console(), data)


@click.command("events")
@plan_option
@state_option
@click.option("--account", metavar="ADDR", help="Only this account's events.")
@click.option(
    "--since",
    metavar="T",
    help="Only events since T: a duration (30m, 2h, 3d, 1w) or an ISO time (UTC).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="At most the newest N events.",
)
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing new events as they happen, until Ctrl-C."
)
@click.option("--poll-interval", type=click.FloatRange(0.01), default=1.0, hidden=True)
@click.option("--follow-timeout", type=click.FloatRange(0), default=None, hidden=True)
@json_option
@handle_errors
def events_cmd(
    plan_path: Path,
    state_url: str | None,
    account: str | None,
    since: str | None,
    limit: int,
    follow: bool,
    poll_interval: float,
    follow_timeout: float | None,
    as_json: bool,
) -> None:
    """The event log, oldest first: claims, passes, failures, resets, scope changes.

    With --json, one JSON object per line (JSON Lines), also while following. --follow polls
    the database every second for new events and stops on Ctrl-C.
    """
    from migrator.commands.events import follow_events, list_events, parse_since
    from migrator.report.events import render_event, write_event_json

    plan = load_plan(plan_path)
    start = parse_since(since) if since else None
    rows = list_events(plan, state_url=state_url, account=account, since=start, limit=limit)
    out = console()

    def emit(e: dict[str, object]) -> None:
        if as_json:
            write_event_json(e, sys.stdout)
        else:
            render_event(out, e)

    for e in rows:
        emit(e)
    if not follow:
        return
    timeout = follow_timeout
    if timeout is None and os.environ.get("MIGRATOR_FOLLOW_TIMEOUT"):
        timeout = float(os.environ["MIGRATOR_FOLLOW_TIMEOUT"])
    last = max((int(str(e["id"])) for e in rows), default=0)
    if not rows:
        # start after what exists now, so --since with no match still only shows new events
        newest = list_events(plan, state_url=state_url, account=account, limit=1)
        last = int(newest[0]["id"]) if newest else 0
    try:
        for e in follow_events(
            plan,
            after_id=last,
            state_url=state_url,
            account=account,
            poll_seconds=poll_interval,
            timeout=timeout,
        ):
            emit(e)
    except KeyboardInterrupt:
        # Ctrl-C is how one stops following: not an error
        return


@click.command("routing")
@plan_option
@state_option
@click.option(
    "--batch",
    "batches",
    multiple=True,
    metavar="NAME",
    help="Only accounts of this batch (repeatable).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["postfix-transport"]),
    default="postfix-transport",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--nexthop",
    metavar="HOST|TRANSPORT",
    help="Where the mail goes: a host, host:port or IP address (smtp:[HOST]:25) or an "
    "smtp:, relay: or lmtp: transport such as smtp:[exchange.example.org]:587, checked as "
    "Postfix reads it (default: the host of the plan's [target] url).",
)
@handle_errors
def routing_cmd(
    plan_path: Path, state_url: str | None, batches: tuple[str, ...], fmt: str, nexthop: str | None
) -> None:
    """Postfix transport_maps lines sending migrated accounts' new mail to Exchange.

    Only accounts that are synced or verified are listed (and those with a completed pass that
    a delta pass is working on or failed on), sorted by address, so routing follows the
    migration batch by batch. Write them to a file, then `postmap` it (see the
    cut-over runbook in docs/guide.md).
    """
    from migrator.commands.routing import routing_lines

    plan = load_plan(plan_path)
    result = routing_lines(plan, state_url=state_url, batches=batches, nexthop=nexthop)
    scope = f" of batch(es) {', '.join(batches)}" if batches else ""
    click.echo(
        f"# migrator routing --plan {plan_path}: {len(result.lines)} migrated account(s){scope}"
    )
    for line in result.lines:
        click.echo(line)
    for address in result.unsafe:
        error_console().print(
            f"warning: {safe(address, 200)} cannot be a transport_maps key; left out"
        )


COMMANDS = (report_cmd, show_cmd, events_cmd, routing_cmd)


def register(cli: click.Group) -> None:
    """Add the reporting commands to `cli` (idempotent)."""
    for command in COMMANDS:
        if command.name not in cli.commands:
            cli.add_command(command)
