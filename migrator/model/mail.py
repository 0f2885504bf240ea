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

    @property
    def display(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True)
class Flags:
    seen: bool = False
    answered: bool = False
    flagged: bool = False
    deleted: bool = False
    draft: bool = False
    keywords: tuple[str, ...] = ()


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
