"""Indexing an mbox file: where each message starts and ends, its flags, date and key.

The file is read in blocks with os.pread (never mmap: a spool truncated under an mmap kills
the process with SIGBUS), so memory stays bounded by the block size plus one small entry per
message, whatever the file's size. Message bodies are scanned, never kept.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from migrator.model.mail import Flags

VARIANTS = ("auto", "mboxo", "mboxrd", "mboxcl", "mboxcl2")
BLOCK = 1 << 20
HEADER_CAP = 64 * 1024  # flags and keys come from at most this much of a header block

# A From_ line: "From " sender, then something ending in a time of day (asctime and friends).
_FROM_LINE = re.compile(rb"From \S* +.*?\d{1,2}:\d\d")
# Writers differ in their From_ lines, and a file keeps to its writer's style, so the style is
# learned from the file's first line and only lines of that style separate messages:
# - classic: "From sender asctime" (mail servers, mutt, Apple Mail); body lines are told apart
#   by the time of day the date holds (the rule also applied where the style is ambiguous);
# - mozilla: "From - <date>" or a bare "From - " (Thunderbird, Netscape, which do not quote
#   "From " in bodies: a body line "From Russia with love 10:30" must not split a message);
# - google: "From <digits>@xxx" with or without a date (Gmail and Google Takeout exports);
# - bare: any other "From <sender>" without a date ("From MAILER-DAEMON"), where a line of just
#   "From <sender>" (or a dated classic line) separates.
CLASSIC, MOZILLA, GOOGLE, BARE = "classic", "mozilla", "google", "bare"
_MOZILLA_LINE = re.compile(rb"From -(?:[ \t]*\r?(?:\n|$)|[ \t]+[^\n]*?\d{1,2}:\d\d)")
_GOOGLE_LINE = re.compile(rb"From \d+@xxx(?:[ \t][^\n]*)?\r?(?:\n|$)")
_BARE_LINE = re.compile(rb"From (?:[^\s@]*@\S*(?:[ \t][^\n]*)?|\S+[ \t]*)\r?(?:\n|$)")
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark some exports put before the first From_ line
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        [
            b"Jan",
            b"Feb",
            b"Mar",
            b"Apr",
            b"May",
            b"Jun",
            b"Jul",
            b"Aug",
            b"Sep",
            b"Oct",
            b"Nov",
            b"Dec",
        ]
    )
}
_ASCTIME = re.compile(
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) +(\d{1,2}):(\d\d)(?::(\d\d))?"
    rb"(?: +([A-Za-z]{1,5}|[+-]\d{4}))? +(\d{4})(?: +([+-]\d{4}))?"
)
# Headers that a mail reader rewrites when flags change: never part of a key.
_VOLATILE = frozenset(
    (
        b"status",
        b"x-status",
        b"x-keywords",
        b"x-uid",
        b"x-imap",
        b"x-imapbase",
        b"content-length",
        b"x-mozilla-status",
        b"x-mozilla-status2",
        b"x-mozilla-keys",
        b"lines",
    )
)


def is_from_line(line: bytes) -> bool:
    """A classic From_ line (sender and a date with a time of day)."""
    return _FROM_LINE.match(line) is not None


def separator_style(line: bytes) -> str | None:
    """The style of a file whose first line is `line`, or None when it is no From_ line."""
    if _MOZILLA_LINE.match(line):
        return MOZILLA
    if _GOOGLE_LINE.match(line):
        return GOOGLE
    if _FROM_LINE.match(line):
        return CLASSIC
    if _BARE_LINE.match(line):
        return BARE
    return None


def _bare_or_classic(line: bytes) -> bool:
    return _BARE_LINE.match(line) is not None or _FROM_LINE.match(line) is not None


def _any_strong(line: bytes) -> bool:
    """What may start the mail after junk at the head of a spool (a bare line is too weak)."""
    return any(p.match(line) is not None for p in (_FROM_LINE, _MOZILLA_LINE, _GOOGLE_LINE))


_SEPARATES: dict[str | None, Callable[[bytes], bool]] = {
    CLASSIC: is_from_line,
    MOZILLA: lambda line: _MOZILLA_LINE.match(line) is not None,
    GOOGLE: lambda line: _GOOGLE_LINE.match(line) is not None,
    BARE: _bare_or_classic,
    None: _any_strong,
}


def from_line_date(line: bytes) -> datetime | None:
    """The From_ line's date (asctime, taken as UTC unless a numeric zone follows)."""
    m = _ASCTIME.search(line)
    if not m:
        return None
    mon, day, hh, mm, ss, zone1, year, zone2 = m.groups()
    try:
        dt = datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss or 0), tzinfo=UTC)
    except ValueError:
        return None
    zone = zone2 or (zone1 if zone1 and zone1[:1] in b"+-" else None)
    if zone:
        sign = -1 if zone[:1] == b"-" else 1
        dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    return dt


