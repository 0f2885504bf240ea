"""Finding messages we stored earlier, when the answer to their APPEND was lost.

IMAP has no custom item properties, so two ways exist:
- with `tag_header = true` every message carries an `X-Migrator-Key` header, and a key is found
  with SEARCH HEADER (a substring search) confirmed by fetching that one header;
- without it, a message is recognised by what it is: its Message-ID (SEARCH HEADER), its size
  and INTERNALDATE (FETCH), and, when those are not conclusive (no Message-ID or no internal
  date), the SHA-256 of the candidate's content compared with the bytes we sent (as they are,
  or both in the form servers hand messages back: CRLF line ends, NUL as 0x80).
Both run on a session with the folder selected read-only. A server that rebuilds the messages
it serves (Exchange) hands back neither these bytes nor their size: converted.py recognises
messages there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from imapclient import IMAPClient

TAG_HEADER = "X-Migrator-Key"
SEARCH_BATCH = 25  # criteria OR-ed in one SEARCH
FETCH_BATCH = 200  # UIDs per FETCH
# UIDs per FETCH when a whole folder is listed (a few header bytes each); IMAPClient names
# each UID, so this also bounds the command line (under Dovecot's 64 KiB)
FOLDER_FETCH_BATCH = 2000

_UNSAFE = re.compile(r"[^\x21-\x7e]|%")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def header_value(key: str) -> str:
    """The key as a header value: printable ASCII stays, anything else is %-escaped."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), key)


def with_tag_header(data: bytes, key: str) -> bytes:
    """The message with X-Migrator-Key in front, using the message's own line ending."""
    first = data.find(b"\n")
    newline = b"\r\n" if first > 0 and data[first - 1 : first] == b"\r" else b"\n"
    return f"{TAG_HEADER}: {header_value(key)}".encode("ascii") + newline + data


def headers_of(data: bytes) -> bytes:
    end = _HEADER_END.search(data)
    return data[: end.start()] if end else data


def header(data: bytes, name: str) -> str | None:
    """The first `name` header of a message (unfolded, stripped), or None."""
    wanted = name.lower().encode("ascii") + b":"
    lines = re.split(rb"\r?\n", headers_of(data))
    for index, line in enumerate(lines):
        if line[: len(wanted)].lower() == wanted:
            value = line[len(wanted) :]
            for more in lines[index + 1 :]:
                if more[:1] not in (b" ", b"\t"):
                    break
                value += b" " + more.strip()
            return value.decode("utf-8", "replace").strip()
    return None


def crlf(data: bytes) -> bytes:
    """Every line ending as CRLF (how IMAP servers hand messages back)."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def served(data: bytes) -> bytes:
    """The message as a server hands it back: CRLF line ends, and NUL as 0x80 (a literal may
    not carry NUL; Dovecot substitutes it). Two messages equal in this form are the same
    message for recovery: nothing else differs between what we sent and what we read back."""
    return crlf(data).replace(b"\x00", b"\x80")


def _or(criteria: Sequence[list[str]]) -> list[str]:
    """OR-ed search criteria in IMAP's prefix notation: OR OR a b c."""
    out: list[str] = ["OR"] * (len(criteria) - 1)
    for one in criteria:
        out.extend(one)
    return out


def _batches(values: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _header_field(raw: bytes, name: str) -> str | None:
    return header(raw + b"\r\n\r\n", name)


def find_tagged(
    client: IMAPClient, keys: Sequence[str], exclude: Collection[int] = (), since: int = 1
) -> dict[str, int]:
    """Key -> UID for the keys whose X-Migrator-Key header is in the selected folder. UIDs in
    `exclude` (they stand for other source messages: the same key from another source folder)
    or below `since` are never the answer."""
    wanted = {header_value(k): k for k in keys}
    found: dict[str, int] = {}
    for part in _batches(list(wanted), SEARCH_BATCH):
        uids = client.search(_or([["HEADER", TAG_HEADER, value] for value in part]))
        uids = [u for u in uids if u >= since and u not in exclude]
        section = f"BODY.PEEK[HEADER.FIELDS ({TAG_HEADER.upper()})]"
        for uid_part in _batches([str(u) for u in sorted(uids)], FETCH_BATCH):
            answer = client.fetch([int(u) for u in uid_part], [section])
            for uid, data in answer.items():
                raw = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
                value = _header_field(raw or b"", TAG_HEADER)
                key = wanted.get(value or "")
                if key is not None and key not in found:
                    found[key] = int(uid)
    return found


@dataclass(frozen=True)
class Sent:
    """What we know of one message we may have stored: the exact bytes and internal date."""

    key: str
    data: bytes
    internal_date: datetime | None

    @property
    def message_id(self) -> str | None:
        value = header(self.data, "Message-ID")
        return value or None

    @property
    def sizes(self) -> set[int]:
        return {len(self.data), len(crlf(self.data))}

    @property
    def digests(self) -> set[bytes]:
        return {hashlib.sha256(form).digest() for form in (self.data, served(self.data))}

    @property
    def seconds(self) -> int | None:
        when = self.internal_date
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp())


