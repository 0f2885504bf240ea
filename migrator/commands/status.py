"""`status`: where the campaign stands, from the state database alone (no server contacted)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from migrator.commands.classify import ou_of_dn
from migrator.commands.state import plan_reader
from migrator.model.heartbeat import beat_seconds
from migrator.model.plan import Plan
from migrator.model.scope import Scope
from migrator.model.status import Status
from migrator.store.reporting import aggregates
from migrator.store.reporting import cutover as cutover_report
from migrator.store.reporting import filters as filter_report

# An estimate needs this much to stand on: the pace of a few seconds, or of one or two
# accounts, says nothing about the next thousand (the first accounts are often small ones).
ETA_MIN_RUNNING_S = 600
ETA_MIN_ACCOUNTS = 3


def estimate(remaining: int, recent: dict[str, Any]) -> tuple[float | None, str]:
    """Hours of running the remaining accounts take at the last hour's pace, and the basis in
    words; None (and why) when the basis is too thin or there is nothing left."""
    accounts, running = int(recent["accounts"]), float(recent["running_seconds"])
    if remaining <= 0:
        return None, "nothing left to migrate"
    if running < ETA_MIN_RUNNING_S or accounts < ETA_MIN_ACCOUNTS:
        return None, (
            f"too early to estimate: {accounts:,} account(s) migrated in {_duration(running)} of "
            f"running in the last hour (an estimate needs {ETA_MIN_ACCOUNTS} accounts and "
            f"{ETA_MIN_RUNNING_S // 60} minutes)"
        )
    hours = remaining * running / accounts / 3600
    return hours, f"{accounts:,} accounts in {_duration(running)} of running in the last hour"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


# in this order in `status --json` (verified first: the furthest an account gets)
_SHOWN_STATUSES = (Status.VERIFIED, Status.SYNCED, Status.FAILED, Status.PENDING, Status.RUNNING)
_OU_STATUSES = (Status.VERIFIED, Status.FAILED, Status.RUNNING, Status.PENDING)


def _accounts(counts: dict[str, Any], progress: dict[str, int]) -> dict[str, int]:
    statuses: dict[str, int] = counts["statuses"]
    return {
        "total": counts[Scope.IN_SCOPE],
        "migrated": progress["migrated"],
        **{status: statuses.get(status, 0) for status in _SHOWN_STATUSES},
        # running, but the lease expired: the worker died (`migrator run` resumes them)
        "interrupted": progress["interrupted"],
        Scope.EXCLUDED: sum(counts[Scope.EXCLUDED].values()),
        Scope.INVALID: sum(counts[Scope.INVALID].values()),
        Scope.VANISHED: counts[Scope.VANISHED],
    }


def campaign(plan: Plan, *, state_url: str | None = None) -> dict[str, Any]:
    """The counts of `status` that a metrics endpoint exports: accounts by state, messages
    and bytes, skipped messages by reason (the same queries, so the two always agree)."""
    with plan_reader(plan, state_url) as (db, plan_id, _shown_url):
        now = datetime.now(UTC)
        _groups, progress = aggregates.in_scope_progress(
            db, plan_id, now=now, since=now - timedelta(hours=1)
        )
        return {
            "accounts": _accounts(aggregates.account_counts(db, plan_id), progress),
            "messages": progress["messages"],
            "skipped_by_reason": aggregates.skipped_by_reason(db, plan_id),
        }


def status(plan: Plan, *, state_url: str | None = None, by: str = "batch") -> dict[str, Any]:
    with plan_reader(plan, state_url) as (db, plan_id, shown_url):
        counts = aggregates.account_counts(db, plan_id)
        statuses: dict[str, int] = counts["statuses"]
        total = counts[Scope.IN_SCOPE]
        # the accounts in scope read once for the per-batch rows, the totals and the last hour
        now = datetime.now(UTC)
        by_batch, progress = aggregates.in_scope_progress(
            db, plan_id, now=now, since=now - timedelta(hours=1)
        )
        migrated = progress["migrated"]
        # a killed run was at work until about one heartbeat after its workers' last one
        heartbeat = timedelta(seconds=beat_seconds(plan.run.lease_seconds))
        recent = aggregates.recent_throughput(
            db, plan_id, heartbeat=heartbeat, now=now, first_passes=progress["first_passes"]
        )
        eta_hours, eta_basis = estimate(total - migrated, recent)
        groups: list[dict[str, Any]]
        if by == "status":
            groups = [{"status": k, "accounts": v} for k, v in sorted(statuses.items())]
        elif by == "ou":
            groups = _by_ou(aggregates.dn_statuses(db, plan_id))
        else:
            groups = by_batch
        last_verify = aggregates.last_run(db, plan_id, "verify")
        cutover = cutover_status(db, plan_id)
        return {
            "cutover": cutover,
            "plan": plan.name,
            "state": shown_url,
            "headline": f"{migrated:,} of {total:,} accounts migrated"
            + (f" ({100.0 * migrated / total:.1f} %)" if total else ""),
            "accounts": _accounts(counts, progress),
            "messages": progress["messages"],
            "skipped_by_reason": aggregates.skipped_by_reason(db, plan_id),
            "failures_by_reason": aggregates.failures_by_reason(db, plan_id),
            "by": by,
            "groups": groups,
            "last_hour": recent,
            "eta_hours": eta_hours,
            "eta_basis": eta_basis,
            "last_verification": last_verify,
            "filters": filter_report.totals(db, plan_id),
        }


def _by_ou(rows: list[tuple[str, str, bool]]) -> list[dict[str, Any]]:
    """Progress per OU of the accounts' DNs (the directory's own structure, whatever the plan's
    batches are), in the shape of the per-batch rows."""
    groups: dict[str, dict[str, Any]] = {}
    # the OU depends only on what follows the entry's own RDN, which thousands of accounts share:
    # parsed once per parent (100,000 DNs parsed one by one took a second)
    by_parent: dict[str, str] = {}
    for dn, status, migrated in rows:
        if "\\" in dn:  # an escaped comma may hide in the first RDN
            ou = ou_of_dn(dn) or "(none)"
        else:
            parent = dn.partition(",")[2]
            ou = by_parent.get(parent) or by_parent.setdefault(parent, ou_of_dn(dn) or "(none)")
        row = groups.setdefault(
            ou, {"ou": ou, "total": 0, "migrated": 0, **dict.fromkeys(_OU_STATUSES, 0)}
        )
        row["total"] += 1
        row["migrated"] += migrated
        if status in _OU_STATUSES:
            row[status] += 1
    return [groups[k] for k in sorted(groups)]


def cutover_status(db: Any, plan_id: int) -> dict[str, Any] | None:
    """Per batch: accounts pre-staged (migrated, not switched), switched (final delta to come)
    and cut over (finished); and the last waves. None before the first `cutover`."""
    if not cutover_report.has_cutover(db, plan_id):
        return None
    touched = cutover_report.cutover_by_batch(db, plan_id)
    batches = []
    for row in aggregates.progress_by_batch(db, plan_id):
        name = row["batch"] or ""
        c = touched.get(name, {"switched": 0, "cut_over": 0, "in_progress": 0, "migrated": 0})
        batches.append({
            "batch": row["batch"], "total": row["total"],
            "pre_staged": row["migrated"] - c["migrated"], "switched": c["switched"],
            "cut_over": c["cut_over"], "in_progress": c["in_progress"],
        })  # fmt: skip
    waves = cutover_report.waves(db, plan_id, limit=20)
    return {
        "batches": batches,
        "totals": {
            k: sum(b[k] for b in batches)
            for k in ("total", "pre_staged", "switched", "cut_over", "in_progress")
        },
        "waves": [{k: v for k, v in w.items() if k != "steps"} for w in waves[-5:]],
    }
