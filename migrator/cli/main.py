"""`migrator` command group."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from migrator import __version__
from migrator.cli.dedupe import register as register_dedupe
from migrator.cli.errors import handle_errors
from migrator.cli.filters import register as register_filters
from migrator.cli.options import (
    bounded,
    json_option,
    log_format_option,
    metrics_address_option,
    metrics_port_option,
    plan_option,
    state_option,
    worker_name_option,
    workers_type,
)
from migrator.cli.prune import register as register_prune
from migrator.cli.reports import register as register_reports
from migrator.cli.signals import OutputGuard, graceful_stop
from migrator.commands.accounts import STATES, iter_accounts
from migrator.model import limits
from migrator.model.errors import EXIT_FATAL, EXIT_PARTIAL, UsageError
from migrator.plan import load_plan
from migrator.report.console import console, error_console, print_json, print_json_array, safe
from migrator.report.discovery import account_json, render_accounts, render_discovery
from migrator.report.dry_run import render_dry_run
from migrator.report.jsonlog import JsonLinesProgress
from migrator.report.run import RunProgress, render_run_summary
from migrator.report.status import render_status
from migrator.report.verify import render_verify

if TYPE_CHECKING:  # the engine is imported only by the commands that run it
    from migrator.commands.run import RunRequest
    from migrator.model.plan import Plan
    from migrator.report.metrics import RunMetrics


# Command modules are imported inside each command: a command then loads only what it uses
# (no ldap3 for `status`, no engine for `discover`), which keeps start-up short.
# click's own usage errors exit 2, which is our "usage/config/fatal" code too
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="migrator")
def cli() -> None:
    """Move mailboxes from Postfix (Maildir, mbox, IMAP) to Microsoft Exchange, resumably.

    Exit codes: 0 all done; 1 finished, some accounts failed or were skipped; 2 usage, plan,
    directory or database error; 130/143 interrupted (state is consistent, run again); 141 the
    reader of the output went away (`| head`): the command stopped quietly, as on SIGPIPE.
    """
    from migrator.commands import state

    state.on_schema_change = lambda text: error_console().print(f"note: {safe(text, 2000)}")


@cli.command("check-plan")
@plan_option
@handle_errors
def check_plan_cmd(plan_path: Path) -> None:
    """Validate a plan file without connecting anywhere."""
    plan = load_plan(plan_path)
    console().print(
        f"plan {plan.name!r} is valid: directory {plan.directory.url}, source {plan.source.kind}, "
        f"target {plan.target.kind}"
    )


@cli.command("discover")
@plan_option
@state_option
@json_option
@handle_errors
def discover_cmd(plan_path: Path, state_url: str | None, as_json: bool) -> None:
    """Read the in-scope accounts from the directory into the state database.

    Every entry under the plan's base ends in one of: in scope, excluded (with a reason) or
    invalid (with a reason). Re-running updates the accounts and never resets progress.
    """
    from migrator.commands.discover import discover

    plan = load_plan(plan_path)
    report = discover(plan, state_url=state_url)
    if as_json:
        print_json(report.as_json())
    else:
        render_discovery(console(), report)


@cli.command("accounts")
@plan_option
@state_option
@click.option("--status", "state", type=click.Choice(STATES), help="Only accounts in this state.")
@click.option("--batch", help="Only accounts of this batch.")
@json_option
@handle_errors
def accounts_cmd(
    plan_path: Path, state_url: str | None, state: str | None, batch: str | None, as_json: bool
) -> None:
    """List the accounts stored for a plan."""
    plan = load_plan(plan_path)
    # streamed: a plan of 100,000 accounts prints in constant memory, its first lines at once
    rows = iter_accounts(plan, state_url=state_url, state=state, batch=batch)
    if as_json:
        print_json_array(account_json(row) for row in rows)
    else:
        render_accounts(sys.stdout, rows)


@cli.command("run")
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
    type=workers_type,
    help="Accounts migrated at once (default: the plan's [run] workers).",
)
@click.option("--limit", type=click.IntRange(1), help="Migrate at most N accounts in this run.")
@click.option(
    "--no-delta",
    is_flag=True,
    help="Only accounts never migrated; skip delta passes over migrated ones.",
)
@click.option(
    "--dry-run", is_flag=True, help="Connect, preflight and count without writing to the target."
)
@click.option(
    "--allow-deletions",
    is_flag=True,
    help=(
        "Carry deletions even where they exceed the plan's [run] deletion_limit of an account's "
        "messages."
    ),
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@worker_name_option
@metrics_port_option
@metrics_address_option
@log_format_option
@json_option
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
    allow_deletions: bool,
    quiet: bool,
    worker_name: str | None,
    metrics_port: int | None,
    metrics_address: str,
    log_format: str,
    as_json: bool,
) -> None:
    """Migrate the plan's accounts: pending ones first pass, migrated ones a delta pass.

    Safe to interrupt at any instant (Ctrl-C, kill, crash): run again and it resumes with
    every message exactly once. Exit 0 all done; 1 some accounts failed or messages were
    skipped (listed); 2 fatal; 130/143 interrupted.
    """
    from migrator.commands.dry_run import dry_run_plan
    from migrator.commands.run import RunRequest

    plan = load_plan(plan_path)
    if dry_run:
        report = dry_run_plan(
            plan, state_url=state_url, batches=batches, addresses=accounts, limit=limit
        )
        if as_json:
            print_json(report.as_json())
        else:
            render_dry_run(console(), report)
        raise SystemExit(report.exit_code)
    request = RunRequest(batches=batches, addresses=accounts, workers=workers, limit=limit,
                         include_synced=not no_delta,
                         worker_name=worker_name, allow_deletions=allow_deletions)  # fmt: skip
    raise SystemExit(_run_and_report(plan, request, state_url, quiet=quiet, log_format=log_format,
                                     as_json=as_json,
                                     metrics=(metrics_port, metrics_address)))  # fmt: skip


def _run_and_report(
    plan: Plan,
    request: RunRequest,
    state_url: str | None,
    *,
    quiet: bool,
    log_format: str,
    as_json: bool,
    metrics: tuple[int | None, str] = (None, ""),
) -> int:
    """Run with live progress (or JSON log lines), print the summary; the exit code."""
    from migrator.commands.run import run
    from migrator.store.owners import identify

    out = console()
    display = (
        JsonLinesProgress(plan.name, quiet=quiet)
        if log_format == "json"
        else RunProgress(out, quiet=quiet or as_json, plan_file=str(plan.file))
    )
    request.identity = request.identity or identify(request.worker_name)
    with graceful_stop() as stop, _run_metrics(plan, state_url, request, *metrics) as watch:
        progress = OutputGuard(display, stop)
        try:
            shown = watch.progress(progress) if watch is not None else progress
            summary = run(
                plan, request, state_url=state_url, progress=shown, stop=stop.event, watch=watch
            )
        finally:
            progress.close()
    if progress.closed:  # nobody reads the output any more: end as a closed pipe does
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")
    code = stop.exit_code if stop.exit_code is not None else summary.exit_code
    if isinstance(display, JsonLinesProgress):
        display.run_finished(summary, exit_code=code)
    elif as_json:
        print_json(summary.as_json())
    else:
        render_run_summary(out, summary, plan_file=str(plan.file))
    return code


@contextmanager
def _run_metrics(
    plan: Plan, state_url: str | None, request: RunRequest, port: int | None, address: str
) -> Iterator[RunMetrics | None]:
    """With a port: the run's metrics endpoint, served while the run works (prometheus_client is
    imported only then)."""
    if port is None:
        yield None
        return
    from migrator.commands.status import campaign
    from migrator.commands.workers import plan_target
    from migrator.report.metrics import CampaignCollector, RunMetrics, new_registry, serving

    assert request.identity is not None
    me = request.identity
    registry = new_registry()
    labels = {"plan": plan.name, "target": plan_target(plan)}
    watch = RunMetrics(
        registry,
        **labels,
        worker={"worker": me.id, "name": me.label, "host": me.host, "pid": str(me.pid)},
    )
    registry.register(CampaignCollector(lambda: campaign(plan, state_url=state_url), **labels))
    with serving(registry, port, address) as url:
        error_console().print(f"metrics: {url}")
        yield watch


@cli.command("status")
@plan_option
@state_option
@click.option(
    "--by",
    type=click.Choice(["batch", "ou", "status"]),
    default="batch",
    show_default=True,
    help="How to group the accounts: the plan's batches, the OU in each account's DN, or state.",
)
@json_option
@handle_errors
def status_cmd(plan_path: Path, state_url: str | None, by: str, as_json: bool) -> None:
    """Where the campaign stands: "N of M accounts migrated", per batch, failures, pace.

    Reads the state database only; safe to run while `run` is working.
    """
    from migrator.commands.status import status

    plan = load_plan(plan_path)
    data = status(plan, state_url=state_url, by=by)
    if as_json:
        print_json(data)
    else:
        render_status(console(), data)


@cli.command("workers")
@plan_option
@state_option
@click.option(
    "--all", "include_all", is_flag=True, help="Also workers stopped more than a day ago."
)
@click.option(
    "--ceiling",
    type=bounded(limits.TARGET_CONCURRENCY),
    metavar="N",
    help="First set the concurrent requests all workers together may send to the plan's target.",
)
@click.option(
    "--metrics-port",
    type=bounded(limits.PORT),
    metavar="PORT",
    help="Instead of printing, serve the fleet's and the campaign's metrics for Prometheus on this "
    "port (/metrics) until Ctrl-C or SIGTERM (docs/metrics.md).",
)
@metrics_address_option
@json_option
@handle_errors
def workers_cmd(
    plan_path: Path,
    state_url: str | None,
    include_all: bool,
    ceiling: int | None,
    metrics_port: int | None,
    metrics_address: str,
    as_json: bool,
) -> None:
    """The fleet: each `run` process's name, state, start, heartbeat, accounts and messages/s.

    A worker reports every few seconds (at most 5). Not heard from for three of those, it is
    flagged STALE (it hangs, is frozen or lost the database: its leases still hold); for longer
    than the plan's lease, gone: what it held was taken over, and it is listed for a day.
    Reads the state database only (unless --ceiling is given).
    """
    from migrator.commands.workers import workers
    from migrator.report.workers import render_workers

    plan = load_plan(plan_path)
    if metrics_port is not None:
        if ceiling is not None:
            workers(plan, state_url=state_url, ceiling=ceiling)
        raise SystemExit(_serve_fleet_metrics(plan, state_url, metrics_port, metrics_address))
    data = workers(plan, state_url=state_url, include_all=include_all, ceiling=ceiling)
    if as_json:
        print_json(data)
    else:
        render_workers(console(), data)


def _serve_fleet_metrics(plan: Plan, state_url: str | None, port: int, address: str) -> int:
    """`workers --metrics-port`: an exporter of the campaign and its fleet, until stopped."""
    from migrator.commands.status import campaign
    from migrator.commands.workers import plan_target, workers
    from migrator.report.metrics import CampaignCollector, FleetCollector, new_registry, serving

    workers(plan, state_url=state_url)  # a wrong plan or database fails now, not at each scrape
    registry = new_registry()
    labels = {"plan": plan.name, "target": plan_target(plan)}
    registry.register(CampaignCollector(lambda: campaign(plan, state_url=state_url), **labels))
    registry.register(FleetCollector(lambda: workers(plan, state_url=state_url), **labels))
    with graceful_stop() as stop, serving(registry, port, address) as url:
        error_console().print(
            f"serving the metrics of plan {plan.name!r} at {url} until Ctrl-C or SIGTERM"
        )
        stop.event.wait()
    return stop.exit_code or 0


@cli.command("verify")
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
@click.option(
    "--workers",
    type=workers_type,
    help="Accounts checked at once (default: the plan's [run] workers).",
)
@click.option(
    "--unverified",
    is_flag=True,
    help="Skip accounts already verified (a pass that found nothing new keeps them verified).",
)
@json_option
@handle_errors
def verify_cmd(
    plan_path: Path,
    state_url: str | None,
    accounts: tuple[str, ...],
    batches: tuple[str, ...],
    workers: int | None,
    unverified: bool,
    as_json: bool,
) -> None:
    """Compare, per folder, the source count, the ledger and what the target holds.

    Results are stored with a timestamp; accounts whose folders all agree become
    "verified". Exit 1 when any folder disagrees.
    """
    from migrator.commands.verify import verify

    plan = load_plan(plan_path)
    report = verify(
        plan,
        state_url=state_url,
        addresses=accounts,
        batches=batches,
        workers=workers,
        unverified_only=unverified,
    )
    if as_json:
        print_json(report.as_json())
    else:
        render_verify(console(), report)
    raise SystemExit(report.exit_code)


@cli.command("retry")
@plan_option
@state_option
@click.option(
    "--failed", is_flag=True, help="All failed accounts (the default when no --account is given)."
)
@click.option(
    "--account", "accounts", multiple=True, metavar="ADDR", help="Only this account (repeatable)."
)
@click.option(
    "--skipped",
    is_flag=True,
    help="Also try skipped messages again (e.g. after fixing permissions).",
)
@click.option("--workers", type=workers_type, help="Accounts migrated at once.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@worker_name_option
@log_format_option
@json_option
@handle_errors
def retry_cmd(
    plan_path: Path,
    state_url: str | None,
    failed: bool,
    accounts: tuple[str, ...],
    skipped: bool,
    workers: int | None,
    quiet: bool,
    worker_name: str | None,
    log_format: str,
    as_json: bool,
) -> None:
    """Run failed accounts again, past their max_account_attempts."""
    from migrator.commands.maintenance import prepare_retry
    from migrator.commands.run import RunRequest

    plan = load_plan(plan_path)
    names = prepare_retry(plan, state_url=state_url, addresses=accounts, skipped=skipped)
    if not names:
        if log_format == "json":
            JsonLinesProgress(plan.name).note("no failed accounts to retry")
        else:
            console().print("no failed accounts to retry")
        raise SystemExit(0)
    request = RunRequest(addresses=names, workers=workers, only_failed=not accounts and not skipped,
                         include_synced=bool(skipped or accounts),
                         worker_name=worker_name)  # fmt: skip
    raise SystemExit(
        _run_and_report(
            plan, request, state_url, quiet=quiet, log_format=log_format, as_json=as_json
        )
    )


@cli.command("reset")
@plan_option
@state_option
@click.option("--account", "address", required=True, metavar="ADDR", help="The account to reset.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@handle_errors
def reset_cmd(plan_path: Path, state_url: str | None, address: str, yes: bool) -> None:
    """Forget an account's migration progress (ledger, folders, passes).

    The target is not touched. The next run adopts the messages the target already holds
    (found by their source-key tag, or by content on IMAP) and sends only the rest; to copy
    the mailbox again from scratch, empty the target mailbox first. Asks first on a terminal;
    answered no (or Ctrl-C): nothing is reset, exit 1. Without a terminal it asks nothing and
    needs --yes (exit 2 without).
    """
    import sys

    from migrator.commands.maintenance import reset

    plan = load_plan(plan_path)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "reset asks for confirmation and there is no terminal to ask on; nothing reset",
                hint="pass --yes to reset without asking (in scripts)",
            )
        if not click.confirm(
            f"Forget all migration progress of {address}? Messages already in the target stay "
            "there; the next run adopts them and sends only what is missing",
            default=False,
        ):
            error_console().print("nothing reset")
            raise SystemExit(EXIT_PARTIAL)
    name = reset(plan, address, state_url=state_url)
    console().print(f"{name}: progress forgotten; the account is pending again")


@cli.command("cutover")
@plan_option
@state_option
@click.option(
    "--batch",
    "batches",
    multiple=True,
    metavar="NAME",
    help="Switch the accounts of this batch (repeatable).",
)
@click.option(
    "--account", "accounts", multiple=True, metavar="ADDR", help="Switch this account (repeatable)."
)
@click.option(
    "--force",
    is_flag=True,
    help=(
        "Switch accounts that are not ready too (no completed pass, failed messages, a failed "
        "last pass)."
    ),
)
@click.option(
    "--rollback",
    is_flag=True,
    help="Take the selection out of the transport map again: Postfix delivers locally.",
)
@click.option(
    "--workers",
    type=workers_type,
    help="Accounts in a delta pass at once (default: the plan's [run] workers).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the steps and the outcome.")
@json_option
@handle_errors
def cutover_cmd(
    plan_path: Path,
    state_url: str | None,
    batches: tuple[str, ...],
    accounts: tuple[str, ...],
    force: bool,
    rollback: bool,
    workers: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Switch a wave of batches from Postfix's local delivery to the target, on a real Postfix.

    One command per wave, resumable (run it again after any failure or kill): checks that every
    account has a completed pass and no failed messages (--force switches exceptions anyway),
    runs a last delta pass, writes the accounts into the plan's [cutover] transport_map (lines
    not written by migrator are kept), builds it with postmap and renames it into place,
    reloads Postfix, and verifies without sending mail that the built map and the running
    Postfix route the wave to the next hop while a colleague still goes locally (any mismatch
    takes the wave out again). The final delta pass runs when the command is run again (or
    [cutover] final_delta_after after the switch) and marks the accounts cut over. Every step
    is recorded with its time. --rollback takes the selection out of the map and verifies that
    Postfix delivers it locally again. Exit 0 done; 1 final delta not completed for some
    accounts; 2 stopped (nothing switched by that step: the error says why).
    """
    from migrator.commands.cutover import CutoverRequest, cutover
    from migrator.report.cutover import render_cutover
    from migrator.report.run import RunProgress

    plan = load_plan(plan_path)
    out = console()
    notes = error_console() if as_json else out
    request = CutoverRequest(
        batches=batches, addresses=accounts, force=force, rollback=rollback, workers=workers
    )
    with graceful_stop() as stop:
        display = RunProgress(out, quiet=True) if (quiet or as_json) else RunProgress(out)
        progress = OutputGuard(display, stop)
        try:
            report = cutover(
                plan,
                request,
                state_url=state_url,
                progress=progress,
                stop=stop.event,
                say=lambda text: notes.print(safe(text, 2000)),
            )
        finally:
            progress.close()
    if as_json:
        print_json(report.as_json())
    else:
        render_cutover(out, report)
    raise SystemExit(stop.exit_code if stop.exit_code is not None else report.exit_code)


