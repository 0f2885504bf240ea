"""Read-only aggregates for `status` and reports, computed by the database with indexes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select

from migrator.store.schema import AccountDbRow, EventRow, MessageRow, RunRow
from migrator.store.store import Store
from migrator.store.types import utcnow

A = cast(Table, AccountDbRow.__table__)
E = cast(Table, EventRow.__table__)
M = cast(Table, MessageRow.__table__)
R = cast(Table, RunRow.__table__)


def totals(store: Store, plan_id: int) -> dict[str, int]:
    """Messages and bytes over the plan's accounts in scope (from the per-account counters)."""
    stmt = select(
        func.coalesce(func.sum(A.c.messages_done), 0),
        func.coalesce(func.sum(A.c.messages_skipped), 0),
        func.coalesce(func.sum(A.c.messages_failed), 0),
        func.coalesce(func.sum(A.c.bytes_done), 0),
        func.coalesce(func.sum(A.c.passes), 0),
    ).where(A.c.plan_id == plan_id, A.c.scope == "in_scope")
    with store.session() as s:
        done, skipped, failed, nbytes, passes = s.execute(stmt).one()
    return {"done": int(done), "skipped": int(skipped), "failed": int(failed), "bytes": int(nbytes), "passes": int(passes)}


def failures_by_reason(store: Store, plan_id: int, limit: int = 10) -> list[dict[str, Any]]:
    n = func.count().label("n")
    stmt = (
        select(A.c.last_error_reason, n, func.min(A.c.last_error))
        .where(A.c.plan_id == plan_id, A.c.scope == "in_scope", A.c.status == "failed")
        .group_by(A.c.last_error_reason)
        .order_by(n.desc())
        .limit(limit)
    )
    with store.session() as s:
        return [{"reason": r or "unknown", "accounts": int(c), "example": e} for r, c, e in s.execute(stmt)]


def skipped_by_reason(store: Store, plan_id: int) -> dict[str, int]:
    # accounts with skipped messages are few; the ledger is reached through its account index
    ids = select(A.c.id).where(A.c.plan_id == plan_id, A.c.messages_skipped > 0)
    stmt = (
        select(M.c.reason, func.count())
        .where(M.c.account_id.in_(ids), M.c.state == "skipped")
        .group_by(M.c.reason)
    )
    with store.session() as s:
        return {reason or "unknown": int(n) for reason, n in s.execute(stmt)}


def recent_throughput(store: Store, plan_id: int, hours: float = 1.0) -> dict[str, float]:
    """Accounts finished, messages and bytes moved in the last `hours`, from the event log."""
    since = utcnow() - timedelta(hours=hours)
    stmt = select(E.c.to_state, E.c.detail).where(
        E.c.plan_id == plan_id, E.c.at >= since, E.c.kind == "released"
    )
    accounts = messages = nbytes = 0
    with store.session() as s:
        for to_state, detail in s.execute(stmt):
            if to_state == "synced":
                accounts += 1
            detail = detail or {}
            messages += int(detail.get("messages_done", 0) or 0)
            nbytes += int(detail.get("bytes_done", 0) or 0)
    return {"hours": hours, "accounts": accounts, "messages": messages, "bytes": nbytes}


def last_run(store: Store, plan_id: int, command: str) -> dict[str, Any] | None:
    stmt = (
        select(R.c.id, R.c.started_at, R.c.finished_at, R.c.status, R.c.host)
        .where(R.c.plan_id == plan_id, R.c.command == command)
        .order_by(R.c.started_at.desc())
        .limit(1)
    )
    with store.session() as s:
        row = s.execute(stmt).mappings().first()
        return dict(row) if row else None


def verified_accounts(store: Store, plan_id: int) -> int:
    with store.session() as s:
        return int(
            s.execute(
                select(func.count()).where(A.c.plan_id == plan_id, A.c.scope == "in_scope", A.c.status == "verified")
            ).scalar_one()
        )
