"""Turning a state URL into a ready engine: URL checks, backend settings, the schema's revision.

What an opening may do (create, upgrade, only read) is its Access (access.py). Every failure
becomes a StateError whose text never contains the URL's password.
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool, StaticPool

from migrator.model.errors import StateError
from migrator.store.database.access import (
    Access,
    EmptyStateDatabase,
    NoStateDatabase,
    SchemaAhead,
    SchemaBehind,
    UpgradeBlocked,
)
from migrator.store.database.revision import MIGRATIONS_DIR, newest_revision, schema_state
from migrator.store.database.sqlite_files import connect_readonly
from migrator.store.database.urls import mask_url, scrub
from migrator.store.owners import process_gone
from migrator.store.types import UTCDateTime, utcnow

BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 32_768
# The page cache of every further connection of a process. Each pooled connection has a cache
# of its own, and a run holds one per worker: at 32 MB each, they filled to 290 MB as the
# database grew past a few tens of thousands of accounts (issue 19). Writes take turns (one
# writer at a time), so one connection with the big cache serves bulk writes; a run's small
# per-account transactions touch few pages.
EXTRA_CACHE_KIB = 8_192
PG_CONNECT_TIMEOUT_S = 10
PG_POOL_KEPT = 8
PG_POOL_EXTRA = 260  # more than the most workers `run` allows (256), so none waits for the pool
# Serialises concurrent first opens of one PostgreSQL database (any constant works; ours).
PG_MIGRATION_LOCK = 0x6D696772

# A worker whose heartbeat is older than this is presumed gone when a schema upgrade asks
# who still works on the database (heartbeats come every third of a lease, 40 s by default).
LIVE_HEARTBEAT = timedelta(minutes=15)

URL_HINT = (
    "use sqlite:///state/migrator.db (a file; relative paths in a plan start at the plan's "
    "folder, on the command line at the current directory) or "
    "postgresql://USER@HOST:5432/DATABASE (password via PGPASSWORD or ~/.pgpass)"
)


def normalize_url(raw: str) -> URL:
    """Parse the URL and pick our driver: psycopg 3 for PostgreSQL, the stdlib for SQLite."""
    try:
        url = make_url(raw.strip())
    except (ArgumentError, ValueError) as exc:
        raise StateError(
            f"state database URL {mask_url(raw)!r} is not valid", hint=URL_HINT
        ) from exc
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise StateError(
                f"state database URL {mask_url(raw)!r} asks for driver {driver!r}; "
                "migrator talks to PostgreSQL through psycopg 3",
                hint="write postgresql://... or postgresql+psycopg://...",
            )
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise StateError(
                f"state database URL {mask_url(raw)!r} asks for SQLite driver {driver!r}",
                hint="write sqlite:///path/to/migrator.db",
            )
        return url
    raise StateError(
        f"state database URL {mask_url(raw)!r} names backend {backend!r}; "
        "only SQLite and PostgreSQL are supported",
        hint=URL_HINT,
    )


def _sqlite_engine(url: URL, *, create: bool) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:"):
        # one shared connection, else every checkout would see a fresh empty database
        engine = create_engine(url, poolclass=StaticPool)
    else:
        parent = Path(database).parent
        if create:
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"cannot create directory {str(parent)!r} for the state database: "
                    f"{exc.strerror}",
                    hint="choose a writable location for the state database or fix the permissions",
                ) from exc
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    _sqlite_events(engine, writer=True)
    return engine


def _sqlite_reader_engine(url: URL) -> Engine:
    """Read-only: never creates the file, its folder, or -wal/-shm files beside it.

    A connection per session (NullPool): each decides anew whether a writer's WAL is there to
    share (see sqlite_files), so `events --follow` sees a run that started after it.
    """
    path = url.database or ""
    engine = create_engine("sqlite://", creator=lambda: connect_readonly(path), poolclass=NullPool)
    _sqlite_events(engine, writer=False)
    return engine


def _sqlite_events(engine: Engine, *, writer: bool) -> None:
    opened = itertools.count()

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # We issue BEGIN ourselves (below) so writers can take the lock up front.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if not writer:
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # NORMAL: a commit survives a crash of the process (WAL), not a power cut. The
            # few commits that must survive a power cut (a chunk's in-flight rows, written
            # before its upload) ask for FULL, which also makes every earlier commit durable.
            cursor.execute("PRAGMA synchronous=NORMAL")
            # bulk discovery and ledger writes touch several indexes; 2 MB default thrashes
            cursor.execute(
                f"PRAGMA cache_size=-{CACHE_KIB if next(opened) == 0 else EXTRA_CACHE_KIB}"
            )
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock at BEGIN, where busy_timeout applies; a DEFERRED
        # transaction that upgrades to writing fails at once if another writer got there first.
        options = conn.get_execution_options()
        mode = options.get("migrator_begin", "DEFERRED")
        # on the sqlite3 connection itself: through SQLAlchemy these two statements cost more
        # CPU than most transactions they open; the PRAGMA only when the level changes
        raw = conn.connection.driver_connection
        info = conn.connection.info
        if mode == "IMMEDIATE":
            level = "FULL" if options.get("migrator_durable") else "NORMAL"
            if info.get("migrator_synchronous") != level:
                raw.execute(f"PRAGMA synchronous={level}")
                info["migrator_synchronous"] = level
        raw.execute(f"BEGIN {mode}")


def _postgresql_engine(url: URL, *, readonly: bool) -> Engine:
    # timestamps in views and ad-hoc SQL read as UTC, like the SQLite copies
    options = "-c timezone=UTC"
    if readonly:  # the server refuses any write of a read command's session
        options += " -c default_transaction_read_only=on"
    return create_engine(
        url,
        # a dead pooled connection (PostgreSQL restarted) is replaced at checkout, not failed on
        pool_pre_ping=True,
        # one connection per thread in a session at once: `run --workers N` needs N + 2 (the
        # heartbeat, the main thread); up to PG_POOL_KEPT stay open between sessions
        pool_size=PG_POOL_KEPT,
        max_overflow=PG_POOL_EXTRA,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "application_name": "migrator",
            "options": options,
        },
    )


class UnknownSchema(Exception):
    """The database carries a revision this migrator's migrations do not know."""


