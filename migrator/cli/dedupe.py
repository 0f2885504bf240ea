"""`dedupe`: find and remove the extra copies migrator left in a target. `register(cli)` adds it."""

from __future__ import annotations

from pathlib import Path

import click

from migrator.cli.errors import handle_errors
from migrator.cli.options import json_option, plan_option, state_option
from migrator.plan import load_plan
from migrator.report.console import console, print_json


@click.command("dedupe")
@plan_option
@state_option
@click.option(
    "--account", "accounts", multiple=True, metavar="ADDR", help="Only this account (repeatable)."
)
@click.option(
    "--batch",
    "batches",
    multiple=True,
    metavar="NAME",
    help="Only accounts of this batch (repeatable).",
)
@click.option("--apply", is_flag=True, help="Delete the extra copies (without it, only list them).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Accounts checked at once (default: the plan's [run] workers).",
)
@json_option
@handle_errors
def dedupe_cmd(
    plan_path: Path,
    state_url: str | None,
    accounts: tuple[str, ...],
    batches: tuple[str, ...],
    apply: bool,
    workers: int | None,
    as_json: bool,
) -> None:
    """List, or with --apply delete, the extra copies migrator placed in the target.

    For campaigns that sent mail again with a new or reset state database. A copy is
    migrator's when it carries the message's source-key tag (EWS; IMAP with tag_header) or,
    on IMAP, is the same message (Message-ID, date, content; size too unless the server
    rebuilds messages, as Exchange does) as the copy the ledger holds. The ledger's copy is kept;
    mail migrator did not place is never touched. Without
    --apply nothing is deleted. Exit 0 nothing (left) to remove; 1 copies found by a dry run,
    or some account could not be checked (listed); 2 fatal.
    """
    from migrator.commands.dedupe import dedupe
    from migrator.report.dedupe import render_dedupe

    plan = load_plan(plan_path)
    report = dedupe(
        plan, state_url=state_url, addresses=accounts, batches=batches, apply=apply, workers=workers
    )
    if as_json:
        print_json(report.as_json())
    else:
        render_dedupe(console(), report)
    raise SystemExit(report.exit_code)


def register(cli: click.Group) -> None:
    cli.add_command(dedupe_cmd)
