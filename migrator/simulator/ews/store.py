"""The simulator's persistent mailbox store: one SQLite file holding every mailbox.

One connection behind a lock: statements are short (XML work happens outside the lock) and a
single writer is what SQLite wants anyway.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .locales import DEFAULT_CULTURE, LAYOUT, folder_names

DB_FILE_NAME = "ews-simulator.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mailboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL UNIQUE COLLATE NOCASE,
    allow TEXT  -- JSON list of user names, NULL = every user
);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),
    parent_id INTEGER REFERENCES folders(id),
    name TEXT NOT NULL,
    folder_class TEXT,
    distinguished TEXT,
    version INTEGER NOT NULL DEFAULT 1
);
-- Exchange compares sibling folder names without regard to case.
CREATE UNIQUE INDEX IF NOT EXISTS folders_sibling_name
    ON folders(mailbox_id, coalesce(parent_id, 0), lower(name));
-- child counts and shallow FindFolder look folders up by parent
CREATE INDEX IF NOT EXISTS folders_parent ON folders(parent_id);
CREATE UNIQUE INDEX IF NOT EXISTS folders_distinguished
    ON folders(mailbox_id, distinguished) WHERE distinguished IS NOT NULL;
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),
    folder_id INTEGER NOT NULL REFERENCES folders(id),
    item_class TEXT NOT NULL,
    subject TEXT,
    mime BLOB NOT NULL,
    size INTEGER NOT NULL,     -- the item's size in the store (conversion.py), not the MIME's
    has_attachments INTEGER NOT NULL DEFAULT 0,
    is_read INTEGER NOT NULL,
    message_flags INTEGER NOT NULL,
    categories TEXT NOT NULL,  -- JSON list
    received TEXT NOT NULL,    -- ISO 8601 UTC, second precision
    sent TEXT,
    created TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS items_folder ON items(folder_id, received);
CREATE TABLE IF NOT EXISTS item_props (
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    key TEXT NOT NULL,    -- tag:0x0E07, name:<guid>:<name> or id:<guid>:<id>
    type TEXT NOT NULL,   -- EWS PropertyType (Integer, String, SystemTime, ...)
    value TEXT NOT NULL,  -- canonical text form (JSON list for array types)
    folded TEXT,          -- value.casefold(): Exchange compares strings ignoring case
    PRIMARY KEY (item_id, key)
);
CREATE INDEX IF NOT EXISTS items_mailbox ON items(mailbox_id);
"""
# Stores written before string comparisons ignored case have no `folded` column yet.
_UPGRADE = """
ALTER TABLE item_props ADD COLUMN folded TEXT;
UPDATE item_props SET folded = casefold(value);
"""
# Stores written before items were converted (conversion.py) lack the attachment flag.
_UPGRADE_ATTACHMENTS = """
ALTER TABLE items ADD COLUMN has_attachments INTEGER NOT NULL DEFAULT 0;
"""
_INDEXES = """
DROP INDEX IF EXISTS item_props_lookup;
CREATE INDEX IF NOT EXISTS item_props_folded ON item_props(key, folded);
"""


def casefold(value: str | None) -> str | None:
    """SQL function: text folded as Exchange's case-insensitive comparisons fold it (Unicode
    case folding; SQLite's own lower() and NOCASE know ASCII only)."""
    return value.casefold() if isinstance(value, str) else value


class FolderExistsError(Exception):
    """A sibling folder with the same name (ignoring case) already exists."""


@dataclass(frozen=True)
class MailboxRow:
    id: int
    address: str
    allow: frozenset[str] | None  # lower-cased user names; None = every user

    def allows(self, user: str) -> bool:
        return self.allow is None or user.lower() in self.allow


@dataclass(frozen=True)
class FolderRow:
    id: int
    mailbox_id: int
    parent_id: int | None
    name: str
    folder_class: str | None
    distinguished: str | None
    version: int


@dataclass(frozen=True)
class ItemRow:
    id: int
    mailbox_id: int
    folder_id: int
    item_class: str
    subject: str | None
    size: int
    is_read: bool
    message_flags: int
    categories: tuple[str, ...]
    received: str
    sent: str | None
    created: str
    version: int
    has_attachments: bool = False
    mime: bytes | None = None  # only loaded when asked for


