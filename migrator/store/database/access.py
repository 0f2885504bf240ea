"""What a command may do to the state database when it opens it, and the errors of opening.

Kept free of SQLAlchemy: `status` opens the state without it and catches these errors too.

- read: never creates, writes or upgrades anything. A SQLite file is opened read-only (also on
  a read-only mount); a PostgreSQL session is read-only.
- write: an existing database at this migrator's schema. A SQLite database at an older schema
  is upgraded (one host uses a SQLite file) unless a `migrator run` still works on it; a
  PostgreSQL one is not: only `migrator upgrade` changes a shared schema.
- create: as write, and a missing SQLite file or an empty database is created (discover).
- upgrade: as create, and an older PostgreSQL schema is upgraded too (`migrator upgrade`).
A database at a newer schema than this migrator knows stops every access.
"""

from __future__ import annotations

from typing import Literal

from migrator.model.errors import StateError

Access = Literal["read", "write", "create", "upgrade"]


class NoStateDatabase(StateError):
    """A SQLite state file that does not exist, opened by a command that does not create it."""

    def __init__(self, message: str, *, path: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class EmptyStateDatabase(StateError):
    """A database without migrator's tables, opened by a command that does not create them."""


class SchemaBehind(StateError):
    """The database's schema is older than this migrator's and this access may not upgrade it."""

    def __init__(self, message: str, *, found: str, head: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.found = found
        self.head = head


class SchemaAhead(StateError):
    """The database was written by a newer migrator (a revision this one does not know)."""


class UpgradeBlocked(StateError):
    """Migrator processes still work on the database whose schema is to be upgraded."""
