"""A small LDIF (RFC 2849) content reader for `ldif:PATH` directories.

ldap3 writes LDIF but does not read it, so this parses content records (and `changetype: add`
records, which are the same thing) into (dn, {attribute: [raw bytes]}) with the line number
each record starts on, so a bad file is reported as "people.ldif line 812: ...".
Values stay bytes: the reader decodes them the same way it decodes what a server sends.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

# a descriptor or OID, with options ("cn;lang-es"); trailing spaces before the colon are tolerated
_ATTRIBUTE_NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9.;-]* *")


class LdifSyntaxError(ValueError):
    """The file is not valid LDIF. `line` is 1-based."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


@dataclass
class LdifRecord:
    dn: str
    line: int  # where the record's dn line is
    attributes: dict[str, list[bytes]] = field(default_factory=dict)


def read_ldif(path: Path) -> Iterator[LdifRecord]:
    """Yield the records of the LDIF file at `path`. Raises OSError or LdifSyntaxError."""
    with path.open("rb") as stream:
        yield from parse_ldif_lines(stream)


def parse_ldif_lines(lines: Iterator[bytes] | list[bytes]) -> Iterator[LdifRecord]:
    record: LdifRecord | None = None
    for number, line in _logical_lines(lines):
        if line is None:  # blank line: end of record
            if record is not None:
                yield record
                record = None
            continue
        name, value = _split(number, line)
        lowered = name.lower()
        if record is None:
            if lowered == "version":
                if value != b"1":
                    raise LdifSyntaxError(number, f"unsupported LDIF version {value!r}")
                continue
            if lowered != "dn":
                raise LdifSyntaxError(number, f"a record must start with 'dn:', found {name!r}")
            try:
                dn = value.decode("utf-8")
            except UnicodeDecodeError:
                raise LdifSyntaxError(number, "the DN is not valid UTF-8") from None
            if not dn.strip():
                raise LdifSyntaxError(number, "empty DN")
            record = LdifRecord(dn=dn, line=number)
            continue
        if lowered == "changetype":
            if value.lower() != b"add":
                raise LdifSyntaxError(
                    number,
                    f"change record (changetype: {value.decode('utf-8', 'replace')}) in a "
                    "directory file; only entries (or changetype: add) are accepted",
                )
            continue
        if lowered == "control":
            raise LdifSyntaxError(number, "control lines are not accepted in a directory file")
        record.attributes.setdefault(name, []).append(value)
    if record is not None:
        yield record


def _logical_lines(lines: Iterator[bytes] | list[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Unfold continuation lines and drop comments; a blank line is reported as None."""
    pending: bytearray | None = None
    pending_line = 0
    in_comment = False
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip(b"\r\n")
        if line.startswith(b" "):
            if in_comment:
                continue
            if pending is None:
                raise LdifSyntaxError(
                    number, "continuation line (starting with a space) follows nothing"
                )
            pending += line[1:]
            continue
        if pending is not None:
            yield pending_line, bytes(pending)
            pending = None
        in_comment = line.startswith(b"#")
        if in_comment:
            continue
        if not line.strip():
            yield number, None
            continue
        pending, pending_line = bytearray(line), number
    if pending is not None:
        yield pending_line, bytes(pending)


def _split(number: int, line: bytes) -> tuple[str, bytes]:
    name_part, sep, rest = line.partition(b":")
    if not sep:
        raise LdifSyntaxError(number, "expected 'attribute: value'")
    if _ATTRIBUTE_NAME.fullmatch(name_part) is None:
        shown = name_part.decode("utf-8", "replace").strip()
        raise LdifSyntaxError(number, f"invalid attribute name {shown!r}")
    name = name_part.decode("ascii").strip()
    if rest.startswith(b":"):
        try:
            return name, base64.b64decode(rest[1:].strip(), validate=True)
        except (binascii.Error, ValueError):
            raise LdifSyntaxError(number, f"invalid base64 value for {name!r}") from None
    if rest.startswith(b"<"):
        return name, _read_url(number, name, rest[1:].strip())
    return name, rest.lstrip(b" ")  # FILL: any number of spaces after the colon


def _read_url(number: int, name: str, url: bytes) -> bytes:
    parsed = urlparse(url.decode("utf-8", "replace"))
    if parsed.scheme != "file":
        raise LdifSyntaxError(number, f"only file:// URLs are supported for {name!r}")
    try:
        return Path(unquote(parsed.path)).read_bytes()
    except OSError as exc:
        raise LdifSyntaxError(
            number, f"cannot read {name!r} value from {url!r}: {exc.strerror}"
        ) from None