@dataclass(frozen=True)
class SchemaChange:
    """What opening did to the schema: created it (before None) or upgraded it."""

    before: str | None
    after: str


def stored_revision(engine: Engine) -> list[str] | None:
    """The database's alembic_version rows; None when it has no such table (no schema yet).

    One query, no Alembic: importing alembic costs about a second, and every command opens
    the state.
    """
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


def live_workers(engine: Engine) -> list[str]:
    """The workers (their names) that still work on the database: not stopped, a heartbeat in
    the last LIVE_HEARTBEAT, and not known to be gone (store/owners.py). Read from a schema of
    any revision: this is asked before an upgrade."""
    since = utcnow() - LIVE_HEARTBEAT
    with engine.connect() as conn:
        found = inspect(conn)
        if not found.has_table("workers"):
            return []
        has_process = "process" in {c["name"] for c in found.get_columns("workers")}
        query = text(
            f"SELECT name, heartbeat_at, started_at, {'process' if has_process else 'NULL'} FROM "
            "workers"
            " WHERE stopped_at IS NULL"
        ).columns(heartbeat_at=UTCDateTime(), started_at=UTCDateTime())
        rows = conn.execute(query).all()
    return sorted(
        name
        for name, beat, started, process in rows
        if (beat or started) >= since and not process_gone(process)
    )


def _migrate(engine: Engine) -> SchemaChange | None:
    """Bring the schema to the newest revision, in one transaction, one opener at a time.

    What the schema was is read again under the lock: another process may have created or
    upgraded it meanwhile, and then this one changed nothing.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    head = newest_revision()
    with engine.execution_options(migrator_begin="IMMEDIATE").begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        before = None
        if inspect(conn).has_table("alembic_version"):
            before = [
                row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))
            ]
        if before == [head]:
            return None
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as exc:
            raise UnknownSchema(str(exc)) from exc
    return SchemaChange(before[0] if before else None, head)


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest revision unconditionally (for tools and tests)."""
    if schema_state(stored_revision(engine)) != "current":
        _migrate(engine)


