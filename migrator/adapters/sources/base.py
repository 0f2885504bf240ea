"""The source contract every mailbox reader (Maildir, mbox, IMAP) fulfils.

The engine only ever talks to a `Source`: it lists folders, iterates a folder's `Listing` and
opens raw bytes through its records. Implementations translate their own failures into
`SourceError` with a stable `reason` code, so the engine never sees OSError or library
exceptions. What a source can do besides the contract is declared by the Protocols at the end
(`Renumbers`), checked with isinstance.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from migrator.model.mail import FolderInfo, KnownMessage, MessageRecord, SkippedMessage

# The start of a message (see looks_like_mail), as one pattern: an optional byte order mark, an
# optional From_ line, then a header field name (printable ASCII but ':', 8-bit bytes tolerated
# as some writers put them there, optional blanks as RFC 5322's obsolete syntax allows, the
# colon), a folded line or a line end; \Z: what was looked at ended first.
_MAIL_START = re.compile(
    rb"(?:\xef\xbb\xbf)?(?:>*From [^\n]*(?:\n|\Z))?(?:\Z|[\r\n \t]|[!-9;-~\x80-\xff]+[ \t]*:)"
)
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


Listed = MessageRecord | SkippedMessage | KnownMessage


class Listing(Iterator[Listed]):
    """One folder's listing, as `Source.messages()` gives it: an iterator over its entries, to
    be read once, which keeps what it learned on the way. Read those once it is exhausted:

    - `known_seen`: keys of `known` listed as KnownMessage (neither stat'ed nor fetched);
    - `partial`: the listing missed a whole directory or file of the folder (an entry whose key
      is one of the source's `whole` keys stands for it), so none of the folder's messages that
      it did not list may be taken as gone;
    - `bytes`: the sizes of the messages listed as records, summed; None when a message came
      without its size (a KnownMessage).
    """

    def __init__(self, entries: Iterable[Listed], *, whole: Collection[str] = ()) -> None:
        self.known_seen = 0
        self.partial = False
        self.bytes: int | None = 0
        self._follow = self._following(entries, whole)

    def _following(self, entries: Iterable[Listed], whole: Collection[str]) -> Iterator[Listed]:
        # a generator, and the counts kept in locals: a delta pass lists a million entries
        # through here, and a method call per entry cost twice as much
        known = total = 0
        partial = False
        try:
            for entry in entries:
                if type(entry) is MessageRecord:
                    total += entry.size
                elif type(entry) is KnownMessage:
                    known += 1
                if entry.key in whole:
                    partial = True
                yield entry
        finally:
            self.known_seen, self.partial = known, partial
            self.bytes = None if known else total

    def __iter__(self) -> Iterator[Listed]:
        return self._follow  # iterated directly: no call of ours per entry

    def __next__(self) -> Listed:
        return next(self._follow)


@runtime_checkable
class Source(Protocol):
    """One account's mailbox, opened for reading.

    - `folders()` lists every selectable folder with its decoded display path, role and (where
      the format allows it without reading bodies) message count and byte total.
    - `messages(folder)` lists one entry per message, in a stable order, never holding a whole
      folder's or a whole message's bytes; files that cannot be offered come as SkippedMessage.
      Keys in `known` (migrated already, says the caller) may come as KnownMessage, key and
      flags only (Maildir, IMAP); a source that must read them anyway (mbox) gives them as
      records. `since` is the folder's mark from the last pass (FolderInfo.mark): a source that
      can tell which flags changed since gives the other known messages' flags as None.
    - `MessageRecord.open()` returns a fresh binary stream of the raw bytes exactly as stored
      and raises SourceError (Reason.UNREADABLE, VANISHED, CHANGED ...) when it cannot.
    - `close()` releases connections and files; a closed source must not be used again.
    """

    def folders(self) -> list[FolderInfo]: ...

    def messages(
        self, folder: FolderInfo, *, known: Collection[str] = (), since: str | None = None
    ) -> Listing: ...

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


# --- optional capabilities ----------------------------------------------------------------------
# What a source can do besides the contract, as runtime-checkable Protocols (see
# docs/architecture.md, "Adapter capabilities"; tests/test_capabilities.py).


@runtime_checkable
class Renumbers(Protocol):
    """A source whose keys hold a number the server may reset (IMAP UIDVALIDITY): when it
    changed since the last pass, every key of the folder changed with it, and the engine
    carries what was migrated over to the new keys by each record's `extra["fingerprint"]`."""

    def uidvalidity(self, folder: FolderInfo) -> int:
        """The folder's numbering as the server states it now."""
        ...