@dataclass(frozen=True)
class PropValue:
    key: str
    type: str
    value: str


@dataclass
class NewItem:
    """An item as CreateItem parsed it, ready to insert."""

    folder_id: int
    mime: bytes
    subject: str | None
    is_read: bool
    message_flags: int
    categories: list[str]
    received: str
    sent: str | None
    created: str
    props: list[PropValue] = field(default_factory=list)
    item_class: str = "IPM.Note"
    size: int = 0  # the item's size in the store (conversion.Converted.size)
    has_attachments: bool = False


@dataclass(frozen=True)
class SimFolder:
    """A folder as tests see it (see EwsSimulator.folders)."""

    id: str
    parent_id: str | None
    name: str
    folder_class: str | None
    distinguished: str | None
    path: tuple[str, ...]  # display names below "Top of Information Store" (or below root)


@dataclass(frozen=True)
class SimItem:
    """An item as tests see it (see EwsSimulator.items)."""

    id: str
    folder_id: str
    mime: bytes  # the bytes the client sent: a test's oracle (Exchange keeps no MIME)
    is_read: bool
    is_draft: bool
    message_flags: int
    categories: list[str]
    extended: dict[str, str]
    subject: str | None
    created: datetime
    received: datetime
    sent: datetime | None
    item_class: str = "IPM.Note"
    size: int = 0  # what EWS answers as Size (not the MIME's length)


_ITEM_COLUMNS = (
    "id, mailbox_id, folder_id, item_class, subject, size, is_read, message_flags, categories, "
    "received, sent, created, version, has_attachments"
)


def _item_row(row: Sequence[Any], mime: bytes | None = None) -> ItemRow:
    return ItemRow(
        id=int(row[0]),
        mailbox_id=int(row[1]),
        folder_id=int(row[2]),
        item_class=str(row[3]),
        subject=row[4] if row[4] is None else str(row[4]),
        size=int(row[5]),
        is_read=bool(row[6]),
        message_flags=int(row[7]),
        categories=tuple(json.loads(str(row[8]))),
        received=str(row[9]),
        sent=row[10] if row[10] is None else str(row[10]),
        created=str(row[11]),
        version=int(row[12]),
        has_attachments=bool(row[13]),
        mime=mime,
    )


def _folder_row(row: Sequence[Any]) -> FolderRow:
    return FolderRow(
        id=int(row[0]),
        mailbox_id=int(row[1]),
        parent_id=row[2] if row[2] is None else int(row[2]),
        name=str(row[3]),
        folder_class=row[4] if row[4] is None else str(row[4]),
        distinguished=row[5] if row[5] is None else str(row[5]),
        version=int(row[6]),
    )


def _rowid(cursor: sqlite3.Cursor) -> int:
    assert cursor.lastrowid is not None
    return cursor.lastrowid


_FOLDER_COLUMNS = "id, mailbox_id, parent_id, name, folder_class, distinguished, version"


