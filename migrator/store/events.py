"""The event log's one writer: every row of `events` is written here.

An event says what changed for an account (claimed, released, verified, switched, ...) or
what a command did (a discovery). It is written in the same transaction as the change it
records, on that transaction's connection, so the log never tells of a change that was
rolled back: `write` for one event, `write_many` for the same event of many accounts (a
cut-over step), `Batch` for discovery's thousands, which go at the DBAPI level with the
accounts they describe (COPY on PostgreSQL; see database/raw.py: SQLAlchemy's per-row
processing made 100,000 rows take minutes). `Store.add_event` is the entry point of a command
that records an event on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from migrator.model.events import EventKind
from migrator.store.database.raw import Raw
from migrator.store.schema import events as E
from migrator.store.types import utcnow

# one statement for every event: built per call, it cost more than the insert itself (issue 19)
_INSERT = E.insert()


def write(
    conn: Connection,
    plan_id: int,
    kind: EventKind,
    *,
    account_id: int | None = None,
    run_id: int | None = None,
    worker: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Write one event in the transaction of `conn` (at `at`, else now); its id."""
    result = conn.execute(
        _INSERT,
        {
            "at": at or utcnow(),
            "plan_id": plan_id,
            "account_id": account_id,
            "run_id": run_id,
            "worker": worker,
            "kind": kind,
            "from_state": from_state,
            "to_state": to_state,
            "detail": detail,
        },
    )
    # lastrowid on SQLite, RETURNING on PostgreSQL: SQLAlchemy reads the new id either way
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the database gave no id for the new event")
    return int(key[0])


def write_many(
    conn: Connection,
    plan_id: int,
    kind: EventKind,
    accounts: Sequence[tuple[int, str | None]],
    *,
    to_state: str | None,
    detail: dict[str, Any] | None,
) -> None:
    """The same event for each of `accounts`, (account id, the state it left), in one
    statement, at one time."""
    if not accounts:
        return
    now = utcnow()
    conn.execute(
        _INSERT,
        [
            {
                "at": now,
                "plan_id": plan_id,
                "account_id": account_id,
                "run_id": None,
                "worker": None,
                "kind": kind,
                "from_state": from_state,
                "to_state": to_state,
                "detail": detail,
            }
            for account_id, from_state in accounts
        ],
    )


class Batch:
    """Events gathered at the DBAPI level and written together (`flush`), for discovery."""

    COLUMNS = ("at", "plan_id", "account_id", "run_id", "kind", "from_state", "to_state", "detail")

    def __init__(self, raw: Raw, plan_id: int, run_id: int | None, at: datetime) -> None:
        self.raw = raw
        self.plan_id = plan_id
        self.run_id = run_id
        self.at = raw.time(at)
        self.rows: list[tuple[Any, ...]] = []

    def add(
        self,
        account_id: int | None,
        kind: EventKind,
        from_state: str | None,
        to_state: str | None,
        detail: dict[str, Any],
    ) -> None:
        self.rows.append(
            (
                self.at,
                self.plan_id,
                account_id,
                self.run_id,
                kind,
                from_state,
                to_state,
                self.raw.json(detail),
            )
        )

    def __len__(self) -> int:
        return len(self.rows)

    def flush(self) -> None:
        if self.rows:
            self.raw.insert_many("events", self.COLUMNS, self.rows)
            self.rows = []
