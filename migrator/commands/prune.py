"""`prune`: remove old events, finished runs and gone workers rows (store/retention.py).

A dry run by default: it counts what would go and changes nothing. `[state] retention_days`
in the plan (or `--older-than`) says how old is old; the ledger and the accounts are never
touched, so a pruned campaign resumes, verifies, reports and cuts over as before.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from migrator.commands.report import iso
from migrator.commands.state import plan_store
from migrator.model.errors import UsageError
from migrator.model.heartbeat import gone_after
from migrator.model.plan import Plan
from migrator.store import retention
from migrator.store.types import utcnow


def prune(
    plan: Plan,
    *,
    state_url: str | None = None,
    apply: bool = False,
    older_than_days: float | None = None,
) -> dict[str, Any]:
    """What was removed (`apply`) or would be: events and runs older than the retention, and
    the workers rows of processes not heard from for longer than the plan's lease."""
    days = older_than_days if older_than_days is not None else plan.retention_days
    if days is None:
        raise UsageError(
            "how much history to keep is not set; nothing pruned",
            hint=(
                "set retention_days in the plan's [state] section (e.g. retention_days = 30) or "
                "give --older-than 30d"
            ),
        )
    now = utcnow()
    before = now - timedelta(days=days)
    silent_since = now - timedelta(seconds=gone_after(plan.run.lease_seconds))
    with plan_store(plan, state_url, access="write" if apply else "read") as (store, plan_id):
        if apply:
            done = retention.prune(store, plan_id, before=before, workers_silent_since=silent_since)
        else:
            done = retention.prunable(
                store, plan_id, before=before, workers_silent_since=silent_since
            )
    return {
        "plan": plan.name,
        "applied": apply,
        "retention_days": days,
        "events": done.events,
        "runs": done.runs,
        "workers": done.workers,
        "events_before": iso(done.events_before),
        "workers_silent_since": iso(done.workers_before),
    }
