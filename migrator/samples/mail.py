"""Sample mail: the hard cases every source must carry, a sample mailbox, and writers that lay
it out as Maildir (Maildir++ or Dovecot LAYOUT=fs) and as mbox spools (mboxrd, mboxo, mboxcl,
mboxcl2).

Used by the source tests, the IMAP source tests (Dovecot serves a Maildir written here), the
target tests, the benchmarks and `make demo`. Deliberately independent of the readers in
migrator.adapters.sources, so a writer bug and a reader bug do not cancel out.

What a format cannot carry exactly (see `carried_by`):
- mbox (all variants) stores flags in `Status`/`X-Status`/`X-Keywords` headers inside the
  message, so a reader hands back those header lines too: `mbox_stored()` gives the exact bytes.
- mboxrd/mboxo/mboxcl need every message to end with a newline (the separator is a blank line);
  a message without a final newline gains one. mboxcl2 carries it when the message has a
  header/body break (the Content-Length then delimits it exactly).
- mboxo cannot tell a body line ">From " from a quoted "From ": such a line reads back as "From ".
- Maildir carries every message byte for byte; a file that is not mail (no header block: the
  "not-mail" trait, a PNG and a lone "X") is skipped by the Maildir source with reason
  `not-mail`, so `sample_mailbox` (an account as a mail store holds it) leaves them out while
  `hard_case_messages` (what a target must store faithfully, whatever a source hands it) keeps
  them.
"""

from __future__ import annotations

import base64
import os
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

from migrator.model.mail import Flags, FolderRole

Mailbox = dict[tuple[str, ...], list["SampleMessage"]]

MAILDIR_LAYOUTS = ("maildir++", "fs")
MBOX_VARIANTS = ("mboxrd", "mboxo", "mboxcl", "mboxcl2")


@dataclass(frozen=True)
class SampleMessage:
    """One message as a user had it: raw bytes, IMAP-style flags and internal date (UTC, whole
    seconds). `traits` name the hard cases it exercises (e.g. "no-final-newline")."""

    name: str
    raw: bytes
    flags: Flags
    internal_date: datetime
    traits: frozenset[str] = field(default_factory=frozenset)


# Roles the sample mailbox's folders must be detected with (English and Spanish names).
SAMPLE_ROLES: dict[tuple[str, ...], FolderRole] = {
    ("INBOX",): FolderRole.INBOX,
    ("Sent",): FolderRole.SENT,
    ("Drafts",): FolderRole.DRAFTS,
    ("Trash",): FolderRole.TRASH,
    ("Junk",): FolderRole.JUNK,
    ("Elementos enviados",): FolderRole.SENT,
    ("Borradores",): FolderRole.DRAFTS,
    ("Papelera",): FolderRole.TRASH,
    ("Archivo",): FolderRole.ARCHIVE,
    ("Projects", "Entwürfe"): FolderRole.NONE,  # its parent "Projects" holds no mail
    ("Vacía",): FolderRole.NONE,  # empty folder
}

_BASE_DATE = datetime(2024, 3, 1, 9, 30, 0, tzinfo=UTC)


def _date(offset_s: int) -> datetime:
    return _BASE_DATE + timedelta(seconds=offset_s)


# Real mail is dated in its sender's zone: a Date header's numeric offset must reach the
# target as the same instant (Exchange keeps UTC).
ZONES_MINUTES = (0, -360, 60, -300, 330, -180)


def date_header(date: datetime, zone_minutes: int = 0) -> bytes:
    """An RFC 5322 Date value for the instant `date`, written in the zone `zone_minutes` east of
    UTC."""
    return format_datetime(date.astimezone(timezone(timedelta(minutes=zone_minutes)))).encode()


def _headers(
    subject: bytes, msgid: bytes | None, date: datetime, eol: bytes = b"\n", zone_minutes: int = 0
) -> bytes:
    lines = [
        b"From: Alice Example <alice@example.org>",
        b"To: Bob Example <bob@example.org>",
        b"Subject: " + subject,
        b"Date: " + date_header(date, zone_minutes),
    ]
    if msgid is not None:
        lines.append(b"Message-ID: <" + msgid + b">")
    lines.append(b"MIME-Version: 1.0")
    return eol.join(lines) + eol


