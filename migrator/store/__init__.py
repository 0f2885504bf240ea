"""The state store: migrator's own tables (SQLAlchemy Core), queries and Alembic migrations.

Only this package imports sqlalchemy and alembic. Which entry point serves which need:

- Opening the state: `open_store(url, access=…)` gives a `Store` (database/access.py says what
  "read", "write" and "create" may do). Commands open it through commands/state.py
  (`plan_store`), and `status` through `plan_reader`, which tries database/readonly.py first: no
  SQLAlchemy, half a second less start-up.
- A command's own records, on `Store`: plans, runs (`start_run`, `finish_run`), events
  (`add_event`), discovery (`record_discovery`, `list_accounts`; discovery.py does the work).
- The event log: events.py is its one writer. A change of state writes its event there, in
  the transaction of the change (`events.write`); `Store.add_event` records one on its own.
- Migrating an account (the engine): claims.py claims an account and fences every write by its
  lease epoch; ledger.py is the per-message chunk protocol (`begin_chunk`, `finish_chunk`,
  `inflight`, `resolve_inflight`); changes.py what delta passes carried (flags, moves,
  deletions). fleet.py and owners.py: the processes at work and the target ceiling they share.
- Other commands' results: verification.py (`verify`), filters.py (`filters`), cutover.py
  (`cutover`), retention.py (`prune`).
- Reading for `status` and reports, in reporting/: aggregates.py, cutover.py and filters.py are
  plain SQL on a `Raw` reader (`Store.reader()`, or database/readonly.py's), the same text on
  both backends; queries.py lists for `show`, `report`, `events` and `routing`. What they hand
  up: rows.py's dataclasses and plain dicts, never SQLAlchemy objects. The values of statuses,
  scopes, message states, reasons, event kinds, cut-over states and filter outcomes are model/'s
  enums (status.py, scope.py, reasons.py, events.py, cutover.py, filters.py).
- Underneath: schema.py (every table, declared once), types.py (their column types), migrations/,
and
  database/: access.py, connect.py, revision.py, raw.py (DBAPI-level bulk reads and writes),
  readonly.py, sqlite_files.py, urls.py.

The names below load on first use, so a module that needs no SQLAlchemy (database/'s access,
raw, readonly, revision, sqlite_files and urls; reporting/'s aggregates, cutover and filters)
can be imported without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrator.store.database.urls import mask_url
    from migrator.store.rows import ALL_STATES, AccountRow, DiscoverySummary
    from migrator.store.store import DEFAULT_URL, Store, open_store

_WHERE = {
    "ALL_STATES": "migrator.store.rows",
    "AccountRow": "migrator.store.rows",
    "DiscoverySummary": "migrator.store.rows",
    "DEFAULT_URL": "migrator.store.store",
    "Store": "migrator.store.store",
    "open_store": "migrator.store.store",
    "mask_url": "migrator.store.database.urls",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'migrator.store' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = [
    "ALL_STATES",
    "DEFAULT_URL",
    "AccountRow",
    "DiscoverySummary",
    "Store",
    "mask_url",
    "open_store",
]
