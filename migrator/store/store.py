"""The Store: the one object the layers above use to read and write campaign state."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import fields
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from migrator.model.account import DiscoveredAccount
from migrator.model.errors import StateError, UsageError
from migrator.model.events import EventKind
from migrator.model.plan import DEFAULT_STATE_URL
from migrator.model.scope import Scope
from migrator.model.status import RunStatus
from migrator.store import discovery, events
from migrator.store.database.access import Access
from migrator.store.database.connect import CACHE_KIB, SchemaChange, connect, describe
from migrator.store.database.raw import Raw
from migrator.store.owners import Identity, process_gone
from migrator.store.reporting import aggregates
from migrator.store.rows import (
    ALL_STATES,
    SCOPE_STATES,
    STATUS_STATES,
    AccountRow,
    DiscoverySummary,
)
from migrator.store.schema import events as E
from migrator.store.schema import plans as P
from migrator.store.schema import runs as R
from migrator.store.types import utcnow

T = TypeVar("T")

DEFAULT_URL = DEFAULT_STATE_URL  # relative to the current directory here
# How long a session waits for a PostgreSQL server that went away (restart, failover) before
# the command gives up with a StateError. A restart takes seconds; two minutes leave room.
RECONNECT_SECONDS = float(os.environ.get("MIGRATOR_STATE_RECONNECT_SECONDS", "120"))


# AccountRow's fields as stored (all but the computed `state`), in its order
_ACCOUNT_FIELDS = [f.name for f in fields(AccountRow) if f.name != "state"]
_TIME_FIELDS = {
    "first_pass_at", "last_pass_at", "discovered_at", "last_seen_at", "vanished_at",
    "lease_expires_at", "heartbeat_at",
}  # fmt: skip
_ACCOUNT_SELECT = f"SELECT {', '.join(_ACCOUNT_FIELDS)} FROM accounts WHERE plan_id = ?"


def _account_rows(
    raw: Raw, where: str, params: list[Any], last_discovery: Any
) -> Iterator[AccountRow]:
    """Accounts read at the DBAPI level (listing 100,000 through the ORM takes seconds)."""
    seen_by_plan = Raw.read_time(last_discovery) if last_discovery is not None else None
    for values in raw.rows(f"{_ACCOUNT_SELECT}{where} ORDER BY key", params):
        data = dict(zip(_ACCOUNT_FIELDS, values, strict=True))
        for name in _TIME_FIELDS:
            data[name] = Raw.read_time(data[name])
        # most accounts have neither: no JSON parsing for those
        aliases, attributes = data["aliases"], data["attributes"]
        data["aliases"] = [] if aliases in (None, "[]") else list(Raw.read_json(aliases) or [])
        data["attributes"] = (
            {} if attributes in (None, "{}") else dict(Raw.read_json(attributes) or {})
        )
        # unchanged accounts are not rewritten by each discovery: one that is not vanished
        # was seen by the plan's last discovery
        if data["scope"] != Scope.VANISHED and seen_by_plan is not None:
            data["last_seen_at"] = max(data["last_seen_at"], seen_by_plan)
        data["state"] = data["status"] if data["scope"] == Scope.IN_SCOPE else data["scope"]
        yield AccountRow(**data)


class StateUnavailable(StateError):
    """The connection to the state database failed (PostgreSQL restarted, network lost).

    Whatever the failed transaction did was rolled back, or, when the connection broke during
    COMMIT, may have been committed: callers that retry must be idempotent or check.
    """


def is_disconnect(exc: BaseException, backend: str) -> bool:
    """True for a PostgreSQL failure that may pass: a connection that broke or could not be
    made, a server shutting down or starting up (also deadlocks and serialisation failures,
    which psycopg files under the same class). Never on SQLite, whose OperationalErrors are
    locks and disks, not networks."""
    # psycopg: OperationalError covers refused/reset connections, "terminating connection due
    # to administrator command" (AdminShutdown) and "the database system is starting up"
    return backend == "postgresql" and isinstance(exc, OperationalError)


def is_read_only(exc: BaseException) -> bool:
    """True when the database refused a write because it only reads: a SQLite file (or its
    folder) that cannot be written, a PostgreSQL standby or default_transaction_read_only."""
    orig = getattr(exc, "orig", None)
    return str(getattr(orig, "sqlite_errorname", "")).startswith("SQLITE_READONLY") or (
        getattr(orig, "sqlstate", None) == "25006"  # read_only_sql_transaction
    )


def read_only_hint(backend: str, database: str | None) -> str:
    if backend == "sqlite":
        return (
            f"this process may not write {database!r} or its folder (SQLite writes -wal and -shm "
            "files next to it): check the owner, the permissions and that the file system is "
            "mounted read-write; status, report and show only read and still work"
        )
    return (
        "the server accepts no writes: it is a standby (replica), or the database or user has "
        "default_transaction_read_only = on; point --state at the primary server"
    )


class Store:
    """State of every plan in one database. Thread-safe; open one per process."""

    def __init__(
        self, engine: Engine, shown_url: str, schema_change: SchemaChange | None = None
    ) -> None:
        self.engine = engine
        self.url = shown_url  # password masked, safe to print
        # what opening did to the schema (created it, upgraded it), for the command to say
        self.schema_change = schema_change
        # PostgreSQL: sessions that cannot connect wait up to this long for the server
        self.reconnect_seconds = RECONNECT_SECONDS
        # told (once per outage and session) that the database is unreachable and we wait
        self.on_reconnect_wait: Callable[[str], None] | None = None
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # SQLite: writers take the lock at BEGIN, where busy_timeout waits for it
        self._write_engine = engine.execution_options(migrator_begin="IMMEDIATE")
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        self._sqlite_writers = threading.RLock()
        self._durable_engine = engine.execution_options(
            migrator_begin="IMMEDIATE", migrator_durable=True
        )
        self._durable_sessions = sessionmaker(self._durable_engine, expire_on_commit=False)
        # SQLite on a file: connection() writes through one kept connection (see _writer)
        self._keeps_writer = self.backend == "sqlite" and not isinstance(engine.pool, StaticPool)
        self._kept_writer: Connection | None = None
        self._writer_busy = False  # the kept connection is in a transaction (of this thread)

    @property
    def backend(self) -> str:
        """The backend's name: sqlite or postgresql."""
        return self.engine.dialect.name

    def close(self) -> None:
        with self._sqlite_writers:
            if self._kept_writer is not None and not self._writer_busy:
                with suppress(OperationalError):
                    self._kept_writer.close()
                self._kept_writer = None
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def session(self, *, write: bool = False, durable: bool = False) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises.

        Pass write=True for a block that will write (on SQLite it then waits for the write
        lock at the start instead of failing half-way when another process writes), and
        durable=True for a commit that must survive a power cut, not only a crash.
        """
        maker = (
            self._durable_sessions if durable else self._write_sessions if write else self._sessions
        )
        with self._writers_queue(write or durable):
            yield from self._transaction(maker)

    def _writers_queue(self, writes: bool) -> AbstractContextManager[object]:
        """SQLite has one writer at a time. Threads of this process queue on a Python lock,
        which wakes the next one the instant it is free; waiting in SQLite's busy handler
        instead sleeps in steps of up to 100 ms and made many workers crawl."""
        return self._sqlite_writers if writes and self.backend == "sqlite" else nullcontext()

    @contextmanager
    def connection(self, *, write: bool = False, durable: bool = False) -> Iterator[Connection]:
        """As session(), a bare Connection in a transaction: for the statements of every
        account (claim, ledger, release), where an ORM Session adds nothing but client CPU
        (its set-up, execute path and commit cost about 0.15 ms per transaction; issue 19)."""
        engine = self._durable_engine if durable else self._write_engine if write else self.engine
        with self._writers_queue(write or durable):
            kept = (write or durable) and self._keeps_writer and not self._writer_busy
            conn = self._writer(durable) if kept else self._connect(engine)
            failed = True
            try:
                transaction = conn.begin()
                try:
                    yield conn
                    transaction.commit()
                    failed = False
                except BaseException:
                    # on a dead connection there is nothing to roll back, the server did
                    with suppress(OperationalError):
                        transaction.rollback()
                    raise
            except OperationalError as exc:
                raise self._failure(exc) from exc
            except DBAPIError as exc:
                # PostgreSQL files a refused write under InternalError; other errors are bugs
                raise (self._failure(exc) if is_read_only(exc) else exc) from exc
            finally:
                if kept:
                    self._writer_busy = False
                if not kept or failed:  # a kept connection that failed is not trusted again
                    if kept:
                        self._kept_writer = None
                    with suppress(OperationalError):
                        conn.close()

    def _writer(self, durable: bool) -> Connection:
        """SQLite (a file): the one connection the writes of connection() go through, kept
        open, under the writers' lock. A connection's page cache is dropped whenever another
        connection has written since its last transaction; spread over the pool, every write
        transaction found its cache empty and read each page it touched again (index pages
        of a growing database: a cost that grew with the campaign). Writes take turns anyway,
        so one connection takes them all and its cache stays warm (issue 19)."""
        conn = self._kept_writer
        if conn is None:
            conn = self._kept_writer = self.engine.connect()
            # this connection reads and writes most: the big page cache
            driver: Any = conn.connection.driver_connection
            driver.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execution_options(migrator_begin="IMMEDIATE", migrator_durable=durable)
        self._writer_busy = True
        return conn

    def _connect(self, engine: Engine) -> Connection:
        """A pooled connection; on PostgreSQL, waiting for the server (_reach)."""
        if self.backend != "postgresql":
            return engine.connect()
        try:
            return self._reach(engine.connect)
        except OperationalError as exc:
            raise self._failure(exc) from exc

    def _transaction(self, maker: sessionmaker[Session]) -> Iterator[Session]:
        session = maker()
        try:
            if self.backend == "postgresql":
                self._connect_patiently(session)
            yield session
            session.commit()
        except OperationalError as exc:
            _quiet_rollback(session)
            raise self._failure(exc) from exc
        except DBAPIError as exc:
            _quiet_rollback(session)
            # PostgreSQL files a refused write under InternalError; other errors are bugs
            raise (self._failure(exc) if is_read_only(exc) else exc) from exc
        except BaseException:
            _quiet_rollback(session)
            raise
        finally:
            session.close()

    def _failure(self, exc: DBAPIError) -> StateError:
        words = describe(exc, self.engine.url.password)
        if is_read_only(exc):
            return StateError(
                f"state database {self.url} is read-only: {words}",
                hint=read_only_hint(self.backend, self.engine.url.database),
            )
        if is_disconnect(exc, self.backend):
            return StateUnavailable(
                f"lost the connection to state database {self.url}: {words}",
                hint="check that PostgreSQL is running and reachable, then run the command again",
            )
        return StateError(
            f"state database {self.url} failed: {words}",
            hint="check the database server and disk space, then run the command again",
        )

    def _connect_patiently(self, session: Session) -> None:
        """Take a connection for the session, waiting while the server is unreachable (see
        _reach). pool_pre_ping has already replaced connections the restart killed; what fails
        here is connecting anew while the server is down."""
        self._reach(session.connection, undo=lambda: _quiet_rollback(session))

    def _reach(self, connect: Callable[[], T], *, undo: Callable[[], None] | None = None) -> T:
        """`connect()`, tried again while the PostgreSQL server is unreachable (jittered
        backoff, bounded by reconnect_seconds): a PostgreSQL restart pauses the workers instead
        of failing the run. Said once through on_reconnect_wait; `undo` after each failure."""
        # here, not at the top: a command on SQLite starts without importing tenacity
        from migrator.retry import RetryPolicy, call_with_retry

        told = False

        def attempt() -> T:
            nonlocal told
            try:
                return connect()
            except OperationalError as exc:
                if undo is not None:
                    undo()
                if not told and self.on_reconnect_wait and is_disconnect(exc, self.backend):
                    told = True
                    self.on_reconnect_wait(
                        f"state database {self.url} unreachable "
                        f"({describe(exc, self.engine.url.password)}); retrying for up to "
                        f"{self.reconnect_seconds:.0f} s"
                    )
                raise

        return call_with_retry(
            attempt,
            # bounded by the deadline alone; a few seconds apart at most, so that the workers
            # go on soon after the server is back
            RetryPolicy(
                attempts=sys.maxsize,
                deadline=self.reconnect_seconds,
                base=0.1,
                cap=4.0,
                jitter=0.25,
            ),
            retry_if=lambda exc: (
                isinstance(exc, OperationalError) and is_disconnect(exc, self.backend)
            ),
        )

    def dialect_insert(self) -> Any:
        """The backend's INSERT (with ON CONFLICT). Imported on first use: a command on
        SQLite never needs SQLAlchemy's PostgreSQL dialect, a tenth of its start-up time."""
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert

    # --- plans and runs

    def ensure_plan(self, name: str, source_kind: str, target_kind: str) -> int:
        """The id of the plan called `name`, created on first use; kinds follow the plan file."""
        now = utcnow()
        values = {
            "name": name,
            "source_kind": source_kind,
            "target_kind": target_kind,
            "created_at": now,
            "updated_at": now,
        }
        dialect_insert = self.dialect_insert()
        with self.session(write=True) as s:
            s.execute(
                dialect_insert(P).values(values).on_conflict_do_nothing(index_elements=["name"])
            )
            plan_id, src, tgt = s.execute(
                select(P.c.id, P.c.source_kind, P.c.target_kind).where(P.c.name == name)
            ).one()
            if (src, tgt) != (source_kind, target_kind):
                s.execute(
                    update(P)
                    .where(P.c.id == plan_id)
                    .values(source_kind=source_kind, target_kind=target_kind, updated_at=now)
                )
            return int(plan_id)

    def plan_id(self, name: str) -> int | None:
        with self.session() as s:
            found = s.execute(select(P.c.id).where(P.c.name == name)).scalar_one_or_none()
            return None if found is None else int(found)

    def start_run(
        self,
        plan_id: int,
        command: str,
        *,
        worker: Identity | None = None,
        lease_seconds: float = 120,
    ) -> int:
        """Record a run of `command` by `worker` (this process), alive for `lease_seconds`
        unless `beat_run` pushes that on; first close the plan's runs whose process died."""
        now = utcnow()
        with self.session(write=True) as s:
            self._close_dead_runs(s, plan_id)
            return int(
                s.execute(
                    insert(R)
                    .values(
                        plan_id=plan_id,
                        command=command,
                        host=worker.host if worker else socket.gethostname(),
                        pid=worker.pid if worker else os.getpid(),
                        worker=worker.id if worker else None,
                        process=worker.process if worker else None,
                        started_at=now,
                        alive_until=now + timedelta(seconds=lease_seconds),
                        status=RunStatus.RUNNING,
                    )
                    .returning(R.c.id)
                ).scalar_one()
            )

    def beat_run(self, run_id: int, lease_seconds: float) -> None:
        """The run's heartbeat: it is alive for another `lease_seconds`."""
        with self.session(write=True) as s:
            s.execute(
                update(R)
                .where(R.c.id == run_id, R.c.status == RunStatus.RUNNING)
                .values(alive_until=utcnow() + timedelta(seconds=lease_seconds))
            )

    def close_dead_runs(self, plan_id: int) -> int:
        """Mark the plan's runs whose process died interrupted (see _close_dead_runs); how many.
        Called at every beat of a `run`: it writes only when there is one."""
        with self.session() as s:
            if not self._dead_runs(s, plan_id):
                return 0
        with self.session(write=True) as s:
            return self._close_dead_runs(s, plan_id)

    @staticmethod
    def _dead_runs(s: Session, plan_id: int) -> list[int]:
        rows = s.execute(
            select(R.c.id, R.c.alive_until, R.c.process).where(
                R.c.plan_id == plan_id, R.c.status == RunStatus.RUNNING
            )
        ).all()
        now = utcnow()
        return [
            run_id for run_id, alive_until, process in rows
            if (alive_until is not None and alive_until < now) or process_gone(process)
        ]  # fmt: skip

    @classmethod
    def _close_dead_runs(cls, s: Session, plan_id: int) -> int:
        """Runs left "running" by a process that died (SIGKILL, a crash, its host went down)
        become "interrupted", so reports and `status` do not show them as going on: on any
        host once their heartbeat lapsed (`alive_until` passed), and at once when a process of
        the same PID namespace sees that the process is gone."""
        dead = cls._dead_runs(s, plan_id)
        if dead:
            s.execute(
                update(R)
                .where(R.c.id.in_(dead), R.c.status == RunStatus.RUNNING)
                .values(status=RunStatus.INTERRUPTED, finished_at=utcnow())
            )
        return len(dead)

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        if status not in set(RunStatus):
            raise ValueError(f"run status {status!r} is not one of {', '.join(RunStatus)}")
        with self.session(write=True) as s:
            done = s.execute(
                update(R)
                .where(R.c.id == run_id)
                .values(status=status, finished_at=utcnow(), summary=summary)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise StateError(f"run {run_id} is not in the state database {self.url}")

    # --- discovery

    def record_discovery(
        self, plan_id: int, run_id: int | None, accounts: Iterable[DiscoveredAccount]
    ) -> DiscoverySummary:
        """Store a discovery of the plan's accounts, in one transaction.

        Upserts by (plan, key): new entries are inserted (in scope -> status pending), changed
        ones updated, stored ones not seen this time become scope "vanished". Migration
        progress (status, passes, counters, lease) is never touched. Scope changes, vanishing
        and reappearing are recorded as events. Duplicate keys after the first are ignored and
        counted in the summary.
        """
        with self.session(write=True) as s:
            return discovery.record_discovery(s.connection(), plan_id, run_id, accounts, utcnow())

    def list_accounts(
        self, plan_id: int, *, state: str | None = None, batch: str | None = None
    ) -> list[AccountRow]:
        """The plan's accounts ordered by key, optionally only one state and/or one batch."""
        return list(self.iter_accounts(plan_id, state=state, batch=batch))

    def iter_accounts(
        self, plan_id: int, *, state: str | None = None, batch: str | None = None
    ) -> Iterator[AccountRow]:
        """Like list_accounts, streamed (for exports of very large plans); the read
        transaction stays open until the iterator is exhausted or closed."""
        where = ""
        params: list[Any] = [plan_id]
        if state is not None:
            if state in STATUS_STATES:
                where += " AND scope = 'in_scope' AND status = ?"
            elif state in SCOPE_STATES:
                where += " AND scope = ?"
            else:
                raise UsageError(
                    f"unknown account state {state!r}",
                    hint=f"use one of: {', '.join(ALL_STATES)}",
                )
            params.append(state)
        if batch is not None:
            where += " AND batch = ?"
            params.append(batch)
        return self._accounts(plan_id, where, params)

    def get_account(self, plan_id: int, key: str) -> AccountRow | None:
        """One account by its key (the address, or the DN for entries without one)."""
        found = list(self._accounts(plan_id, " AND key = ?", [plan_id, key]))
        return found[0] if found else None

    def _accounts(self, plan_id: int, where: str, params: list[Any]) -> Iterator[AccountRow]:
        with self.session() as s:
            conn = s.connection()
            last = conn.execute(select(P.c.last_discovery_at).where(P.c.id == plan_id)).scalar()
            yield from _account_rows(Raw(conn), where, params, last)

    @contextmanager
    def reader(self) -> Iterator[Raw]:
        """A read transaction at the DBAPI level, for the plain-SQL aggregates of reporting/."""
        with self.session() as s:
            yield Raw(s.connection())

    def discovery_counts(self, plan_id: int) -> dict[str, Any]:
        """Aggregates for the discover/status screens, computed by the database.

        {"in_scope": n, "excluded": {reason: n}, "invalid": {reason: n}, "vanished": n,
         "batches": {batch: n in scope}, "statuses": {status: n in scope}, "total": n}.
        Entries without a reason count under "unspecified", accounts without a batch under "".
        """
        with self.reader() as db:
            counts = aggregates.account_counts(db, plan_id)
            counts["batches"] = aggregates.batch_sizes(db, plan_id)
        return counts

    def progress_by_batch(self, plan_id: int) -> list[dict[str, Any]]:
        """Per batch: total, migrated, verified, failed, running, pending accounts in scope."""
        with self.reader() as db:
            return aggregates.progress_by_batch(db, plan_id)

    # --- events

    def add_event(
        self,
        plan_id: int,
        kind: EventKind,
        *,
        account_id: int | None = None,
        run_id: int | None = None,
        worker: str | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Record an event in a transaction of its own; its id. (A change of state writes its
        event in its own transaction, through events.py.)"""
        with self.session(write=True) as s:
            return events.write(
                s.connection(),
                plan_id,
                kind,
                account_id=account_id,
                run_id=run_id,
                worker=worker,
                from_state=from_state,
                to_state=to_state,
                detail=detail,
            )

    def list_events(
        self, plan_id: int, *, account_id: int | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Newest events first, of the plan or of one account."""
        stmt = select(E).where(E.c.plan_id == plan_id)
        if account_id is not None:
            stmt = stmt.where(E.c.account_id == account_id)
        stmt = stmt.order_by(E.c.at.desc(), E.c.id.desc()).limit(limit)
        with self.session() as s:
            return [row._asdict() for row in s.execute(stmt)]


def _quiet_rollback(session: Session) -> None:
    """Roll back; on a dead connection there is nothing to roll back, and the server already did."""
    with suppress(OperationalError):
        session.rollback()


def open_store(url: str = DEFAULT_URL, access: Access = "create") -> Store:
    """Open the state database at `url` for what `access` allows (see store/database/access.py): the
    default creates a missing database and upgrades an older SQLite schema.

    sqlite:///relative/path.db is relative to the current directory (commands resolve a plan's
    URL from the plan's folder before); postgresql://... uses psycopg 3. Raises StateError,
    without the URL's password, when it cannot be opened.
    """
    engine, shown, change = connect(url, access)
    return Store(engine, shown, change)