def find_sent(
    client: IMAPClient, sent: Sequence[Sent], exclude: Collection[int] = (), since: int = 1
) -> dict[str, int]:
    """Key -> UID for the messages of `sent` found in the selected folder.

    Each UID is given to one key at most, and UIDs in `exclude` (already known to hold other
    source messages) or below `since` to none: two identical copies in the source stay two
    messages.
    """
    candidates: set[int] = set()
    with_id = [s for s in sent if s.message_id]
    ids = list(dict.fromkeys(s.message_id or "" for s in with_id))
    for part in _batches(ids, SEARCH_BATCH):
        candidates.update(client.search(_or([["HEADER", "Message-ID", v] for v in part])))
    sizes = sorted({size for s in sent if not s.message_id for size in s.sizes})
    for size_wanted in sizes:
        candidates.update(
            client.search(["LARGER", str(size_wanted - 1), "SMALLER", str(size_wanted + 1)])
        )
    candidates = {uid for uid in candidates if uid >= since} - set(exclude)
    facts: dict[int, tuple[str | None, int, int | None]] = {}
    ordered = sorted(candidates)
    for part in _batches([str(u) for u in ordered], FETCH_BATCH):
        answer = client.fetch(
            [int(u) for u in part],
            ["RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"],
        )
        for uid, data in answer.items():
            raw = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
            date = data.get(b"INTERNALDATE")
            facts[int(uid)] = (
                _header_field(raw or b"", "Message-ID"),
                int(data[b"RFC822.SIZE"]),
                int(date.timestamp()) if isinstance(date, datetime) else None,
            )
    taken: set[int] = set()
    found: dict[str, int] = {}
    for one in sent:
        msgid, wanted_sizes, seconds = one.message_id, one.sizes, one.seconds
        for uid in ordered:
            if uid in taken:
                continue
            their_id, size, their_date = facts.get(uid, (None, -1, None))
            if size not in wanted_sizes or (msgid is not None and their_id != msgid):
                continue
            if seconds is not None and their_date is not None and seconds != their_date:
                continue
            conclusive = msgid is not None and seconds is not None and their_date is not None
            if not conclusive and not _same_content(client, uid, one):
                continue
            taken.add(uid)
            found[one.key] = uid
            break
    return found


def _same_content(client: IMAPClient, uid: int, sent: Sent) -> bool:
    answer = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {})
    body = answer.get(b"BODY[]")
    if not isinstance(body, bytes):
        return False
    # exact bytes (a server storing them as sent), else both sides in the served form
    return (
        hashlib.sha256(body).digest() in sent.digests
        or hashlib.sha256(served(body)).digest() in sent.digests
    )


def _all_uids(client: IMAPClient) -> list[int]:
    return sorted(int(u) for u in client.search(["ALL"]))


def _folder_parts(uids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(uids), FOLDER_FETCH_BATCH):
        yield uids[start : start + FOLDER_FETCH_BATCH]


def tagged_uids(client: IMAPClient) -> tuple[dict[str, list[int]], int]:
    """(X-Migrator-Key header value -> UIDs carrying it, messages in the folder) for the
    selected folder: one FETCH of that header for every message."""
    uids = _all_uids(client)
    by_tag: dict[str, list[int]] = {}
    section = f"BODY.PEEK[HEADER.FIELDS ({TAG_HEADER.upper()})]"
    for part in _folder_parts(uids):
        answer = client.fetch(part, [section])
        for uid in sorted(answer):
            data = answer[uid]
            raw = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
            value = _header_field(raw or b"", TAG_HEADER)
            if value:
                by_tag.setdefault(value, []).append(int(uid))
    return by_tag, len(uids)


def identical_uids(client: IMAPClient) -> list[list[int]]:
    """Groups (two or more) of messages of the selected folder that are the same message:
    the same Message-ID, size and INTERNALDATE, and the same content (SHA-256 of the form
    the server hands back). Only candidates alike in the first three are read in full."""
    uids = _all_uids(client)
    alike: dict[tuple[str | None, int, int | None], list[int]] = {}
    for part in _folder_parts(uids):
        answer = client.fetch(
            part, ["RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
        )
        for uid in sorted(answer):
            data = answer[uid]
            raw = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
            date = data.get(b"INTERNALDATE")
            facts = (
                _header_field(raw or b"", "Message-ID"),
                int(data[b"RFC822.SIZE"]),
                int(date.timestamp()) if isinstance(date, datetime) else None,
            )
            alike.setdefault(facts, []).append(int(uid))
    groups: list[list[int]] = []
    for members in alike.values():
        if len(members) < 2:
            continue
        by_digest: dict[bytes, list[int]] = {}
        for uid in members:  # one at a time: each may be tens of megabytes
            body = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
            if isinstance(body, bytes):
                by_digest.setdefault(hashlib.sha256(served(body)).digest(), []).append(uid)
        groups.extend(sorted(same) for same in by_digest.values() if len(same) > 1)
    return groups
