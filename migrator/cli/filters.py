"""The `filters` command (users' Sieve filters and vacation replies). `register(cli)` adds it."""

from __future__ import annotations

from pathlib import Path

import click

from migrator.cli.errors import handle_errors
from migrator.cli.options import json_option, plan_option, state_option
from migrator.plan import load_plan
from migrator.report.console import console, print_json


@click.command("filters")
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
    "--account", "accounts", multiple=True, metavar="ADDR", help="Only this account (repeatable)."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Accounts handled at once (default: the plan's [run] workers).",
)
@click.option(
    "--dry-run", is_flag=True, help="Read and translate the scripts; write nothing to the target."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write ADDRESS.json and ADDRESS.txt per account here (default for an IMAP target: "
    "the folder filters/PLAN beside the plan).",
)
@json_option
@handle_errors
def filters_cmd(
    plan_path: Path,
    state_url: str | None,
    batches: tuple[str, ...],
    accounts: tuple[str, ...],
    workers: int | None,
    dry_run: bool,
    out_dir: Path | None,
    as_json: bool,
) -> None:
    """Carry users' Sieve filters and vacation replies into Exchange.

    Reads each account's active Sieve script (files or ManageSieve, [settings] sieve), turns
    its rules into Exchange inbox rules and its vacation into automatic replies, and says rule
    by rule what Exchange cannot express (the Sieve text and why). With an EWS target the rules
    are applied: migrator's own rules (named "[Sieve] ...") are replaced in one request, the
    user's own rules are never touched. With an IMAP target (Exchange Online) a report per
    account holds the rules and the PowerShell that creates them. Run it at the cut-over; it
    can be run again at any time. Exit 1 when an account failed.
    """
    from migrator.commands.filters import FiltersRequest, filters
    from migrator.report.filters import render_summary, write_reports

    plan = load_plan(plan_path)
    summary = filters(
        plan,
        FiltersRequest(batches=batches, addresses=accounts, dry_run=dry_run, workers=workers),
        state_url=state_url,
    )
    if out_dir is None and plan.target.kind != "ews":
        out_dir = Path(plan.file).resolve().parent / "filters" / plan.name
    written = write_reports(out_dir, summary) if out_dir is not None else []
    if as_json:
        data = summary.as_json()
        data["reports"] = str(out_dir) if out_dir is not None else None
        data["by_account"] = [
            {
                "account": a.address,
                "outcome": a.outcome,
                "error": a.error,
                **(
                    {
                        k: getattr(a.translation, k)
                        for k in ("statements", "translated", "approximate", "refused")
                    }
                    if a.translation
                    else {}
                ),
                "rules": len(a.translation.rules) if a.translation else 0,
                "auto_reply": a.auto_reply,
            }
            for a in summary.accounts
        ]
        print_json(data)
    else:
        render_summary(console(), summary)
        if written:
            console().print(f"reports: {out_dir}")
    raise SystemExit(summary.exit_code)


def register(cli: click.Group) -> None:
    if filters_cmd.name not in cli.commands:
        cli.add_command(filters_cmd)
