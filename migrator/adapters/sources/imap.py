"""Reading a mailbox over IMAP (Dovecot, Courier, Cyrus ...), read-only and without setting \\Seen.

Keys are ``f"{UIDVALIDITY}:{UID}"``: stable across runs and flag changes, distinct for two copies
of the same bytes, and listed from one batched ``UID FETCH (FLAGS RFC822.SIZE INTERNALDATE ...)``
per 1,000 messages without touching bodies. When a server resets a folder's UIDVALIDITY every
key of that folder changes; `uidvalidity(folder)` lets the engine notice (compare with the value
it recorded, also found in each record's ``extra["uidvalidity"]``) and `content_fingerprint`
lets it match the re-numbered messages to what it already migrated, by content.

Folders are opened with EXAMINE and bodies read with ``BODY.PEEK[]<offset.length>`` ranges, so
nothing on the server changes and a large message is never held in memory whole. A connection
that drops (reset, timeout, BYE, an admin's ``doveadm kick``) is replaced once per operation and
the listing resumes at the batch it was fetching.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from migrator.adapters.sources import utf7
from migrator.adapters.sources.base import Listing, SourceBase
from migrator.adapters.sources.imap_connection import (
    CONNECTION_LOST,
    ImapAccess,
    close,
    close_quietly,
    connect,
)
from migrator.adapters.sources.imap_fetch import ListingItem, UnexpectedResponse, fetch_listing
from migrator.adapters.sources.imap_stream import DEFAULT_RANGE, ImapMessageStream
from migrator.adapters.sources.roles import folder_role
from migrator.model.errors import SourceError, TransientError
from migrator.model.mail import Flags, FolderInfo, KnownMessage, MessageRecord, SkippedMessage
from migrator.model.plan import SourceSettings
from migrator.model.reasons import Reason
from migrator.plan.secrets import read_secret

T = TypeVar("T")

BATCH_SIZE = 1000
_LIST_FIELDS = ["FLAGS", "RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
_NOT_SELECTABLE = {b"\\noselect", b"\\nonexistent"}
_SYSTEM_FLAGS = {
    b"\\seen": "seen",
    b"\\answered": "answered",
    b"\\flagged": "flagged",
    b"\\deleted": "deleted",
    b"\\draft": "draft",
}


class UidValidityChanged(SourceError):
    """The server renumbered a folder: every key recorded for it under `old` is void."""

    def __init__(self, folder: str, old: int, new: int) -> None:
        super().__init__(
            f"IMAP folder {folder}: UIDVALIDITY changed from {old} to {new} (the server renumbered "
            "its messages)",
            reason=Reason.UIDVALIDITY_CHANGED,
            hint=(
                "the folder must be re-keyed by content (content_fingerprint) before migrating more"
            ),
        )
        self.folder = folder
        self.old = old
        self.new = new


def content_fingerprint(record: MessageRecord) -> str:
    """What identifies a message's content when its key is void (UIDVALIDITY changed).

    Message-ID + size + INTERNALDATE: all three survive a server renumbering, and listing gets
    them without reading bodies. Two byte-identical copies share a fingerprint; the engine
    counts them (n copies migrated under old keys cover the first n new records with that
    fingerprint) instead of treating the fingerprint as unique.
    """
    return record.extra.get("fingerprint") or _fingerprint(
        record.extra.get("message_id", ""), record.size, record.internal_date
    )


def _fingerprint(message_id: str, size: int, internal_date: datetime | None) -> str:
    when = internal_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if internal_date else "-"
    return f"{message_id}|{size}|{when}"


class ImapSource(SourceBase):
    """One account's mailbox on an IMAP server, read through a single lazily opened connection."""

    kind = "imap"

    def __init__(
        self,
        access: ImapAccess,
        *,
        batch_size: int = BATCH_SIZE,
        range_size: int = DEFAULT_RANGE,
        message_ids: bool = True,
    ) -> None:
        """`message_ids=False` lists without the Message-ID header (a faster delta pass on a
        server that has not cached it); fingerprints then rest on size and date alone."""
        self.access = access
        self.message_ids = message_ids
        self.batch_size = batch_size
        self.range_size = range_size
        self._client: IMAPClient | None = None
        self._selected: tuple[str, int] | None = None  # (native name, UIDVALIDITY)
        self._closed = False
        self.reconnects = 0  # how many dropped connections were replaced (for reports and tests)
        self.condstore = False  # the server offers CONDSTORE (known once folders() ran)
        self.slow_batches = 0  # listing batches the fast FETCH parser left to IMAPClient's

    @classmethod
    def from_settings(
        cls, settings: SourceSettings, user: str | None, password: str | None = None
    ) -> ImapSource:
        """The source for the account whose IMAP login name (the rendered `login` template) is
        `user`. `password` is the master/administrator's when master_user is set, the user's
        otherwise; when not given it is read from [source] password_env / password_file."""
        if not settings.host:
            raise SourceError(
                'a kind = "imap" source needs host', reason=Reason.CONFIG, hint="set [source] host"
            )
        if not user:
            raise SourceError(
                "no IMAP login name for this account",
                reason=Reason.CONFIG,
                hint="check [source] login, a template such as {address} or {uid}",
            )
        if password is None:
            whose = settings.master_user if settings.master_user else user
            password = read_secret(
                f"IMAP password of {whose}",
                env=settings.password_env,
                file=settings.password_file,
                key="[source] password_env",
            )
        if password is None:
            raise SourceError(
                'a kind = "imap" source needs password_env or password_file',
                reason=Reason.CONFIG,
                hint="name an environment variable or a file holding the (master) password",
            )
        try:
            access = ImapAccess(
                host=settings.host,
                port=settings.port or (993 if settings.tls == "ssl" else 143),
                user=user,
                password=password,
                tls=settings.tls,
                tls_verify=settings.tls_verify,
                ca_file=settings.ca_file,
                master_user=settings.master_user,
                authzid=settings.authzid,
                timeout=settings.timeout,
            )
        except ValueError as exc:
            raise SourceError(f"[source]: {exc}", reason=Reason.CONFIG) from None
        return cls(access)

    # -- connection ----------------------------------------------------------------------------
    def _connection(self) -> IMAPClient:
        if self._closed:
            raise RuntimeError("IMAP source used after close()")
        if self._client is None:
            self._client = connect(self.access)
            self._selected = None
        return self._client

    def _drop(self) -> None:
        client, self._client, self._selected = self._client, None, None
        if client is not None:
            close_quietly(client)  # the socket is already broken; nothing left to say to it

    def close(self) -> None:
        client, self._client, self._selected = self._client, None, None
        self._closed = True
        if client is not None:
            close(client)

    def _run(self, what: str, operation: Callable[[IMAPClient], T]) -> T:
        """Run `operation` on a live connection; if the connection drops, once more on a new one.

        `operation` must select what it needs itself: after a reconnect nothing is selected.
        """
        for attempt in (1, 2):
            client = self._connection()
            try:
                return operation(client)
            except CONNECTION_LOST as exc:
                self._drop()
                if attempt == 2:
                    raise TransientError(
                        f"IMAP {self.access.where}: connection for {self.access.login_name} lost "
                        f"twice while {what}: {exc}",
                        hint=(
                            "the server or network is dropping connections; the run can be resumed"
                        ),
                    ) from None
                self.reconnects += 1
            except IMAPClientError as exc:
                raise SourceError(
                    f"IMAP {self.access.where}: server refused {what} for "
                    f"{self.access.login_name}: {_text(exc)}",
                    reason=Reason.PROTOCOL,
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _select(self, client: IMAPClient, native: str, expected: int | None = None) -> int:
        """EXAMINE `native` unless already selected; returns its UIDVALIDITY, checked if
        expected."""
        if self._selected is not None and self._selected[0] == native:
            validity = self._selected[1]
        else:
            self._selected = None
            try:
                response = client.select_folder(native, readonly=True)
            except CONNECTION_LOST:
                raise
            except IMAPClientError as exc:
                raise SourceError(
                    f"IMAP folder {_display(native)} of {self.access.user} cannot be opened: "
                    f"{_text(exc)}",
                    reason=Reason.NO_MAILBOX,
                    hint=(
                        "the folder may have been deleted or renamed on the server; list folders "
                        "again"
                    ),
                ) from None
            validity = int(response.get(b"UIDVALIDITY", 0))
            self._selected = (native, validity)
        if expected is not None and validity != expected:
            raise UidValidityChanged(_display(native), expected, validity)
        return validity

    # -- folders -------------------------------------------------------------------------------
    def folders(self) -> list[FolderInfo]:
        return self._run("listing folders", self._list_folders)

    def _list_folders(self, client: IMAPClient) -> list[FolderInfo]:
        capabilities = set(client.capabilities())
        personal, foreign = _namespaces(client, capabilities)
        with_size = b"STATUS=SIZE" in capabilities
        self.condstore = b"CONDSTORE" in capabilities or b"QRESYNC" in capabilities
        found: list[FolderInfo] = []
        for flags, delimiter, raw_name in client.list_folders():
            native = (
                raw_name.decode("ascii", "replace")
                if isinstance(raw_name, bytes)
                else str(raw_name)
            )
            lowered = {flag.lower() for flag in flags}
            if lowered & _NOT_SELECTABLE:
                continue  # a pure hierarchy level; its children come as their own LIST lines
            if any(native.startswith(prefix) for prefix in foreign if prefix):
                continue  # other users' and shared namespaces are not this account's mail
            sep = delimiter.decode("ascii") if isinstance(delimiter, bytes) else delimiter
            path, problems = _display_path(native, sep, personal)
            count: int | None = None
            byte_total: int | None = None
            mark: str | None = None
            try:
                status = self._status(client, native, with_size)
                count = int(status.get(b"MESSAGES", 0))
                if status.get(b"HIGHESTMODSEQ"):
                    mark = f"{int(status.get(b'UIDVALIDITY', 0))} {int(status[b'HIGHESTMODSEQ'])}"
                size = status.get(b"SIZE")
                byte_total = (
                    int(size) if size is not None else self._size_sum(client, native, count)
                )
            except SourceError as exc:  # one broken folder must not hide the others
                problems = (*problems, exc.message)
            found.append(
                FolderInfo(
                    path=path,
                    role=folder_role(path, flags),
                    native=native,
                    message_count=count,
                    byte_total=byte_total,
                    problems=problems,
                    mark=mark,
                )
            )
        found.sort(key=lambda info: (info.path != ("INBOX",), info.path))
        return found

    def _status(self, client: IMAPClient, native: str, with_size: bool) -> Mapping[bytes, int]:
        items = (
            ["MESSAGES", "UIDVALIDITY"]
            + (["SIZE"] if with_size else [])
            + (["HIGHESTMODSEQ"] if self.condstore else [])
        )
        try:
            return client.folder_status(native, items)
        except CONNECTION_LOST:
            raise
        except IMAPClientError as exc:
            raise SourceError(
                f"IMAP STATUS of folder {_display(native)} of {self.access.user} failed: "
                f"{_text(exc)}",
                reason=Reason.PROTOCOL,
            ) from None

    def _size_sum(self, client: IMAPClient, native: str, count: int) -> int:
        """Without STATUS=SIZE: RFC822.SIZE of every message, in batches (no bodies read)."""
        if count == 0:
            return 0
        self._select(client, native)
        uids = sorted(client.search("ALL"))
        total = 0
        for start in range(0, len(uids), self.batch_size):
            batch = uids[start : start + self.batch_size]
            for data in client.fetch(batch, ["RFC822.SIZE"]).values():
                total += int(data.get(b"RFC822.SIZE", 0))
        return total

    def uidvalidity(self, folder: FolderInfo) -> int:
        """The folder's UIDVALIDITY as the server states it now.

        EXAMINEd afresh rather than asked with STATUS: a server may answer STATUS for the
        selected folder from the session's old view of it.
        """

        def examine(client: IMAPClient) -> int:
            self._selected = None
            return self._select(client, folder.native)

        return self._run(f"opening folder {folder.display}", examine)

    # -- messages ------------------------------------------------------------------------------
    def messages(
        self,
        folder: FolderInfo,
        *,
        known: Collection[str] = (),
        since: str | None = None,
        expected_uidvalidity: int | None = None,
    ) -> Listing:
        """Records in UID order. With `expected_uidvalidity` (the value recorded on an earlier
        pass), a renumbered folder raises UidValidityChanged before anything is listed.

        Keys in `known` (migrated already, says the caller) come first, as KnownMessage with
        their flags only (a FETCH of FLAGS, not of sizes, dates and headers). With `since`, the
        folder's mark at the last pass, and CONDSTORE: only the flags of messages changed since
        (`FETCH ... (CHANGEDSINCE modseq)`); the others come with flags None (unchanged)."""
        return Listing(self._entries(folder, known, since, expected_uidvalidity))

    def _entries(
        self,
        folder: FolderInfo,
        known: Collection[str],
        since: str | None,
        expected_uidvalidity: int | None,
    ) -> Iterator[MessageRecord | SkippedMessage | KnownMessage]:
        # a generator: the folder is examined when the caller asks for the first entry
        what = f"listing folder {folder.display}"

        def start(client: IMAPClient) -> tuple[int, list[int]]:
            self._selected = None  # re-EXAMINE: the message set may have changed since
            validity = self._select(client, folder.native, expected_uidvalidity)
            return validity, sorted(client.search("ALL"))

        validity, uids = self._run(what, start)
        if known:
            old = [uid for uid in uids if f"{validity}:{uid}" in known]
            yield from self._known(folder, validity, old, since)
            seen = set(old)
            uids = [uid for uid in uids if uid not in seen]
        for first in range(0, len(uids), self.batch_size):
            batch = uids[first : first + self.batch_size]

            def fetch(client: IMAPClient, batch: list[int] = batch) -> dict[int, ListingItem]:
                self._select(client, folder.native, validity)
                try:
                    return fetch_listing(client, batch, message_ids=self.message_ids)
                except UnexpectedResponse:
                    # a server answering in a shape the fast parser does not know: slower, sure
                    self.slow_batches += 1
                    fields = _LIST_FIELDS if self.message_ids else _LIST_FIELDS[:-1]
                    raw = client.fetch(batch, fields)
                    return {uid: _listing_item(uid, item) for uid, item in raw.items()}

            items = self._run(what, fetch)
            for uid in batch:
                item = items.get(uid)
                if item is None:
                    continue  # expunged between SEARCH and FETCH: gone, nothing to migrate
                if item.size == 0:  # RFC822.SIZE: known without reading the body
                    yield SkippedMessage(
                        f"{validity}:{uid}",
                        Reason.EMPTY,
                        f"IMAP message {validity}:{uid} in {folder.display} of {self.access.user} "
                        "is empty (0 bytes)",
                    )
                    continue
                yield self._record(folder, validity, item)

    def _known(
        self, folder: FolderInfo, validity: int, uids: list[int], since: str | None
    ) -> Iterator[KnownMessage]:
        """Known messages with their flags: all of them, or with CONDSTORE and the mark of the
        last pass only those changed since (the others with None: unchanged)."""
        stamp, _, modseq = (since or "").partition(" ")
        changed_since = (
            int(modseq) if self.condstore and stamp == str(validity) and modseq.isdigit() else None
        )
        what = f"listing folder {folder.display}"
        for first in range(0, len(uids), self.batch_size):
            batch = uids[first : first + self.batch_size]

            def fetch(client: IMAPClient, batch: list[int] = batch) -> dict[int, Any]:
                self._select(client, folder.native, validity)
                modifiers = [f"CHANGEDSINCE {changed_since}"] if changed_since is not None else None
                return dict(client.fetch(batch, ["FLAGS"], modifiers=modifiers))

            flags = self._run(what, fetch)
            for uid in batch:
                item = flags.get(uid)
                if item is None and changed_since is None:
                    continue  # expunged meanwhile: gone
                raw = item.get(b"FLAGS") if item is not None else None
                yield KnownMessage(f"{validity}:{uid}", None if raw is None else _flags(tuple(raw)))

    def _record(self, folder: FolderInfo, validity: int, item: ListingItem) -> MessageRecord:
        uid, size, internal_date = item.uid, item.size, item.internal_date
        message_id = _message_id(item.message_id_header)
        return MessageRecord(
            key=f"{validity}:{uid}",
            size=size,
            flags=_flags(item.flags),
            internal_date=internal_date,
            open=lambda: self._open(folder, validity, uid, size),
            extra={
                "uid": str(uid),
                "uidvalidity": str(validity),
                "message_id": message_id,
                "fingerprint": _fingerprint(message_id, size, internal_date),
            },
        )

    def _open(self, folder: FolderInfo, validity: int, uid: int, size: int) -> BinaryIO:
        key = f"{validity}:{uid}"

        def fetch_range(offset: int, length: int) -> bytes:
            def operation(client: IMAPClient) -> bytes:
                self._select(client, folder.native, validity)
                response = client.fetch([uid], [f"BODY.PEEK[]<{offset}.{length}>"])
                item = response.get(uid)
                if item is None:
                    raise SourceError(
                        f"IMAP message {key} in {folder.display} of {self.access.user} no longer "
                        "exists on the server",
                        reason=Reason.VANISHED,
                    )
                for name, value in item.items():
                    if name.startswith(b"BODY[]"):
                        return value if isinstance(value, bytes) else b""
                raise SourceError(
                    f"IMAP message {key} in {folder.display}: the server sent no body",
                    reason=Reason.PROTOCOL,
                )

            return self._run(f"reading message {key} in {folder.display}", operation)

        describe = f"IMAP message {key} in {folder.display} of {self.access.user}"
        stream = ImapMessageStream(fetch_range, size, describe, self.range_size)
        return io.BufferedReader(stream, 64 * 1024)


# -- helpers -------------------------------------------------------------------------------------
def _namespaces(client: IMAPClient, capabilities: set[bytes]) -> tuple[str, list[str]]:
    """The personal namespace prefix (e.g. "INBOX." on Courier) and other namespaces' prefixes."""
    if b"NAMESPACE" not in capabilities:
        return "", []
    spaces = client.namespace()

    def prefixes(group: object) -> list[str]:
        if not group:
            return []
        result = []
        for prefix, _separator in group:  # type: ignore[attr-defined]
            result.append(
                prefix.decode("ascii", "replace") if isinstance(prefix, bytes) else str(prefix)
            )
        return result

    personal = prefixes(spaces.personal)
    return (personal[0] if personal else ""), prefixes(spaces.other) + prefixes(spaces.shared)


def _display_path(
    native: str, separator: str | None, personal: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    name = native
    if native.upper() == "INBOX":
        return ("INBOX",), ()
    if personal and name.startswith(personal) and name != personal:
        name = name[len(personal) :]  # Courier's "INBOX.Sent" is the folder Sent
    parts = name.split(separator) if separator else [name]
    problems: list[str] = []
    decoded: list[str] = []
    for part in parts:
        try:
            decoded.append(utf7.decode(part))
        except ValueError:
            decoded.append(part)
            problems.append(f"folder name {native!r} is not valid modified UTF-7; shown as sent")
    return tuple(decoded), tuple(dict.fromkeys(problems))


def _display(native: str) -> str:
    return utf7.decode_lenient(native)


def _flags(raw: tuple[bytes, ...]) -> Flags:
    system: dict[str, bool] = {}
    keywords: list[str] = []
    for text in raw:
        name = _SYSTEM_FLAGS.get(text.lower())
        if name is not None:
            system[name] = True
        elif not text.startswith(b"\\"):  # \Recent and unknown system flags are not keywords
            keywords.append(text.decode("utf-8", "replace"))
    return Flags(keywords=tuple(sorted(keywords)), **system)


def _listing_item(uid: int, item: Mapping[bytes, object]) -> ListingItem:
    """IMAPClient's parse of a listing FETCH, as the fast parser would have returned it."""
    internal = item.get(b"INTERNALDATE")
    header = next(
        (
            v
            for k, v in item.items()
            if k.startswith(b"BODY[HEADER.FIELDS") and isinstance(v, bytes)
        ),
        b"",
    )
    flags = item.get(b"FLAGS")
    return ListingItem(
        uid=uid,
        size=_as_int(item.get(b"RFC822.SIZE")),
        flags=tuple(f if isinstance(f, bytes) else str(f).encode() for f in flags)
        if isinstance(flags, tuple | list)
        else (),
        internal_date=internal.astimezone(UTC) if isinstance(internal, datetime) else None,
        message_id_header=header,
    )


def _message_id(header: bytes) -> str:
    """The Message-ID from its header field as fetched ("Message-ID: <x@y>\r\n\r\n")."""
    unfolded = re.sub(r"\r?\n[ \t]+", " ", header.decode("utf-8", "replace"))
    _, _, value = unfolded.partition(":")
    return value.strip()


def _as_int(value: object) -> int:
    return int(value) if isinstance(value, int | bytes | str) else 0


def _text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text[2:-1] if text[:2] in ("b'", 'b"') else text
