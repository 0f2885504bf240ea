"""The source contract every mailbox reader (Maildir, mbox, IMAP) fulfils.

The engine only ever talks to a `Source`: it lists folders, iterates message records and opens
raw bytes through them. Implementations translate their own failures into `SourceError` with a
stable `reason` code, so the engine never sees OSError or library exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from migrator.model.mail import FolderInfo, MessageRecord, SkippedMessage

# Reason codes shared by all sources (SourceError.reason and SkippedMessage.reason).
NO_MAILBOX = "no-mailbox"  # the account's mailbox directory/file/login does not exist
UNREADABLE = "unreadable"  # permission denied or an I/O error on a file or directory
VANISHED = "vanished"  # the message disappeared between listing and reading
NOT_A_FILE = "not-a-file"  # a directory, FIFO, socket or dangling link where a message should be
CHANGED = "changed"  # the folder was rewritten under us and could not be read consistently
# A message of 0 bytes: a Maildir file a failed delivery left behind, two From_ lines with
# nothing between them in an mbox, the same served over IMAP. No target stores it (an IMAP
# server refuses an empty literal, Exchange has no MIME to parse), so sources report it at
# listing time, where its size is known without reading anything.
EMPTY = "empty"


@runtime_checkable
class Source(Protocol):
    """One account's mailbox, opened for reading.

    - `folders()` lists every selectable folder with its decoded display path, role and (where
      the format allows it without reading bodies) message count and byte total.
    - `messages(folder)` yields one record per message, in a stable order, never holding a whole
      folder's or a whole message's bytes; files that cannot be offered come as SkippedMessage.
    - `MessageRecord.open()` returns a fresh binary stream of the raw bytes exactly as stored
      and raises SourceError (reason UNREADABLE, VANISHED, CHANGED ...) when it cannot.
    - `close()` releases connections and files; a closed source must not be used again.
    """

    def folders(self) -> list[FolderInfo]: ...

    def messages(self, folder: FolderInfo) -> Iterator[MessageRecord | SkippedMessage]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SourceBase:
    """Shared plumbing: the context-manager half of the contract."""

    def close(self) -> None:
        """Nothing to release by default; network sources override."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