def _text(
    subject: bytes, msgid: bytes | None, date: datetime, body: bytes, zone_minutes: int = 0
) -> bytes:
    return (
        _headers(subject, msgid, date, zone_minutes=zone_minutes)
        + b"Content-Type: text/plain; charset=us-ascii\n\n"
        + body
    )


def hard_case_messages(*, big_mb: int = 0) -> list[SampleMessage]:
    """The messages real spools hold and parsers dislike; a target must store each byte for byte
    (the "not-mail" ones a Maildir source skips: see the module doc)."""
    rnd = random.Random(4242)
    out: list[SampleMessage] = []

    def add(name: str, raw: bytes, flags: Flags, offset: int, *traits: str) -> None:
        out.append(SampleMessage(name, raw, flags, _date(offset), frozenset(traits)))

    d = _date
    add(
        "no-message-id",
        _text(b"No Message-ID here", None, d(10), b"Hello.\n"),
        Flags(seen=True),
        10,
        "no-message-id",
    )
    add(
        "dup-msgid-a",
        _text(b"Same id, first", b"dup@example.org", d(20), b"First body.\n"),
        Flags(seen=True, answered=True),
        20,
        "dup-message-id",
    )
    add(
        "dup-msgid-b",
        _text(b"Same id, second", b"dup@example.org", d(30), b"Second body.\n"),
        Flags(),
        30,
        "dup-message-id",
    )
    twin = _text(b"Twin", b"twin@example.org", d(40), b"I exist twice.\n")
    add("identical-1", twin, Flags(seen=True), 40, "identical-copy")
    add("identical-2", twin, Flags(seen=True), 40, "identical-copy")
    add(
        "latin1-subject",
        _text(
            "Caf\u00e9 \u00f1and\u00fa".encode("latin-1"),
            b"latin1@example.org",
            d(50),
            "Cuerpo en Latin-1: \u00e1\u00e9\u00ed\n".encode("latin-1"),
        ),
        Flags(seen=True, flagged=True),
        50,
        "8bit-headers",
    )
    add(
        "utf8-subject",
        _text(
            "Gr\u00fc\u00dfe \u65e5\u672c \U0001f600".encode(),
            b"utf8@example.org",
            d(60),
            "UTF-8 body \u00fc\n".encode(),
        ),
        Flags(keywords=("$Label1",)),
        60,
        "8bit-headers",
    )
    add(
        "nul-bytes",
        _text(b"NUL inside", b"nul@example.org", d(70), b"before\x00after\nline\x00\x00two\n"),
        Flags(seen=True),
        70,
        "nul",
    )
    add(
        "bare-cr",
        _text(b"Bare CR", b"cr@example.org", d(80), b"one\rtwo\rthree\n"),
        Flags(seen=True),
        80,
        "bare-cr",
    )
    crlf = _headers(b"CRLF", b"crlf@example.org", d(90), b"\r\n") + b"\r\nline one\r\nline two\r\n"
    add("crlf", crlf, Flags(seen=True, keywords=("Work",)), 90, "crlf")
    add(
        "mixed-eol",
        _text(b"Mixed line ends", b"mixed@example.org", d(100), b"lf\ncrlf\r\ncr\rend\n"),
        Flags(),
        100,
        "mixed-eol",
    )
    add(
        "line-over-998",
        _text(b"Long line", b"long@example.org", d(110), b"x" * 1500 + b"\nshort\n"),
        Flags(seen=True),
        110,
        "long-line",
    )
    add(
        "line-over-10000",
        _text(b"Very long line", b"verylong@example.org", d(120), b"y" * 12000 + b"\n"),
        Flags(seen=True),
        120,
        "long-line",
    )
    add(
        "no-final-newline",
        _text(b"No final newline", b"nofinal@example.org", d(130), b"the end"),
        Flags(seen=True),
        130,
        "no-final-newline",
    )
    add(
        "no-header-break",
        b"From: alice@example.org\nSubject: No blank line after headers\n"
        b"this line is body but nothing separates it\n",
        Flags(seen=True),
        140,
        "no-header-break",
    )
    add(
        "broken-mime",
        _headers(b"Broken MIME", b"mime@example.org", d(150))
        + b"Content-Type: multipart/mixed\n\n--zzz\nContent-Type: text/plain\n\npart\n--zzz\n",
        Flags(seen=True),
        150,
        "broken-mime",
    )
    add("one-byte", b"X", Flags(), 160, "tiny", "no-final-newline", "not-mail")
    add(
        "from-lines",
        _text(
            b"From lines in body",
            b"fromlines@example.org",
            d(170),
            b"From the start of a line.\n>From already quoted once.\n"
            b">>From quoted twice.\n\nFrom after a blank line.\n",
        ),
        Flags(seen=True, answered=True, flagged=True),
        170,
        "from-lines",
    )
    png = b"\x89PNG\r\n\x1a\n" + rnd.randbytes(3000) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    add("not-mail", png, Flags(), 180, "not-mail")
    if big_mb > 0:
        payload = base64.encodebytes(rnd.randbytes(big_mb * 1024 * 1024))
        add(
            "big-attachment",
            _headers(b"Big attachment", b"big@example.org", d(190))
            + b'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\n'
            b"Content-Type: text/plain\n\nSee attachment.\n--b1\n"
            b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
            b'Content-Disposition: attachment; filename="big.bin"\n\n' + payload + b"--b1--\n",
            Flags(seen=True),
            190,
            "big",
        )
    return out


