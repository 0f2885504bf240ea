"""The state store: SQLAlchemy models, queries and Alembic migrations of migrator's own schema.

Only this package imports sqlalchemy and alembic. Which entry point serves which need:

- Opening the state: `open_store(url, access=…)` gives a `Store` (access.py says what "read",
  "write" and "create" may do). Commands open it through commands/state.py (`plan_store`), and
  `status` through `plan_reader`, which tries readonly.py first: no SQLAlchemy, half a second
  less start-up.
- A command's own records, on `Store`: plans, runs (`start_run`, `finish_run`), events
  (`add_event`), discovery (`record_discovery`, `list_accounts`).
- Migrating an account (the engine): work.py claims an account and fences every write by its
  lease epoch; ledger.py is the per-message chunk protocol (`begin_chunk`, `finish_chunk`,
  `inflight`, `resolve_inflight`); changes.py what delta passes carried (flags, moves,
  deletions). fleet.py and owners.py: the processes at work and the target ceiling they share.
- Other commands' results: verification.py (`verify`), filters.py (`filters`), cutover.py
  (`cutover`).
- Reading for `status` and reports: reporting.py, cutover_reads.py and filter_reporting.py
  are aggregates in plain SQL on a `Raw` reader (`Store.reader()`, or readonly.py's), the same
  text on both backends; queries.py lists for `show`, `report`, `events` and `routing`. What
  they hand up: rows.py's dataclasses and plain dicts, never SQLAlchemy objects. The values of
  statuses, scopes, message states and reasons are model/'s enums (status.py, scope.py,
  reasons.py).
- Underneath: schema.py (the tables), types.py, raw.py (DBAPI-level bulk reads and writes),
  connect.py, revision.py, sqlite_files.py, urls.py, migrations/.

The names below load on first use, so a module of this package that needs no SQLAlchemy
(access, readonly, reporting, raw, revision, sqlite_files, urls) can be imported without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrator.store.rows import ALL_STATES, AccountRow, DiscoverySummary
    from migrator.store.store import DEFAULT_URL, Store, open_store
    from migrator.store.urls import mask_url

_WHERE = {
    "ALL_STATES": "migrator.store.rows",
    "AccountRow": "migrator.store.rows",
    "DiscoverySummary": "migrator.store.rows",
    "DEFAULT_URL": "migrator.store.store",
    "Store": "migrator.store.store",
    "open_store": "migrator.store.store",
    "mask_url": "migrator.store.urls",
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
