"""The fleet: every `migrator run` process, on any host, and the ceiling they share per target.

Each process keeps one `workers` row of its own (its unique id, store/owners.py) fresh:
registered at start, a heartbeat every few seconds (model/heartbeat.py), stopped at exit. A row
whose heartbeat is older than three beats is stale, older than the lease gone: the process
died, froze or lost the database, and no longer counts as live.

`target_limits` holds, per target server, how many requests all processes together may have
in flight. Each live process is due an equal share (the first ones by id get the remainder),
at least one, and takes of it only what the others do not hold (`workers.share`), so a
newcomer waits for the others to give part of theirs back; see docs/multihost.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from migrator.model.heartbeat import gone_after, stale_after
from migrator.model.plan import Plan
from migrator.model.status import WorkerState
from migrator.store.owners import Identity, process_gone
from migrator.store.schema import accounts as A
from migrator.store.schema import target_limits as L
from migrator.store.schema import workers as W
from migrator.store.store import Store
from migrator.store.types import utcnow


@dataclass(frozen=True)
class Share:
    """This worker's part of its target's ceiling."""

    ceiling: int  # for all workers of the target together
    live: int  # workers of the target with a fresh heartbeat, this one included
    share: int  # requests in flight this worker may have (0: wait, the others hold it all)
    due: int = 0  # its equal part, once the others have given theirs back


@dataclass(frozen=True)
class WorkerInfo:
    id: int
    name: str  # the unique id
    label: str  # --worker-name, else host:pid
    host: str
    pid: int
    process: str | None
    share: int | None
    run_id: int | None
    target: str | None
    started_at: datetime
    heartbeat_at: datetime | None
    stopped_at: datetime | None
    current_account: str | None
    stats: dict[str, Any]

    def state(self, now: datetime, lease_seconds: float) -> WorkerState:
        """running; stale (no heartbeat for three beats: it hangs, is frozen or lost the
        database, and may still hold leases); gone (none for longer than the lease: whatever
        it held has expired; or, seen from its own PID namespace, its process is gone); or
        stopped (it ended)."""
        if self.stopped_at is not None:
            return WorkerState.STOPPED
        silent = (now - (self.heartbeat_at or self.started_at)).total_seconds()
        if silent > gone_after(lease_seconds) or process_gone(self.process):
            return WorkerState.GONE
        return WorkerState.STALE if silent > stale_after(lease_seconds) else WorkerState.RUNNING


def target_key(plan: Plan) -> str:
    """The name under which the workers of every plan that sends to one server share its
    ceiling: the EWS URL, or imap://host:port."""
    t = plan.target
    if t.url:
        return t.url.strip().rstrip("/")
    return f"{t.kind}://{(t.host or '').lower()}:{t.port or ''}"


def _insert(store: Store) -> Any:
    return store.dialect_insert()


def register_worker(
    store: Store, me: Identity, *, plan_id: int, run_id: int | None, target: str, threads: int = 1
) -> int:
    """Record this process as a live worker (a row of its own: its id is unique) with the
    threads that send requests (no more can be in flight); the row's id. It holds no share
    of the ceiling until `take_share`."""
    now = utcnow()
    values: dict[str, Any] = {
        "plan_id": plan_id, "run_id": run_id, "host": me.host, "pid": me.pid, "target": target,
        "label": me.label, "process": me.process, "share": 0, "started_at": now,
        "heartbeat_at": now,
        "stopped_at": None, "current_account_id": None, "stats": {"threads": max(1, threads)},
    }  # fmt: skip
    with store.session(write=True) as s:
        # the id is random: a conflict is a retried insert whose COMMIT broke off
        s.execute(
            _insert(store)(W)
            .values(name=me.id, **values)
            .on_conflict_do_update(index_elements=["name"], set_=values)
        )
        return int(s.execute(select(W.c.id).where(W.c.name == me.id)).scalar_one())


def worker_heartbeat(
    store: Store, worker_id: int, *, current_account_id: int | None, stats: dict[str, Any]
) -> None:
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
            .values(
                heartbeat_at=now, stopped_at=now, current_account_id=None, stats=stats, share=None
            )
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
            .on_conflict_do_update(
                index_elements=["target"], set_={"ceiling": ceiling, "updated_at": utcnow()}
            )
        )


def ceiling_of(store: Store, target: str) -> int | None:
    with store.session() as s:
        found = s.execute(select(L.c.ceiling).where(L.c.target == target)).scalar_one_or_none()
        return None if found is None else int(found)


