"""`upgrade`: bring the state database's schema to this migrator's revision, explicitly.

The only command that upgrades a PostgreSQL schema (the others refuse an older one), because
a shared database is upgraded once, for the whole fleet, when no older `migrator run` works on
it (docs/multihost.md). It refuses while live workers are registered.
"""

from __future__ import annotations

from typing import Any

from migrator.commands.state import open_state
from migrator.model.plan import Plan
from migrator.store.database.revision import newest_revision


def upgrade_state(plan: Plan | None, state_url: str | None) -> dict[str, Any]:
    """Create or upgrade the schema; what it was and what it is now."""
    store = open_state(plan, state_url, access="upgrade")
    try:
        change = store.schema_change
        head = newest_revision()
        return {
            "state": store.url,
            "before": head if change is None else change.before,
            "after": head,
            "changed": change is not None,
        }
    finally:
        store.close()
