"""Folders and messages as every source yields them and every target takes them."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO


class FolderRole(enum.StrEnum):
    INBOX = "inbox"
    SENT = "sent"
    DRAFTS = "drafts"
    TRASH = "trash"
    JUNK = "junk"
    ARCHIVE = "archive"
    NONE = "none"


@dataclass(frozen=True)
class FolderInfo:
    """A source folder. `path` is the display path as a tuple of decoded Unicode names,
    e.g. ("INBOX",) or ("Projects", "Entwürfe"). `native` is the source's own name for it
    (the Maildir++ directory, the mbox file, the IMAP mailbox name) and is opaque to callers."""

    path: tuple[str, ...]
    role: FolderRole
    native: str
    message_count: int | None = None
    byte_total: int | None = None
    problems: tuple[str, ...] = ()  # folder-level problems found while listing
    # what changes whenever anything in the folder changes (an IMAP server's UIDVALIDITY and
    # HIGHESTMODSEQ with CONDSTORE), None when the source cannot tell: a folder whose mark is
    # the one of the last pass need not be listed again
    mark: str | None = None

    @property
    def display(self) -> str:
        return "/".join(self.path)


# The letters of a flags token, as Maildir writes them (see Flags.token)
_LETTERS = (("D", "draft"), ("F", "flagged"), ("R", "answered"), ("S", "seen"), ("T", "deleted"))
FORWARDED = "$Forwarded"  # the keyword IMAP clients set when a message was forwarded


@dataclass(frozen=True)
class Flags:
    seen: bool = False
    answered: bool = False
    flagged: bool = False
    deleted: bool = False
    draft: bool = False
    keywords: tuple[str, ...] = ()

    @property
    def forwarded(self) -> bool:
        return any(k.casefold() == FORWARDED.casefold() for k in self.keywords)

    def token(self) -> str:
        """The flags as one short text, the same for the same flags whatever their order:
        Maildir's letters, then each keyword after a space ("RS $Forwarded Work"). What the
        ledger keeps of the flags a message was last given in the target."""
        letters = "".join(letter for letter, name in _LETTERS if getattr(self, name))
        return letters + "".join(" " + k for k in sorted(set(self.keywords)))

    @classmethod
    def from_token(cls, token: str) -> Flags:
        letters, *keywords = token.split(" ")
        on = {name for letter, name in _LETTERS if letter in letters}
        return cls(keywords=tuple(k for k in keywords if k), **dict.fromkeys(on, True))


@dataclass
class MessageRecord:
    """One message in a source folder.

    `key` is stable across runs and flag changes, and distinct for two legitimate copies of the
    same bytes in a folder. `open` returns a binary stream of the raw bytes exactly as stored;
    the caller closes it. Records never hold the body themselves.
    """

    key: str
    size: int
    flags: Flags
    internal_date: datetime | None
    open: Callable[[], BinaryIO]
    extra: dict[str, str] = field(default_factory=dict)  # source-specific facts for reports


@dataclass(frozen=True)
class KnownMessage:
    """A message of a folder that the caller said it knows (`messages(folder, known=...)`):
    listed with what the listing gives anyway, its flags, and nothing more (no stat, no
    body). `flags` is None when the source knows the flags did not change since the folder
    mark it was given (an IMAP server with CONDSTORE)."""

    key: str
    flags: Flags | None


@dataclass(frozen=True)
class SkippedMessage:
    """A message (or file) a source found but could not offer, with the reason."""

    key: str
    reason: str  # short stable code: "unreadable", "vanished", "not-mail", ...
    detail: str


@dataclass(frozen=True)
class UploadItem:
    """One message of a chunk on its way to the target (bytes read by the engine)."""

    key: str
    data: bytes
    flags: Flags
    internal_date: datetime | None
    folder_role: FolderRole = FolderRole.NONE


@dataclass(frozen=True)
class UploadResult:
    """The target's answer for one UploadItem: exactly one of target_id / error is set.

    `error` is a TransientError (retry later, maybe with retry_after) or a PermanentError
    (reason code such as "too-large" or "rejected"), from migrator.model.errors.
    """

    key: str
    target_id: str | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
