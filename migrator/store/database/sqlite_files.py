"""Opening a SQLite state file for reading without creating anything beside it.

In WAL mode a reader needs the `-wal` and `-shm` files. While a writer has the database open
they exist, and a read-only connection (`mode=ro`) shares them. When nobody has it open they
do not exist, and even a read-only connection would create them (and could not on a read-only
mount): then nothing is pending in a WAL, the file alone is the whole database, and it is
opened `immutable` (no locks, no side files). Free of SQLAlchemy: `status` uses it directly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

BUSY_TIMEOUT_S = 30


def readonly_uri(path: str) -> str:
    """A `file:` URI that opens `path` read-only and creates nothing next to it."""
    absolute = str(Path(path).absolute())
    uri = f"file:{quote(absolute)}?mode=ro"
    if not Path(absolute + "-wal").exists():
        uri += "&immutable=1"
    return uri


def connect_readonly(path: str) -> sqlite3.Connection:
    """A read-only sqlite3 connection on `path` (which must exist), autocommit mode."""
    conn = sqlite3.connect(
        readonly_uri(path), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
        check_same_thread=False,
    )  # fmt: skip
    # belt and braces: a statement that would write fails instead of writing
    conn.execute("PRAGMA query_only=1")
    return conn
