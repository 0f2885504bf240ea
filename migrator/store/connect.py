"""Turning a state URL into a ready engine: URL checks, backend settings, schema upgrade.

Every failure becomes a StateError whose text never contains the URL's password.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from migrator.model.errors import StateError
from migrator.store.revision import MIGRATIONS_DIR, newest_revision
from migrator.store.urls import mask_url, scrub

BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 32_768
PG_CONNECT_TIMEOUT_S = 10
PG_POOL_KEPT = 8
PG_POOL_EXTRA = 260  # more than the most workers `run` allows (256), so none waits for the pool
# Serialises concurrent first opens of one PostgreSQL database (any constant works; ours).
PG_MIGRATION_LOCK = 0x6D696772

URL_HINT = (
    "use sqlite:///state/migrator.db (a file relative to the current directory) or "
    "postgresql://USER@HOST:5432/DATABASE (password via the URL or PGPASSWORD)"
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


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:"):
        # one shared connection, else every checkout would see a fresh empty database
        engine = create_engine(url, poolclass=StaticPool)
    else:
        parent = Path(database).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create directory {str(parent)!r} for the state database: {exc.strerror}",
                hint="choose a writable location for the state database or fix the permissions",
            ) from exc
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # We issue BEGIN ourselves (below) so writers can take the lock up front.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # NORMAL: a commit survives a crash of the process (WAL), not a power cut. The
            # few commits that must survive a power cut (a chunk's in-flight rows, written
            # before its upload) ask for FULL, which also makes every earlier commit durable.
            cursor.execute("PRAGMA synchronous=NORMAL")
            # bulk discovery and ledger writes touch several indexes; 2 MB default thrashes
            cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
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

    return engine


def _postgresql_engine(url: URL) -> Engine:
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
            # timestamps in views and ad-hoc SQL read as UTC, like the SQLite copies
            "options": "-c timezone=UTC",
        },
    )


class UnknownSchema(Exception):
    """The database carries a revision this migrator's migrations do not know."""


def _is_current(engine: Engine) -> bool:
    """True when the database is already at the newest revision.

    Importing alembic costs about a second; every command opens the state, so the common case
    (nothing to upgrade) is answered with one query.
    """
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return False
            versions = [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    except SQLAlchemyError:
        return False
    return versions == [newest_revision()]


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest revision, in one transaction, one opener at a time."""
    if _is_current(engine):
        return
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    with engine.execution_options(migrator_begin="IMMEDIATE").begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as exc:
            raise UnknownSchema(str(exc)) from exc


def connect(raw_url: str) -> tuple[Engine, str]:
    """An engine on an up-to-date schema, and the URL as it may be displayed."""
    url = normalize_url(raw_url)
    shown = url.render_as_string(hide_password=True)
    engine = _sqlite_engine(url) if url.get_backend_name() == "sqlite" else _postgresql_engine(url)
    try:
        upgrade_schema(engine)
    except UnknownSchema as exc:
        engine.dispose()
        raise StateError(
            f"state database {shown} has a schema this migrator does not know: "
            f"{scrub(str(exc), url.password)}",
            hint="it was probably written by a newer migrator; upgrade migrator or use another database",
        ) from exc
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise StateError(
            f"cannot open state database {shown}: {describe(exc, url.password)}",
            hint=open_hint(url),
        ) from exc
    return engine, shown


def describe(exc: BaseException, password: str | None) -> str:
    """The driver's own words, first line only, without SQLAlchemy's boilerplate or secrets."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip() or type(original).__name__
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return scrub(" ".join(lines[:2]), password)


def open_hint(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return (
            f"check that {url.database!r} is a migrator state file and that its directory is "
            "writable (SQLite also writes -wal and -shm files next to it)"
        )
    return (
        f"check that PostgreSQL is running on {url.host or 'localhost'}:{url.port or 5432}, "
        f"that database {url.database!r} exists (createdb) and that user {url.username!r} may "
        "connect and create tables"
    )
