"""Maildir trees read straight from disk: Maildir++ (`.Sub.Folder`) and Dovecot LAYOUT=fs.

Key of a message: its file name up to the info separator ':' and up to the first ',' (so
`1700000000.M5P42.host,S=612,W=630:2,RS` has key `1700000000.M5P42.host`). The unique part is
what the Maildir spec makes unique; the `:2,<flags>` info changes on every flag change (and the
file moves new/ -> cur/), and the `,S=`/`,W=`/`,U=` fields are added or rewritten by some tools
(offlineimap, mbsync), so neither belongs in a key. Listing is one scandir of new/ and cur/ and
one lstat per file (the mtime is the internal date); bodies are never opened while listing.

Nothing is read through a symbolic link (nofollow.py): a linked message, cur/, new/ or folder is
reported with reason "symlink". Every directory of the mailbox is a folder or reported (in
INBOX's listing, key "./<path>/"); a file that does not begin with a header block is refused as
"not-mail" when it is read (base.looks_like_mail). See docs/sources.md.
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

from migrator.adapters.sources import utf7
from migrator.adapters.sources.base import HEAD_BYTES, Listing, SourceBase, looks_like_mail
from migrator.adapters.sources.maildir_tree import SUBDIRS, Tree, detect_layout, survey
from migrator.adapters.sources.nofollow import (
    NotRegularFile,
    is_link_error,
    link_note,
    open_file_at,
)
from migrator.adapters.sources.roles import role_from_name
from migrator.model.errors import SourceError
from migrator.model.mail import (
    Flags,
    FolderInfo,
    FolderRole,
    KnownMessage,
    MessageRecord,
    SkippedMessage,
)
from migrator.model.reasons import Reason

LAYOUTS = ("auto", "maildir++", "fs")
# a directory last changed longer ago than this when listed can be trusted by its mtime
_SETTLED_NS = 2_000_000_000
FOLDER_KEY = "folder/"  # the key of a SkippedMessage that stands for a whole folder
# keys of skipped entries that stand for more than one message: the folder, or new/ or cur/
WHOLE_KEYS = frozenset({FOLDER_KEY, *(f"{sub}/" for sub in SUBDIRS)})

_STANDARD_FLAGS = {"S": "seen", "R": "answered", "F": "flagged", "T": "deleted", "D": "draft"}


def message_key(filename: str) -> str:
    """The stable key of a Maildir file name: its unique part, before the ",S=..." fields and
    the ":2,FLAGS" info (see module doc). The one place the rule is written."""
    base = filename.partition(":")[0]
    return base.partition(",")[0] or base


def parse_flags(filename: str, keywords: dict[str, str]) -> Flags:
    """Flags from the `:2,<letters>` info; lowercase letters are dovecot-keywords entries."""
    _, sep, info = filename.partition(":")
    if not sep or not info.startswith("2,"):
        return Flags()
    letters = info[2:]
    on = {attr for letter, attr in _STANDARD_FLAGS.items() if letter in letters}
    kws = tuple(keywords[c] for c in sorted(set(letters)) if c.islower() and c in keywords)
    return Flags(
        seen="seen" in on,
        answered="answered" in on,
        flagged="flagged" in on,
        deleted="deleted" in on,
        draft="draft" in on,
        keywords=kws,
    )


def read_keywords(folder_fd: int) -> dict[str, str]:
    """dovecot-keywords: lines "<index> <name>"; index 0 is letter a, 25 is z. The file is
    opened like a message (a link is not followed: its keywords are then not read)."""
    out: dict[str, str] = {}
    try:
        with os.fdopen(open_file_at(folder_fd, "dovecot-keywords"), "rb") as fh:
            for line in fh:
                idx, _, name = line.decode("utf-8", "replace").strip().partition(" ")
                if idx.isdigit() and int(idx) < 26 and name:
                    out[chr(ord("a") + int(idx))] = name
    except OSError:
        pass  # no keywords file (or unreadable): messages simply carry no keywords
    return out


def _decode(names: list[str], problems: list[str]) -> tuple[str, ...]:
    out = []
    for n in names:
        try:
            out.append(utf7.decode(n))
        except ValueError:
            out.append(n)
            problems.append(f"folder name {n!r} is not modified UTF-7; shown as stored on disk")
    return tuple(out)


class MaildirSource(SourceBase):
    """One account's Maildir tree (the directory holding INBOX's cur/ and new/)."""

    def __init__(self, root: str, *, layout: str = "auto") -> None:
        if layout not in LAYOUTS:
            raise SourceError(
                f"unknown Maildir layout {layout!r}",
                reason=Reason.CONFIG,
                hint=f"set [source] maildir_layout to one of {', '.join(LAYOUTS)}",
            )
        try:
            self._tree = Tree(root)
        except OSError as exc:
            raise _mailbox_error(root, exc) from exc
        self.root = root
        self.layout = detect_layout(self._tree.fd) if layout == "auto" else layout
        # (native, sub) -> (directory mtime, [(key, name)]): what folders() listed, reused by
        # messages() when the directory has not changed since (see _settled_listing)
        self._listings: dict[tuple[str, str], tuple[int, list[tuple[str, str]]]] = {}
        # directories of the mailbox that are not read, reported in INBOX's listing
        self._unread: list[SkippedMessage] | None = None

    def close(self) -> None:
        self._tree.close()

    def _fdir(self, native: str) -> str:
        return os.path.join(self.root, native) if native else self.root

    # ------------------------------------------------------------------ folders

    def folders(self) -> list[FolderInfo]:
        natives, self._unread = survey(self._tree.fd, self.root, self.layout)
        inbox = self._info(("INBOX",), "", [s.detail for s in self._unread])
        if self._unread:
            inbox = replace(inbox, message_count=(inbox.message_count or 0) + len(self._unread))
        result = [inbox]
        for native, parts in natives:
            problems: list[str] = []
            path = _decode(list(parts), problems) if parts else (native,)
            if path[0].upper() == "INBOX" and len(path) == 1:
                # ".INBOX" beside the real INBOX is the folder a Courier-style client shows as
                # INBOX/INBOX: its own folder below the inbox, never merged into the inbox
                # (it is often an old copy of it, which would double every message)
                path = ("INBOX", path[0])
            result.append(self._info(path, native, problems))
        result[1:] = sorted(result[1:], key=lambda f: f.path)
        return result

    def _info(self, path: tuple[str, ...], native: str, problems: list[str]) -> FolderInfo:
        count, total = self._count(native, problems)
        role = FolderRole.INBOX if path == ("INBOX",) and not native else role_from_name(path)
        return FolderInfo(
            path=path,
            role=role,
            native=native,
            message_count=count,
            byte_total=total,
            problems=tuple(problems),
        )

    # ------------------------------------------------------------------ messages

    def _count(self, native: str, problems: list[str]) -> tuple[int, int | None]:
        """Messages in a folder and their bytes, from the file names alone (no stat): the
        count is what a listing finds; the bytes only when every name carries Dovecot's S=."""
        fdir = self._fdir(native)
        keys: set[str] = set()
        total: int | None = 0
        for sub in SUBDIRS:
            try:
                dir_fd = self._tree.sub(native, sub)
                before = os.stat(dir_fd).st_mtime_ns
                names = os.listdir(dir_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                what = (
                    "is a symbolic link: not followed"
                    if is_link_error(exc)
                    else f"cannot be listed: {exc.strerror or exc}"
                )
                problems.append(f"{fdir}/{sub} {what}")
                continue
            listing: list[tuple[str, str]] = []
            for name in names:
                if name[0] == ".":
                    continue
                key = message_key(name)
                listing.append((key, name))
                if key in keys:
                    continue
                keys.add(key)
                if total is not None:
                    size = _size_in_name(name)
                    total = None if size is None else total + size
            if time.time_ns() - before > _SETTLED_NS:
                self._listings[(native, sub)] = (before, listing)
        return len(keys), total

    def _settled_listing(self, native: str, sub: str, dir_fd: int) -> list[tuple[str, str]] | None:
        """The (key, name) pairs folders() listed for this directory, if it has not changed
        since. A delta pass then reads each directory once, not twice.

        A directory's mtime changes with every file added, removed or renamed in it; but its
        clock ticks coarsely, so a change in the same tick as the listing could leave it
        unchanged. Only a directory whose last change was already _SETTLED_NS old when it was
        listed is trusted (the same rule Dovecot applies to its own Maildir listings)."""
        cached = self._listings.pop((native, sub), None)
        if cached is None:
            return None
        try:
            now = os.stat(dir_fd).st_mtime_ns
        except OSError:
            return None
        return cached[1] if now == cached[0] else None

    def messages(
        self, folder: FolderInfo, *, known: Collection[str] = (), since: str | None = None
    ) -> Listing:
        """Records of the folder. Keys in `known` (already migrated, says the caller) are
        neither stat'ed nor offered: each comes as a KnownMessage with the flags its file name
        carries, so a delta pass over a big folder costs one directory listing and still sees
        every flag change. INBOX's listing ends with the directories of the mailbox that are
        not read (links, directories that are no folder). `since` (a folder mark) is unused: a
        Maildir listing sees every file name anyway."""
        return Listing(self._entries(folder, known), whole=WHOLE_KEYS)

    def _entries(
        self, folder: FolderInfo, known: Collection[str]
    ) -> Iterator[MessageRecord | SkippedMessage | KnownMessage]:
        # a generator: nothing is listed before the caller asks for the first entry
        items = self._list(folder.native, None, known)
        if folder.native == "":
            if self._unread is None:
                self._unread = survey(self._tree.fd, self.root, self.layout)[1]
            items.extend(
                KnownMessage(item.key, None) if item.key in known else item for item in self._unread
            )
        yield from items

    def _list(
        self, native: str, problems: list[str] | None, known: Collection[str] = ()
    ) -> list[MessageRecord | SkippedMessage | KnownMessage]:
        with _gc_paused():
            found, skipped, seen = self._scan(native, problems, known)
            try:
                keywords = read_keywords(self._tree.folder(native)) if found or seen else {}
            except OSError:
                keywords = {}
            return self._records(self, native, keywords, found, skipped, seen, known)

    def _scan(
        self, native: str, problems: list[str] | None, known: Collection[str] = ()
    ) -> tuple[
        dict[str, tuple[str, str, int, int, int]], dict[str, SkippedMessage], dict[str, str]
    ]:
        """One scandir of new/ and cur/ and one lstat per file not in `known`: what is there,
        and the file name of each known key seen (its flags)."""
        seen_known: dict[str, str] = {}
        fdir = self._fdir(native)
        # key -> (sub, name, size, mtime, inode): plain values, not stat_result objects, so
        # the garbage collector has less to walk while 100,000 entries pile up
        found: dict[str, tuple[str, str, int, int, int]] = {}
        skipped: dict[str, SkippedMessage] = {}
        try:
            folder_fd = self._tree.folder(native)
        except FileNotFoundError:
            return found, skipped, seen_known  # deleted since it was listed: nothing in it any more
        except OSError as exc:
            # swapped for a link (or made unreadable) since folders() listed it
            what = (
                "is a symbolic link: not followed"
                if is_link_error(exc)
                else f"cannot be opened: {exc.strerror or exc}"
            )
            detail = f"{fdir} {what}"
            if problems is not None:
                problems.append(detail)
            skipped[FOLDER_KEY] = SkippedMessage(
                FOLDER_KEY, Reason.SYMLINK if is_link_error(exc) else Reason.UNREADABLE, detail
            )
            return found, skipped, seen_known
        named: dict[str, list[tuple[str, str]] | OSError] = {}
        crowded: set[str] = set()
        if known:
            # names only (no DirEntry objects): most are known and need nothing more. Both
            # directories first: a unique part that more than one file carries (a backup
            # restored over a live Maildir) needs the stat that tells the files apart
            for sub in SUBDIRS:
                try:
                    dir_fd = self._tree.sub(native, sub)
                    pairs = self._settled_listing(native, sub, dir_fd)
                    named[sub] = (
                        pairs
                        if pairs is not None
                        else [
                            (message_key(name), name)
                            for name in os.listdir(dir_fd)
                            if name[0] != "."
                        ]
                    )
                except OSError as exc:
                    named[sub] = exc
            counts = Counter(
                key for pairs in named.values() if isinstance(pairs, list) for key, _ in pairs
            )
            crowded = {key for key, n in counts.items() if n > 1}
        for sub in SUBDIRS:
            subdir = f"{fdir}/{sub}"
            try:
                # listing through the directory's descriptor: each entry's lstat is then an
                # fstatat relative to it instead of a walk down the whole path (~15% of a
                # listing), and nothing in the path can be swapped for a link meanwhile
                dir_fd = self._tree.sub(native, sub)
                entries: list[Any]
                if known:
                    entries = []
                    listed = named[sub]
                    if isinstance(listed, OSError):
                        raise listed
                    for key, name in listed:
                        if key in known and key not in crowded:
                            # new/ is listed first: a file renamed into cur/ meanwhile is
                            # seen twice, and cur/ has its newer flags
                            seen_known[key] = name
                        else:
                            entries.append(_Named(name))
                    stats = [_stat_at(dir_fd, e.name) for e in entries]
                else:
                    with os.scandir(dir_fd) as it:
                        entries = list(it)
                    stats = [_stat(e) for e in entries]
            except FileNotFoundError:
                continue  # a folder with only new/ (or only cur/) is fine
            except OSError as exc:
                if is_link_error(exc):
                    detail = f"{subdir} is {link_note(folder_fd, sub)}: not followed"
                    reason = Reason.SYMLINK
                else:
                    detail = f"cannot list {subdir}: {exc.strerror or exc}"
                    reason = Reason.UNREADABLE
                if problems is not None:
                    problems.append(detail)
                skipped[f"{sub}/"] = SkippedMessage(f"{sub}/", reason, detail)
                continue
            for entry, st_or_error in zip(entries, stats, strict=True):
                name = entry.name
                if name[0] == ".":
                    continue  # hidden files are not messages (Maildir convention)
                key = message_key(name)
                if isinstance(st_or_error, FileNotFoundError):
                    continue  # renamed by a live server since scandir: in cur/ or next pass
                if isinstance(st_or_error, OSError):
                    skipped.setdefault(
                        key,
                        SkippedMessage(
                            key,
                            Reason.UNREADABLE,
                            f"cannot stat {subdir}/{name}: {st_or_error.strerror or st_or_error}",
                        ),
                    )
                    continue
                st = st_or_error
                if key in found or key in skipped:
                    free = _free_key(key, sub, st.st_ino, found, skipped)
                    if free is None:
                        continue  # the same file seen in new/ and again in cur/ after a rename
                    key = free
                if stat.S_ISLNK(st.st_mode):
                    skipped[key] = SkippedMessage(
                        key,
                        Reason.SYMLINK,
                        f"{subdir}/{name} is {link_note(dir_fd, name)}: not followed",
                    )
                    continue
                if not stat.S_ISREG(st.st_mode):
                    skipped[key] = SkippedMessage(
                        key, Reason.NOT_A_FILE, f"{subdir}/{name} is not a regular file"
                    )
                    continue
                if st.st_size == 0:
                    skipped[key] = SkippedMessage(
                        key, Reason.EMPTY, f"{subdir}/{name} is empty (0 bytes)"
                    )
                    continue
                found[key] = (sub, name, st.st_size, int(st.st_mtime), st.st_ino)
        return found, skipped, seen_known

    @staticmethod
    def _records(
        source: MaildirSource,
        native: str,
        keywords: dict[str, str],
        found: dict[str, tuple[str, str, int, int, int]],
        skipped: dict[str, SkippedMessage],
        seen: dict[str, str] | None = None,
        known: Collection[str] = (),
    ) -> list[MessageRecord | SkippedMessage | KnownMessage]:
        flags_of: dict[str, Flags] = {}  # most files share a handful of info strings
        out: list[MessageRecord | SkippedMessage | KnownMessage] = []
        for key, name in (seen or {}).items():
            info = name.partition(":")[2]
            flags = flags_of.get(info)
            if flags is None:
                flags = flags_of[info] = parse_flags(name, keywords)
            out.append(KnownMessage(key, flags))
        for key in sorted(found.keys() | skipped.keys()):
            item = found.get(key)
            if item is None:
                out.append(KnownMessage(key, None) if key in known else skipped[key])
                continue
            sub, name, size, mtime, _ = item
            info = name.partition(":")[2]
            flags = flags_of.get(info)
            if flags is None:
                flags = flags_of[info] = parse_flags(name, keywords)
            if key in known:  # one of several files sharing a unique part, told apart by stat
                out.append(KnownMessage(key, flags))
                continue
            out.append(
                MessageRecord(
                    key,
                    size,
                    flags,
                    datetime.fromtimestamp(mtime, UTC),
                    _Opener(source, native, key, sub, name),
                )
            )
        return out


def _mailbox_error(root: str, exc: OSError) -> SourceError:
    if is_link_error(exc):
        return SourceError(
            f"the Maildir path {root} passes through a symbolic link (not followed)",
            reason=Reason.SYMLINK,
            hint="discovery recorded this path with its links resolved, so a link appeared in it"
            " since: if it is legitimate (the mail moved to other storage), run `migrator"
            " discover` again; if not, someone redirected this mailbox",
        )
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return SourceError(
            f"no Maildir at {root}",
            reason=Reason.NO_MAILBOX,
            hint="check the account's [source] path template and that the directory exists"
            " and is readable by the migrator user",
        )
    return SourceError(
        f"cannot open the Maildir {root}: {exc.strerror or exc}",
        reason=Reason.UNREADABLE,
        hint="give the migrator user read access to the Maildir (e.g. run as the mail user or"
        " add it to the mail group)",
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Listing creates a few objects per file and no reference cycles; with 100,000 files the
    cyclic collector would walk the growing heap again and again (~30% of a listing). Paused
    only while one listing is built; a collector already off stays off."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _free_key(
    key: str,
    sub: str,
    inode: int,
    found: dict[str, tuple[str, str, int, int, int]],
    skipped: dict[str, SkippedMessage],
) -> str | None:
    """The key for one more file sharing a unique part with files already listed, or None when
    it is one of them (the same inode, seen again after a rename).

    Two files share a unique part after a bad copy: a backup restored over a live Maildir
    leaves the old "name:2,S" beside the renamed "name:2,RS", and a second restore a third
    copy. All of them stay: the second gets "<key>#<sub>" (as it always has, so keys already
    in a ledger keep meaning the same file) and any further one "<key>#<sub>#<inode>", which a
    rename on a flag change keeps. Before, a third file sharing the unique part was dropped
    without a word, not migrated and not reported."""
    for candidate in (key, f"{key}#{sub}", f"{key}#{sub}#{inode}"):
        other = found.get(candidate)
        if other is not None and other[4] == inode:
            return None
        if other is None and candidate not in skipped:
            return candidate
    return None  # pragma: no cover - an inode is listed once per directory


def _size_in_name(name: str) -> int | None:
    """The size Dovecot writes into a file name before its info (",S=1234"), if it did."""
    base = name.partition(":")[0]
    at = base.find(",S=")
    if at < 0:
        return None
    digits = base[at + 3 :].partition(",")[0]
    return int(digits) if digits.isdigit() else None


class _Named:
    """A directory entry known by its name only (what the listing loop reads of it)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _stat_at(dir_fd: int, name: str) -> os.stat_result | OSError:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        return exc


def _stat(entry: os.DirEntry[str]) -> os.stat_result | OSError:
    try:
        return entry.stat(follow_symlinks=False)
    except OSError as exc:
        return exc


class _Opener:
    """Opens one message file (never through a link); re-finds it by key when a live server
    renamed it since listing; refuses a file that is not mail (see base.looks_like_mail)."""

    __slots__ = ("source", "native", "key", "sub", "name")

    def __init__(self, source: MaildirSource, native: str, key: str, sub: str, name: str) -> None:
        self.source, self.native, self.key, self.sub, self.name = source, native, key, sub, name

    @property
    def path(self) -> str:
        return f"{self.source._fdir(self.native)}/{self.sub}/{self.name}"

    def __call__(self) -> BinaryIO:
        try:
            return self._open()
        except FileNotFoundError:
            pass
        if self._refind():
            with contextlib.suppress(FileNotFoundError):
                return self._open()
        raise SourceError(
            f"message {self.key} vanished from {self.source._fdir(self.native)} (deleted or moved"
            " since listing)",
            reason=Reason.VANISHED,
            hint="nothing to do: the next pass lists the folder again",
        )

    def _refind(self) -> bool:
        unique = self.key.split("#", 1)[0]
        tree = self.source._tree
        for sub in SUBDIRS:
            with contextlib.suppress(OSError), os.scandir(tree.sub(self.native, sub)) as it:
                for e in it:
                    if message_key(e.name) == unique:
                        self.sub, self.name = sub, e.name
                        return True
        return False

    def _open(self) -> BinaryIO:
        tree = self.source._tree
        # the folder being read keeps its descriptors: the common case is two dict lookups
        dir_fd = tree.fds.get(self.sub) if tree.native == self.native else None
        if dir_fd is None:
            try:
                dir_fd = tree.sub(self.native, self.sub)
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise self._error(exc, f"{self.source._fdir(self.native)}/{self.sub}") from exc
        try:
            fd = open_file_at(dir_fd, self.name)
        except FileNotFoundError:
            raise
        except NotRegularFile as exc:
            raise SourceError(
                f"{self.path} is not a regular file", reason=Reason.NOT_A_FILE
            ) from exc
        except OSError as exc:
            if is_link_error(exc):
                raise SourceError(
                    f"{self.path} is {link_note(dir_fd, self.name)}: not followed",
                    reason=Reason.SYMLINK,
                    hint=_LINK_HINT,
                ) from exc
            raise self._error(exc, self.path) from exc
        stream = open(fd, "rb")  # noqa: SIM115 - the caller owns and closes the stream
        try:
            # one read fills the buffer the caller reads on: deciding costs no extra I/O
            head = stream.peek(HEAD_BYTES)
        except OSError as exc:
            stream.close()
            raise self._error(exc, self.path) from exc
        if not looks_like_mail(head):
            stream.close()
            raise SourceError(
                f"{self.path} is not a message: it does not begin with a header block"
                " (binary data, or text without headers)",
                reason=Reason.NOT_MAIL,
                hint=(
                    "nothing to migrate; look at the file and remove it or move it out of the "
                    "Maildir"
                ),
            )
        return stream

    @staticmethod
    def _error(exc: OSError, path: str) -> SourceError:
        if is_link_error(exc):
            return SourceError(
                f"{path} is a symbolic link: not followed", reason=Reason.SYMLINK, hint=_LINK_HINT
            )
        return SourceError(
            f"cannot read message {path}: {exc.strerror or exc}",
            reason=Reason.UNREADABLE,
            hint="give the migrator user read access to the Maildir (e.g. run as the mail"
            " user or add it to the mail group)",
        )


_LINK_HINT = (
    "links inside a mailbox are never followed (a user could point one at any file);"
    " replace the link by the real file or folder, then retry the skipped messages"
)
