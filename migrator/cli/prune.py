"""`prune`: remove old events, finished runs and gone workers rows. `register(cli)` adds it."""

from __future__ import annotations

from pathlib import Path

import click

from migrator.cli.errors import handle_errors
from migrator.cli.options import json_option, plan_option, state_option
from migrator.model import limits
from migrator.plan import load_plan
from migrator.report.console import console, print_json


@click.command("prune")
@plan_option
@state_option
@click.option("--apply", is_flag=True, help="Remove them (without it, only count what would go).")
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(limits.RETENTION_DAYS.low, limits.RETENTION_DAYS.high),
    metavar="DAYS",
    help="Keep this many days of history (default: the plan's [state] retention_days).",
)
@json_option
@handle_errors
def prune_cmd(
    plan_path: Path, state_url: str | None, apply: bool, older_than: float | None, as_json: bool
) -> None:
    """Remove history a long campaign piles up: events and finished runs older than the
    retention, and the `workers` rows of processes not heard from for longer than the lease
    (stopped, or gone with their host).

    Never touches the ledger, the accounts, their folders, cut-over waves, or a run still
    going and its events: a pruned campaign resumes, reports and verifies as before; only
    `events`, `show` and `workers` show less of the past. Without --apply nothing is removed
    (exit 0 either way). Safe while runs are going; on SQLite it deletes in slices so their
    writes wait for one slice at most.
    """
    from migrator.commands.prune import prune

    plan = load_plan(plan_path)
    done = prune(plan, state_url=state_url, apply=apply, older_than_days=older_than)
    if as_json:
        print_json(done)
        return
    verb = "removed" if apply else "would remove"
    console().print(
        f"{verb} {done['events']:,} events and {done['runs']:,} finished runs from before "
        f"{done['events_before']} ({done['retention_days']:g} days kept), and {done['workers']:,} "
        f"workers rows not heard from since {done['workers_silent_since']}"
    )
    if not apply:
        console().print("nothing removed: run again with --apply to remove them")


def register(cli: click.Group) -> None:
    cli.add_command(prune_cmd)
