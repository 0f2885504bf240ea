"""Opening what lies in a mailbox without ever following a symbolic link.

The migrator usually runs as root, and a user can write into their own Maildir or mbox folders:
a link there (`cur/x -> /etc/shadow`, `.Leak -> /home/boss/Maildir`) would make it read any
file on the host into that user's Exchange mailbox. So every directory and file of a mailbox is
opened relative to the descriptor of its parent (openat), one name at a time, with O_NOFOLLOW:
a name swapped for a link between listing and reading cannot be followed either, because no
path is resolved twice. A link gives OSError(ELOOP), which callers report with reason
`symlink`, naming the link and what it points to (read with readlink, which follows nothing).

The account's mailbox path itself comes from discovery, which resolved it (realpath) and checked
that it stays under `[source] root`; it is walked the same way, so a link that appeared in it
since then is refused rather than followed.
"""

from __future__ import annotations

import errno
import os
import stat

# O_PATH: a directory only walked through needs search permission, as path resolution does,
# not read permission (a home directory is often 0711)
_SEARCH = (getattr(os, "O_PATH", 0) or os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# O_NONBLOCK: a FIFO put where a message was listed must not block the reader forever
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def is_link_error(exc: OSError) -> bool:
    return exc.errno == errno.ELOOP


def is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def link_note(dir_fd: int, name: str) -> str:
    """ "a symbolic link to <target>" (the target as written in the link, never resolved)."""
    try:
        return f"a symbolic link to {os.readlink(name, dir_fd=dir_fd)}"
    except OSError:
        return "a symbolic link"


def open_dir_at(dir_fd: int, name: str, *, search_only: bool = False) -> int:
    """The directory `name` in `dir_fd`; OSError(ELOOP) when it is a symbolic link."""
    try:
        return os.open(name, _SEARCH if search_only else DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        # O_PATH|O_NOFOLLOW opens a link itself, which O_DIRECTORY then refuses as ENOTDIR
        if exc.errno == errno.ENOTDIR and is_link(dir_fd, name):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from None
        raise


def open_dirs_at(dir_fd: int, names: list[str], *, search_only: bool = False) -> int:
    """The directory reached from `dir_fd` through `names`, each one opened without following
    links (the last one readable unless `search_only`). Intermediate descriptors are closed."""
    fd = dir_fd
    try:
        for i, name in enumerate(names):
            last = i == len(names) - 1
            nxt = open_dir_at(fd, name, search_only=search_only or not last)
            if fd != dir_fd:
                os.close(fd)
            fd = nxt
    except BaseException:
        if fd != dir_fd:
            os.close(fd)
        raise
    return os.dup(fd) if fd == dir_fd else fd


def open_parent(path: str) -> tuple[int, str]:
    """A descriptor (search only) of the directory holding `path`, reached from / (or the
    working directory for a relative path) without following links, and the last name."""
    norm = os.path.normpath(path)
    head, name = os.path.split(norm)
    start = os.open("/" if norm.startswith("/") else ".", _SEARCH)
    try:
        parts = [p for p in head.split("/") if p]
        fd = open_dirs_at(start, parts, search_only=True) if parts else os.dup(start)
    finally:
        os.close(start)
    return fd, name or "."


class NotRegularFile(OSError):
    """What was opened is a directory, FIFO, socket or device, not a file of mail."""


def open_file_at(dir_fd: int, name: str) -> int:
    """A message or mbox file opened for reading: OSError(ELOOP) for a link, NotRegularFile for
    anything but a regular file (a FIFO is opened without blocking and closed again)."""
    fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(
            errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL, "not a regular file", name
        )
    return fd
