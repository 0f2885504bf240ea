"""Recognising our messages on a server that converts them (Exchange).

Exchange does not store the MIME it is given: it turns a message into properties and builds
new MIME when IMAP asks for it ([MS-OXCMAIL]); RFC822.SIZE is the stored size unless the
administrator asked for exact sizes, and SEARCH LARGER/SMALLER compare the same value
([MS-STANXIMAP] 2.2.25, 2.2.24). Neither the bytes we sent nor their length come back, so the
rules of recovery.py (size, then SHA-256 of the content) never match there. What survives,
and is compared here instead:

- the Message-ID (MIME writers keep it when they write for IMAP, [MS-OXCMAIL] 2.1.3.2.11);
- INTERNALDATE as given to APPEND;
- the From addresses, the Subject text and the Date instant (values compared once decoded:
  a converted header may be folded or RFC 2047-encoded differently);
- any other header field, kept as a named property and written back ([MS-OXCMAIL] 2.2.3.2.29,
  2.1.3.2.4): the `X-Migrator-Key` of `tag_header`;
- the content: each leaf part decoded from its transfer encoding (text in its charset), with
  whitespace left out, hashed in order. Transfer encodings, line ends, folding and boundaries
  may change; the decoded content does not.

A message is recognised by its tag (with `tag_header`: the key is the identity), else by the
first four together and then its content, which is always read (two source messages may share
Message-ID, headers and date and differ only in their body: the one not yet sent must never be
taken for the other). Every candidate's content is read once and remembered.

No SEARCH is used: sizes in SEARCH are Exchange's estimates, and isync, which finds what it
appended by a header of its own, stopped SEARCHing for it because that was slow and unreliable
on Exchange 2010, and FETCHes the new messages instead (isync's commit log).
`FolderIndex` instead holds the identity of every message of a folder, read by FETCH of a few
header fields, and is kept up to date by fetching only UIDs above the highest it knows.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

from imapclient import IMAPClient
from imapclient.imapclient import seq_to_parenstr_upper
from imapclient.response_parser import parse_fetch_response

from .recovery import TAG_HEADER, Sent, header, headers_of

INDEX_FETCH_BATCH = 2000  # UIDs per FETCH of header fields
FIELDS = ("MESSAGE-ID", "FROM", "SUBJECT", "DATE", TAG_HEADER.upper())
SECTION = f"BODY.PEEK[HEADER.FIELDS ({' '.join(FIELDS)})]"
_SPACE = re.compile(r"\s+")
_ANGLE = re.compile(r"<[^<>]*>")


# --------------------------------------------------------------------------- identities


@dataclass(frozen=True)
class Identity:
    """What a converting server keeps of a message, as compared."""

    message_id: str | None
    seconds: int | None  # INTERNALDATE
    headers: bytes  # digest of the From addresses, Subject text and Date instant
    tag: str | None  # the X-Migrator-Key value


def _text(value: str | None) -> str:
    """A header value decoded from RFC 2047 (raw 8-bit taken as UTF-8, else Latin-1)."""
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def _raw_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _field(block: bytes, name: str) -> str | None:
    value = _raw_header(block, name)
    return None if value is None else _text(value)


def _raw_header(block: bytes, name: str) -> str | None:
    """A header's unfolded value with raw 8-bit bytes kept as their characters."""
    wanted = name.lower().encode("ascii") + b":"
    lines = re.split(rb"\r?\n", block)
    for index, line in enumerate(lines):
        if line[: len(wanted)].lower() == wanted:
            value = line[len(wanted) :]
            for more in lines[index + 1 :]:
                if more[:1] not in (b" ", b"\t"):
                    break
                value += b" " + more.strip()
            return _raw_text(value).strip()
    return None


def message_id_of(value: str | None) -> str | None:
    if not value:
        return None
    found = _ANGLE.search(value)
    return found.group() if found else _SPACE.sub("", value)


def _headers_digest(block: bytes) -> bytes:
    senders = sorted(
        address.lower() for _, address in getaddresses([_field(block, "From") or ""]) if address
    )
    subject = _SPACE.sub(" ", unicodedata.normalize("NFC", _field(block, "Subject") or "")).strip()
    date_text = _field(block, "Date") or ""
    try:
        when = parsedate_to_datetime(date_text)
        date = str(int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()))
    except (TypeError, ValueError, IndexError, OverflowError):
        date = _SPACE.sub(" ", date_text).strip()
    return hashlib.sha256("\n".join([",".join(senders), subject, date]).encode("utf-8")).digest()