@cli.command("upgrade")
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The plan whose state database to upgrade (or name it with --state / $MIGRATOR_STATE).",
)
@state_option
@json_option
@handle_errors
def upgrade_cmd(plan_path: Path | None, state_url: str | None, as_json: bool) -> None:
    """Upgrade the state database's schema to this migrator's (or create it).

    The other commands never upgrade a PostgreSQL schema, and read commands never upgrade any:
    run this once, after stopping `migrator run` on every host. It refuses while workers still
    send heartbeats (docs/multihost.md).
    """
    import os

    from migrator.commands.upgrade import upgrade_state
    from migrator.model.errors import UsageError

    if plan_path is None and not state_url and not os.environ.get("MIGRATOR_STATE"):
        raise UsageError("which state database? none named", hint="give --plan FILE or --state URL")
    plan = load_plan(plan_path) if plan_path is not None else None
    done = upgrade_state(plan, state_url)
    if as_json:
        print_json(done)
    elif not done["changed"]:
        console().print(
            f"state database {done['state']} is at schema {done['after']} already; nothing to do"
        )
    elif done["before"] is None:
        console().print(f"state database {done['state']} created at schema {done['after']}")
    else:
        console().print(
            f"state database {done['state']} upgraded from schema {done['before']} to "
            f"{done['after']}"
        )