def prepare_schema(engine: Engine, access: Access, shown: str) -> SchemaChange | None:
    """Check the schema's revision against what `access` may do; create or upgrade it when
    allowed. Returns what changed, None when nothing did."""
    found = stored_revision(engine)
    state = schema_state(found)
    head = newest_revision()
    if state == "current":
        return None
    if state == "ahead":
        raise SchemaAhead(
            f"state database {shown} has schema revision {', '.join(found or [])}, newer than "
            f"this migrator knows (it writes {head})",
            hint="it was written by a newer migrator: install that version (or newer) on this host",
        )
    if state == "empty":
        if access not in ("create", "upgrade"):
            raise EmptyStateDatabase(
                f"state database {shown} holds no migrator state yet",
                hint="`migrator discover --plan FILE` creates it, or check the URL",
            )
        return _migrate(engine)
    before = (found or [""])[0]
    sqlite = engine.dialect.name == "sqlite"
    if access == "upgrade" or (access in ("create", "write") and sqlite):
        busy = live_workers(engine)
        if busy:
            shown_busy = ", ".join(busy[:5]) + (
                f" and {len(busy) - 5} more" if len(busy) > 5 else ""
            )
            raise UpgradeBlocked(
                f"state database {shown} has schema {before} and this migrator needs {head}, but "
                f"{len(busy)} migrator process(es) still work on it: {shown_busy}",
                hint="let those `migrator run`s finish or stop them (a process whose heartbeat "
                f"is older than {int(LIVE_HEARTBEAT.total_seconds() // 60)} minutes counts as "
                "gone), then run the command again",
            )
        return _migrate(engine)
    raise SchemaBehind(
        f"state database {shown} has schema {before}; this migrator needs {head} and does not "
        "upgrade it on its own",
        found=before,
        head=head,
        hint="`migrator upgrade --state URL` upgrades it (see docs/multihost.md for a fleet)",
    )


def _missing_sqlite_file(url: URL, access: Access) -> str | None:
    """The path of a SQLite file that does not exist and that `access` may not create."""
    database = url.database or ""
    if (
        url.get_backend_name() != "sqlite"
        or database in ("", ":memory:")
        or access in ("create", "upgrade")
    ):
        return None
    return None if Path(database).exists() else str(Path(database).absolute())


def connect(raw_url: str, access: Access = "create") -> tuple[Engine, str, SchemaChange | None]:
    """An engine on a schema at this migrator's revision, the URL as it may be displayed, and
    what opening changed in the schema."""
    url = normalize_url(raw_url)
    shown = url.render_as_string(hide_password=True)
    missing = _missing_sqlite_file(url, access)
    if missing is not None:
        raise NoStateDatabase(
            f"no state database at {missing}",
            path=missing,
            hint="`migrator discover --plan FILE` creates it; check the path otherwise",
        )
    if url.get_backend_name() == "sqlite":
        engine = (
            _sqlite_reader_engine(url)
            if access == "read"
            else _sqlite_engine(url, create=access != "write")
        )
    else:
        engine = _postgresql_engine(url, readonly=access == "read")
    try:
        change = prepare_schema(engine, access, shown)
    except StateError:
        engine.dispose()
        raise
    except UnknownSchema as exc:
        engine.dispose()
        raise SchemaAhead(
            f"state database {shown} has a schema this migrator does not know: "
            f"{scrub(str(exc), url.password)}",
            hint=(
                "it was probably written by a newer migrator; upgrade migrator or use another "
                "database"
            ),
        ) from exc
    except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
        engine.dispose()
        raise StateError(
            f"cannot open state database {shown}: {describe(exc, url.password)}",
            hint=open_hint(url, access),
        ) from exc
    return engine, shown, change


def describe(exc: BaseException, password: str | None) -> str:
    """The driver's own words, first line only, without SQLAlchemy's boilerplate or secrets."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip() or type(original).__name__
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return scrub(" ".join(lines[:2]), password)


def open_hint(url: URL, access: Access = "create") -> str:
    if url.get_backend_name() == "sqlite":
        if access == "read":
            return f"check that {url.database!r} is a migrator state file and that it is readable"
        return (
            f"check that {url.database!r} is a migrator state file and that its directory is "
            "writable (SQLite also writes -wal and -shm files next to it)"
        )
    # libpq takes the user from the URL, else $PGUSER, else the operating system's user name
    user = url.username or "$PGUSER or your login name"
    return (
        f"check that PostgreSQL is running on {url.host or 'localhost'}:{url.port or 5432}, "
        f"that database {url.database!r} exists (createdb) and that user {user!r} may "
        "connect" + ("" if access == "read" else " and create tables")
    )