class Store:
    """All mailboxes of one simulator, persisted in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_FILE_NAME
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # Large pages: MIME blobs of 10 KB to 40 MB are written several times faster than
        # with 4 KB pages (only takes effect when the file is created).
        self._db.execute("PRAGMA page_size=65536")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a process crash in WAL mode; only an OS crash can lose the tail.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.create_function("casefold", 1, casefold, deterministic=True)
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(item_props)")}
        if "folded" not in columns:
            self._db.executescript(_UPGRADE)
        if "has_attachments" not in {
            row[1] for row in self._db.execute("PRAGMA table_info(items)")
        }:
            self._db.executescript(_UPGRADE_ATTACHMENTS)
        self._db.executescript(_INDEXES)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- mailboxes -------------------------------------------------------------------------

    def add_mailbox(
        self, address: str, allow: Iterable[str] | None, culture: str = DEFAULT_CULTURE
    ) -> MailboxRow:
        allow_json = None if allow is None else json.dumps(sorted({u.lower() for u in allow}))
        with self._tx() as db:
            row = db.execute("SELECT id FROM mailboxes WHERE address = ?", (address,)).fetchone()
            if row is None:
                mailbox_id = _rowid(
                    db.execute(
                        "INSERT INTO mailboxes(address, allow) VALUES (?, ?)", (address, allow_json)
                    )
                )
                self._create_default_folders(db, mailbox_id, culture)
            else:
                mailbox_id = int(row[0])
                db.execute("UPDATE mailboxes SET allow = ? WHERE id = ?", (allow_json, mailbox_id))
        found = self.mailbox_by_id(mailbox_id)
        assert found is not None
        return found

    @staticmethod
    def _create_default_folders(db: sqlite3.Connection, mailbox_id: int, culture: str) -> None:
        """The folders of a new mailbox, named in its language (locales.py)."""
        names = folder_names(culture)
        ids: dict[str, int] = {}
        for spec in LAYOUT:
            cursor = db.execute(
                "INSERT INTO folders(mailbox_id, parent_id, name, folder_class, distinguished) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    mailbox_id,
                    ids.get(spec.parent),
                    names[spec.key],
                    spec.folder_class,
                    spec.distinguished,
                ),
            )
            ids[spec.key] = _rowid(cursor)

    def _mailbox(self, where: str, arg: object) -> MailboxRow | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT id, address, allow FROM mailboxes WHERE {where}", (arg,)
            ).fetchone()
        if row is None:
            return None
        allow = None if row[2] is None else frozenset(json.loads(row[2]))
        return MailboxRow(id=int(row[0]), address=str(row[1]), allow=allow)

    def mailbox_by_address(self, address: str) -> MailboxRow | None:
        return self._mailbox("address = ?", address)

    def mailbox_by_id(self, mailbox_id: int) -> MailboxRow | None:
        return self._mailbox("id = ?", mailbox_id)

    def mailboxes(self) -> list[MailboxRow]:
        with self._lock:
            ids = [int(r[0]) for r in self._db.execute("SELECT id FROM mailboxes ORDER BY id")]
        return [m for m in (self.mailbox_by_id(i) for i in ids) if m is not None]

    # --- folders ---------------------------------------------------------------------------

    def folder(self, folder_id: int) -> FolderRow | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE id = ?", (folder_id,)
            ).fetchone()
        return None if row is None else _folder_row(row)

    def distinguished_folder(self, mailbox_id: int, distinguished: str) -> FolderRow | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE mailbox_id = ? AND distinguished = ?",
                (mailbox_id, distinguished),
            ).fetchone()
        return None if row is None else _folder_row(row)

    def all_folders(self, mailbox_id: int) -> list[FolderRow]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE mailbox_id = ? ORDER BY id",
                (mailbox_id,),
            ).fetchall()
        return [_folder_row(r) for r in rows]

    def child_folders(self, folder: FolderRow, deep: bool) -> list[FolderRow]:
        """Children in creation order; deep = depth-first, each parent before its children."""
        by_parent: dict[int | None, list[FolderRow]] = {}
        for f in self.all_folders(folder.mailbox_id):
            by_parent.setdefault(f.parent_id, []).append(f)
        result: list[FolderRow] = []

        def visit(parent_id: int) -> None:
            for child in by_parent.get(parent_id, []):
                result.append(child)
                if deep:
                    visit(child.id)

        visit(folder.id)
        return result

    def create_folder(self, parent: FolderRow, name: str, folder_class: str | None) -> FolderRow:
        try:
            with self._tx() as db:
                cursor = db.execute(
                    "INSERT INTO folders(mailbox_id, parent_id, name, folder_class) VALUES (?, ?, "
                    "?, ?)",
                    (parent.mailbox_id, parent.id, name, folder_class),
                )
                folder_id = _rowid(cursor)
        except sqlite3.IntegrityError as e:
            raise FolderExistsError(name) from e
        created = self.folder(folder_id)
        assert created is not None
        return created

    def folder_counts(self, folder_id: int) -> tuple[int, int, int]:
        """(total items, unread items, child folders)."""
        with self._lock:
            total, unread = self._db.execute(
                "SELECT count(*), coalesce(sum(1 - is_read), 0) FROM items WHERE folder_id = ?",
                (folder_id,),
            ).fetchone()
            children = self._db.execute(
                "SELECT count(*) FROM folders WHERE parent_id = ?", (folder_id,)
            ).fetchone()[0]
        return int(total), int(unread), int(children)

    # --- items -----------------------------------------------------------------------------

    def insert_items(self, mailbox_id: int, items: Sequence[NewItem]) -> list[int]:
        ids: list[int] = []
        with self._tx() as db:
            for item in items:
                cursor = db.execute(
                    "INSERT INTO items(mailbox_id, folder_id, item_class, subject, mime, size,"
                    " has_attachments, is_read, message_flags, categories, received, sent, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        mailbox_id,
                        item.folder_id,
                        item.item_class,
                        item.subject,
                        item.mime,
                        item.size or len(item.mime),
                        int(item.has_attachments),
                        int(item.is_read),
                        item.message_flags,
                        json.dumps(item.categories),
                        item.received,
                        item.sent,
                        item.created,
                    ),
                )
                item_id = _rowid(cursor)
                ids.append(item_id)
                if item.props:
                    db.executemany(
                        "INSERT OR REPLACE INTO item_props(item_id, key, type, value, folded)"
                        " VALUES (?, ?, ?, ?, ?)",
                        [(item_id, p.key, p.type, p.value, p.value.casefold()) for p in item.props],
                    )
        return ids

    def mailbox_size(self, mailbox_id: int) -> int:
        """The size of the mailbox's items (what a quota is measured against)."""
        with self._lock:
            row = self._db.execute(
                "SELECT coalesce(sum(size), 0) FROM items WHERE mailbox_id = ?", (mailbox_id,)
            ).fetchone()
        return int(row[0])

    def find_item_ids(
        self, folder_id: int, where: str, params: Sequence[object], offset: int, limit: int | None
    ) -> tuple[int, list[int]]:
        """(total matching, ids of the page) newest first, as Exchange lists a mail folder."""
        base = f"FROM items WHERE folder_id = ? AND ({where})"
        args = (folder_id, *params)
        with self._lock:
            total = int(self._db.execute(f"SELECT count(*) {base}", args).fetchone()[0])
            rows = self._db.execute(
                f"SELECT id {base} ORDER BY received DESC, id DESC LIMIT ? OFFSET ?",
                (*args, -1 if limit is None else limit, offset),
            ).fetchall()
        return total, [int(r[0]) for r in rows]

    def items_by_id(self, ids: Sequence[int], with_mime: bool) -> dict[int, ItemRow]:
        if not ids:
            return {}
        columns = _ITEM_COLUMNS + (", mime" if with_mime else "")
        found: dict[int, ItemRow] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                    f"SELECT {columns} FROM items WHERE id IN ({marks})", chunk
                ):
                    found[int(row[0])] = _item_row(row, bytes(row[14]) if with_mime else None)
        return found

    def props_by_item(self, ids: Sequence[int]) -> dict[int, dict[str, PropValue]]:
        result: dict[int, dict[str, PropValue]] = {i: {} for i in ids}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for item_id, key, ptype, value in self._db.execute(
                    f"SELECT item_id, key, type, value FROM item_props WHERE item_id IN ({marks})",
                    chunk,
                ):
                    result[int(item_id)][str(key)] = PropValue(str(key), str(ptype), str(value))
        return result

    def folder_items(self, mailbox_id: int, folder_id: int | None) -> list[int]:
        with self._lock:
            if folder_id is None:
                rows = self._db.execute(
                    "SELECT id FROM items WHERE mailbox_id = ? ORDER BY id", (mailbox_id,)
                )
            else:
                rows = self._db.execute(
                    "SELECT id FROM items WHERE mailbox_id = ? AND folder_id = ? ORDER BY id",
                    (mailbox_id, folder_id),
                )
            return [int(r[0]) for r in rows]

    def delete_items(self, ids: Sequence[int]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM item_props WHERE item_id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in ids])

    def move_items(self, ids: Sequence[int], folder_id: int) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE items SET folder_id = ?, version = version + 1 WHERE id = ?",
                [(folder_id, i) for i in ids],
            )


