"""`run`: migrate the plan's accounts (first passes and delta passes) into the target."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from migrator.adapters.targets import open_target
from migrator.commands.heartbeat import keep_run_alive
from migrator.commands.secrets import source_password, target_secrets
from migrator.commands.state import check_selection, plan_store
from migrator.engine.limiter import LimiterWatch
from migrator.engine.progress import Progress
from migrator.engine.runner import Runner, RunOptions, RunSummary
from migrator.model.errors import UsageError
from migrator.model.plan import Plan
from migrator.model.status import RunStatus
from migrator.retry import RetryPolicy
from migrator.store.owners import Identity, identify


@dataclass
class RunRequest:
    batches: Sequence[str] = ()
    addresses: Sequence[str] = ()
    workers: int | None = None
    limit: int | None = None
    include_synced: bool = True
    only_failed: bool = False
    retry: RetryPolicy | None = None
    worker_name: str | None = None  # shown instead of host:pid (the worker's id stays unique)
    identity: Identity | None = None  # this worker, when the caller made it (else a new one)
    # a pass may delete more than [run] deletion_limit of an account's messages
    allow_deletions: bool = False


def run(
    plan: Plan,
    request: RunRequest,
    *,
    state_url: str | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    watch: LimiterWatch | None = None,
) -> RunSummary:
    """Migrate pending accounts and delta-pass migrated ones; resumable at any instant."""
    secrets = target_secrets(plan)
    password = source_password(plan)
    with plan_store(plan, state_url, access="write") as (store, plan_id):
        if store.discovery_counts(plan_id)["total"] == 0:
            raise UsageError(
                f"plan {plan.name!r} has no accounts in {store.url}",
                hint=f"run `migrator discover --plan {plan.file}` first",
            )
        check_selection(store, plan_id, plan, batches=request.batches, addresses=request.addresses)
        workers = request.workers or plan.run.workers
        target = open_target(
            plan.target,
            secrets=secrets,
            max_connections=plan.run.target_concurrency,
            plan_file=plan.file,
        )
        me = request.identity or identify(request.worker_name)
        lease = plan.run.lease_seconds
        run_id = store.start_run(plan_id, "run", worker=me, lease_seconds=lease)
        runner = Runner(
            plan,
            store,
            target,
            plan_id=plan_id,
            run_id=run_id,
            options=RunOptions(
                workers=workers,
                batches=request.batches,
                addresses=tuple(a.strip() for a in request.addresses),
                limit=request.limit,
                include_synced=request.include_synced,
                only_failed=request.only_failed,
                retry=request.retry or RetryPolicy(),
                allow_deletions=request.allow_deletions,
            ),
            progress=progress,
            stop=stop,
            source_password=password,
            identity=me,
            limiter_watch=watch,
        )
        try:
            with keep_run_alive(store, run_id, lease):
                summary = runner.run()
        except BaseException as exc:
            store.finish_run(run_id, RunStatus.FAILED, {"error": type(exc).__name__})
            raise
        finally:
            target.close()
        status = (
            RunStatus.INTERRUPTED
            if summary.stopped
            else (RunStatus.PARTIAL if summary.exit_code else RunStatus.DONE)
        )
        store.finish_run(run_id, status, summary.as_json())
        return summary
