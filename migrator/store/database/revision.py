"""Which schema revisions this migrator knows, read from its migration files' names.

Free of SQLAlchemy and Alembic: every command checks the revision when it opens the state.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

SchemaState = Literal["empty", "current", "behind", "ahead"]


@cache
def known_revisions() -> tuple[str, ...]:
    """Every revision, oldest first, from the migration files' names (vNNNN_...)."""
    names = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("v[0-9][0-9][0-9][0-9]_*.py"))
    return tuple(name[1:5] for name in names)


def newest_revision() -> str:
    """The head revision: the schema this migrator reads and writes."""
    known = known_revisions()
    return known[-1] if known else ""


def schema_state(found: list[str] | None) -> SchemaState:
    """Where a database stands, from its alembic_version rows (None: no such table).

    A revision this migrator does not know (or several rows: branches it never makes) is
    "ahead": written by a newer migrator, which must not be guessed at.
    """
    if not found:
        return "empty"
    if found == [newest_revision()]:
        return "current"
    if len(found) == 1 and found[0] in known_revisions():
        return "behind"
    return "ahead"