# --- changes to existing items (UpdateItem, MoveItem, DeleteItem: see changes.py) ----------


def _copy_item(db: sqlite3.Connection, item_id: int, folder_id: int) -> int:
    """A new row (a new item id, as Exchange gives a moved item) with the item's content and
    properties in `folder_id`; the old row is removed."""
    cursor = db.execute(
        "INSERT INTO items(mailbox_id, folder_id, item_class, subject, mime, size, is_read,"
        " message_flags, categories, received, sent, created, version)"
        " SELECT mailbox_id, ?, item_class, subject, mime, size, is_read, message_flags,"
        " categories, received, sent, created, version + 1 FROM items WHERE id = ?",
        (folder_id, item_id),
    )
    new_id = _rowid(cursor)
    db.execute(
        "INSERT INTO item_props(item_id, key, type, value, folded)"
        " SELECT ?, key, type, value, folded FROM item_props WHERE item_id = ?",
        (new_id, item_id),
    )
    db.execute("DELETE FROM item_props WHERE item_id = ?", (item_id,))
    db.execute("DELETE FROM items WHERE id = ?", (item_id,))
    return new_id


def relocate_items(store: Store, ids: Sequence[int], folder_id: int) -> dict[int, int]:
    """Move items to another folder under new ids (old id -> new id), in one transaction."""
    with store._tx() as db:
        return {item_id: _copy_item(db, item_id, folder_id) for item_id in ids}


