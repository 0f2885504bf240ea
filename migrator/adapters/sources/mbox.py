"""mbox spools and folders (mboxo, mboxrd, mboxcl, mboxcl2), streamed with bounded memory.

Folders: the account's spool file is INBOX; an optional folders directory holds further mbox
files (subdirectories are nested folders; names may be modified UTF-7 as Dovecot writes them).

Key of a message: "<20 hex of sha256(From_ line + header block without Status, X-Status,
X-Keywords, X-UID, X-IMAP*, Content-Length, Lines, X-Mozilla-*)>-<n>", n counting earlier
messages of the folder with the same hash (so byte-identical copies get -0, -1 ...). Unlike a
byte offset, this survives what mail readers do to a spool: rewrite Status headers on a flag
change (which shifts every later offset), delete messages, compact, and of course append.

Rewrites under us: a pass indexes the file up to the size it had when the pass began; if the
file then turns out to have been replaced, truncated, or changed other than by appending whole
messages, the index is thrown away and the pass restarts (up to 3 times; then the folder
yields one SkippedMessage "folder/" with reason "changed"). Records are only handed out from a pass
that held still. A record opened later
checks its From_ line is still at its offset and its end still before the next From_ line; if
not, the folder is re-indexed and the message found again by key (SourceError "vanished" when
it is gone)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import stat as statmod
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO, cast

from migrator.adapters.sources import utf7
from migrator.adapters.sources.base import Listing, SourceBase
from migrator.adapters.sources.mbox_index import BLOCK, VARIANTS, Entry, Indexer
from migrator.adapters.sources.nofollow import (
    NotRegularFile,
    is_link_error,
    link_note,
    open_dir_at,
    open_dirs_at,
    open_file_at,
    open_parent,
)
from migrator.adapters.sources.roles import role_from_name
from migrator.model.errors import SourceError
from migrator.model.mail import FolderInfo, FolderRole, MessageRecord, SkippedMessage
from migrator.model.reasons import Reason

PASS_ATTEMPTS = 3
FOLDER_KEY = "folder/"  # the key of a SkippedMessage that stands for a whole folder file
_UNQUOTE = {
    "rd": re.compile(rb"^>(>*From )", re.M),
    "o": re.compile(rb"^>(From )", re.M),
}
_IGNORED_PREFIXES = (".", "dovecot", "courierimap")


@dataclass(frozen=True)
class _Snapshot:
    ino: int
    size: int
    mtime_ns: int


def _snapshot(st: os.stat_result) -> _Snapshot:
    return _Snapshot(st.st_ino, st.st_size, st.st_mtime_ns)


class MboxSource(SourceBase):
    def __init__(
        self, spool: str, *, folders_dir: str | None = None, variant: str = "auto"
    ) -> None:
        if variant not in VARIANTS:
            raise SourceError(
                f"unknown mbox variant {variant!r}",
                reason=Reason.CONFIG,
                hint=f"set [source] mbox_variant to one of {', '.join(VARIANTS)}",
            )
        self.spool = spool
        self.folders_dir = folders_dir
        self.variant = variant
        self._cache: dict[str, tuple[_Snapshot, list[Entry], int]] = {}
        self._unread: list[SkippedMessage] | None = None  # links in the folders directory
        self._spool_name = os.path.basename(os.path.normpath(spool))
        self._spool_fd = self._folders_fd = -1
        # the spool's directory and the folders directory, reached without following links
        # (see nofollow.py); every folder file is opened relative to them
        try:
            st = os.stat(self._spool_name, dir_fd=self._spool_dir, follow_symlinks=False)
        except OSError as exc:
            self.close()
            raise _mailbox_error("mbox spool", spool, exc) from exc
        if statmod.S_ISLNK(st.st_mode):
            self.close()
            raise _mailbox_error("mbox spool", spool, OSError(errno.ELOOP, "symbolic link"))
        if not statmod.S_ISREG(st.st_mode):
            self.close()
            raise _mailbox_error("mbox spool", spool, FileNotFoundError(errno.ENOENT, "not a file"))
        self._spool_id = (st.st_dev, st.st_ino)
        if folders_dir is not None:
            try:
                self._folders_fd = self._folders_dir_fd  # refused now, not at the first folder
            except OSError as exc:
                self.close()
                raise _mailbox_error("mbox folders directory", folders_dir, exc) from exc

    @property
    def _spool_dir(self) -> int:
        """The spool's directory (search only); opened again when a record is read after the
        source was closed."""
        if self._spool_fd < 0:
            try:
                self._spool_fd, self._spool_name = open_parent(self.spool)
            except OSError as exc:
                raise _mailbox_error("mbox spool", self.spool, exc) from exc
        return self._spool_fd

    @property
    def _folders_dir_fd(self) -> int:
        if self._folders_fd < 0:
            assert self.folders_dir is not None
            parent, name = open_parent(self.folders_dir)
            try:
                self._folders_fd = open_dir_at(parent, name)
            finally:
                os.close(parent)
        return self._folders_fd

    def close(self) -> None:
        for fd in (self._spool_fd, self._folders_fd):
            if fd >= 0:
                os.close(fd)
        self._spool_fd = self._folders_fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------ folders

    def _path(self, native: str) -> str:
        if native == "":
            return self.spool
        assert self.folders_dir is not None
        return os.path.join(self.folders_dir, native)

    def _open_file(self, native: str) -> int:
        """The folder file, opened without following links (see nofollow.py)."""
        if native == "":
            return open_file_at(self._spool_dir, self._spool_name)
        *dirs, name = native.split("/")
        if not dirs:
            return open_file_at(self._folders_dir_fd, name)
        dir_fd = open_dirs_at(self._folders_dir_fd, dirs, search_only=True)
        try:
            return open_file_at(dir_fd, name)
        finally:
            os.close(dir_fd)

    def _lstat(self, native: str) -> os.stat_result:
        """The folder file's own status (a link's, not its target's)."""
        if native == "":
            return os.stat(self._spool_name, dir_fd=self._spool_dir, follow_symlinks=False)
        *dirs, name = native.split("/")
        if not dirs:
            return os.stat(name, dir_fd=self._folders_dir_fd, follow_symlinks=False)
        dir_fd = open_dirs_at(self._folders_dir_fd, dirs, search_only=True)
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        finally:
            os.close(dir_fd)

    def _folder_files(self) -> tuple[list[tuple[str, tuple[str, ...]]], list[SkippedMessage]]:
        """The folder files below the folders directory, and its links (never followed)."""
        found: list[tuple[str, tuple[str, ...]]] = []
        unread: list[SkippedMessage] = []
        if self.folders_dir is None:
            return found, unread
        base = self.folders_dir

        def walk(dir_fd: int, rel: list[str]) -> None:
            try:
                with os.scandir(dir_fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                where = "/".join(rel)
                unread.append(
                    SkippedMessage(
                        f"./{where}/",
                        Reason.UNREADABLE,
                        f"{os.path.join(base, where)} cannot be listed: {exc.strerror or exc}",
                    )
                )
                return
            for e in entries:
                if e.name.startswith(_IGNORED_PREFIXES):
                    continue
                sub = [*rel, e.name]
                where = "/".join(sub)
                if e.is_symlink():
                    if not rel and e.name.upper() == "INBOX":
                        continue  # the spool is INBOX (often what such a link points at)
                    unread.append(
                        SkippedMessage(
                            f"./{where}/",
                            Reason.SYMLINK,
                            f"{os.path.join(base, where)} is {link_note(dir_fd, e.name)}: not "
                            "followed",
                        )
                    )
                elif e.is_dir(follow_symlinks=False):
                    if len(sub) > 64:
                        continue
                    try:
                        child = open_dir_at(dir_fd, e.name)
                    except OSError as exc:
                        what = (
                            "is a symbolic link: not followed"
                            if is_link_error(exc)
                            else f"cannot be listed: {exc.strerror or exc}"
                        )
                        unread.append(
                            SkippedMessage(
                                f"./{where}/",
                                Reason.SYMLINK if is_link_error(exc) else Reason.UNREADABLE,
                                f"{os.path.join(base, where)} {what}",
                            )
                        )
                        continue
                    try:
                        walk(child, sub)
                    finally:
                        os.close(child)
                elif e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    if (st.st_dev, st.st_ino) == self._spool_id:
                        continue  # the spool itself, kept among the folders by some setups
                    display = tuple(utf7.decode_lenient(n) for n in sub)
                    if len(display) == 1 and display[0].upper() == "INBOX":
                        continue  # the spool is INBOX; a stray "inbox" file is not a second one
                    found.append((where, display))

        walk(self._folders_dir_fd, [])
        return found, unread

    def folders(self) -> list[FolderInfo]:
        files, self._unread = self._folder_files()
        inbox = self._info(("INBOX",), "")
        assert inbox is not None
        if self._unread:
            inbox = replace(
                inbox,
                message_count=(inbox.message_count or 0) + len(self._unread),
                problems=(*inbox.problems, *(s.detail for s in self._unread)),
            )
        result = [inbox]
        for native, display in files:
            info = self._info(display, native)
            if info is not None:
                result.append(info)
        result[1:] = sorted(result[1:], key=lambda f: f.path)
        return result

    def _info(self, path: tuple[str, ...], native: str) -> FolderInfo | None:
        """The folder, or None for a file in the folders directory that is not an mbox (it
        does not start with a From_ line: notes, exports, index files of other programs)."""
        problems: list[str] = []
        count = total = 0
        try:
            entries, garbage = self._index(native)
            count, total = len(entries), sum(e.size for e in entries)
            if native and garbage:
                return None
            if garbage:
                problems.append(f"{garbage} bytes before the first From_ line are not a message")
        except SourceError as exc:
            problems.append(exc.message)
        role = FolderRole.INBOX if native == "" else role_from_name(path)
        return FolderInfo(
            path=path,
            role=role,
            native=native,
            message_count=count,
            byte_total=total,
            problems=tuple(problems),
        )

    # ------------------------------------------------------------------ indexing

    def _index(self, native: str) -> tuple[list[Entry], int]:
        """A consistent index of one folder file, from cache when the file did not change."""
        path = self._path(native)
        try:
            st = self._lstat(native)
        except FileNotFoundError:
            return [], 0  # a folder deleted since listing holds nothing any more
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        if statmod.S_ISLNK(st.st_mode):
            raise _unreadable(path, OSError(errno.ELOOP, os.strerror(errno.ELOOP)))
        current = _snapshot(st)
        cached = self._cache.get(native)
        if cached is not None and cached[0] == current:
            return cached[1], cached[2]
        for _ in range(PASS_ATTEMPTS):
            try:
                result = self._one_pass(path, native)
            except FileNotFoundError:
                return [], 0  # deleted while the pass ran: it holds nothing any more
            if result is not None:
                snap, entries, garbage = result
                self._cache[native] = (snap, entries, garbage)
                return entries, garbage
        raise SourceError(
            f"{path} kept changing while it was read ({PASS_ATTEMPTS} attempts)",
            reason=Reason.CHANGED,
            hint="a mail client or delivery is rewriting the spool; run again later",
        )

    def _one_pass(self, path: str, native: str) -> tuple[_Snapshot, list[Entry], int] | None:
        try:
            fd = self._open_file(native)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(path) from None
        except NotRegularFile as exc:
            raise SourceError(f"{path} is not a regular file", reason=Reason.UNREADABLE) from exc
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        try:
            before = _snapshot(os.fstat(fd))
            indexer = Indexer(fd, before.size, self.variant)
            try:
                entries = indexer.entries(strict=bool(native))
            except OSError as exc:
                raise _unreadable(path, exc) from exc
            try:
                after = _snapshot(self._lstat(native))
            except OSError:
                return None  # gone (or its directory swapped) since: a new pass says how
            if after == before:
                return before, entries, indexer.leading_garbage
            if after.ino != before.ino or after.size < before.size:
                return None  # replaced or truncated: the pass saw a file that is gone
            # grown: fine when whole messages were appended after the size we indexed
            if entries and os.pread(fd, 5, before.size) != b"From ":
                entries.pop()  # the last message was still being delivered; next pass has it
            if (
                entries
                and os.pread(fd, len(entries[0].from_line), entries[0].from_offset)
                != entries[0].from_line
            ):
                return None
            return before, entries, indexer.leading_garbage
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ messages

    def messages(
        self, folder: FolderInfo, *, known: Collection[str] = (), since: str | None = None
    ) -> Listing:
        """Records of the folder, in file order. Every message comes as a record, `known` or
        not: finding a message's flags means scanning its headers anyway (the caller tells the
        known ones by key). A file that cannot be read as a whole comes as one SkippedMessage
        FOLDER_KEY."""
        return Listing(self._entries(folder), whole=(FOLDER_KEY,))

    def _entries(self, folder: FolderInfo) -> Iterator[MessageRecord | SkippedMessage]:
        if folder.native == "":
            # INBOX's listing also carries what the folders directory holds but is not read
            if self._unread is None:
                self._unread = self._folder_files()[1]
            yield from self._unread
        try:
            entries, garbage = self._index(folder.native)
        except SourceError as exc:
            # the whole file (unreadable, or rewritten on every attempt): one skipped item
            # standing for the folder, so the account goes on with its other folders
            yield SkippedMessage(FOLDER_KEY, exc.reason, exc.message)
            return
        if garbage:
            yield SkippedMessage(
                "offset-0",
                Reason.NOT_MAIL,
                f"{self._path(folder.native)}: {garbage} bytes before the first From_ line",
            )
        for entry in entries:
            if entry.size == 0:  # two From_ lines with nothing but the separator between them
                yield SkippedMessage(
                    entry.key,
                    Reason.EMPTY,
                    f"{self._path(folder.native)}: the message at byte {entry.from_offset} is "
                    "empty",
                )
                continue
            yield MessageRecord(
                key=entry.key,
                size=entry.size,
                flags=entry.flags,
                internal_date=entry.date,
                open=_Opener(self, folder.native, entry),
                extra={"offset": str(entry.from_offset)},
            )

    def open_entry(self, native: str, entry: Entry) -> BinaryIO:
        path = self._path(native)
        for attempt in range(2):
            try:
                fh = os.fdopen(self._open_file(native), "rb")  # handed to the stream
            except FileNotFoundError:
                break
            except NotRegularFile as exc:
                raise SourceError(
                    f"{path} is not a regular file", reason=Reason.UNREADABLE
                ) from exc
            except OSError as exc:
                raise _unreadable(path, exc) from exc
            if _still_there(fh, entry):
                return cast(
                    BinaryIO, _UnquotingStream(fh, entry.start, entry.end, entry.quoting, path)
                )
            fh.close()
            if attempt == 0:  # rewritten since listing: find the message again by key
                self._cache.pop(native, None)
                again = {e.key: e for e in self._index(native)[0]}.get(entry.key)
                if again is None:
                    break
                entry = again
        raise SourceError(
            f"message {entry.key} is no longer in {path} (the spool was rewritten since listing)",
            reason=Reason.VANISHED,
            hint="nothing to do: the next pass lists the folder again",
        )


class _Opener:
    __slots__ = ("source", "native", "entry")

    def __init__(self, source: MboxSource, native: str, entry: Entry) -> None:
        self.source, self.native, self.entry = source, native, entry

    def __call__(self) -> BinaryIO:
        return self.source.open_entry(self.native, self.entry)


class _UnquotingStream(io.RawIOBase):
    """The bytes of [start, end) of an mbox file with From_ quoting undone, block by block."""

    def __init__(self, fh: BinaryIO, start: int, end: int, quoting: str, path: str) -> None:
        super().__init__()
        self._fh, self._pos, self._end, self._path = fh, start, end, path
        self._unquote = _UNQUOTE.get(quoting)
        self._out = b""
        self._off = 0
        self._at_line_start = True

    def readable(self) -> bool:
        return True

    def _refill(self) -> None:
        self._fh.seek(self._pos)
        data = self._fh.read(min(BLOCK, self._end - self._pos))
        if not data:
            raise SourceError(
                f"{self._path} became shorter while a message was read",
                reason=Reason.CHANGED,
                hint="the spool was rewritten; run again to resume",
            )
        if self._unquote is not None and self._pos + len(data) < self._end:
            cut = data.rfind(b"\n") + 1
            if cut:  # keep whole lines together so a quote never straddles two blocks
                data = data[:cut]
        self._pos += len(data)
        if self._unquote is not None:
            head = b""
            if not self._at_line_start:
                nl = data.find(b"\n") + 1 or len(data)
                head, data = data[:nl], data[nl:]
            self._at_line_start = (head + data).endswith(b"\n")
            if b">From " in data:  # fast path: most blocks hold no quoted line at all
                data = self._unquote.sub(rb"\1", data)
            data = head + data
        self._out, self._off = data, 0

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._off >= len(self._out):
            if self._pos >= self._end:
                return 0
            self._refill()
        n = min(len(buffer), len(self._out) - self._off)
        buffer[:n] = self._out[self._off : self._off + n]
        self._off += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def _still_there(fh: BinaryIO, entry: Entry) -> bool:
    """Whether the message still sits where the index put it: its From_ line at its offset,
    and at its end what the index found there (the next From_ line, the separator before it,
    or the end of the file). A rewrite of an earlier message moves the From_ line; a rewrite of
    this message's own Status header moves its end."""
    fh.seek(entry.from_offset)
    if fh.read(len(entry.from_line)) != entry.from_line:
        return False
    fh.seek(entry.end)
    after = fh.read(6)
    return after in (b"", b"\n") or after.startswith((b"From ", b"\nFrom"))


def _unreadable(path: str, exc: OSError) -> SourceError:
    if is_link_error(exc):
        return SourceError(
            f"{path} is a symbolic link (or reached through one): not followed",
            reason=Reason.SYMLINK,
            hint="links inside a mailbox are never followed (a user could point one at any"
            " file); replace the link by the real file, then run again",
        )
    return SourceError(
        f"cannot read {path}: {exc.strerror or exc}",
        reason=Reason.UNREADABLE,
        hint="give the migrator user read access to the spool (e.g. the mail group)",
    )


def _mailbox_error(what: str, path: str, exc: OSError) -> SourceError:
    if is_link_error(exc):
        return SourceError(
            f"the {what} path {path} passes through a symbolic link (not followed)",
            reason=Reason.SYMLINK,
            hint="discovery recorded this path with its links resolved, so a link appeared in it"
            " since: if it is legitimate (the mail moved to other storage), run `migrator"
            " discover` again; if not, someone redirected this mailbox",
        )
    if what == "mbox spool":
        return SourceError(
            f"no mbox spool at {path}",
            reason=Reason.NO_MAILBOX,
            hint="check the account's [source] path template (e.g. /var/mail/{uid}) and that"
            " the file exists and is readable by the migrator user",
        )
    return SourceError(
        f"no mbox folders directory at {path}",
        reason=Reason.NO_MAILBOX,
        hint="check [source] folders_path; leave it out when accounts have only a spool",
    )
