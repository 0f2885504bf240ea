"""Claims and leases: which worker migrates which account, fenced by an epoch.

A worker claims an account by bumping its `lease_epoch` and setting `lease_owner` and
`lease_expires_at`. Every later write for that account goes through `fence()`, which checks
in the same transaction that the epoch and owner are still ours: a worker whose lease was
taken over (it stalled past the expiry, its host lost the network) can no longer write.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from migrator.model.errors import MigratorError
from migrator.model.events import EventKind
from migrator.model.scope import Scope
from migrator.model.status import PASS_COMPLETED, Status
from migrator.store import events
from migrator.store.fleet import owner_gone
from migrator.store.owners import identify, pid_namespace, process_gone
from migrator.store.schema import accounts as A
from migrator.store.schema import folders as F
from migrator.store.schema import messages as M
from migrator.store.schema import workers as W
from migrator.store.store import Store
from migrator.store.types import utcnow


class LeaseLost(MigratorError):
    """Another worker holds the account now; this worker must stop writing for it."""


def worker_name() -> str:
    """A new unique worker id for this process (store/owners.py): host:pid are labels only."""
    return identify().id


@dataclass(frozen=True)
class Claim:
    account_id: int
    plan_id: int
    epoch: int
    worker: str
    key: str
    address: str | None
    target_address: str | None
    source_path: str | None
    attributes: dict[str, Any]
    previous_status: str
    passes: int
    attempts: int
    name: str | None
    uid: str | None
    batch: str | None
    took_over: bool = False  # from a worker whose lease expired (or whose process is gone)


@dataclass(frozen=True)
class ClaimFilter:
    batches: Sequence[str] = ()
    addresses: Sequence[str] = ()
    include_synced: bool = True  # delta passes over accounts already migrated
    retry_failed: bool = True  # failed accounts below max_attempts
    max_attempts: int = 3
    only_failed: bool = False
    # a delta pass skips accounts whose last pass ended less than this many seconds before
    # the run started ([run] pass_interval): hosts started moments apart do not pass again
    # what another has just passed
    pass_interval: float = 0.0


def _free() -> Any:
    # the claim's instant is a bound parameter: the claim's statements are built once per run
    return or_(A.c.lease_expires_at.is_(None), A.c.lease_expires_at < bindparam("b_now"))


def _selected(stmt: Any, f: ClaimFilter) -> Any:
    stmt = stmt.where(A.c.scope == Scope.IN_SCOPE)
    if f.batches:
        stmt = stmt.where(A.c.batch.in_(list(f.batches)))
    if f.addresses:
        stmt = stmt.where(
            or_(A.c.address.in_(list(f.addresses)), A.c.target_address.in_(list(f.addresses)))
        )
    return stmt


def _retry(f: ClaimFilter, run_started: datetime) -> Any:
    # one attempt per run: an account that failed since the run began waits for the next
    return and_(
        A.c.status == Status.FAILED,
        A.c.attempts < f.max_attempts,
        or_(A.c.updated_at.is_(None), A.c.updated_at < run_started),
    )


def _candidates(plan_id: int, run_started: datetime, f: ClaimFilter) -> Any:
    """Every account this run may claim, in one query: for a selection by address (a handful
    of rows, found by ix_accounts_plan_address) and `--only-failed`. Runs over the whole plan ask
    `_probes` instead, whose every query is an index range scan."""
    wanted = [A.c.status == Status.PENDING]
    if f.include_synced:
        wanted.append(
            and_(A.c.status.in_(PASS_COMPLETED), A.c.last_pass_at < _pass_cutoff(run_started, f))
        )
    if f.retry_failed:
        wanted.append(_retry(f, run_started))
    # a "running" account whose lease expired belongs to a worker that died: take it over
    wanted.append(A.c.status == Status.RUNNING)
    if f.only_failed:
        wanted = [and_(A.c.status == Status.FAILED, A.c.attempts < f.max_attempts)]
    stmt = _selected(select(A).where(A.c.plan_id == plan_id, _free(), or_(*wanted)), f)
    return stmt.order_by(A.c.batch, A.c.id)


def _pass_cutoff(run_started: datetime, f: ClaimFilter) -> datetime:
    """A synced account is due for a delta pass in this run when its last pass ended before
    this instant: not one this run (or a run started moments before, on another host) made."""
    return run_started - timedelta(seconds=max(0.0, f.pass_interval))


def _probes(plan_id: int, run_started: datetime, f: ClaimFilter) -> list[Any]:
    """The queries a claim asks in turn until one finds an account; each reads an index from
    the first eligible row on, so a claim costs the same at the first account of a run and at
    the 100,000th: nothing it reads is an account this run has already done.

    1. takeovers: "running" accounts whose lease expired (their worker died); there are never
       more "running" rows than workers, live or dead (ix_accounts_plan_scope_status_reason);
    2. pending accounts, in (batch, id) order (ix_accounts_claim_status);
    3. delta passes: synced, then verified accounts whose last pass ended before the run
       started (less `pass_interval`), the longest-waiting first (ix_accounts_claim_pass):
       accounts passed by this run sort after the cutoff and are never read;
    4. retries of failed accounts below max_attempts, failed before the run started (the
       plan's failed accounts are read: they are few, and only when nothing else is left).

    A run of some batches (`--batch`, a cut-over wave's final delta) asks each query once per
    batch, in batch order, so that the index is read from the batch's first eligible account
    (ix_accounts_claim_batch_pass for delta passes) rather than past every other batch's.
    """
    base = select(A).where(A.c.plan_id == plan_id, A.c.scope == Scope.IN_SCOPE)
    # (a selection by address asks _candidates)
    batches: list[str | None] = [*sorted(set(f.batches))] or [None]

    def each_batch(where: Any, *order: Any) -> list[Any]:
        scopes = [base if b is None else base.where(A.c.batch == b) for b in batches]
        return [scope.where(*where, _free()).order_by(*order) for scope in scopes]

    probes = each_batch([A.c.status == Status.RUNNING], A.c.batch, A.c.id)
    probes += each_batch([A.c.status == Status.PENDING], A.c.batch, A.c.id)
    if f.include_synced:
        cutoff = _pass_cutoff(run_started, f)
        for status in PASS_COMPLETED:
            probes += each_batch(
                [A.c.status == status, A.c.last_pass_at < cutoff], A.c.last_pass_at, A.c.id
            )
    if f.retry_failed:
        probes += each_batch([_retry(f, run_started)], A.c.batch, A.c.id)
    return probes


def _claim_probes(
    backend: str, plan_id: int, run_started: datetime, f: ClaimFilter, skip_ids: Sequence[int]
) -> list[Any]:
    """The SELECTs a claim asks in turn (see _probes), whole: limited to one row, locked on
    PostgreSQL. Built once per run (plan, start, filters): building and compiling them anew
    for every claim cost more client CPU than the database takes to run them (issue 19)."""
    key: tuple[Any, ...] | None = (backend, plan_id, run_started, f, tuple(skip_ids))
    try:
        cached = _PROBES.get(key)
    except TypeError:  # a filter given lists rather than tuples: built for this claim only
        key, cached = None, None
    if cached is not None:
        return cached
    if f.addresses or f.only_failed:
        probes = [_candidates(plan_id, run_started, f)]
    else:
        probes = _probes(plan_id, run_started, f)
    if skip_ids:
        probes = [stmt.where(A.c.id.notin_(list(skip_ids))) for stmt in probes]
    probes = [stmt.limit(1) for stmt in probes]
    if backend == "postgresql":
        probes = [stmt.with_for_update(skip_locked=True) for stmt in probes]
    if key is not None:
        with _probes_lock:
            if len(_PROBES) >= _PROBES_KEPT:  # a long-lived process runs many runs
                _PROBES.clear()
            _PROBES[key] = probes
    return probes


_PROBES: dict[Any, list[Any]] = {}
_PROBES_KEPT = 64
_probes_lock = threading.Lock()

_CLAIM = (
    update(A)
    .where(A.c.id == bindparam("b_id"))
    .values(
        status=Status.RUNNING,
        lease_owner=bindparam("b_owner"),
        lease_epoch=bindparam("b_epoch"),
        lease_expires_at=bindparam("b_expires"),
        heartbeat_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
    )
)


def claim_next(
    store: Store,
    plan_id: int,
    *,
    worker: str,
    lease_seconds: int,
    run_started: datetime,
    run_id: int | None = None,
    filters: ClaimFilter = ClaimFilter(),
    skip_ids: Sequence[int] = (),
) -> Claim | None:
    """Claim the next account to migrate, or None when there is nothing left for this run.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so many workers claim different accounts without
    waiting for each other. SQLite: the write transaction holds the database lock.
    """
    now = utcnow()
    # Leases held by dead processes of this host are free at once, not only after expiry.
    if _dead_owner_check_due(store, plan_id):
        _release_dead_owners(store, plan_id)
    probes = _claim_probes(store.backend, plan_id, run_started, filters, skip_ids)
    with store.connection(write=True) as conn:
        row = None
        for stmt in probes:
            row = conn.execute(stmt, {"b_now": now}).mappings().first()
            if row is not None:
                break
        if row is None:
            return None
        epoch = int(row["lease_epoch"]) + 1
        conn.execute(
            _CLAIM,
            {
                "b_id": row["id"],
                "b_owner": worker,
                "b_epoch": epoch,
                "b_expires": now + timedelta(seconds=lease_seconds),
                "b_now": now,
            },
        )
        took_over = row["status"] == Status.RUNNING
        events.write(
            conn,
            plan_id,
            EventKind.TAKEN_OVER if took_over else EventKind.CLAIMED,
            account_id=row["id"],
            run_id=run_id,
            worker=worker,
            from_state=row["status"],
            to_state=Status.RUNNING,
            detail={"epoch": epoch, "previous_owner": row["lease_owner"]}
            if took_over
            else {"epoch": epoch},
        )
        # the status before this claim: a takeover resumes whatever the dead worker had
        previous = row["status"]
        if took_over:
            previous = Status.SYNCED if row["passes"] else Status.PENDING
        return Claim(
            account_id=row["id"],
            plan_id=plan_id,
            epoch=epoch,
            worker=worker,
            key=row["key"],
            address=row["address"],
            target_address=row["target_address"],
            source_path=row["source_path"],
            attributes=dict(row["attributes"] or {}),
            previous_status=previous,
            passes=int(row["passes"]),
            attempts=int(row["attempts"]),
            name=row["name"],
            uid=row["uid"],
            batch=row["batch"],
            took_over=took_over,
        )


_DEAD_OWNER_CHECK_S = (
    1.0  # at most this often per store and plan: a query per claim halves claims/s
)
_dead_owner_checks: weakref.WeakKeyDictionary[Store, dict[int, float]] = weakref.WeakKeyDictionary()
_dead_owner_lock = threading.Lock()


def _dead_owner_check_due(store: Store, plan_id: int) -> bool:
    """True when this store has not looked for dead owners of the plan in the last second (a
    newly opened store always looks first)."""
    now = time.monotonic()
    with _dead_owner_lock:
        checked = _dead_owner_checks.setdefault(store, {})
        if now - checked.get(plan_id, float("-inf")) < _DEAD_OWNER_CHECK_S:
            return False
        checked[plan_id] = now
        return True


def _release_dead_owners(store: Store, plan_id: int) -> None:
    """Free at once the leases of workers whose process is gone, as seen from this process's
    own PID namespace (store/owners.py); any other owner keeps its lease until it expires."""
    namespace = pid_namespace()
    if namespace is None:
        return
    with store.session() as s:
        owners = s.execute(
            select(A.c.id, A.c.lease_owner, W.c.process)
            .select_from(A.join(W, W.c.name == A.c.lease_owner))
            .where(
                A.c.plan_id == plan_id,
                A.c.status == Status.RUNNING,
                A.c.lease_expires_at > utcnow(),
                W.c.process.like(namespace + "/%"),
            )
        ).all()
    dead = [(aid, owner) for aid, owner, process in owners if process_gone(process)]
    if not dead:
        return
    with store.session(write=True) as s:
        for account_id, owner in dead:
            s.execute(
                update(A)
                .where(A.c.id == account_id, A.c.lease_owner == owner)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )


# Built once: every ledger write runs it, and building a statement costs more client CPU
# than the database takes to run it.
_FENCE = (
    update(A)
    .where(
        A.c.id == bindparam("b_id"),
        A.c.lease_epoch == bindparam("b_epoch"),
        A.c.lease_owner == bindparam("b_owner"),
    )
    .values(heartbeat_at=bindparam("b_now"))
)


def fence(session: Session | Connection, claim: Claim) -> None:
    """Inside a write transaction: raise LeaseLost unless the claim is still ours.

    The UPDATE also locks the account row (PostgreSQL) until the transaction ends, so a
    takeover cannot slip in between this check and the writes that follow it.
    """
    result = session.execute(
        _FENCE,
        {
            "b_id": claim.account_id,
            "b_epoch": claim.epoch,
            "b_owner": claim.worker,
            "b_now": utcnow(),
        },
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(
            f"lost the lease on account {claim.address or claim.key} (epoch {claim.epoch}); "
            "another worker has taken it over",
            hint="nothing to do: the other worker resumes from the ledger",
        )


def renew(store: Store, claim: Claim, lease_seconds: int) -> bool:
    """Extend the lease; False when it was lost (the worker must stop)."""
    now = utcnow()
    with store.session(write=True) as s:
        result = s.execute(
            update(A)
            .where(
                A.c.id == claim.account_id,
                A.c.lease_epoch == claim.epoch,
                A.c.lease_owner == claim.worker,
            )
            .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def _release_statement(
    completed_pass: bool, count_attempt: bool, error: bool, first_pass: bool
) -> Any:
    """The UPDATE of a release for one shape of outcome, built once per shape (see _FENCE)."""
    shape = (completed_pass, count_attempt, error, first_pass)
    stmt = _RELEASES.get(shape)
    if stmt is not None:
        return stmt
    values: dict[str, Any] = {
        "status": bindparam("b_status"),
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": bindparam("b_now"),
    }
    if completed_pass:
        values.update(
            passes=A.c.passes + 1,
            last_pass_at=bindparam("b_now"),
            attempts=0,
            last_error=None,
            last_error_reason=None,
        )
    if count_attempt:
        values["attempts"] = A.c.attempts + 1
    if error:
        values.update(last_error=bindparam("b_error"), last_error_reason=bindparam("b_reason"))
    if first_pass:
        values["first_pass_at"] = bindparam("b_now")
    stmt = _RELEASES[shape] = update(A).where(A.c.id == bindparam("b_id")).values(**values)
    return stmt


_RELEASES: dict[tuple[bool, bool, bool, bool], Any] = {}


_FOLDERS_SYNCED = (
    update(F)
    .where(F.c.id == bindparam("b_id"))
    .values(
        last_synced_at=bindparam("b_now"),
        source_count=bindparam("b_count"),
        source_bytes=bindparam("b_bytes"),
        mark=bindparam("b_mark"),
    )
)


def release(
    store: Store,
    claim: Claim,
    *,
    status: str,
    run_id: int | None,
    completed_pass: bool,
    error: str | None = None,
    error_reason: str | None = None,
    count_attempt: bool = False,
    detail: dict[str, Any] | None = None,
    folders: Sequence[
        tuple[int, int | None, int | None] | tuple[int, int | None, int | None, str | None]
    ] = (),
) -> None:
    """End the claim: new status, pass bookkeeping, last error, and the (folder id, source
    count, source bytes[, the source's change mark]) of each folder synced by the pass; one
    fenced transaction (a mark is only ever recorded with a completed pass)."""
    now = utcnow()
    with store.connection(write=True) as conn:
        fence(conn, claim)
        stmt = _release_statement(
            completed_pass, count_attempt, error is not None, completed_pass and claim.passes == 0
        )
        conn.execute(
            stmt,
            {
                "b_id": claim.account_id,
                "b_status": status,
                "b_now": now,
                "b_error": error,
                "b_reason": error_reason,
            },
        )
        if folders:
            conn.execute(
                _FOLDERS_SYNCED,
                [
                    {
                        "b_id": f[0],
                        "b_count": f[1],
                        "b_bytes": f[2],
                        "b_mark": f[3] if len(f) > 3 else None,
                        "b_now": now,
                    }
                    for f in folders
                ],
            )
        events.write(
            conn,
            claim.plan_id,
            EventKind.RELEASED,
            account_id=claim.account_id,
            run_id=run_id,
            worker=claim.worker,
            from_state=Status.RUNNING,
            to_state=status,
            detail={
                **(detail or {}),
                **({"error": error, "reason": error_reason} if error else {}),
            },
        )


def release_committed(store: Store, claim: Claim) -> bool:
    """After a release or abandon whose COMMIT broke off (the connection died during it): True
    when it was committed. Only a claim bumps the epoch and only those two clear the owner,
    so "our epoch, no owner" means our own release went through."""
    with store.session() as s:
        row = s.execute(
            select(A.c.lease_epoch, A.c.lease_owner).where(A.c.id == claim.account_id)
        ).one()
    return int(row.lease_epoch) == claim.epoch and row.lease_owner is None


def release_orphans(
    store: Store, plan_id: int, worker: str, held: Sequence[int], *, run_id: int | None
) -> int:
    """Give back the accounts `worker` has a lease on but does not know it holds: a claim whose
    COMMIT broke off (the database connection died during it) may have gone through. Each goes
    back to pending (or synced, after a completed pass) with an `interrupted` event; the number."""
    with store.session(write=True) as s:
        stmt = select(A.c.id, A.c.passes, A.c.lease_epoch).where(
            A.c.plan_id == plan_id, A.c.status == Status.RUNNING, A.c.lease_owner == worker
        )
        if held:
            stmt = stmt.where(A.c.id.notin_(list(held)))
        orphans = s.execute(stmt).all()
        for account_id, passes, epoch in orphans:
            back = Status.SYNCED if passes else Status.PENDING
            s.execute(
                update(A)
                .where(A.c.id == account_id, A.c.lease_owner == worker, A.c.lease_epoch == epoch)
                .values(status=back, lease_owner=None, lease_expires_at=None, updated_at=utcnow())
            )
            events.write(
                s.connection(),
                plan_id,
                EventKind.INTERRUPTED,
                account_id=account_id,
                run_id=run_id,
                worker=worker,
                from_state=Status.RUNNING,
                to_state=back,
                detail={"epoch": int(epoch), "reason": "claim-commit-unknown"},
            )
        return len(orphans)


def abandon(store: Store, claim: Claim, *, run_id: int | None) -> None:
    """Give the account back unfinished (interrupted): its status returns to what it was."""
    try:
        with store.session(write=True) as s:
            fence(s, claim)
            s.execute(
                update(A)
                .where(A.c.id == claim.account_id)
                .values(
                    status=claim.previous_status,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=utcnow(),
                )
            )
            events.write(
                s.connection(),
                claim.plan_id,
                EventKind.INTERRUPTED,
                account_id=claim.account_id,
                run_id=run_id,
                worker=claim.worker,
                from_state=Status.RUNNING,
                to_state=claim.previous_status,
            )
    except LeaseLost:
        pass


def reset_attempts(store: Store, plan_id: int, account_ids: Sequence[int] | None) -> int:
    """Failed accounts (all of the plan's, or these) become eligible for automatic retries again."""
    with store.session(write=True) as s:
        stmt = update(A).where(A.c.plan_id == plan_id, A.c.status == Status.FAILED)
        if account_ids is not None:
            stmt = stmt.where(A.c.id.in_(list(account_ids)))
        result = s.execute(stmt.values(attempts=0, updated_at=None))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def reset_account(store: Store, plan_id: int, account_id: int, *, worker: str) -> None:
    """Forget everything migrated for one account: ledger, folders, passes, counters.

    Refused while a worker holds the account's lease.
    """
    now = utcnow()
    with store.session(write=True) as s:
        row = s.execute(
            select(A.c.status, A.c.lease_expires_at, A.c.lease_owner).where(A.c.id == account_id)
        ).one()
        if (
            row.status == Status.RUNNING
            and row.lease_expires_at
            and row.lease_expires_at > now
            and not owner_gone(s, row.lease_owner)
        ):
            raise MigratorError(
                f"account is being migrated right now by {row.lease_owner}",
                hint="stop that run (or wait for it to finish), then reset",
            )
        s.execute(M.delete().where(M.c.account_id == account_id))
        s.execute(F.delete().where(F.c.account_id == account_id))
        s.execute(
            update(A)
            .where(A.c.id == account_id)
            .values(
                status=Status.PENDING,
                passes=0,
                attempts=0,
                last_error=None,
                last_error_reason=None,
                first_pass_at=None,
                last_pass_at=None,
                messages_done=0,
                messages_skipped=0,
                messages_failed=0,
                bytes_done=0,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
        )
        events.write(
            s.connection(),
            plan_id,
            EventKind.RESET,
            account_id=account_id,
            worker=worker,
            from_state=row.status,
            to_state=Status.PENDING,
        )
