"""The active Sieve script of an account, read from Dovecot's files without following links.

Pigeonhole keeps a user's scripts in a folder (~/sieve/NAME.sieve) and marks the active one
with a symbolic link (~/.dovecot.sieve -> sieve/NAME.sieve); the active path may also be a
plain file. The link is the one link read: its target is taken as written (readlink), must name
a script inside the scripts folder, and is then opened relative to that folder's descriptor
with O_NOFOLLOW, like every mailbox file (see sources/nofollow.py). A link pointing anywhere
else (`.dovecot.sieve -> /etc/shadow`) is refused, never read.
"""

from __future__ import annotations

import errno
import os
import stat

from migrator.model.errors import SourceError
from migrator.model.sieve import SieveScript

from ..sources import nofollow
from .parse import MAX_SCRIPT_BYTES

UNREADABLE = "sieve-unreadable"


def read_active(path: str, scripts_dir: str | None) -> SieveScript | None:
    """The active script at `path` (maybe a link into `scripts_dir`); None when there is none."""
    try:
        home_fd, name = nofollow.open_parent(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _error(path, exc) from exc
    try:
        try:
            info = os.stat(name, dir_fd=home_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(name, dir_fd=home_fd)
            return _read_linked(path, target, home_fd, scripts_dir)
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(
                f"Sieve script {path} is not a file",
                reason=UNREADABLE,
                hint="Pigeonhole's active script is a file or a link into the scripts folder",
            )
        return _read(home_fd, name, path, _script_name(name))
    except OSError as exc:
        raise _error(path, exc) from exc
    finally:
        os.close(home_fd)


def _read_linked(
    path: str, target: str, home_fd: int, scripts_dir: str | None
) -> SieveScript | None:
    parts = [p for p in target.split("/") if p not in ("", ".")]
    refused = SourceError(
        f"Sieve script {path} is a link to {target}, outside the scripts folder "
        f"{scripts_dir or '(none)'}: not read",
        reason="symlink",
        hint=(
            "Pigeonhole links the active script into the user's scripts folder; check who made "
            "this link"
        ),
    )
    if not parts or ".." in parts:
        raise refused
    if target.startswith("/"):
        if not scripts_dir:
            raise refused
        folder = os.path.normpath(scripts_dir)
        if os.path.dirname(os.path.normpath(target)) != folder:
            raise refused
        try:
            dir_fd, name = nofollow.open_parent(os.path.normpath(target))
        except FileNotFoundError:
            return None
    else:
        # relative to the home: the scripts folder must be what the link goes through
        expected = (
            os.path.relpath(os.path.normpath(scripts_dir), os.path.dirname(os.path.normpath(path)))
            if scripts_dir
            else None
        )
        if expected is None or "/".join(parts[:-1]) != expected:
            raise refused
        try:
            dir_fd = (
                nofollow.open_dirs_at(home_fd, parts[:-1], search_only=True)
                if parts[:-1]
                else os.dup(home_fd)
            )
        except FileNotFoundError:
            return None
        name = parts[-1]
    try:
        return _read(dir_fd, name, path, _script_name(name))
    except FileNotFoundError:
        return None  # a dangling link: Pigeonhole runs no script either
    finally:
        os.close(dir_fd)


def _read(dir_fd: int, name: str, shown: str, script: str) -> SieveScript:
    fd = nofollow.open_file_at(dir_fd, name)
    try:
        size = os.fstat(fd).st_size
        chunks = []
        wanted = MAX_SCRIPT_BYTES + 1
        while wanted > 0:
            chunk = os.read(fd, min(wanted, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return SieveScript(
        name=script,
        origin=f"file {shown}",
        text=data.decode("utf-8", "replace"),
        size=max(size, len(data)),
    )


def _script_name(name: str) -> str:
    """A script's name as ManageSieve would show it (sieve/work.sieve is "work")."""
    if name.startswith(".") or not name.endswith(".sieve"):
        return name
    return name[: -len(".sieve")]


def _error(path: str, exc: OSError) -> SourceError:
    if nofollow.is_link_error(exc):
        return SourceError(
            f"Sieve script {path}: a folder on its path is a symbolic link; not followed",
            reason="symlink",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return SourceError(
            f"Sieve script {path} cannot be read: permission denied",
            reason=UNREADABLE,
            hint="run migrator as a user that can read the mail store (often root or vmail)",
        )
    return SourceError(
        f"Sieve script {path} cannot be read: {exc.strerror or exc}", reason=UNREADABLE
    )
