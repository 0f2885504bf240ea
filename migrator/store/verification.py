"""Persisting `verify` results: per folder counts with a timestamp, and the account's state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, select, update

from migrator.store.schema import AccountDbRow, EventRow, FolderRow, MessageRow
from migrator.store.store import Store
from migrator.store.types import utcnow

A = cast(Table, AccountDbRow.__table__)
F = cast(Table, FolderRow.__table__)
M = cast(Table, MessageRow.__table__)
E = cast(Table, EventRow.__table__)


@dataclass(frozen=True)
class FolderCheck:
    folder_id: int
    source: int
    ledger: int
    target: int
    ok: bool


def ledger_totals(store: Store, folder_id: int) -> dict[str, int]:
    with store.session() as s:
        rows = s.execute(
            select(M.c.state, func.count()).where(M.c.folder_id == folder_id).group_by(M.c.state)
        )
        return {state: int(n) for state, n in rows}


def done_keys(store: Store, folder_id: int) -> list[str]:
    """The keys the target's copies of the folder's done messages are tagged with."""
    with store.session() as s:
        return list(
            s.execute(
                select(func.coalesce(M.c.tag_key, M.c.source_key))
                .where(M.c.folder_id == folder_id, M.c.state == "done")
                .order_by(M.c.id)
            ).scalars()
        )


def record(
    store: Store, plan_id: int, account_id: int, checks: Sequence[FolderCheck], *, run_id: int | None
) -> str | None:
    """Store the checks; a synced account whose folders all agree becomes verified (and a
    verified one that no longer agrees goes back to synced). Returns the new status, if any."""
    now = utcnow()
    all_ok = all(c.ok for c in checks)
    with store.session(write=True) as s:
        for c in checks:
            s.execute(
                update(F)
                .where(F.c.id == c.folder_id)
                .values(verify_source=c.source, verify_ledger=c.ledger, verify_target=c.target, verify_ok=c.ok, verified_at=now)
            )
        current = s.execute(select(A.c.status).where(A.c.id == account_id)).scalar_one()
        new = None
        if all_ok and current == "synced":
            new = "verified"
        elif not all_ok and current == "verified":
            new = "synced"
        if new:
            s.execute(update(A).where(A.c.id == account_id, A.c.status == current).values(status=new, updated_at=now))
        s.execute(
            E.insert().values(
                at=now,
                plan_id=plan_id,
                account_id=account_id,
                run_id=run_id,
                kind="verified" if all_ok else "verify-mismatch",
                from_state=current,
                to_state=new or current,
                detail={"folders": len(checks), "mismatched": sum(not c.ok for c in checks)},
            )
        )
        return new
