"""The state store: SQLAlchemy models, queries and Alembic migrations of migrator's own schema.

Only this package imports sqlalchemy and alembic. Layers above use open_store() and Store.
"""

from migrator.store.connect import mask_url
from migrator.store.rows import ALL_STATES, AccountRow, DiscoverySummary
from migrator.store.store import DEFAULT_URL, Store, open_store

__all__ = [
    "ALL_STATES",
    "DEFAULT_URL",
    "AccountRow",
    "DiscoverySummary",
    "Store",
    "mask_url",
    "open_store",
]