@cli.command("ews-simulator")
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder of its persistent store.",
)
@click.option(
    "--mailbox",
    "mailboxes",
    multiple=True,
    metavar="ADDR",
    help="Create this mailbox (repeatable).",
)
@click.option(
    "--mailboxes-from",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File with one address per line.",
)
@click.option(
    "--busy-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fraction of requests answered ErrorServerBusy.",
)
@click.option(
    "--backoff-ms",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="BackOffMilliseconds in those answers.",
)
@click.option(
    "--http503-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fraction of requests answered HTTP 503.",
)
@click.option(
    "--retry-after", type=click.IntRange(0), help="Retry-After seconds in those 503 answers."
)
@click.option(
    "--reset-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fraction of connections reset mid-request.",
)
@click.option(
    "--lost-answer-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fraction of requests carried out whose answer is then lost (connection reset).",
)
@click.option(
    "--delay", type=click.FloatRange(0), default=0.0, help="Seconds added to every answer."
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(1),
    help="Requests in flight beyond this get ErrorServerBusy.",
)
@click.option("--max-request-bytes", type=click.IntRange(1), help="Larger requests are refused.")
@click.option("--seed", type=int)
@click.option(
    "--auth",
    "auth",
    type=click.Choice(["basic", "ntlm"]),
    multiple=True,
    help="Authentication the endpoint takes (repeatable; default basic). NTLM accounts are "
    "EXAMPLE\\svc-migrator or svc-migrator.",
)
@click.option(
    "--culture",
    default="en-US",
    show_default=True,
    help="Language of new mailboxes' folder names (en-US, es-MX, ...).",
)
@handle_errors
def ews_simulator_cmd(
    port: int,
    data_dir: Path,
    mailboxes: tuple[str, ...],
    mailboxes_from: Path | None,
    busy_rate: float,
    backoff_ms: int,
    http503_rate: float,
    retry_after: int | None,
    reset_rate: float,
    lost_answer_rate: float,
    delay: float,
    max_concurrency: int | None,
    max_request_bytes: int | None,
    seed: int | None,
    auth: tuple[str, ...],
    culture: str,
) -> None:
    """Run the local EWS simulator (for tests, benchmarks and the demo) until Ctrl-C.

    The service account is svc-migrator; its password comes from MIGRATOR_SIM_PASSWORD
    (default: the simulator's built-in test password).
    """
    import os

    from migrator.simulator.ews import DEFAULT_USERS, Faults, serve

    users = dict(DEFAULT_USERS)
    if os.environ.get("MIGRATOR_SIM_PASSWORD"):
        users = {name: os.environ["MIGRATOR_SIM_PASSWORD"] for name in users}
    boxes = list(mailboxes)
    if mailboxes_from:
        boxes += [
            line.strip()
            for line in mailboxes_from.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    faults = Faults(
        server_busy_rate=busy_rate,
        backoff_ms=backoff_ms,
        http503_rate=http503_rate,
        retry_after_s=retry_after,
        reset_rate=reset_rate,
        lost_answer_rate=lost_answer_rate,
        delay_s=delay,
        max_concurrency=max_concurrency,
        max_request_bytes=max_request_bytes,
        seed=seed,
    )
    serve(
        port,
        data_dir,
        users=users,
        faults=faults,
        mailboxes=boxes,
        auth=auth or ("basic",),
        culture=culture,
    )


register_reports(cli)
register_dedupe(cli)
register_prune(cli)
register_filters(cli)


def main() -> None:
    try:
        cli.main(prog_name="migrator")
    except click.exceptions.Abort:
        raise SystemExit(EXIT_FATAL) from None


if __name__ == "__main__":
    main()
