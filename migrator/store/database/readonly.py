"""The state database opened for reading only, without SQLAlchemy.

Importing SQLAlchemy takes about half a second, more than `status` needs to answer on
100,000 accounts. This path covers the everyday case only: a SQLite file or a PostgreSQL
database already at this migrator's schema revision. Anything else (no file, a schema of
another revision, a URL with SQLite options, a server that does not answer) gives None, and
the caller opens the Store for reading, which explains the error. Like the Store's reading,
it never writes: SQLite read-only without side files (sqlite_files), PostgreSQL sessions
read-only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.store.database.raw import Raw
from migrator.store.database.revision import newest_revision
from migrator.store.database.sqlite_files import connect_readonly
from migrator.store.database.urls import mask_url

PG_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg://")
PG_CONNECT_TIMEOUT_S = 10


@dataclass
class ReadOnlyState:
    db: Raw
    url: str  # as it may be shown (no password)
    _conn: Any

    def close(self) -> None:
        self._conn.close()


def open_readonly(raw_url: str) -> ReadOnlyState | None:
    url = raw_url.strip()
    if url.startswith("sqlite:///"):
        return _sqlite(url)
    for prefix in PG_PREFIXES:
        if url.startswith(prefix):
            return _postgresql(url[len(prefix) :])
    return None


def _current(db: Raw) -> bool:
    return [row[0] for row in db.all("SELECT version_num FROM alembic_version")] == [
        newest_revision()
    ]


def _sqlite(url: str) -> ReadOnlyState | None:
    path = url[len("sqlite:///") :]
    # options and %-escapes are SQLAlchemy's to interpret; a missing file is the Store's to explain
    if not path or "?" in path or "%" in path or path == ":memory:" or not Path(path).is_file():
        return None
    try:
        conn = connect_readonly(path)
    except sqlite3.Error:
        return None
    db = Raw.over(conn, sqlite=True)
    try:
        if _current(db):
            return ReadOnlyState(db, url, conn)
    except sqlite3.Error:
        pass
    conn.close()
    return None


def _postgresql(rest: str) -> ReadOnlyState | None:
    import psycopg  # only here: a SQLite campaign never needs it

    try:
        conn = psycopg.connect(
            "postgresql://" + rest,
            autocommit=True,
            connect_timeout=PG_CONNECT_TIMEOUT_S,
            application_name="migrator",
            options="-c timezone=UTC -c default_transaction_read_only=on",
        )
    except (psycopg.Error, ValueError):
        return None
    db = Raw.over(conn, sqlite=False)
    try:
        if _current(db):
            return ReadOnlyState(db, mask_url("postgresql+psycopg://" + rest), conn)
    except psycopg.Error:
        pass
    conn.close()
    return None