def update_item(
    store: Store,
    item_id: int,
    *,
    is_read: bool | None,
    categories: list[str] | None,
    set_props: Sequence[PropValue],
    delete_props: Sequence[str],
) -> int:
    """Apply an UpdateItem's changes to one item; returns its new version."""
    with store._tx() as db:
        if is_read is not None:
            db.execute(
                "UPDATE items SET is_read = ?, message_flags = (message_flags & ~1) | ? WHERE id "
                "= ?",
                (int(is_read), int(is_read), item_id),
            )
        if categories is not None:
            db.execute(
                "UPDATE items SET categories = ? WHERE id = ?", (json.dumps(categories), item_id)
            )
        db.executemany(
            "DELETE FROM item_props WHERE item_id = ? AND key = ?",
            [(item_id, k) for k in delete_props],
        )
        db.executemany(
            "INSERT OR REPLACE INTO item_props(item_id, key, type, value, folded) VALUES (?, ?, "
            "?, ?, ?)",
            [(item_id, p.key, p.type, p.value, p.value.casefold()) for p in set_props],
        )
        db.execute("UPDATE items SET version = version + 1 WHERE id = ?", (item_id,))
        return int(db.execute("SELECT version FROM items WHERE id = ?", (item_id,)).fetchone()[0])


def ensure_distinguished(
    store: Store,
    mailbox_id: int,
    distinguished: str,
    name: str,
    parent_id: int,
    folder_class: str | None,
) -> FolderRow:
    """A well-known folder the simulator creates when first needed (Recoverable Items)."""
    found = store.distinguished_folder(mailbox_id, distinguished)
    if found is not None:
        return found
    with store._tx() as db:
        db.execute(
            "INSERT OR IGNORE INTO folders(mailbox_id, parent_id, name, folder_class, "
            "distinguished)"
            " VALUES (?, ?, ?, ?, ?)",
            (mailbox_id, parent_id, name, folder_class, distinguished),
        )
    created = store.distinguished_folder(mailbox_id, distinguished)
    assert created is not None
    return created


def change_folder(
    store: Store, folder_id: int, *, name: str | None = None, parent_id: int | None = None
) -> FolderRow:
    """Rename a folder or move it below another one (UpdateFolder, MoveFolder); its id stays.
    FolderExistsError when a sibling there already has that name (ignoring case)."""
    try:
        with store._tx() as db:
            if name is not None:
                db.execute(
                    "UPDATE folders SET name = ?, version = version + 1 WHERE id = ?",
                    (name, folder_id),
                )
            if parent_id is not None:
                db.execute(
                    "UPDATE folders SET parent_id = ?, version = version + 1 WHERE id = ?",
                    (parent_id, folder_id),
                )
    except sqlite3.IntegrityError as e:
        raise FolderExistsError(name or "") from e
    changed = store.folder(folder_id)
    assert changed is not None
    return changed
