"""Which schema revision this migrator writes, read from its migration files' names.

Free of SQLAlchemy and Alembic: every command checks it when it opens the state.
"""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def newest_revision() -> str:
    """The head revision, from the migration files' names (vNNNN_...)."""
    names = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("v[0-9][0-9][0-9][0-9]_*.py"))
    return names[-1][1:5] if names else ""
