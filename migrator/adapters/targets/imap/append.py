"""APPEND on the wire: pipelined, with LITERAL+ and MULTIAPPEND when the server offers them.

imaplib waits for the server's "+" before every literal and for the tagged answer before the
next command: two round trips per message. With LITERAL+ (RFC 7888) the literal follows its
command at once, and several APPENDs are written before their answers are read (a window of
commands in flight). MULTIAPPEND (RFC 3502) stores a whole batch in one command and one
transaction: one fsync on Dovecot instead of one per message. All of it is written here on the
session's own socket, between IMAPClient commands, so imaplib's state is left untouched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from migrator.model.mail import Flags

from .connection import Session

LITERAL_MINUS_MAX = 4096  # RFC 7888: LITERAL- allows non-synchronizing literals up to 4 KiB
FLUSH_BYTES = 256 * 1024  # write at least this much per send call
PIPELINE_WINDOW = 16  # APPEND commands in flight on one connection

_ATOM_SPECIALS = re.compile(r'[(){ %*"\\\]\x00-\x20\x7f-\U0010ffff]')
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)
_LITERAL_AT_END = re.compile(rb"\{(\d+)\}$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Message:
    flags: bytes  # "(\\Seen $label1)"
    date: bytes | None  # quoted date-time, or None to let the server use now
    data: bytes


@dataclass(frozen=True)
class Answer:
    status: bytes  # OK | NO | BAD
    text: bytes  # what follows the status, response code included

    @property
    def ok(self) -> bool:
        return self.status == b"OK"


def valid_keyword(word: str) -> bool:
    """An IMAP flag keyword is an atom; anything else would break the command."""
    return bool(word) and not word.startswith("\\") and not _ATOM_SPECIALS.search(word)


def flag_list(flags: Flags, *, keywords: bool = True) -> bytes:
    """The APPEND flag list. \\Deleted is never carried: a client's next EXPUNGE would erase
    the migrated message."""
    names = [
        name
        for on, name in (
            (flags.seen, "\\Seen"),
            (flags.answered, "\\Answered"),
            (flags.flagged, "\\Flagged"),
            (flags.draft, "\\Draft"),
        )
        if on
    ]
    if keywords:
        names.extend(dict.fromkeys(k for k in flags.keywords if valid_keyword(k)))
    return ("(" + " ".join(names) + ")").encode("ascii")


def date_time(when: datetime | None) -> bytes | None:
    """IMAP date-time, e.g. b'"01-Mar-2024 09:00:00 +0000"' (naive datetimes are UTC)."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f'"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} '
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} "
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    )
    return text.encode("ascii")


def quoted(name: str) -> bytes:
    """A mailbox name (already modified UTF-7, so ASCII) as an IMAP quoted string."""
    return b'"' + name.encode("ascii").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def uid_set(text: bytes) -> list[int]:
    """b"4:6,9" -> [4, 5, 6, 9], in the order given (APPENDUID lists them in append order)."""
    out: list[int] = []
    for part in text.split(b","):
        if b":" in part:
            first, last = (int(x) for x in part.split(b":", 1))
            step = 1 if last >= first else -1
            out.extend(range(first, last + step, step))
        elif part:
            out.append(int(part))
    return out


def appenduid(answer: Answer) -> tuple[int, list[int]] | None:
    match = _APPENDUID.search(answer.text)
    if match is None:
        return None
    return int(match.group(1)), uid_set(match.group(2))


class Wire:
    """Raw APPEND commands on one session. Connection failures propagate as imaplib.abort /
    OSError; whatever was answered before stays in `answers`, what was written in `sent`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.imap = session.client._imap
        self.answers: dict[bytes, Answer] = {}
        self.sent: list[bytes] = []
        self.bye: bytes | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0

    # -- writing -------------------------------------------------------------------------------
    def _nonsync(self, size: int) -> bool:
        s = self.session
        return s.has("LITERAL+") or (s.has("LITERAL-") and size <= LITERAL_MINUS_MAX)

    def _write(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self.imap.send(b"".join(self._buffer))
            self._buffer.clear()
            self._buffered = 0

    def command(self, folder: str, messages: Sequence[Message]) -> bytes:
        """Write one APPEND (MULTIAPPEND when more than one message); returns its tag.

        A synchronizing literal waits for the server's "+"; if the server answers the command
        instead (refused before the literal), the rest is not written."""
        tag = self.session.next_tag()
        self._write(tag + b" APPEND " + quoted(folder))
        for message in messages:
            self._write(b" " + message.flags)
            if message.date is not None:
                self._write(b" " + message.date)
            size = len(message.data)
            if self._nonsync(size):
                self._write(b" {%d+}\r\n" % size)
            else:
                self._write(b" {%d}\r\n" % size)
                self._flush()
                if not self._continue(tag):
                    self.sent.append(tag)
                    return tag
            self._write(message.data)
        self._write(b"\r\n")
        self._flush()
        self.sent.append(tag)
        return tag

    # -- reading -------------------------------------------------------------------------------
    def _line(self) -> bytes:
        line: bytes = self.imap._get_line()
        match = _LITERAL_AT_END.search(line)
        while match is not None:  # an untagged answer carrying a literal: keep it whole
            line += self.imap.read(int(match.group(1))) + self.imap._get_line()
            match = _LITERAL_AT_END.search(line)
        return line

    def _take(self, line: bytes) -> bytes | None:
        """Record a tagged answer; returns its tag (None for untagged lines)."""
        if line.startswith(b"* "):
            if line[2:5].upper() == b"BYE":
                self.bye = line[6:]
            return None
        tag, _, rest = line.partition(b" ")
        status, _, text = rest.partition(b" ")
        self.answers[tag] = Answer(status.upper(), text)
        return tag

    def _continue(self, tag: bytes) -> bool:
        while True:
            line = self._line()
            if line.startswith(b"+"):
                return True
            if self._take(line) == tag:
                return False

    def wait(self, tag: bytes) -> Answer:
        while tag not in self.answers:
            self._take(self._line())
        return self.answers[tag]


def append_pipelined(
    wire: Wire, folder: str, messages: Sequence[Message], window: int = PIPELINE_WINDOW
) -> list[Answer]:
    """One APPEND per message, up to `window` in flight; answers in message order."""
    tags: list[bytes] = []
    for message in messages:
        tags.append(wire.command(folder, [message]))
        if len(tags) - window >= 0:
            wire.wait(tags[len(tags) - window])
    return [wire.wait(tag) for tag in tags]


def append_multi(wire: Wire, folder: str, messages: Sequence[Message]) -> Answer:
    """All messages in one MULTIAPPEND: stored together or not at all."""
    return wire.wait(wire.command(folder, messages))