def _seconds(when: datetime | None) -> int | None:
    if when is None:
        return None
    if when.tzinfo is None:  # (sessions keep the server's zone: normalise_times is off)
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def identity(block: bytes, seconds: int | None) -> Identity:
    """The identity of a message from its header block (or the FETCHed header fields) and
    its INTERNALDATE in seconds."""
    tag = header(block + b"\r\n\r\n", TAG_HEADER)
    return Identity(
        message_id_of(_raw_header(block, "Message-ID")),
        seconds,
        _headers_digest(block),
        tag or None,
    )


def sent_identity(sent: Sent) -> Identity:
    return identity(headers_of(sent.data), sent.seconds)


# --------------------------------------------------------------------------- content


def _leaf_text(part: Message, payload: bytes) -> bytes:
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:
        text = payload.decode("latin-1")
    return "".join(unicodedata.normalize("NFC", text).split()).encode("utf-8")


def content_digest(data: bytes) -> bytes:
    """The digest of a message's decoded content: each leaf part decoded from its transfer
    encoding, text parts in their charset, whitespace left out (see the module doc)."""
    # a server cannot hand NUL back in a literal: Dovecot sends 0x80 for it
    message = message_from_bytes(data.replace(b"\x00", b"\x80"), policy=compat32)
    digest = hashlib.sha256()
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = str(part.get_payload()).encode("utf-8", "surrogateescape")
        payload = payload.replace(b"\x00", b"\x80")
        if part.get_content_maintype() == "text":
            payload = _leaf_text(part, payload)
        else:
            payload = re.sub(rb"\s+", b"", payload)
        digest.update(hashlib.sha256(payload).digest())
    return digest.digest()


# --------------------------------------------------------------------------- the folder index


def fetch_range(client: IMAPClient, uids: str, items: list[str]) -> dict[int, dict[bytes, object]]:
    """UID FETCH of a UID range ("1:*"): IMAPClient's fetch() keeps only the UIDs it was
    given one by one, so the command is sent here and its answer parsed as fetch() does."""
    imap = client._imap
    tag = imap._command("UID", "FETCH", uids, seq_to_parenstr_upper(items))
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    return {
        int(uid): answer
        for uid, answer in parse_fetch_response(data, client.normalise_times, True).items()
    }


def _batches(uids: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(uids), size):
        yield uids[start : start + size]