@dataclass(slots=True)
class Entry:
    """One message of an mbox file. Offsets are into the file; [start, end) are the stored
    (still quoted) message bytes after the From_ line; `size` is the unquoted length."""

    from_offset: int
    from_line: bytes
    start: int
    end: int
    quoting: str  # "rd" (strip one > from ^>+From ), "o" (from ^>From ), "none"
    size: int
    key: str
    flags: Flags
    date: datetime | None


_VOLATILE_LINE = re.compile(
    rb"^(" + b"|".join(re.escape(n) for n in sorted(_VOLATILE)) + rb"|x-mozilla-[a-z0-9-]*)"
    rb"[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)(?:\n|\Z)",
    re.M | re.I,
)


def parse_header_block(block: bytes) -> tuple[Flags, bytes]:
    """Flags from Status/X-Status/X-Keywords, and the block without volatile headers (one
    regex pass: this runs once per message of every spool)."""
    seen = answered = flagged = draft = deleted = False
    keywords: list[str] = []
    found = False
    for m in _VOLATILE_LINE.finditer(block):
        found = True
        name, v = m.group(1).lower(), m.group(2).strip()
        if name == b"status":
            seen = seen or b"R" in v
        elif name == b"x-status":
            answered, flagged = answered or b"A" in v, flagged or b"F" in v
            draft, deleted = draft or b"T" in v, deleted or b"D" in v
        elif name == b"x-keywords":
            for kw in re.split(rb"[,\s]+", v):
                text = kw.decode("utf-8", "replace")
                if text and text not in keywords:
                    keywords.append(text)
    if not found:
        return _NO_FLAGS, block
    spec = (seen, answered, flagged, deleted, draft, tuple(keywords))
    flags = _FLAGS.get(spec)
    if flags is None:  # a spool has few distinct flag sets: share them across index entries
        flags = Flags(*spec[:5], keywords=spec[5])
        if len(_FLAGS) < 4096:
            _FLAGS[spec] = flags
    return flags, _VOLATILE_LINE.sub(b"", block)


_NO_FLAGS = Flags()
_FLAGS: dict[tuple[bool, bool, bool, bool, bool, tuple[str, ...]], Flags] = {}


