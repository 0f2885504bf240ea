"""The source contract every mailbox reader (Maildir, mbox, IMAP) fulfils.

The engine only ever talks to a `Source`: it lists folders, iterates message records and opens
raw bytes through them. Implementations translate their own failures into `SourceError` with a
stable `reason` code, so the engine never sees OSError or library exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from migrator.model.mail import FolderInfo, MessageRecord, SkippedMessage

# The start of a message (see looks_like_mail), as one pattern: an optional byte order mark, an
# optional From_ line, then a header field name (printable ASCII but ':', 8-bit bytes tolerated
# as some writers put them there, optional blanks as RFC 5322's obsolete syntax allows, the
# colon), a folded line or a line end; \Z: what was looked at ended first.
_MAIL_START = re.compile(
    rb"(?:\xef\xbb\xbf)?(?:>*From [^\n]*(?:\n|\Z))?(?:\Z|[\r\n \t]|[!-9;-~\x80-\xff]+[ \t]*:)")
HEAD_BYTES = 1024  # what looks_like_mail looks at


def looks_like_mail(head: bytes) -> bool:
    """Whether bytes that begin a message file begin a message: a header block, possibly empty.

    Accepted, after an optional UTF-8 byte order mark and an optional From_ line (`From ...` or
    `>From ...`, which some tools leave at the top of a Maildir file): a header field
    (`Name:`), a folded line (a header block whose first line was lost is still one), or a line
    end (an empty header block: a body only). Anything else, e.g. a PNG, a zip, an ELF binary,
    a text file without headers, is not mail. Only the first line or two of the first
    HEAD_BYTES are looked at, so this costs next to nothing per message; an empty `head` (a
    0-byte file) is left to the rule for empty messages (Reason.EMPTY)."""
    return _MAIL_START.match(head, 0, HEAD_BYTES) is not None


@runtime_checkable
class Source(Protocol):
    """One account's mailbox, opened for reading.

    - `folders()` lists every selectable folder with its decoded display path, role and (where
      the format allows it without reading bodies) message count and byte total.
    - `messages(folder)` yields one record per message, in a stable order, never holding a whole
      folder's or a whole message's bytes; files that cannot be offered come as SkippedMessage.
    - `MessageRecord.open()` returns a fresh binary stream of the raw bytes exactly as stored
      and raises SourceError (Reason.UNREADABLE, VANISHED, CHANGED ...) when it cannot.
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