@dataclass
class FolderIndex:
    """The identity of every message of one folder (UID -> Identity) and, once read, the
    digest of its content. Valid for one UIDVALIDITY; UIDs never change their message, so
    what is read once is kept (a UID that is gone is dropped at the next refresh). Messages
    are also listed by their header digest and their tag, so that a lookup costs what the
    candidates cost, not what the folder holds."""

    validity: int = 0
    top: int = 0  # the highest UID read
    facts: dict[int, Identity] = field(default_factory=dict)
    digests: dict[int, bytes] = field(default_factory=dict)
    by_headers: dict[bytes, set[int]] = field(default_factory=dict)
    by_tag: dict[str, set[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self.facts)

    def _add(self, uid: int, facts: Identity) -> None:
        self._drop(uid)
        self.facts[uid] = facts
        self.by_headers.setdefault(facts.headers, set()).add(uid)
        if facts.tag is not None:
            self.by_tag.setdefault(facts.tag, set()).add(uid)
        self.top = max(self.top, uid)

    def _drop(self, uid: int) -> None:
        facts = self.facts.pop(uid, None)
        self.digests.pop(uid, None)
        if facts is None:
            return
        self.by_headers.get(facts.headers, set()).discard(uid)
        if facts.tag is not None:
            self.by_tag.get(facts.tag, set()).discard(uid)

    def _clear(self) -> None:
        for mapping in (self.facts, self.digests, self.by_headers, self.by_tag):
            mapping.clear()

    def refresh(self, client: IMAPClient, validity: int, exists: int) -> None:
        """Bring the index up to the selected folder: its UIDVALIDITY and message count."""
        if validity != self.validity:
            self.validity, self.top = validity, 0
            self._clear()
        if exists == 0:
            self._clear()
            return
        if self.facts:
            # "n:*" names the last message even when its UID is below n: filtered in _read
            self._read(client, f"{self.top + 1}:*", above=self.top)
        if len(self.facts) != exists:
            # messages were expunged (or this is the first look): list the UIDs
            uids = sorted(fetch_range(client, "1:*", ["UID"]))
            present = set(uids)
            for gone in [u for u in self.facts if u not in present]:
                self._drop(gone)
            missing = [u for u in uids if u not in self.facts]
            for part in _batches(missing, INDEX_FETCH_BATCH):
                self._read(client, list(part), above=0)

    def _read(self, client: IMAPClient, uids: str | list[int], above: int) -> None:
        items = ["UID", "INTERNALDATE", SECTION]
        answer = (
            fetch_range(client, uids, items) if isinstance(uids, str) else client.fetch(uids, items)
        )
        for uid, data in answer.items():
            number = int(uid)
            if number <= above:
                continue
            raw = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
            date = data.get(b"INTERNALDATE")
            self._add(
                number,
                identity(
                    raw if isinstance(raw, bytes) else b"",
                    _seconds(date if isinstance(date, datetime) else None),
                ),
            )

    def digest(self, client: IMAPClient, uid: int) -> bytes | None:
        """The content digest of `uid` (read once; None when the server no longer has it)."""
        known = self.digests.get(uid)
        if known is not None:
            return known
        body = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
        if not isinstance(body, bytes):
            return None
        self.digests[uid] = found = content_digest(body)
        return found


def _alike(ours: Identity, theirs: Identity) -> bool:
    if ours.message_id is not None and theirs.message_id != ours.message_id:
        return False
    if ours.seconds is not None and theirs.seconds is not None and ours.seconds != theirs.seconds:
        return False
    return ours.headers == theirs.headers


def find_converted(
    client: IMAPClient,
    index: FolderIndex,
    sent: Sequence[Sent],
    exclude: Collection[int] = (),
    since: int = 1,
) -> dict[str, int]:
    """Key -> UID for the messages of `sent` found in the indexed folder: Message-ID, date and
    header fields alike, then the same content. Each UID goes to one key at most; UIDs in
    `exclude` or below `since` to none (two identical source messages stay two)."""
    taken = set(exclude)
    found: dict[str, int] = {}
    for one in sent:
        ours = sent_identity(one)
        mine: bytes | None = None
        for uid in sorted(index.by_headers.get(ours.headers, ())):
            if uid < since or uid in taken or not _alike(ours, index.facts[uid]):
                continue
            if mine is None:
                mine = content_digest(one.data)
            if index.digest(client, uid) != mine:
                continue
            taken.add(uid)
            found[one.key] = uid
            break
    return found


def find_tags(
    index: FolderIndex, tags: dict[str, str], exclude: Collection[int] = (), since: int = 1
) -> dict[str, int]:
    """Key -> UID for the keys whose tag (X-Migrator-Key value -> key) a message carries:
    the oldest such message not in `exclude` and not below `since`."""
    found: dict[str, int] = {}
    for tag, key in tags.items():
        uids = sorted(u for u in index.by_tag.get(tag, ()) if u >= since and u not in exclude)
        if uids and key not in found:
            found[key] = uids[0]
    return found


def identical_converted(client: IMAPClient, index: FolderIndex) -> list[list[int]]:
    """Groups (two or more) of messages that are the same message: identities alike and the
    same content. Only candidates alike in identity are read in full."""
    alike: dict[tuple[str | None, int | None, bytes, str | None], list[int]] = {}
    for uid in sorted(index.facts):
        facts = index.facts[uid]
        alike.setdefault((facts.message_id, facts.seconds, facts.headers, facts.tag), []).append(
            uid
        )
    groups: list[list[int]] = []
    for members in alike.values():
        if len(members) < 2:
            continue
        by_digest: dict[bytes, list[int]] = {}
        for uid in members:
            digest = index.digest(client, uid)
            if digest is not None:
                by_digest.setdefault(digest, []).append(uid)
        groups.extend(sorted(same) for same in by_digest.values() if len(same) > 1)
    return groups
