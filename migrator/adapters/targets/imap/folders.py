"""Folders of one target mailbox over IMAP: namespace, separator, roles, creation.

Names on the wire are modified UTF-7 (RFC 3501 5.1.3) built from the display names the shared
naming rules produce. The hierarchy separator is the server's (from NAMESPACE, else LIST); a
separator character inside one display name becomes "_" so it cannot split the name.
Well-known folders are found by SPECIAL-USE flags (RFC 6154), then by the usual names, and
created with the server flavour's usual name when missing.
"""

from __future__ import annotations

import contextlib
import threading

from imapclient.exceptions import IMAPClientError

from migrator.adapters.sources import utf7
from migrator.model.mail import FolderRole

from ..naming import TargetPath
from .connection import Session

ROLE_FLAGS = {
    FolderRole.SENT: b"\\SENT",
    FolderRole.DRAFTS: b"\\DRAFTS",
    FolderRole.TRASH: b"\\TRASH",
    FolderRole.JUNK: b"\\JUNK",
}
# names clients commonly give these folders, tried (case-insensitively) when no folder carries
# the SPECIAL-USE flag
ROLE_NAMES = {
    FolderRole.SENT: ("Sent", "Sent Items", "Sent Messages", "Sent Mail"),
    FolderRole.DRAFTS: ("Drafts", "Draft"),
    FolderRole.TRASH: ("Trash", "Deleted Items", "Deleted Messages", "Deleted"),
    FolderRole.JUNK: ("Junk", "Junk Email", "Junk E-mail", "Spam"),
}
GENERIC_NAMES = {
    FolderRole.SENT: "Sent",
    FolderRole.DRAFTS: "Drafts",
    FolderRole.TRASH: "Trash",
    FolderRole.JUNK: "Junk",
}
EXCHANGE_NAMES = {
    FolderRole.SENT: "Sent Items",
    FolderRole.DRAFTS: "Drafts",
    FolderRole.TRASH: "Deleted Items",
    FolderRole.JUNK: "Junk Email",
}
# Exchange Online reserves the top-level name "Files" (its attachments view)
EXCHANGE_RESERVED = {"files": "Files (migrated)"}
SEPARATOR_STANDIN = "_"


def _already_exists(exc: Exception) -> bool:
    text = str(exc).upper()
    return "ALREADYEXISTS" in text or "ALREADY EXISTS" in text


class MailboxFolders:
    """What we know of one mailbox's folders. Thread-safe; refreshed from the server on load."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded = False
        self.separator = "/"
        self.prefix = ""
        self.exchange = False
        self.existing: dict[str, tuple[bytes, ...]] = {}  # wire name -> LIST flags
        self.roles: dict[FolderRole, str] = {}
        self.role_paths: dict[tuple[str, ...], FolderRole] = {}

    def load(self, session: Session) -> None:
        client = session.client
        self.exchange = session.exchange
        separator: str | None = None
        if session.has("NAMESPACE"):
            personal = client.namespace().personal
            if personal:
                prefix, sep = personal[0]
                self.prefix = _text(prefix)
                separator = _text(sep) if sep else None
        listing = client.list_folders("", "*")
        self.existing = {}
        for flags, sep, name in listing:
            self.existing[_text(name)] = tuple(f.upper() for f in flags)
            if separator is None and sep:
                separator = _text(sep)
        self.separator = separator or "/"
        self.loaded = True

    # -- names -------------------------------------------------------------------------------
    def wire_name(self, parent: str | None, name: str) -> str:
        """The full wire name of display name `name` below wire name `parent` (None: top)."""
        name = name.replace(self.separator, SEPARATOR_STANDIN)
        if parent is None and self.exchange:
            name = EXCHANGE_RESERVED.get(name.casefold(), name)
        encoded = utf7.encode(name)
        if parent is None:
            return self.prefix + encoded
        return parent + self.separator + encoded

    def _lookup(self, wire: str) -> str | None:
        if wire in self.existing:
            return wire
        if self.exchange or wire.upper() == "INBOX":  # Exchange compares names ignoring case
            folded = wire.casefold()
            for name in self.existing:
                if name.casefold() == folded:
                    return name
        return None

    # -- roles ----------------------------------------------------------------------------------
    def anchor(self, session: Session, role: FolderRole | None) -> str | None:
        """The wire name of a well-known folder (created when missing); None for the top."""
        if role is None:
            return None
        if role is FolderRole.INBOX:
            return "INBOX"
        known = self.roles.get(role)
        if known is not None:
            return known
        flag = ROLE_FLAGS.get(role)
        found = next((n for n, flags in self.existing.items() if flag in flags), None)
        if found is None:
            for candidate in ROLE_NAMES.get(role, ()):
                found = self._lookup(self.prefix + utf7.encode(candidate))
                if found is not None:
                    break
        if found is None:
            names = EXCHANGE_NAMES if self.exchange else GENERIC_NAMES
            found = self.create(session, self.prefix + utf7.encode(names[role]))
        self.roles[role] = found
        return found

    def ensure(self, session: Session, target: TargetPath) -> tuple[str, bool]:
        """The wire name of `target`, creating each missing level (and subscribing to it);
        and whether this call created it (then it is empty)."""
        current = self.anchor(session, target.anchor)
        created = False
        for name in target.names:
            wire = self.wire_name(current, name)
            current = self._lookup(wire)
            created = current is None
            if current is None:
                current, created = wire, self._create(session, wire)
        if current is None:  # the top of the mailbox itself is no folder: use the inbox
            return "INBOX", False
        return current, created

    def create(self, session: Session, wire: str) -> str:
        self._create(session, wire)
        return wire

    def _create(self, session: Session, wire: str) -> bool:
        """CREATE and SUBSCRIBE `wire`; False when it existed after all."""
        client = session.client
        made = True
        try:
            client.create_folder(wire)
        except IMAPClientError as exc:
            if not _already_exists(exc):
                raise
            made = False
        # a server without subscriptions still stores mail; nothing to fix then
        with contextlib.suppress(IMAPClientError):
            client.subscribe_folder(wire)
        self.existing.setdefault(wire, ())
        return made


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value
