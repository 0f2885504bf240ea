"""DBAPI-level reads and writes for the bulk paths (100,000 accounts, millions of ledger rows).

SQLAlchemy's per-row parameter and result processing costs around 100 microseconds a row,
which is minutes at campaign scale. These helpers run on the DBAPI connection of the caller's
SQLAlchemy Connection, inside its transaction, and convert values the way our column types
store them: UTC text for SQLite timestamps, timestamptz on PostgreSQL; JSON text / jsonb.
SQL passed here uses "?" placeholders and never contains "?" or "%" otherwise.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the type: `status` reads through Raw without importing SQLAlchemy
    from sqlalchemy import Connection

FETCH_BATCH = 5000
_cursor_numbers = itertools.count(1)


def _cursor_name() -> str:
    return f"migrator_rows_{next(_cursor_numbers)}"


class Raw:
    def __init__(self, conn: Connection) -> None:
        self.sqlite = conn.dialect.name == "sqlite"
        self.dbapi: Any = conn.connection.driver_connection

    @classmethod
    def over(cls, dbapi: Any, *, sqlite: bool) -> Raw:
        """On a bare DBAPI connection (sqlite3 or psycopg), without SQLAlchemy."""
        raw = cls.__new__(cls)
        raw.sqlite = sqlite
        raw.dbapi = dbapi
        return raw

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", "%s")

    # --- values

    def time(self, value: datetime | None) -> Any:
        if value is None:
            return None
        value = value.astimezone(UTC)
        if self.sqlite:  # the same text SQLAlchemy's DateTime writes for SQLite
            return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return value

    def json(self, value: Any) -> Any:
        if value is None:
            return None
        if self.sqlite:
            return json.dumps(value)
        from psycopg.types.json import Jsonb  # PostgreSQL only: SQLite runs need no psycopg

        return Jsonb(value)

    @staticmethod
    def read_time(value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        result: datetime = value.astimezone(UTC)
        return result

    @staticmethod
    def read_json(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    # --- statements

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows at once, on a plain cursor: for aggregates, whose results are small."""
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(self._sql(sql), tuple(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows in batches; on PostgreSQL through a server-side cursor, so memory stays bounded."""
        cursor = self.dbapi.cursor() if self.sqlite else self.dbapi.cursor(name=_cursor_name())
        try:
            cursor.execute(self._sql(sql), tuple(params))
            while batch := cursor.fetchmany(FETCH_BATCH):
                yield from batch
        finally:
            cursor.close()

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        cursor = self.dbapi.cursor()
        try:
            cursor.executemany(self._sql(sql), rows)
        finally:
            cursor.close()

    def insert_many(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Insert rows fast: executemany on SQLite, COPY on PostgreSQL."""
        names = ", ".join(columns)
        if self.sqlite:
            marks = ", ".join("?" for _ in columns)
            cursor = self.dbapi.cursor()
            try:
                cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
            finally:
                cursor.close()
            return
        with (
            self.dbapi.cursor() as cursor,
            cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
