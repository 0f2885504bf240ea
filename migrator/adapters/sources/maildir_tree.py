"""What a Maildir tree holds: its directories reached without following links, its layout, its
folders, and every directory or link that is not read (reported, never passed over).

A directory holding cur/ or new/ is a folder, whatever its name (in Maildir++ a `.name`
directory of the root; in Dovecot LAYOUT=fs any directory). Anything else that could hold mail
and is not read is reported as a SkippedMessage with key "./<path>/" (listed in INBOX by the
source): a link (reason "symlink"), a directory that is no folder of the layout yet holds
something ("not-a-folder"), a directory that cannot be listed ("unreadable"). Empty
directories, tmp/, and what mail software keeps beside the mail are not reported: nothing can
be lost there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from migrator.adapters.sources.nofollow import link_note, open_dir_at, open_dirs_at, open_parent
from migrator.model.mail import SkippedMessage
from migrator.model.reasons import Reason

SUBDIRS = ("new", "cur")  # new/ first: a live server moves new -> cur, never back
MAIL_DIRS = frozenset(("cur", "new", "tmp"))
MAX_DEPTH = 64
# What mail servers and their tools keep beside the mail (Dovecot's index, uidlist, keywords
# and sieve files, Courier's keyword and ACL directories, quota files): never a folder, never
# reported. A directory holding cur/ or new/ is a folder whatever its name.
_TOOL_PREFIXES = ("dovecot", ".dovecot", "courier", "maildir")
_TOOL_NAMES = frozenset(("subscriptions", "sieve", ".sieve", "lost+found"))

Folders = list[tuple[str, tuple[str, ...]]]  # (native, on-disk name parts)


class Tree:
    """Descriptors of one mailbox's directories, every one reached from the mailbox's own
    descriptor one name at a time without following links (see nofollow.py). The folder being
    read keeps its descriptors (folder, cur/, new/) until another folder is read, so opening a
    message costs one openat."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._fd = -1
        self.native: str | None = None  # the folder whose descriptors are kept
        self.fds: dict[str, int] = {}  # "" (the folder), "cur", "new" of self.native
        self._fd = self.fd

    @property
    def fd(self) -> int:
        """The mailbox's own descriptor; opened again (the same way) when a record is read
        after the source was closed."""
        if self._fd < 0:
            parent, name = open_parent(self.root)
            try:
                self._fd = open_dir_at(parent, name)
            finally:
                os.close(parent)
        return self._fd

    def folder(self, native: str) -> int:
        if native == "":
            return self.fd
        self._switch(native)
        fd = self.fds.get("")
        if fd is None:
            fd = self.fds[""] = open_dirs_at(self.fd, native.split("/"), search_only=True)
        return fd

    def sub(self, native: str, sub: str) -> int:
        folder_fd = self.folder(native)
        self._switch(native)
        fd = self.fds.get(sub)
        if fd is None:
            fd = self.fds[sub] = open_dir_at(folder_fd, sub)
        return fd

    def _switch(self, native: str) -> None:
        if native != self.native:
            self._drop()
            self.native = native

    def _drop(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def close(self) -> None:
        self._drop()
        self.native = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def is_tool(name: str) -> bool:
    return name.startswith(_TOOL_PREFIXES) or name in _TOOL_NAMES


def has_mail_dirs(dir_fd: int) -> bool:
    """cur/ or new/ present (a directory, or a link the listing will report)."""
    for sub in SUBDIRS:
        try:
            os.stat(sub, dir_fd=dir_fd, follow_symlinks=False)
            return True
        except OSError:
            continue
    return False


def detect_layout(root: int) -> str:
    """Maildir++ when a `.name` directory holds cur/ or new/, else fs when a folder lies below
    any other directory, else Maildir++ (links are not followed here either)."""
    try:
        with os.scandir(root) as it:
            entries = [e for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return "maildir++"
    for e in entries:
        if e.name.startswith(".") and _with_dir(root, e.name, has_mail_dirs):
            return "maildir++"
    for e in entries:
        if e.name.startswith(".") or e.name in MAIL_DIRS:
            continue
        if _with_dir(root, e.name, lambda fd: _mail_below(fd, 1), search_only=False):
            return "fs"
    return "maildir++"


def survey(root_fd: int, root: str, layout: str) -> tuple[Folders, list[SkippedMessage]]:
    """Every folder other than INBOX, and every directory (or link) that is not read."""
    found = _Survey(root)
    if layout == "maildir++":
        found.plusplus(root_fd)
    else:
        found.fs(root_fd, [], 0, True)
    return found.folders, found.unread


class _Survey:
    def __init__(self, root: str) -> None:
        self.root = root
        self.folders: Folders = []
        self.unread: list[SkippedMessage] = []

    def report(self, rel: str, reason: str, why: str) -> None:
        self.unread.append(
            SkippedMessage(f"./{rel}/", reason, f"{os.path.join(self.root, rel)} {why}")
        )

    def link(self, dir_fd: int, rel: str, name: str) -> None:
        self.report(rel, Reason.SYMLINK, f"is {link_note(dir_fd, name)}: not followed")

    def unlisted(self, rel: str, exc: OSError) -> None:
        self.report(rel, Reason.UNREADABLE, f"cannot be listed: {exc.strerror or exc}")

    # ---------------------------------------------------------------- Maildir++

    def plusplus(self, root: int) -> None:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            name = e.name
            if name in MAIL_DIRS:
                continue  # INBOX's own: a link there is reported by its listing
            if e.is_symlink():
                if not is_tool(name):
                    self.link(root, name, name)
                continue
            if not e.is_dir(follow_symlinks=False):
                continue  # files beside the folders: index and quota files, never mail
            try:
                fd = open_dir_at(root, name)
            except OSError as exc:
                if not is_tool(name):
                    self.unlisted(name, exc)
                continue
            try:
                self._plusplus_entry(fd, name)
            finally:
                os.close(fd)

    def _plusplus_entry(self, fd: int, name: str) -> None:
        """One directory in the root of a Maildir++ mailbox: a folder, or reported, or nothing
        (an empty directory, a tool's)."""
        try:
            with os.scandir(fd) as it:
                inside = list(it)
        except OSError as exc:
            if name.startswith(".") and has_mail_dirs(fd):
                self.folders.append((name, plusplus_parts(name)))  # its listing says what fails
            elif not is_tool(name):
                self.unlisted(name, exc)
            return
        is_folder = any(x.name in SUBDIRS for x in inside)
        if name.startswith(".") and is_folder:
            self.folders.append((name, plusplus_parts(name)))
            for x in inside:  # Maildir++ folders do not nest: anything else is not read
                if x.name in MAIL_DIRS or is_tool(x.name):
                    continue
                rel = f"{name}/{x.name}"
                if x.is_symlink():
                    self.link(fd, rel, x.name)
                elif x.is_dir(follow_symlinks=False):
                    nested = _scan_dir(fd, x.name)
                    if isinstance(nested, OSError) or _holds_something(nested):
                        self.report(
                            rel,
                            Reason.NOT_A_FOLDER,
                            "is a directory inside a Maildir++ folder"
                            " (Maildir++ folders do not nest): not read",
                        )
        elif is_tool(name):
            return
        elif is_folder:
            self.report(
                name,
                Reason.NOT_A_FOLDER,
                "holds cur/ or new/ but its name does not begin with"
                " '.': not a Maildir++ folder, not read (a Dovecot LAYOUT=fs folder in a"
                " Maildir++ mailbox?)",
            )
        elif _holds_something(inside):
            self.report(
                name, Reason.NOT_A_FOLDER, "holds no cur/ or new/: not a Maildir folder, not read"
            )

    # ---------------------------------------------------------------- LAYOUT=fs

    def fs(self, dir_fd: int, rel: list[str], depth: int, is_folder: bool) -> None:
        """Every directory is a folder (when it holds cur/ or new/) or a level above folders;
        a level holding files of its own is reported."""
        try:
            with os.scandir(dir_fd) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.unlisted("/".join(rel), exc)
            return
        loose = False
        for e in entries:
            name = e.name
            if name in MAIL_DIRS or is_tool(name):
                continue
            sub = [*rel, name]
            path = "/".join(sub)
            if e.is_symlink():
                self.link(dir_fd, path, name)
                continue
            if not e.is_dir(follow_symlinks=False):
                loose = loose or not name.startswith(".")
                continue
            try:
                child = open_dir_at(dir_fd, name)
            except OSError as exc:
                self.unlisted(path, exc)
                continue
            try:
                child_is_folder = has_mail_dirs(child)
                if name.startswith("."):
                    # fs layout folders do not begin with '.': say what such a directory holds
                    hidden = _scan_dir(dir_fd, name)
                    if child_is_folder or isinstance(hidden, OSError) or _holds_something(hidden):
                        self.report(
                            path,
                            Reason.NOT_A_FOLDER,
                            "is a hidden directory (Dovecot LAYOUT=fs"
                            " folder names do not begin with '.'): not read",
                        )
                    continue
                if depth >= MAX_DEPTH:
                    self.report(
                        path,
                        Reason.NOT_A_FOLDER,
                        f"lies more than {MAX_DEPTH} levels deep: not read",
                    )
                    continue
                if child_is_folder:
                    self.folders.append((path, tuple(sub)))
                self.fs(child, sub, depth + 1, child_is_folder)
            finally:
                os.close(child)
        if loose and not is_folder:
            self.report(
                "/".join(rel),
                Reason.NOT_A_FOLDER,
                "holds files but no cur/ or new/: not a Maildir folder, not read",
            )


def plusplus_parts(name: str) -> tuple[str, ...]:
    """The levels of a Maildir++ folder name (".a.b" -> a, b). A name of dots only has none."""
    return tuple(p for p in name[1:].split(".") if p)


def _scan_dir(dir_fd: int, name: str) -> list[os.DirEntry[str]] | OSError:
    """The entries of directory `name` in `dir_fd` (opened without following links)."""
    try:
        fd = open_dir_at(dir_fd, name)
    except OSError as exc:
        return exc
    try:
        with os.scandir(fd) as it:
            return list(it)
    except OSError as exc:
        return exc
    finally:
        os.close(fd)


def _holds_something(entries: list[os.DirEntry[str]]) -> bool:
    """Whether a directory that is not a folder holds anything a person may have put there
    (tmp/ is never read, tool files are no mail)."""
    return any(e.name != "tmp" and not is_tool(e.name) for e in entries)


def _with_dir(
    dir_fd: int, name: str, check: Callable[[int], bool], *, search_only: bool = True
) -> bool:
    try:
        fd = open_dir_at(dir_fd, name, search_only=search_only)
    except OSError:
        return False
    try:
        return check(fd)
    finally:
        os.close(fd)


def _mail_below(dir_fd: int, depth: int) -> bool:
    """Whether a folder (cur/ or new/) lies at or below this directory (links not followed)."""
    if has_mail_dirs(dir_fd):
        return True
    if depth > MAX_DEPTH:
        return False
    try:
        with os.scandir(dir_fd) as it:
            names = [
                e.name for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
            ]
    except OSError:
        return False
    return any(
        _with_dir(dir_fd, n, lambda fd: _mail_below(fd, depth + 1), search_only=False)
        for n in names
    )