_FLAG_CYCLE = (
    Flags(),
    Flags(seen=True),
    Flags(seen=True, answered=True),
    Flags(seen=True, flagged=True, keywords=("$Label1",)),
    Flags(keywords=("Work",)),
    Flags(seen=True, keywords=("$Label1", "Work")),
)


def _ordinary(folder: tuple[str, ...], i: int, rnd: random.Random) -> SampleMessage:
    when = _date(3600 * 24 * (i + 1) + rnd.randrange(0, 86400))
    slug = "-".join(folder).encode("utf-8")
    words = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"migrate", b"exchange", b"postfix"]
    body = b"".join(b" ".join(rnd.choice(words) for _ in range(12)) + b"\n" for _ in range(5))
    raw = _text(
        b"Message " + str(i).encode() + b" in " + slug,
        slug.hex().encode() + b"." + str(i).encode() + b"@example.org",
        when,
        body,
        zone_minutes=ZONES_MINUTES[i % len(ZONES_MINUTES)],
    )
    flags = _FLAG_CYCLE[(i + rnd.randrange(len(_FLAG_CYCLE))) % len(_FLAG_CYCLE)]
    if folder == ("Drafts",) or folder == ("Borradores",):
        flags = Flags(seen=True, draft=True)
    if folder == ("Trash",) and i == 0:
        flags = Flags(seen=True, deleted=True)
    return SampleMessage(f"{'/'.join(folder)}#{i}", raw, flags, when)


def sample_mailbox(*, seed: int = 1, messages_per_folder: int = 3, big_mb: int = 0) -> Mailbox:
    """A whole account: INBOX with every hard case plus ordinary mail, role folders in English
    and Spanish, a nested non-ASCII folder whose parent holds no mail, and an empty folder."""
    rnd = random.Random(seed)
    box: Mailbox = {}
    for folder in SAMPLE_ROLES:
        if folder == ("Vacía",):
            box[folder] = []
            continue
        box[folder] = [_ordinary(folder, i, rnd) for i in range(messages_per_folder)]
    box[("INBOX",)] = [m for m in hard_case_messages(big_mb=big_mb) if is_mail(m)] + box[("INBOX",)]
    return box


def is_mail(message: SampleMessage) -> bool:
    """Whether a sample begins like a message (a header block); see the module doc."""
    return "not-mail" not in message.traits


# --------------------------------------------------------------------------- Maildir