def fair_shares(total: int, demands: dict[int, int]) -> dict[int, int]:
    """Split `total` requests among workers (id -> the most it can use: its threads),
    max-min fair: a worker that needs less than an equal part gets what it needs, and the rest
    is split among the others, the remainder to the lowest ids. Each gets at least one."""
    shares: dict[int, int] = {}
    pending = dict(sorted(demands.items()))
    left = total
    while pending:
        equal = left // len(pending)
        small = {w: d for w, d in pending.items() if d <= equal}
        if not small:
            extra = left % len(pending)
            for rank, w in enumerate(pending):
                shares[w] = equal + (1 if rank < extra else 0)
            break
        for w, d in small.items():
            shares[w] = d
            left -= d
            del pending[w]
    return {w: max(1, n) for w, n in shares.items()}


def take_share(
    store: Store,
    target: str,
    worker_id: int,
    *,
    default: int,
    lease_seconds: float,
    in_flight: int = 0,
    waiting: bool = False,
) -> Share:
    """This worker's share of the target's ceiling, taken in one transaction that holds the
    target's row, so that two workers never both take the same free part.

    The live workers (not stopped, heard from within the lease, not known to be gone) split the
    ceiling max-min fairly by their threads (fair_shares): a worker with two threads is never due
    more than two,
    and what it does not need goes to the others. A worker takes what it is due, but no more
    than the others leave free: a newcomer does not add its part on top of the others' before
    they have lowered theirs (each does at its next beat). With `waiting` (it has sent nothing
    yet) it may take nothing and wait; a worker at work keeps at least one. More live workers
    than the ceiling: each is due one (a worker with none could never finish its account).
    What a worker records as its share is never below its requests in flight, so the recorded
    shares bound what is really in flight.
    """
    since = utcnow() - timedelta(seconds=gone_after(lease_seconds))
    with store.session(write=True) as s:
        locked = select(L.c.ceiling).where(L.c.target == target)
        if store.backend == "postgresql":
            locked = locked.with_for_update()
        ceiling = s.execute(locked).scalar_one_or_none()
        rows = s.execute(
            select(W.c.id, W.c.share, W.c.stats, W.c.process).where(
                W.c.target == target, W.c.heartbeat_at >= since, W.c.stopped_at.is_(None)
            )
        ).all()
        # a worker killed in this PID namespace holds nothing (a restart after kill -9 must not
        # wait for its share to lapse)
        rows = [r for r in rows if int(r.id) == worker_id or not process_gone(r.process)]
        total = int(ceiling) if ceiling is not None else max(1, default)
        demands = {int(r.id): int((r.stats or {}).get("threads") or total) for r in rows}
        if worker_id not in demands:  # its own row is late: it counts itself all the same
            mine = s.execute(select(W.c.stats).where(W.c.id == worker_id)).scalar_one_or_none()
            demands[worker_id] = int((mine or {}).get("threads") or total)
        due = fair_shares(total, demands)[worker_id]
        held = sum(int(r.share or 0) for r in rows if int(r.id) != worker_id)
        share = min(due, max(0, total - held))
        if share == 0 and not waiting:
            share = 1
        s.execute(update(W).where(W.c.id == worker_id).values(share=max(share, in_flight)))
    return Share(ceiling=total, live=len(demands), share=share, due=due)


def forget_workers(store: Store, plan_id: int, *, silent_since: datetime) -> int:
    """Delete the plan's workers rows not heard from since `silent_since` (stopped or gone;
    for `migrator prune`), however long their lease: a row is only the fleet's view of a
    process, the ledger and the events keep what it did. How many were deleted."""
    with store.session(write=True) as s:
        result = s.execute(
            W.delete().where(W.c.plan_id == plan_id, W.c.heartbeat_at < silent_since)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def owner_gone(s: Session, owner: str | None) -> bool:
    """Inside a session: True when the worker `owner` (a lease owner's unique id) ran in this
    process's PID namespace and its process is gone (store/owners.py); never for a worker of
    another namespace or host, which is judged by its heartbeat (its lease expires)."""
    if not owner:
        return False
    process = s.execute(select(W.c.process).where(W.c.name == owner)).scalar_one_or_none()
    return process_gone(process)


def list_workers(store: Store, plan_id: int, *, since: datetime | None = None) -> list[WorkerInfo]:
    """The plan's workers (those heard from since `since`, or all), newest first, with the
    address of the account each one is on."""
    stmt = (
        select(W, A.c.address.label("account_address"), A.c.key.label("account_key"))
        .select_from(W.outerjoin(A, A.c.id == W.c.current_account_id))
        .where(W.c.plan_id == plan_id)
        .order_by(W.c.started_at.desc(), W.c.id.desc())
    )
    if since is not None:
        stmt = stmt.where(W.c.heartbeat_at >= since)
    with store.session() as s:
        rows = s.execute(stmt).mappings().all()
    return [
        WorkerInfo(
            id=int(r["id"]),
            name=r["name"],
            label=r["label"] or r["name"],
            host=r["host"],
            pid=int(r["pid"]),
            process=r["process"],
            share=r["share"],
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
