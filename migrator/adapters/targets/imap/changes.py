"""Changes to messages already in an IMAP target: flags (UID STORE) and moves (UID MOVE).

A flag change is carried as the flags added and the flags removed between what the message was
last given and what the source holds now (`UID STORE +FLAGS.SILENT` / `-FLAGS.SILENT`), never as
the whole list (`FLAGS`): a flag the user set in the target and the source never touched stays.
Messages with the same change go in one command. \\Deleted is never carried (as on APPEND).

A move is one UID MOVE (RFC 6851) of the folder's messages that go to the same folder; its
COPYUID names their new UIDs. Without MOVE: UID COPY, then \\Deleted and UID EXPUNGE of exactly
those UIDs (UIDPLUS; without it they stay flagged \\Deleted, as a plain EXPUNGE would also
erase what the user deleted). A move whose answer was lost is found again by `prints`: the
Message-ID, size and INTERNALDATE of each message, taken before the move, among the messages
that reached the destination from its UIDNEXT of then on.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from imapclient import IMAPClient

from migrator.model.mail import Flags

from .append import Answer, Wire, uid_set, valid_keyword
from .connection import Session

_SYSTEM = (
    ("seen", b"\\Seen"),
    ("answered", b"\\Answered"),
    ("flagged", b"\\Flagged"),
    ("draft", b"\\Draft"),
)


def _names(flags: Flags, keywords: bool) -> set[bytes]:
    names = {name for attr, name in _SYSTEM if getattr(flags, attr)}
    if keywords:
        names.update(k.encode("ascii") for k in flags.keywords if valid_keyword(k))
    return names


def difference(
    before: Flags, after: Flags, *, keywords: bool
) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """(flags to add, flags to remove) to turn `before` into `after`."""
    was, now = _names(before, keywords), _names(after, keywords)
    return frozenset(now - was), frozenset(was - now)


def store_changes(
    client: IMAPClient, uids: Sequence[tuple[int, Flags, Flags]], *, keywords: bool
) -> None:
    """UID STORE the differences on the selected (read-write) folder, one command per distinct
    change. A UID that is gone (expunged by a user) is skipped by the server without a word."""
    groups: dict[tuple[frozenset[bytes], frozenset[bytes]], list[int]] = defaultdict(list)
    for uid, before, after in uids:
        added, removed = difference(before, after, keywords=keywords)
        if added or removed:
            groups[(added, removed)].append(uid)
    for (added, removed), members in groups.items():
        if added:
            client.add_flags(members, sorted(added), silent=True)
        if removed:
            client.remove_flags(members, sorted(removed), silent=True)


# --- moves -------------------------------------------------------------------------------------

_COPYUID = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", re.IGNORECASE)
_PRINT_FIELDS = ["RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]


def uid_ranges(uids: Sequence[int]) -> bytes:
    return ",".join(str(u) for u in sorted(set(uids))).encode("ascii")


def command(session: Session, text: bytes) -> tuple[Answer, list[bytes]]:
    """Send one command on the session's connection and read up to its tagged answer: the
    answer and the untagged lines before it (COPYUID of MOVE comes in one of those)."""
    wire = Wire(session)
    tag = session.next_tag()
    wire.imap.send(tag + b" " + text + b"\r\n")
    untagged: list[bytes] = []
    while True:
        line = wire._line()
        if wire._take(line) == tag:
            return wire.answers[tag], untagged
        untagged.append(line)


def copyuid(lines: Sequence[bytes]) -> dict[int, int]:
    """Source UID -> UID in the destination, from COPYUID response codes (RFC 4315: the two
    sets list the messages in the same order)."""
    out: dict[int, int] = {}
    for line in lines:
        match = _COPYUID.search(line)
        if match is not None:
            out.update(zip(uid_set(match.group(2)), uid_set(match.group(3)), strict=False))
    return out


def prints(client: IMAPClient, uids: Sequence[int]) -> dict[int, str]:
    """UID -> what tells a message apart in the selected folder without reading it: its
    Message-ID, size and INTERNALDATE (a moved message keeps all three)."""
    if not uids:
        return {}
    out: dict[int, str] = {}
    for uid, data in client.fetch(list(uids), _PRINT_FIELDS).items():
        header = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"") or b""
        message_id = header.decode("utf-8", "replace").partition(":")[2].strip()
        when = data.get(b"INTERNALDATE")
        stamp = when.timestamp() if when is not None else 0
        out[uid] = f"{message_id}|{data.get(b'RFC822.SIZE')}|{stamp:.0f}"
    return out