def _mutf7(name: str) -> str:
    """IMAP modified UTF-7, as Dovecot names folders on disk (own copy: see module doc)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            b = base64.b64encode("".join(pending).encode("utf-16-be")).decode()
            out.append("&" + b.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def maildir_folder_dir(root: Path, folder: tuple[str, ...], layout: str) -> Path:
    """Where a folder lives in a Maildir tree of the given layout."""
    if folder == ("INBOX",):
        return root
    if layout == "maildir++":
        return root / ("." + ".".join(_mutf7(n) for n in folder))
    if layout == "fs":
        return root.joinpath(*(_mutf7(n) for n in folder))
    raise ValueError(f"unknown Maildir layout {layout!r}; use one of {MAILDIR_LAYOUTS}")


def _info(flags: Flags, letters: dict[str, str]) -> str:
    std = "".join(
        c
        for c, on in (
            ("D", flags.draft),
            ("F", flags.flagged),
            ("R", flags.answered),
            ("S", flags.seen),
            ("T", flags.deleted),
        )
        if on
    )
    return std + "".join(sorted(letters[k] for k in flags.keywords))


def maildir_filename(index: int, message: SampleMessage, letters: dict[str, str]) -> str:
    """A Dovecot-style name: <time>.M<n>P<pid>.<host>,S=<size>,W=<crlf size>[:2,<flags>]."""
    raw = message.raw
    vsize = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
    base = (
        f"{int(message.internal_date.timestamp())}.M{index}P4242.samplehost,S={len(raw)},W={vsize}"
    )
    if message.flags == Flags():
        return base  # unseen and unflagged: delivered to new/ without an info part
    return base + ":2," + _info(message.flags, letters)


def write_maildir(
    dest: str | os.PathLike[str], mailbox: Mailbox, layout: str = "maildir++"
) -> Path:
    """Write a Dovecot-compatible Maildir tree; returns the root.

    Flagless messages go to new/ (no ":2," info), the rest to cur/; keywords use the folder's
    dovecot-keywords letters; each file's mtime is its internal date."""
    root = Path(dest)
    subscriptions: list[str] = []
    for folder, messages in mailbox.items():
        fdir = maildir_folder_dir(root, folder, layout)
        for sub in ("cur", "new", "tmp"):
            (fdir / sub).mkdir(parents=True, exist_ok=True)
        if folder != ("INBOX",):
            sep = "." if layout == "maildir++" else "/"
            subscriptions.append(sep.join(_mutf7(n) for n in folder))
            if layout == "maildir++":
                (fdir / "maildirfolder").touch()
        letters: dict[str, str] = {}
        for m in messages:
            for kw in m.flags.keywords:
                if kw not in letters:
                    letters[kw] = chr(ord("a") + len(letters))
        if letters:
            (fdir / "dovecot-keywords").write_text(
                "".join(f"{ord(v) - ord('a')} {k}\n" for k, v in letters.items())
            )
        for i, m in enumerate(messages):
            name = maildir_filename(i, m, letters)
            path = fdir / ("new" if ":2," not in name else "cur") / name
            path.write_bytes(m.raw)
            ts = m.internal_date.timestamp()
            os.utime(path, (ts, ts))
    (root / "subscriptions").write_text("".join(s + "\n" for s in subscriptions))
    return root


# --------------------------------------------------------------------------- mbox

_FROM_RD = re.compile(rb"^(>*From )", re.M)
_FROM_O = re.compile(rb"^(From )", re.M)
_QUOTED_ONCE = re.compile(rb"^>From ", re.M)


def from_line(message: SampleMessage) -> bytes:
    """The From_ line: envelope sender and the internal date in asctime form (UTC)."""
    dt = message.internal_date.astimezone(UTC)
    stamp = f"{dt:%a %b} {dt.day:2d} {dt:%H:%M:%S %Y}"
    return f"From alice@example.org {stamp}\n".encode()


def _meta_headers(flags: Flags) -> bytes:
    out = b"Status: " + (b"R" if flags.seen else b"") + b"O\n"
    xs = "".join(
        c
        for c, on in (
            ("A", flags.answered),
            ("F", flags.flagged),
            ("T", flags.draft),
            ("D", flags.deleted),
        )
        if on
    )
    if xs:
        out += b"X-Status: " + xs.encode() + b"\n"
    if flags.keywords:
        out += b"X-Keywords: " + " ".join(flags.keywords).encode("utf-8") + b"\n"
    return out


