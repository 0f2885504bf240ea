"""The transport map file migrator shares with the administrator.

migrator writes only between its two marker lines (one block per plan); every other line —
the administrator's own entries, comments, other plans' blocks — is kept as it is. The new
file is written beside the old one, indexed with `postmap`, and renamed over it (the indexed
file first, which is what Postfix reads): Postfix sees the old map or the new one, never half
of one, and a crash at any instant leaves a map that works.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from migrator.model.errors import PostfixError

SUFFIX = {"hash": ".db", "btree": ".db"}
NEW = ".migrator-new"  # the file being built, beside the map
OLD = ".migrator-old"  # the map as it was, until the new one is known to work


def begin_marker(plan: str) -> str:
    return (
        f"# BEGIN migrator plan {plan}: lines up to the END line are written by `migrator "
        "cutover`; edit outside them"
    )


def end_marker(plan: str) -> str:
    return f"# END migrator plan {plan}"


# A lookup key Postfix reads as one token of a map's text file: no white space (a line that
# starts with it continues the previous one), no comment sign, no control character, one @
_UNSAFE = re.compile(r"[\s#\x00-\x1f\x7f]")


def map_key_problem(address: str) -> str | None:
    """Why `address` cannot be a transport_maps key (None when it can)."""
    if _UNSAFE.search(address):
        return "it holds white space, '#' or a control character"
    local, at, domain = address.partition("@")
    if not at or not local or not domain or "@" in domain:
        return "it is not one local part, one @ and one domain"
    return None


@dataclass
class MapText:
    """A map file split into what migrator owns (its block) and what it keeps."""

    before: list[str]  # lines before migrator's block (or all lines when there is none)
    block: dict[str, str]  # address -> result, as migrator last wrote them
    after: list[str]
    others: dict[
        str, tuple[int, str]
    ]  # keys of lines not written by migrator -> (line number, result)

    def render(self, plan: str, routes: Mapping[str, str]) -> str:
        block = [
            begin_marker(plan),
            *(f"{key}\t{routes[key]}" for key in sorted(routes)),
            end_marker(plan),
        ]
        lines = [*self.before, *block, *self.after]
        return "".join(f"{line}\n" for line in lines)


def parse_map(text: str, plan: str, where: str) -> MapText:
    lines = text.splitlines()
    begin, end = begin_marker(plan).split(":")[0] + ":", end_marker(plan)
    starts = [n for n, line in enumerate(lines) if line.startswith(begin)]
    ends = [n for n, line in enumerate(lines) if line.rstrip() == end]
    if (
        len(starts) > 1
        or len(ends) > 1
        or len(starts) != len(ends)
        or (starts and ends[0] < starts[0])
    ):
        raise PostfixError(
            f"{where}: migrator's block for plan {plan!r} is damaged (its BEGIN and END lines do "
            "not pair up)",
            hint=f"edit {where} so that it holds one '{begin} ...' line and one '{end}' line "
            "after it (or neither), then run the command again; `migrator routing` prints what "
            "the block should list",
        )
    if starts:
        before, inside, after = (
            lines[: starts[0]],
            lines[starts[0] + 1 : ends[0]],
            lines[ends[0] + 1 :],
        )
    else:
        before, inside, after = lines, [], []
    block: dict[str, str] = {}
    for line in inside:
        key, _, result = line.partition("\t")
        if key and not key.startswith("#"):
            block[key] = result.strip()
    others: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(lines, start=1):
        if starts and starts[0] <= number - 1 <= ends[0]:
            continue
        if not line.strip() or line.lstrip().startswith("#") or line[0].isspace():
            continue
        key, *rest = line.split(None, 1)
        others.setdefault(key.lower(), (number, rest[0].strip() if rest else ""))
    return MapText(before, block, after, others)


def read_map(path: Path, plan: str) -> MapText:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return MapText([], {}, [], {})
    except UnicodeDecodeError:
        raise PostfixError(
            f"{path} is not UTF-8 text", hint="fix the lines written by hand"
        ) from None
    except OSError as exc:
        raise PostfixError(f"cannot read the transport map {path}: {exc.strerror}") from None
    return parse_map(text, plan, str(path))


@dataclass
class Backup:
    """The map's files as they were before install_map replaced them."""

    pairs: list[tuple[Path, Path]]  # (copy, where it goes back)

    def restore(self) -> None:
        """Put the old files back (no postmap needed: they are the indexed file Postfix read)."""
        for copy, where in self.pairs:
            os.replace(copy, where)
        self.pairs = []

    def discard(self) -> None:
        for copy, _where in self.pairs:
            with contextlib.suppress(FileNotFoundError):
                copy.unlink()
        self.pairs = []


def install_map(path: Path, text: str, map_type: str, build: Callable[[Path], None]) -> Backup:
    """Write `text` as the map at `path`: beside it first, indexed by `build` (postmap), then
    renamed into place, the indexed file first. The new files take the old ones' owner and
    mode; copies of the old ones are kept for the caller to restore or discard."""
    suffix = SUFFIX[map_type]
    new = path.with_name(path.name + NEW)
    new_index = Path(str(new) + suffix)
    index = Path(str(path) + suffix)
    backup = Backup([])
    try:
        _write(new, text, like=path)
        build(new)
        _copy_owner(index if index.exists() else path, new_index)
        for current in (index, path):
            if current.exists():
                copy = Path(str(current) + OLD)
                shutil.copy2(current, copy)
                backup.pairs.append((copy, current))
        os.replace(new_index, index)
        os.replace(new, path)
        _sync_dir(path.parent)
        return backup
    except OSError as exc:
        backup.discard()
        raise PostfixError(
            f"cannot write the transport map {path}: {exc.strerror}",
            hint=f"this user must be able to write files in {path.parent}",
        ) from None
    finally:
        for leftover in (new, new_index):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _write(path: Path, text: str, *, like: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    _copy_owner(like, path)


def _copy_owner(source: Path, target: Path) -> None:
    try:
        info = source.stat()
    except FileNotFoundError:
        return
    os.chmod(target, info.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(target, info.st_uid, info.st_gid)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def conflicts(text: MapText, routes: Mapping[str, str]) -> list[str]:
    """Lines not written by migrator that route one of `routes`' addresses elsewhere."""
    found = []
    for key, result in routes.items():
        other = text.others.get(key)
        if other is not None and other[1] != result:
            found.append(f"line {other[0]} sends {key} to {other[1] or '(nothing)'}")
    return found


def unique(addresses: Iterable[str]) -> list[str]:
    return sorted({a.lower() for a in addresses})
