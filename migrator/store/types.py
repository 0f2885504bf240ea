"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class JSONType(TypeDecorator[Any]):
    """JSONB on PostgreSQL so operators can index and query into it; JSON text on SQLite.

    Chosen when a dialect asks, so a command on SQLite never imports SQLAlchemy's PostgreSQL
    dialect (a tenth of the start-up time of `status`)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


# SQLite only auto-numbers an INTEGER PRIMARY KEY (the rowid); BIGINT keys would stay NULL.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def unbounded(sqlite_declared: int) -> TypeEngine[str]:
    """Text of any length: `text` on PostgreSQL (migration 0006). On SQLite the VARCHAR(n)
    the first revisions declared, which SQLite never enforces (no table is rewritten for a
    declaration); schema.py says so, so that it matches what the migrations built."""
    return Text().with_variant(String(sqlite_declared), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on both backends.

    PostgreSQL keeps it as timestamptz; SQLite has no time zones, so the UTC wall clock is
    stored as ISO text (which sorts chronologically) and UTC is re-attached when read back.
    Naive datetimes are refused: their meaning depends on the machine that wrote them.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from a view or an operator's hand edit
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
