"""Maildir trees read straight from disk: Maildir++ (`.Sub.Folder`) and Dovecot LAYOUT=fs.

Key of a message: its file name up to the info separator ':' and up to the first ',' (so
`1700000000.M5P42.host,S=612,W=630:2,RS` has key `1700000000.M5P42.host`). The unique part is
what the Maildir spec makes unique; the `:2,<flags>` info changes on every flag change (and the
file moves new/ -> cur/), and the `,S=`/`,W=`/`,U=` fields are added or rewritten by some tools
(offlineimap, mbsync), so neither belongs in a key. Listing is one scandir of new/ and cur/ and
one stat per file (the mtime is the internal date); bodies are never opened while listing.
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import time
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from migrator.adapters.sources import utf7
from migrator.adapters.sources.base import (
    EMPTY,
    NO_MAILBOX,
    NOT_A_FILE,
    UNREADABLE,
    VANISHED,
    SourceBase,
)
from migrator.adapters.sources.roles import role_from_name
from migrator.model.errors import SourceError
from migrator.model.mail import Flags, FolderInfo, FolderRole, MessageRecord, SkippedMessage

LAYOUTS = ("auto", "maildir++", "fs")
_SUBDIRS = ("new", "cur")  # new/ first: a live server moves new -> cur, never back
# a directory last changed longer ago than this when listed can be trusted by its mtime
_SETTLED_NS = 2_000_000_000
_MAIL_DIRS = frozenset(("cur", "new", "tmp"))
_MAX_DEPTH = 64

_STANDARD_FLAGS = {"S": "seen", "R": "answered", "F": "flagged", "T": "deleted", "D": "draft"}


def message_key(filename: str) -> str:
    """The stable key of a Maildir file name (see module doc)."""
    unique = filename.split(":", 1)[0]
    return unique.split(",", 1)[0] or unique


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


def read_keywords(folder_dir: str) -> dict[str, str]:
    """dovecot-keywords: lines "<index> <name>"; index 0 is letter a, 25 is z."""
    out: dict[str, str] = {}
    try:
        with open(os.path.join(folder_dir, "dovecot-keywords"), "rb") as fh:
            for line in fh:
                idx, _, name = line.decode("utf-8", "replace").strip().partition(" ")
                if idx.isdigit() and int(idx) < 26 and name:
                    out[chr(ord("a") + int(idx))] = name
    except OSError:
        pass  # no keywords file (or unreadable): messages simply carry no keywords
    return out


def _has_mail_dirs(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "cur")) or os.path.isdir(os.path.join(path, "new"))


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

    # messages(known=...) support: how many of the known keys the last listing saw
    known_seen: int = 0
    skips_known = True

    def __init__(self, root: str, *, layout: str = "auto") -> None:
        if layout not in LAYOUTS:
            raise SourceError(
                f"unknown Maildir layout {layout!r}",
                reason="config",
                hint=f"set [source] maildir_layout to one of {', '.join(LAYOUTS)}",
            )
        if not os.path.isdir(root):
            raise SourceError(
                f"no Maildir at {root}",
                reason=NO_MAILBOX,
                hint="check the account's [source] path template and that the directory exists"
                " and is readable by the migrator user",
            )
        self.root = root
        self.layout = self._detect_layout() if layout == "auto" else layout
        # (native, sub) -> (directory mtime, [(key, name)]): what folders() listed, reused by
        # messages() when the directory has not changed since (see _settled_listing)
        self._listings: dict[tuple[str, str], tuple[int, list[tuple[str, str]]]] = {}

    # ------------------------------------------------------------------ folders

    def _detect_layout(self) -> str:
        try:
            entries = [e for e in os.scandir(self.root) if e.is_dir()]
        except OSError:
            return "maildir++"
        if any(e.name.startswith(".") and _has_mail_dirs(e.path) for e in entries):
            return "maildir++"
        for e in entries:
            if e.name.startswith(".") or e.name in _MAIL_DIRS:
                continue
            for _dirpath, dirnames, _files in os.walk(e.path):
                if "cur" in dirnames or "new" in dirnames:
                    return "fs"
        return "maildir++"

    def _folder_natives(self) -> list[tuple[str, list[str]]]:
        """(native, on-disk name parts) of every folder other than INBOX."""
        found: list[tuple[str, list[str]]] = []
        if self.layout == "maildir++":
            with os.scandir(self.root) as it:
                for e in it:
                    if (e.name.startswith(".") and e.name not in (".", "..") and e.is_dir()
                            and _has_mail_dirs(e.path)):
                        parts = [p for p in e.name[1:].split(".") if p]
                        if parts:
                            found.append((e.name, parts))
            return found
        seen: set[tuple[int, int]] = set()

        def walk(rel: list[str], depth: int) -> None:
            path = os.path.join(self.root, *rel)
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) in seen or depth > _MAX_DEPTH:
                    return  # a symlink loop or an absurd depth
                seen.add((st.st_dev, st.st_ino))
                entries = sorted(
                    e.name for e in os.scandir(path)
                    if e.is_dir() and not e.name.startswith(".") and e.name not in _MAIL_DIRS
                )
            except OSError:
                return
            for name in entries:
                sub = [*rel, name]
                if _has_mail_dirs(os.path.join(self.root, *sub)):
                    found.append(("/".join(sub), sub))
                walk(sub, depth + 1)

        walk([], 0)
        return found

    def folders(self) -> list[FolderInfo]:
        result = [self._info(("INBOX",), "", [])]
        for native, parts in self._folder_natives():
            problems: list[str] = []
            path = _decode(parts, problems)
            if path[0].upper() == "INBOX" and len(path) == 1:
                continue  # a folder named INBOX beside the real INBOX: not a second inbox
            result.append(self._info(path, native, problems))
        result[1:] = sorted(result[1:], key=lambda f: f.path)
        return result

    def _info(self, path: tuple[str, ...], native: str, problems: list[str]) -> FolderInfo:
        count, total = self._count(native, problems)
        role = FolderRole.INBOX if path == ("INBOX",) else role_from_name(path)
        return FolderInfo(path=path, role=role, native=native, message_count=count,
                          byte_total=total, problems=tuple(problems))

    # ------------------------------------------------------------------ messages

    def _count(self, native: str, problems: list[str]) -> tuple[int, int | None]:
        """Messages in a folder and their bytes, from the file names alone (no stat): the
        count is what a listing finds; the bytes only when every name carries Dovecot's S=."""
        fdir = os.path.join(self.root, native) if native else self.root
        keys: set[str] = set()
        total: int | None = 0
        for sub in _SUBDIRS:
            subdir = os.path.join(fdir, sub)
            try:
                before = os.stat(subdir).st_mtime_ns
                names = os.listdir(subdir)
            except FileNotFoundError:
                continue
            except OSError as exc:
                problems.append(f"cannot list {fdir}/{sub}: {exc.strerror or exc}")
                continue
            listing: list[tuple[str, str]] = []
            for name in names:
                if name[0] == ".":
                    continue
                base = name.partition(":")[0]
                key = base.partition(",")[0] or base
                listing.append((key, name))
                if key in keys:
                    continue
                keys.add(key)
                if total is not None:
                    size = _size_in_name(base)
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
        self, folder: FolderInfo, *, known: Collection[str] = ()
    ) -> Iterator[MessageRecord | SkippedMessage]:
        """Records of the folder. Keys in `known` (already migrated, says the caller) are
        counted in `known_seen` but not stat'ed nor offered: a delta pass over a big folder
        then costs one directory listing."""
        yield from self._list(folder.native, None, known)

    def _list(
        self, native: str, problems: list[str] | None, known: Collection[str] = ()
    ) -> list[MessageRecord | SkippedMessage]:
        with _gc_paused():
            found, skipped = self._scan(native, problems, known)
            fdir = os.path.join(self.root, native) if native else self.root
            return self._records(fdir, read_keywords(fdir), found, skipped)

    def _scan(
        self, native: str, problems: list[str] | None, known: Collection[str] = ()
    ) -> tuple[dict[str, tuple[str, str, int, int, int]], dict[str, SkippedMessage]]:
        """One scandir of new/ and cur/ and one stat per file not in `known`: what is there."""
        self.known_seen = 0
        seen_known: set[str] = set()
        fdir = os.path.join(self.root, native) if native else self.root
        # key -> (sub, name, size, mtime, inode): plain values, not stat_result objects, so
        # the garbage collector has less to walk while 100,000 entries pile up
        found: dict[str, tuple[str, str, int, int, int]] = {}
        skipped: dict[str, SkippedMessage] = {}
        for sub in _SUBDIRS:
            subdir = os.path.join(fdir, sub)
            try:
                # scandir over a descriptor: each entry's stat is then an fstatat relative to
                # the directory instead of a walk down the whole path (~15% of a listing)
                dir_fd = os.open(subdir, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    entries: list[Any]
                    if known:
                        # names only (no DirEntry objects): most are known and need nothing more
                        entries = []
                        pairs = self._settled_listing(native, sub, dir_fd)
                        if pairs is None:
                            pairs = [(_key_of(name), name) for name in os.listdir(dir_fd) if name[0] != "."]
                        for key, name in pairs:
                            if key in known:
                                seen_known.add(key)
                            else:
                                entries.append(_Named(name))
                        stats = [_stat_at(dir_fd, e.name) for e in entries]
                    else:
                        entries = list(os.scandir(dir_fd))
                        stats = [_stat(e) for e in entries]
                finally:
                    os.close(dir_fd)
            except FileNotFoundError:
                continue  # a folder with only new/ (or only cur/) is fine
            except OSError as exc:
                detail = f"cannot list {subdir}: {exc.strerror or exc}"
                if problems is not None:
                    problems.append(detail)
                skipped[f"{sub}/"] = SkippedMessage(f"{sub}/", UNREADABLE, detail)
                continue
            for entry, st_or_error in zip(entries, stats, strict=True):
                name = entry.name
                if name[0] == ".":
                    continue  # hidden files are not messages (Maildir convention)
                key = _key_of(name)
                if isinstance(st_or_error, FileNotFoundError):
                    if os.path.islink(f"{subdir}/{name}"):
                        # a link to nowhere will not come back by itself: say so
                        skipped.setdefault(key, SkippedMessage(
                            key, NOT_A_FILE, f"{subdir}/{name} is a symbolic link to a missing file"))
                    continue  # else renamed by a live server since scandir: in cur/ or next pass
                if isinstance(st_or_error, OSError):
                    skipped.setdefault(key, SkippedMessage(
                        key, UNREADABLE,
                        f"cannot stat {subdir}/{name}: {st_or_error.strerror or st_or_error}"))
                    continue
                st = st_or_error
                if key in found or key in skipped:
                    free = _free_key(key, sub, st.st_ino, found, skipped)
                    if free is None:
                        continue  # the same file seen in new/ and again in cur/ after a rename
                    key = free
                if not stat.S_ISREG(st.st_mode):
                    skipped[key] = SkippedMessage(
                        key, NOT_A_FILE, f"{subdir}/{name} is not a regular file")
                    continue
                if st.st_size == 0:
                    skipped[key] = SkippedMessage(key, EMPTY, f"{subdir}/{name} is empty (0 bytes)")
                    continue
                found[key] = (sub, name, st.st_size, int(st.st_mtime), st.st_ino)
        self.known_seen = len(seen_known)
        return found, skipped

    @staticmethod
    def _records(
        fdir: str,
        keywords: dict[str, str],
        found: dict[str, tuple[str, str, int, int, int]],
        skipped: dict[str, SkippedMessage],
    ) -> list[MessageRecord | SkippedMessage]:
        flags_of: dict[str, Flags] = {}  # most files share a handful of info strings
        out: list[MessageRecord | SkippedMessage] = []
        for key in sorted(found.keys() | skipped.keys()):
            item = found.get(key)
            if item is None:
                out.append(skipped[key])
                continue
            sub, name, size, mtime, _ = item
            info = name.partition(":")[2]
            flags = flags_of.get(info)
            if flags is None:
                flags = flags_of[info] = parse_flags(name, keywords)
            out.append(MessageRecord(
                key, size, flags, datetime.fromtimestamp(mtime, UTC),
                _Opener(fdir, key, sub, name),
            ))
        return out


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


def _key_of(name: str) -> str:
    """A message's key: its file name's unique part, before the ",S=..." fields and ":2,FLAGS"."""
    base = name.partition(":")[0]
    return base.partition(",")[0] or base


def _free_key(
    key: str, sub: str, inode: int,
    found: dict[str, tuple[str, str, int, int, int]], skipped: dict[str, SkippedMessage],
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


def _size_in_name(base: str) -> int | None:
    """The size Dovecot writes into a file name's base (",S=1234"), if it did."""
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
        return os.stat(name, dir_fd=dir_fd)
    except OSError as exc:
        return exc


def _stat(entry: os.DirEntry[str]) -> os.stat_result | OSError:
    try:
        return entry.stat()
    except OSError as exc:
        return exc


class _Opener:
    """Opens one message file; re-finds it by key when a live server renamed it since listing."""

    __slots__ = ("fdir", "key", "path")

    def __init__(self, fdir: str, key: str, sub: str, name: str) -> None:
        self.fdir, self.key = fdir, key
        self.path = f"{fdir}/{sub}/{name}"  # joined here: cheaper than DirEntry.path per file

    def __call__(self) -> BinaryIO:
        try:
            return self._open(self.path)
        except FileNotFoundError:
            pass
        found = self._refind()
        if found is not None:
            self.path = found
            with contextlib.suppress(FileNotFoundError):
                return self._open(found)
        raise SourceError(
            f"message {self.key} vanished from {self.fdir} (deleted or moved since listing)",
            reason=VANISHED,
            hint="nothing to do: the next pass lists the folder again",
        )

    def _refind(self) -> str | None:
        for sub in _SUBDIRS:
            with contextlib.suppress(OSError), os.scandir(os.path.join(self.fdir, sub)) as it:
                for e in it:
                    if message_key(e.name) == self.key.split("#", 1)[0]:
                        return e.path
        return None

    def _open(self, path: str) -> BinaryIO:
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller owns and closes the stream
        except FileNotFoundError:
            raise
        except IsADirectoryError as exc:
            raise SourceError(f"{path} is not a regular file", reason=NOT_A_FILE) from exc
        except OSError as exc:
            raise SourceError(
                f"cannot read message {path}: {exc.strerror or exc}",
                reason=UNREADABLE,
                hint="give the migrator user read access to the Maildir (e.g. run as the mail"
                " user or add it to the mail group)",
            ) from exc
