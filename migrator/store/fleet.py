"""The fleet: every `migrator run` process, on any host, and the ceiling they share per target.

Each process keeps one `workers` row fresh (registered at start, a heartbeat every third of the
lease, stopped at exit). A row whose heartbeat is older than the lease belongs to a process
that died or lost the database: it is shown as stale and no longer counts as live.

`target_limits` holds, per target server, how many requests all processes together may have
in flight. Each live process takes an equal share (the first ones by id get the remainder), at
least one, recomputed at every heartbeat; see docs/multihost.md for what that promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select, update

from migrator.model.plan import Plan
from migrator.store.schema import AccountDbRow, TargetLimitRow, WorkerRow
from migrator.store.store import Store
from migrator.store.types import utcnow

W = cast(Table, WorkerRow.__table__)
L = cast(Table, TargetLimitRow.__table__)
A = cast(Table, AccountDbRow.__table__)


@dataclass(frozen=True)
class Share:
    """This worker's part of its target's ceiling."""

    ceiling: int  # for all workers of the target together
    live: int  # workers of the target with a fresh heartbeat, this one included
    share: int  # requests in flight this worker may have


@dataclass(frozen=True)
class WorkerInfo:
    id: int
    name: str
    host: str
    pid: int
    run_id: int | None
    target: str | None
    started_at: datetime
    heartbeat_at: datetime | None
    stopped_at: datetime | None
    current_account: str | None
    stats: dict[str, Any]

    def state(self, now: datetime, stale_after: timedelta) -> str:
        """running, stale (no heartbeat for longer than the lease: presumed dead) or stopped."""
        if self.stopped_at is not None:
            return "stopped"
        last = self.heartbeat_at or self.started_at
        return "stale" if now - last > stale_after else "running"


def target_key(plan: Plan) -> str:
    """The name under which the workers of every plan that sends to one server share its
    ceiling: the EWS URL, or imap://host:port."""
    t = plan.target
    if t.url:
        return t.url.strip().rstrip("/")
    return f"{t.kind}://{(t.host or '').lower()}:{t.port or ''}"


def _insert(store: Store) -> Any:
    return store.dialect_insert()


def register_worker(store: Store, *, name: str, host: str, pid: int, plan_id: int, run_id: int | None, target: str) -> int:
    """Record this process as a live worker; its id. A row left by an earlier process with the
    same name (the pid was reused, or a test runs several runs in one process) is taken over."""
    now = utcnow()
    values: dict[str, Any] = {
        "plan_id": plan_id, "run_id": run_id, "host": host, "pid": pid, "target": target,
        "started_at": now, "heartbeat_at": now, "stopped_at": None, "current_account_id": None,
        "stats": {},
    }  # fmt: skip
    with store.session(write=True) as s:
        stmt = _insert(store)(W).values(name=name, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["name"], set_=values)
        s.execute(stmt)
        return int(s.execute(select(W.c.id).where(W.c.name == name)).scalar_one())


def worker_heartbeat(store: Store, worker_id: int, *, current_account_id: int | None, stats: dict[str, Any]) -> None:
    with store.session(write=True) as s:
        s.execute(
            update(W)
            .where(W.c.id == worker_id)
            .values(heartbeat_at=utcnow(), current_account_id=current_account_id, stats=stats)
        )


def stop_worker(store: Store, worker_id: int, *, stats: dict[str, Any]) -> None:
    now = utcnow()
    with store.session(write=True) as s:
        s.execute(
            update(W)
            .where(W.c.id == worker_id)
            .values(heartbeat_at=now, stopped_at=now, current_account_id=None, stats=stats)
        )


def ensure_ceiling(store: Store, target: str, default: int) -> int:
    """The target's shared ceiling; the first worker of a target stores `default` (its plan's
    target_concurrency). Later values come from `set_ceiling`, not from other plans."""
    with store.session(write=True) as s:
        s.execute(
            _insert(store)(L)
            .values(target=target, ceiling=max(1, default), updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=["target"])
        )
        return int(s.execute(select(L.c.ceiling).where(L.c.target == target)).scalar_one())


def set_ceiling(store: Store, target: str, ceiling: int) -> None:
    """Change the target's shared ceiling; live workers adopt it at their next heartbeat."""
    if ceiling < 1:
        raise ValueError("a ceiling must be at least 1")
    with store.session(write=True) as s:
        s.execute(
            _insert(store)(L)
            .values(target=target, ceiling=ceiling, updated_at=utcnow())
            .on_conflict_do_update(index_elements=["target"], set_={"ceiling": ceiling, "updated_at": utcnow()})
        )


def ceiling_of(store: Store, target: str) -> int | None:
    with store.session() as s:
        found = s.execute(select(L.c.ceiling).where(L.c.target == target)).scalar_one_or_none()
        return None if found is None else int(found)


def share_of(store: Store, target: str, worker_id: int, *, default: int, stale_after: timedelta) -> Share:
    """This worker's share of the target's ceiling among the target's live workers.

    Equal parts; the remainder goes to the live workers with the lowest ids, so the shares add
    up to the ceiling exactly, unless there are more live workers than the ceiling: then each
    still gets one (a worker with no share could never finish its account).
    """
    since = utcnow() - stale_after
    with store.session() as s:
        ceiling = s.execute(select(L.c.ceiling).where(L.c.target == target)).scalar_one_or_none()
        live = list(
            s.execute(
                select(W.c.id)
                .where(W.c.target == target, W.c.stopped_at.is_(None), W.c.heartbeat_at >= since)
                .order_by(W.c.id)
            ).scalars()
        )
    total = int(ceiling) if ceiling is not None else max(1, default)
    if worker_id not in live:
        live.append(worker_id)
    rank = live.index(worker_id)
    n = len(live)
    part = total // n + (1 if rank < total % n else 0)
    return Share(ceiling=total, live=n, share=max(1, part))


def list_workers(store: Store, plan_id: int) -> list[WorkerInfo]:
    """The plan's workers, newest first, with the address of the account each one is on."""
    stmt = (
        select(W, A.c.address.label("account_address"), A.c.key.label("account_key"))
        .select_from(W.outerjoin(A, A.c.id == W.c.current_account_id))
        .where(W.c.plan_id == plan_id)
        .order_by(W.c.started_at.desc(), W.c.id.desc())
    )
    with store.session() as s:
        rows = s.execute(stmt).mappings().all()
    return [
        WorkerInfo(
            id=int(r["id"]),
            name=r["name"],
            host=r["host"],
            pid=int(r["pid"]),
            run_id=r["run_id"],
            target=r["target"],
            started_at=r["started_at"],
            heartbeat_at=r["heartbeat_at"],
            stopped_at=r["stopped_at"],
            current_account=r["account_address"] or r["account_key"],
            stats=dict(r["stats"] or {}),
        )
        for r in rows
    ]
