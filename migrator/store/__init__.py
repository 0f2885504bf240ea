"""The state store: SQLAlchemy models, queries and Alembic migrations of migrator's own schema.

Only this package imports sqlalchemy and alembic. Layers above use open_store() and Store.
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
