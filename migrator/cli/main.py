"""`migrator` command group."""

from __future__ import annotations

from pathlib import Path

import click

from migrator import __version__
from migrator.cli.errors import handle_errors
from migrator.cli.signals import graceful_stop
from migrator.commands.accounts import STATES, list_accounts
from migrator.commands.discover import discover
from migrator.commands.dry_run import dry_run_plan
from migrator.commands.run import RunRequest, run
from migrator.model.errors import EXIT_FATAL
from migrator.plan import load_plan
from migrator.report.console import console, print_json
from migrator.report.discovery import account_json, render_accounts, render_discovery
from migrator.report.dry_run import render_dry_run
from migrator.report.run import RunProgress, render_run_summary

_plan_option = click.option(
    "--plan",
    "plan_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The plan file (TOML), e.g. plans/example.toml.",
)
_state_option = click.option(
    "--state",
    "state_url",
    metavar="URL",
    help="State database URL (default: $MIGRATOR_STATE, the plan's [state] url, "
    "or sqlite:///state/migrator.db).",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


# click's own usage errors exit 2, which is our "usage/config/fatal" code too
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="migrator")
def cli() -> None:
    """Move mailboxes from Postfix (Maildir, mbox, IMAP) to Microsoft Exchange, resumably.

    Exit codes: 0 all done; 1 finished, some accounts failed or were skipped; 2 usage, plan,
    directory or database error; 130/143 interrupted (state is consistent, run again).
    """


@cli.command("check-plan")
@_plan_option
@handle_errors
def check_plan_cmd(plan_path: Path) -> None:
    """Validate a plan file without connecting anywhere."""
    plan = load_plan(plan_path)
    console().print(
        f"plan {plan.name!r} is valid: directory {plan.directory.url}, source {plan.source.kind}, "
        f"target {plan.target.kind}"
    )


@cli.command("discover")
@_plan_option
@_state_option
@_json_option
@handle_errors
def discover_cmd(plan_path: Path, state_url: str | None, as_json: bool) -> None:
    """Read the in-scope accounts from the directory into the state database.

    Every entry under the plan's base ends in one of: in scope, excluded (with a reason) or
    invalid (with a reason). Re-running updates the accounts and never resets progress.
    """
    plan = load_plan(plan_path)
    report = discover(plan, state_url=state_url)
    if as_json:
        print_json(report.as_json())
    else:
        render_discovery(console(), report)


@cli.command("accounts")
@_plan_option
@_state_option
@click.option("--status", "state", type=click.Choice(STATES), help="Only accounts in this state.")
@click.option("--batch", help="Only accounts of this batch.")
@_json_option
@handle_errors
def accounts_cmd(
    plan_path: Path, state_url: str | None, state: str | None, batch: str | None, as_json: bool
) -> None:
    """List the accounts stored for a plan."""
    plan = load_plan(plan_path)
    rows = list_accounts(plan, state_url=state_url, state=state, batch=batch)
    if as_json:
        print_json([account_json(row) for row in rows])
    else:
        render_accounts(console(), rows)


@cli.command("run")
@_plan_option
@_state_option
@click.option("--batch", "batches", multiple=True, metavar="NAME", help="Only accounts of this batch (repeatable).")
@click.option("--account", "accounts", multiple=True, metavar="ADDR", help="Only this account (repeatable).")
@click.option("--workers", type=click.IntRange(1, 256), help="Accounts migrated at once (default: the plan's [run] workers).")
@click.option("--limit", type=click.IntRange(1), help="Migrate at most N accounts in this run.")
@click.option("--no-delta", is_flag=True, help="Only accounts never migrated; skip delta passes over migrated ones.")
@click.option("--dry-run", is_flag=True, help="Connect, preflight and count without writing to the target.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@_json_option
@handle_errors
def run_cmd(
    plan_path: Path,
    state_url: str | None,
    batches: tuple[str, ...],
    accounts: tuple[str, ...],
    workers: int | None,
    limit: int | None,
    no_delta: bool,
    dry_run: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Migrate the plan's accounts: pending ones first pass, migrated ones a delta pass.

    Safe to interrupt at any instant (Ctrl-C, kill, crash): run again and it resumes with
    every message exactly once. Exit 0 all done; 1 some accounts failed or messages were
    skipped (listed); 2 fatal; 130/143 interrupted.
    """
    plan = load_plan(plan_path)
    if dry_run:
        report = dry_run_plan(plan, state_url=state_url, batches=batches, addresses=accounts, limit=limit)
        if as_json:
            print_json(report.as_json())
        else:
            render_dry_run(console(), report)
        raise SystemExit(report.exit_code)
    request = RunRequest(batches=batches, addresses=accounts, workers=workers, limit=limit, include_synced=not no_delta)
    out = console()
    progress = RunProgress(out, quiet=quiet or as_json)
    with graceful_stop() as stop:
        try:
            summary = run(plan, request, state_url=state_url, progress=progress, stop=stop.event)
        finally:
            progress.close()
    if as_json:
        print_json(summary.as_json())
    else:
        render_run_summary(out, summary)
    if stop.exit_code is not None:
        raise SystemExit(stop.exit_code)
    raise SystemExit(summary.exit_code)


def main() -> None:
    try:
        cli.main(prog_name="migrator")
    except click.exceptions.Abort:
        raise SystemExit(EXIT_FATAL) from None


if __name__ == "__main__":
    main()