class Indexer:
    """Scans one open mbox file up to `limit` bytes (the size when the pass began)."""

    def __init__(self, fd: int, limit: int, variant: str, style: str | None = CLASSIC) -> None:
        self.fd = fd
        self.limit = limit
        self.variant = variant
        self.style = style  # the file's From_ line style, learned by entries()
        self._separates = _SEPARATES[style]
        self._base = 0
        self._data = b""
        self._cut = 0  # data[:cut] ends at a line end (or is one piece of a giant line)
        self.problems: list[str] = []
        self.leading_garbage = 0
        # (start, header, body offset) of the header block _by_content_length last read
        self._header_seen: tuple[int, bytes, int | None] = (-1, b"", None)

    # ---------------------------------------------------------------- reading

    def pread(self, offset: int, n: int) -> bytes:
        n = max(0, min(n, self.limit - offset))
        if self._base <= offset and offset + n <= self._base + len(self._data):
            return self._data[offset - self._base : offset - self._base + n]
        return os.pread(self.fd, n, offset)

    def _load(self, pos: int) -> bool:
        """Make the cached block cover pos; False at the limit."""
        if self._base <= pos < self._base + self._cut:
            return True
        if pos >= self.limit:
            return False
        data = os.pread(self.fd, min(BLOCK, self.limit - pos), pos)
        if not data:
            return False
        self._base, self._data = pos, data
        last_nl = data.rfind(b"\n")
        at_end = pos + len(data) >= self.limit
        self._cut = len(data) if at_end or last_nl < 0 else last_nl + 1
        return True

    def next_from(self, pos: int, quote_gt: int) -> tuple[int | None, int]:
        """The first From_ line at or after `pos` (a line start) and how many quoted lines lie
        before it: lines ^>+From  when quote_gt is 0 ("rd"), ^>From  when 1 ("o"), none when -1."""
        quoted = 0
        at_line_start = True
        while self._load(pos):
            data, cut = self._data, self._cut
            rel = pos - self._base
            # bytes.find is a fast memchr-style search; "From " in mid-line is rare, so
            # finding it and looking back over '>'s beats a multiline regex by a wide margin
            i = data.find(b"From ", rel, cut)
            while i >= 0:
                k = i
                while k > rel and data[k - 1] == 0x3E:  # '>'
                    k -= 1
                if (data[k - 1] == 0x0A) if k > rel else at_line_start:
                    gt = i - k
                    if gt == 0:
                        off = self._base + i
                        if self._separates(self.pread(off, 1024)):
                            return off, quoted
                    elif quote_gt == 0 or gt == quote_gt:
                        quoted += 1
                i = data.find(b"From ", i + 5, cut)
            at_line_start = data[cut - 1 : cut] == b"\n"
            pos = self._base + cut
        return None, quoted

    def header_block(self, start: int, end: int) -> tuple[bytes, int | None]:
        """The header block at `start` (without the blank line) and the offset where the body
        begins (None when no blank line appears before `end` / within HEADER_CAP)."""
        want = 4096
        while True:
            data = self.pread(start, min(want, end - start))
            if data[:1] == b"\n":
                return b"", start + 1
            if data[:2] == b"\r\n":
                return b"", start + 2
            i, n = data.find(b"\n\n"), 2
            crlf = data.find(b"\n\r\n", 0, len(data) if i < 0 else i)
            if crlf >= 0:
                i, n = crlf, 3
            nxt = data.find(b"\nFrom ", 0, len(data) if i < 0 else i)
            if i >= 0 and nxt < 0:
                return data[: i + 1], start + i + n
            if nxt >= 0:
                return data[: nxt + 1], None
            if len(data) < want or want >= HEADER_CAP:
                return data, None
            want *= 4

    # ---------------------------------------------------------------- the pass

    def entries(self, *, strict: bool = False) -> list[Entry]:
        """Every message up to the limit. With `strict`, a file not starting with a From_ line
        is not an mbox at all: no entries, and `leading_garbage` is the whole size."""
        out: list[Entry] = []
        counts: dict[str, int] = {}
        if self.limit == 0:
            return out
        pos: int | None = 3 if self.pread(0, 3) == _BOM else 0
        assert pos is not None
        head = self.pread(pos, 1024)
        style = separator_style(head) if head.startswith(b"From ") else None
        if style is None:
            if strict:
                self.leading_garbage = self.limit
                return out
            self.style, self._separates = None, _SEPARATES[None]
            pos, _ = self.next_from(0, -1)
            self.leading_garbage = self.limit if pos is None else pos
            if pos is not None:
                style = separator_style(self.pread(pos, 1024))
        self.style, self._separates = style, _SEPARATES[style]
        while pos is not None:
            line_end = self.pread(pos, 4096).find(b"\n")
            if line_end < 0:
                break  # a From_ line cut off at the end of the file: nothing follows
            from_line = self.pread(pos, line_end)
            start = pos + line_end + 1
            entry_end, quoting, next_pos, quoted = self._delimit(start)
            seen_at, seen_header, seen_body = self._header_seen
            if seen_at == start and seen_body is not None and seen_body <= entry_end:
                header = seen_header  # the same first blank line lies inside the message
            else:
                header = self.header_block(start, min(entry_end, start + HEADER_CAP))[0]
            flags, stable = parse_header_block(header)
            if len(header) == HEADER_CAP and entry_end > start + HEADER_CAP:
                # a header block longer than the cap (thousands of recipients, hundreds of
                # Received lines): the key stays what the capped block makes it, but the
                # Status/X-Status a mail reader writes at the end of the block still count
                cut = start + header.rfind(b"\n") + 1
                flags = _merged(
                    flags, self._late_flags(cut if cut > start else start + HEADER_CAP, entry_end)
                )
            digest = hashlib.sha256(from_line.rstrip(b"\r") + b"\n" + stable).hexdigest()[:20]
            n = counts.get(digest, 0)
            counts[digest] = n + 1
            out.append(
                Entry(
                    from_offset=pos,
                    from_line=from_line,
                    start=start,
                    end=entry_end,
                    quoting=quoting,
                    size=entry_end - start - quoted,
                    key=f"{digest}-{n}",
                    flags=flags,
                    date=from_line_date(from_line),
                )
            )
            pos = next_pos
        return out

    def _late_flags(self, pos: int, end: int) -> Flags:
        """Flags from the rest of a header block that starts before `pos` (a line start) and
        ends at its first blank line (or at `end`), read a window at a time."""
        flags = _NO_FLAGS
        while pos < end:
            window = self.pread(pos, min(HEADER_CAP, end - pos))
            if not window:
                break
            stop = _BLANK_LINE.search(window)
            if stop is not None:
                window = window[: stop.start() + 1]
            elif pos + len(window) < end and b"\n" in window:
                window = window[: window.rfind(b"\n") + 1]  # whole lines: none cut in two
            flags = _merged(flags, parse_header_block(window)[0])
            if stop is not None:
                break
            pos += len(window)
        return flags

    def _delimit(self, start: int) -> tuple[int, str, int | None, int]:
        """(end of stored bytes, quoting, next From_ offset, quoted line count)."""
        v = self.variant
        if v in ("auto", "mboxcl", "mboxcl2"):
            found = self._by_content_length(start)
            if found is not None:
                end, next_pos = found
                if v == "mboxcl":
                    _, quoted = _count_only(self, start, end, 1)
                    return end, "o", next_pos, quoted
                return end, "none", next_pos, 0
        quoting = {"mboxo": "o", "mboxcl": "o", "mboxcl2": "none"}.get(v, "rd")
        gt = {"rd": 0, "o": 1, "none": -1}[quoting]
        next_pos, quoted = self.next_from(start, gt)
        end = self.limit if next_pos is None else next_pos
        # the blank line before a From_ line (or at the end of the file) is the separator; a
        # message that is nothing but that line (From_, blank, From_) is empty, not "\n"
        if end - start >= 2 and self.pread(end - 2, 2) == b"\n\n":
            end -= 1
        elif end - start == 1 and self.pread(start, 1) == b"\n":
            end = start
        return end, quoting, next_pos, quoted

    def _by_content_length(self, start: int) -> tuple[int, int | None] | None:
        header, body = self.header_block(start, min(self.limit, start + HEADER_CAP))
        self._header_seen = (start, header, body)
        if body is None:
            return None
        m = re.search(rb"(?im)^content-length:[ \t]*(\d{1,15})[ \t]*\r?$", header)
        if not m:
            return None
        end = body + int(m.group(1))
        if end > self.limit:
            return None
        after = self.pread(end, 1024 + 1)
        if not after or after == b"\n":
            return end, None
        if after.startswith(b"\nFrom ") and self._separates(after[1:]):
            return end, end + 1
        if after.startswith(b"From ") and self._separates(after):
            return end, end
        return None


_BLANK_LINE = re.compile(rb"(?:^|\n)\r?\n")


def _merged(a: Flags, b: Flags) -> Flags:
    if b is _NO_FLAGS:
        return a
    return Flags(
        seen=a.seen or b.seen,
        answered=a.answered or b.answered,
        flagged=a.flagged or b.flagged,
        deleted=a.deleted or b.deleted,
        draft=a.draft or b.draft,
        keywords=tuple(dict.fromkeys((*a.keywords, *b.keywords))),
    )


def _count_only(ix: Indexer, start: int, end: int, quote_gt: int) -> tuple[None, int]:
    """Quoted lines in [start, end), read with a bounded indexer of its own."""
    sub = Indexer(ix.fd, end, "mboxo", ix.style)
    quoted = 0
    pos = start
    while pos < end:
        nxt, q = sub.next_from(pos, quote_gt)
        quoted += q
        if nxt is None:
            break
        pos = nxt + 1  # a From_ line inside a Content-Length body: keep counting after it
        line_end = sub.pread(pos, 4096).find(b"\n")
        if line_end < 0:
            break
        pos += line_end + 1
    return None, quoted