def header_break(data: bytes) -> int | None:
    """Offset just after the first empty line (LF or CRLF), i.e. where the body starts."""
    pos = 0
    while pos <= len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return None
        line = data[pos : nl + 1]
        if line in (b"\n", b"\r\n"):
            return nl + 1
        pos = nl + 1
    return None


def mbox_stored(message: SampleMessage, variant: str) -> bytes:
    """The bytes a reader must hand back for this message from an mbox of `variant`: the
    flag headers the writer adds on top, then the raw message."""
    stored = _meta_headers(message.flags) + message.raw
    if variant in ("mboxcl", "mboxcl2"):
        brk = header_break(stored)
        if brk is not None:
            body = stored[brk:]
            if variant == "mboxcl":
                body = _FROM_O.sub(rb">\1", body)
            stored = b"Content-Length: " + str(len(body)).encode() + b"\n" + stored
    return stored


def carried_by(message: SampleMessage, fmt: str) -> bool:
    """Whether a format hands this message back exactly (as `mbox_stored` for mbox)."""
    if fmt in MAILDIR_LAYOUTS or fmt == "maildir":
        return is_mail(message)
    stored = _meta_headers(message.flags) + message.raw
    brk = header_break(stored)
    if fmt in ("mboxcl", "mboxcl2") and brk is not None:
        # the Content-Length delimits the body; mboxcl still unquotes ">From " lines in it
        return fmt == "mboxcl2" or _QUOTED_ONCE.search(stored[brk:]) is None
    if not stored.endswith(b"\n"):
        return False
    if fmt in ("mboxo", "mboxcl") and _QUOTED_ONCE.search(stored):
        return False
    if fmt == "mboxcl2":  # no header break: read by From_ scanning, without any quoting
        return _FROM_O.search(stored) is None
    return True


def mbox_bytes(messages: list[SampleMessage], variant: str) -> bytes:
    """One mbox file's content for `messages` in `variant` (whole file in memory: test data)."""
    if variant not in MBOX_VARIANTS:
        raise ValueError(f"unknown mbox variant {variant!r}; use one of {MBOX_VARIANTS}")
    parts: list[bytes] = []
    for m in messages:
        stored = _meta_headers(m.flags) + m.raw
        brk = header_break(stored)
        if variant in ("mboxcl", "mboxcl2") and brk is not None:
            head, body = stored[:brk], stored[brk:]
            if variant == "mboxcl":
                body = _FROM_O.sub(rb">\1", body)
            cl = b"Content-Length: " + str(len(body)).encode() + b"\n"
            parts += [from_line(m), cl, head, body, b"\n"]
            continue
        if variant == "mboxrd":
            stored = _FROM_RD.sub(rb">\1", stored)
        elif variant in ("mboxo", "mboxcl"):
            stored = _FROM_O.sub(rb">\1", stored)
        if not stored.endswith(b"\n"):
            stored += b"\n"
        parts += [from_line(m), stored, b"\n"]
    return b"".join(parts)


def mbox_folder_file(folders_dir: Path, folder: tuple[str, ...]) -> Path:
    return folders_dir.joinpath(*(_mutf7(n) for n in folder))


def write_mbox(
    dest_inbox_file: str | os.PathLike[str],
    mailbox: Mailbox,
    variant: str = "mboxrd",
    folders_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write INBOX to `dest_inbox_file` and, when `folders_dir` is given, every other folder as
    an mbox file there (nested folders in subdirectories, names in modified UTF-7)."""
    inbox = Path(dest_inbox_file)
    inbox.parent.mkdir(parents=True, exist_ok=True)
    inbox.write_bytes(mbox_bytes(mailbox.get(("INBOX",), []), variant))
    if folders_dir is not None:
        fdir = Path(folders_dir)
        fdir.mkdir(parents=True, exist_ok=True)
        for folder, messages in mailbox.items():
            if folder == ("INBOX",):
                continue
            path = mbox_folder_file(fdir, folder)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(mbox_bytes(messages, variant))
    return inbox
