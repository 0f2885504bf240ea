"""Read-only queries behind `report`, `show`, `events` and `routing` (never write)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from migrator.model.events import EventKind
from migrator.model.scope import Scope
from migrator.model.status import NOT_SENT, Status
from migrator.store.database.raw import Raw
from migrator.store.reporting.aggregates import MIGRATED_SQL
from migrator.store.schema import accounts as A
from migrator.store.schema import events as E
from migrator.store.schema import folders as F
from migrator.store.schema import messages as M
from migrator.store.store import Store

_REPORT_COLUMNS = (
    A.c.id,
    A.c.key,
    A.c.address,
    A.c.target_address,
    A.c.name,
    A.c.batch,
    A.c.status,
    A.c.passes,
    A.c.messages_done,
    A.c.messages_skipped,
    A.c.messages_failed,
    A.c.bytes_done,
    A.c.first_pass_at,
    A.c.last_pass_at,
    A.c.last_error_reason,
    A.c.last_error,
)


_REPORT_NAMES = [c.name for c in _REPORT_COLUMNS]
_REPORT_TIMES = ("first_pass_at", "last_pass_at")
# DBAPI level (store/database/raw.py): SQLAlchemy's per-row processing made 100,000 rows take ~10 s
_REPORT_SQL = f"""
SELECT {", ".join("a." + name for name in _REPORT_NAMES)}, src.messages_source
FROM accounts a
LEFT JOIN (
  SELECT f.account_id, sum(f.source_count) AS messages_source
  FROM folders f JOIN accounts fa ON fa.id = f.account_id
  WHERE fa.plan_id = ?
  GROUP BY f.account_id
) src ON src.account_id = a.id
WHERE a.plan_id = ? AND a.scope = 'in_scope'
ORDER BY a.key"""


def report_rows(store: Store, plan_id: int) -> Iterator[dict[str, Any]]:
    """One mapping per account in scope, ordered by key, with the source count the last pass
    saw (sum of the folders' source_count; None when no folder was listed yet). Streamed."""
    names = [*_REPORT_NAMES, "messages_source"]
    with store.reader() as raw:
        for values in raw.rows(_REPORT_SQL, (plan_id, plan_id)):
            row = dict(zip(names, values, strict=True))
            for name in _REPORT_TIMES:
                row[name] = Raw.read_time(row[name])
            yield row


def first_synced_times(store: Store, plan_id: int) -> list[datetime]:
    """When each account first reached Status.SYNCED (from the event log), oldest first."""
    stmt = (
        select(func.min(E.c.at))
        .where(
            E.c.plan_id == plan_id, E.c.kind == EventKind.RELEASED, E.c.to_state == Status.SYNCED
        )
        .group_by(E.c.account_id)
    )
    with store.session() as s:
        return sorted(t for (t,) in s.execute(stmt) if t is not None)


def find_account(store: Store, plan_id: int, address: str) -> dict[str, Any] | None:
    """An account of the plan by address, target address or key (case-insensitive: discovery
    stores addresses lower-cased, so the address index serves the lookup)."""
    wanted = address.strip().lower()
    # One indexed look-up after the other (address, target address, key; each has an index
    # leading with plan_id): an OR of the three made SQLite read all 100,000 accounts per `show`.
    with store.session() as s:
        for column in (A.c.address, A.c.target_address, A.c.key):
            stmt = (
                select(A).where(A.c.plan_id == plan_id, column == wanted).order_by(A.c.id).limit(1)
            )
            row = s.execute(stmt).mappings().first()
            if row is not None:
                return dict(row)
    return None


def folders(store: Store, account_id: int) -> list[dict[str, Any]]:
    with store.session() as s:
        rows = s.execute(
            select(F).where(F.c.account_id == account_id).order_by(F.c.display)
        ).mappings()
        return [dict(r) for r in rows]


def problem_messages(store: Store, account_id: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Skipped and failed ledger rows of one account (first `limit`) and how many there are."""
    where = (M.c.account_id == account_id, M.c.state.in_(NOT_SENT))
    stmt = (
        select(
            M.c.source_key,
            M.c.state,
            M.c.reason,
            M.c.detail,
            M.c.size,
            M.c.updated_at,
            F.c.native,
            F.c.display,
        )
        .join(F, F.c.id == M.c.folder_id)
        .where(*where)
        .order_by(F.c.display, M.c.id)
        .limit(limit)
    )
    with store.session() as s:
        rows = [dict(r) for r in s.execute(stmt).mappings()]
        total = int(s.execute(select(func.count()).select_from(M).where(*where)).scalar_one())
    return rows, total


def events(
    store: Store,
    plan_id: int,
    *,
    account_id: int | None = None,
    since: datetime | None = None,
    after_id: int | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Events of the plan (or one account) with the account's address."""
    stmt = (
        select(
            E.c.id,
            E.c.at,
            E.c.kind,
            E.c.from_state,
            E.c.to_state,
            E.c.worker,
            E.c.run_id,
            E.c.detail,
            E.c.account_id,
            A.c.address,
            A.c.key,
        )
        .outerjoin(A, A.c.id == E.c.account_id)
        .where(E.c.plan_id == plan_id)
    )
    if account_id is not None:
        stmt = stmt.where(E.c.account_id == account_id)
    if since is not None:
        stmt = stmt.where(E.c.at >= since)
    if after_id is not None:
        stmt = stmt.where(E.c.id > after_id)
    stmt = stmt.order_by(E.c.id.desc() if newest_first else E.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.session() as s:
        return [dict(r) for r in s.execute(stmt).mappings()]


def routable_accounts(
    store: Store, plan_id: int, batches: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Accounts in scope whose mail is in the target, by address: synced or verified, and also
    those with a completed pass that a delta pass is working on or failed on right now (their
    users already read mail in Exchange: dropping them from routing would send mail back)."""
    stmt = select(A.c.address, A.c.target_address, A.c.aliases, A.c.batch).where(
        A.c.plan_id == plan_id,
        A.c.scope == Scope.IN_SCOPE,
        text(MIGRATED_SQL),
        A.c.address.is_not(None),
    )
    if batches:
        stmt = stmt.where(A.c.batch.in_(list(batches)))
    with store.session() as s:
        return [dict(r) for r in s.execute(stmt.order_by(A.c.address)).mappings()]


def batch_scopes(store: Store, plan_id: int) -> dict[str, dict[str, int]]:
    """Per batch name, how many of its accounts are in each scope (accounts without a batch
    are left out: no --batch can name them)."""
    stmt = (
        select(A.c.batch, A.c.scope, func.count())
        .where(A.c.plan_id == plan_id, A.c.batch.is_not(None))
        .group_by(A.c.batch, A.c.scope)
    )
    found: dict[str, dict[str, int]] = {}
    with store.session() as s:
        for batch, scope, n in s.execute(stmt):
            found.setdefault(str(batch), {})[str(scope)] = int(n)
    return found
