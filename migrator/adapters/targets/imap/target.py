"""Any IMAP server as a target: the Target implementation (IMAPClient lives in this package).

Target ids are "{uidvalidity}:{uid}" from APPENDUID (UIDPLUS). Besides the Target contract this
class offers `find_uploads(mailbox, folder, items, known_ids=())`, which recognises messages by
Message-ID, size, INTERNALDATE and content when no X-Migrator-Key header was added (recovery.py),
and on a server that rebuilds the messages it serves (Exchange: `Session.converts`) by what
survives that (converted.py); see docs/targets.md, "IMAP target".
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from imapclient.exceptions import IMAPClientError

from migrator.model.errors import MigratorError, PermanentError, TransientError
from migrator.model.mail import Flags, FolderRole, UploadItem, UploadResult
from migrator.model.plan import TargetSettings
from migrator.model.reasons import Reason

from ..base import ExcludedFolderError, FlagChange, KeyedItems, TargetFolder, is_well_known
from ..dates import header_date
from ..naming import FolderNaming
from . import errors
from .append import (
    Answer,
    Message,
    Wire,
    append_multi,
    append_pipelined,
    appenduid,
    date_time,
    flag_list,
    quoted,
)
from .changes import command, copyuid, prints, store_changes, uid_ranges
from .connection import Connector, Pool, Session, rights_allow_insert
from .converted import FolderIndex, find_converted, find_tags, identical_converted
from .folders import MailboxFolders
from .oauth import MICROSOFT_TOKEN_URL, TokenSource
from .recovery import (
    Sent,
    find_sent,
    find_tagged,
    header_value,
    identical_uids,
    tagged_uids,
    with_tag_header,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

MULTI_ITEMS = 100  # messages per MULTIAPPEND
MULTI_BYTES = 16 * 1024 * 1024  # bytes per MULTIAPPEND
JOURNAL_SIZE = 200_000  # uploads remembered in memory for find() without the tag header
# messages whose identity is kept in memory (FolderIndex, servers that convert): folders used
# longest ago are forgotten beyond this (a folder is read again when next asked for)
INDEX_MESSAGES = 200_000
UNKNOWN_UID = "?"


@dataclass
class _Afterwards:
    """What upload() must still look up once its connection is back in the pool."""

    lost: TransientError | None = None  # the connection broke during APPEND
    # (UIDVALIDITY, UIDNEXT) of the folder before the first APPEND: whatever this call stored
    # has a UID from there on, so an identical message stored earlier is never taken for it
    floor: tuple[int, int] | None = None
    unsure: list[int] = field(default_factory=list)  # written, unanswered: stored or not?
    unknown: list[int] = field(default_factory=list)  # stored without APPENDUID
    expired: bool = False  # the server ended the session: its OAuth2 token ran out
    flagged: list[int] = field(default_factory=list)  # \\Flagged set after APPEND (Exchange)


def open_imap_target(
    settings: TargetSettings, *, secrets: Mapping[str, str], max_connections: int
) -> ImapTarget:
    return ImapTarget(settings, secrets=secrets, max_connections=max_connections)


class ImapTarget:
    """Writes into IMAP mailboxes. Thread-safe; one connection pool per object."""

    def __init__(
        self,
        settings: TargetSettings,
        *,
        secrets: Mapping[str, str],
        max_connections: int = 4,
        plan_file: str = "plan",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.host:
            raise PermanentError(
                f'{plan_file}: [target] host is missing for kind = "imap"', reason=Reason.CONFIG
            )
        self.settings = settings
        self.max_message_size = settings.max_message_size
        self.naming = FolderNaming(
            archive_folder=settings.archive_folder,
            folder_map=settings.folder_map,
            exclude_folders=settings.exclude_folders,
            plan_file=plan_file,
        )
        tokens: TokenSource | None = None
        if settings.auth == "xoauth2":
            tokens = TokenSource(
                token_url=settings.token_url
                or MICROSOFT_TOKEN_URL.format(tenant_id=settings.tenant_id),
                client_id=settings.client_id or "",
                client_secret=secrets.get("client_secret", ""),
                scope=settings.oauth_scope,
                timeout=settings.timeout,
                clock=clock,
            )
        self.tokens = tokens
        self.connector = Connector(settings, dict(secrets), tokens)
        self.pool = Pool(self.connector.open, max_connections, clock=clock)
        self._lock = threading.Lock()
        self._exchange = False  # the server greeted as Microsoft Exchange (known once connected)
        # (mailbox, folder id) -> what a converting server's folder holds (see converted.py)
        self._indexes: OrderedDict[tuple[str, str], FolderIndex] = OrderedDict()
        self._folders: dict[str, MailboxFolders] = {}
        # (mailbox, folder id, key) -> (uidvalidity, uid) of what this object stored
        self._journal: OrderedDict[tuple[str, str, str], tuple[int, int]] = OrderedDict()

    # --- plumbing -----------------------------------------------------------------------------
    def _run(self, mailbox: str, where: str, what: str, fn: Callable[[Session], T]) -> T:
        """fn on a leased session of `mailbox`, with every IMAP failure translated. When the
        server ended the session because its OAuth2 token ran out, fn runs once more on a
        session with a fresh token: every fn given here may run again after such an end
        (upload's APPENDs settle a broken connection themselves)."""
        for attempt in (1, 2):
            with self.pool.lease(mailbox) as session:
                self._learn(session)
                try:
                    return fn(session)
                except MigratorError:
                    raise
                except errors.CONNECTION_LOST as exc:
                    session.broken = True
                    if attempt == 1 and self._token_ran_out(session, exc):
                        continue
                    raise errors.connection_error(
                        exc,
                        where=where,
                        what=what,
                        endpoint=self.connector.endpoint,
                        timeout=self.settings.timeout,
                    ) from None
                except IMAPClientError as exc:
                    text = str(exc).encode("utf-8", "replace")
                    if errors.session_unusable(text):
                        session.broken = True  # never lend it again
                    raise errors.answer_error(text, where=where, what=what) from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _token_ran_out(
        self, session: Session, exc: BaseException, bye: bytes | None = None
    ) -> bool:
        """The connection ended with Exchange Online's "BYE Session invalidated -
        AccessTokenExpired": drop that token, so the next login fetches a new one."""
        untagged = getattr(session.client._imap, "untagged_responses", {})
        said = [str(exc).encode("utf-8", "replace"), bye or b"", *untagged.get("BYE", [])]
        if not any(errors.token_expired(text) for text in said):
            return False
        if self.tokens is not None and session.token is not None:
            self.tokens.invalidate(session.token)
        log.info(
            "%s: its OAuth2 token ran out in the middle of a session; logging in again",
            session.mailbox,
        )
        return True

    def _learn(self, session: Session) -> None:
        self._exchange = session.exchange
        limit = session.append_limit()
        if limit is not None and limit < self.max_message_size:
            self.max_message_size = limit

    def _mailbox_folders(self, mailbox: str) -> MailboxFolders:
        with self._lock:
            return self._folders.setdefault(mailbox.casefold(), MailboxFolders())

    def forget_mailbox(self, mailbox: str) -> None:
        """Drop the mailbox's folder listing once its account is done (the engine says when):
        kept for every mailbox a campaign touched, they only grew (issue 19). Its sessions
        stay in the pool, which bounds them."""
        with self._lock:
            self._folders.pop(mailbox.casefold(), None)

    def _select(self, session: Session, folder: str, readonly: bool = True) -> int:
        answer = session.client.select_folder(folder, readonly=readonly)
        session.selected = (folder, readonly)
        return int(answer[b"UIDVALIDITY"])

    @contextlib.contextmanager
    def _folder_index(
        self, session: Session, mailbox: str, folder: TargetFolder
    ) -> Iterator[FolderIndex]:
        """The folder selected read-only and its index brought up to date (a server that
        converts messages: recognition by what survives, never by SEARCH)."""
        answer = session.client.select_folder(folder.id, readonly=True)
        session.selected = (folder.id, True)
        key = (mailbox.casefold(), folder.id)
        with self._lock:
            index = self._indexes.setdefault(key, FolderIndex())
            self._indexes.move_to_end(key)
        with index.lock:
            index.refresh(session.client, int(answer[b"UIDVALIDITY"]), int(answer[b"EXISTS"]))
            yield index
        with self._lock:
            total = sum(len(i) for i in self._indexes.values())
            while total > INDEX_MESSAGES and len(self._indexes) > 1:
                _, oldest = self._indexes.popitem(last=False)
                total -= len(oldest)

    # --- contract -----------------------------------------------------------------------------
    def preflight(self, mailbox: str) -> None:
        where = f"mailbox {mailbox}"

        def check(session: Session) -> None:
            if session.has("ACL"):
                _, data = session.client._imap.myrights("INBOX")
                rights = (data[0] or b"").split()[-1].decode("ascii", "replace") if data else ""
                if not rights_allow_insert(rights):
                    raise PermanentError(
                        f"{where}: {self.connector.login_name(mailbox)} may not add messages to "
                        f"it (rights {rights!r})",
                        reason=Reason.NO_PERMISSION,
                        hint="grant the administrator full rights on the mailbox (ACL lrwstipekxa)",
                    )
            else:
                session.client.folder_status("INBOX", ["MESSAGES"])

        self._run(mailbox, where, "preflight", check)

    def is_excluded(self, path: tuple[str, ...]) -> bool:
        return self.naming.is_excluded(path)

    def ensure_folder(self, mailbox: str, path: tuple[str, ...], role: FolderRole) -> TargetFolder:
        if self.naming.is_excluded(path):
            raise ExcludedFolderError(path)
        folders = self._mailbox_folders(mailbox)
        where = f"mailbox {mailbox}, folder {'/'.join(path)!r}"

        def ensure(session: Session) -> TargetFolder:
            with folders.lock:
                if not folders.loaded:
                    folders.load(session)
                target = self.naming.target_path(path, role, folders.role_paths)
                wire, created = folders.ensure(session, target)
                if target.anchor is not None and not target.names:
                    folders.role_paths[path] = target.anchor
                return TargetFolder(id=wire, path=target.display(), empty=created)

        return self._run(mailbox, where, "creating the folder", ensure)

    def count(self, mailbox: str, folder: TargetFolder) -> int:
        where = f"mailbox {mailbox}, folder {folder.display!r}"
        return self._run(
            mailbox,
            where,
            "STATUS",
            lambda s: int(s.client.folder_status(folder.id, ["MESSAGES"])[b"MESSAGES"]),
        )

    def shown(self, flags: Flags) -> tuple[object, ...]:
        """The flags APPEND and STORE carry: all but \\Deleted (keywords but on Exchange)."""
        names = flag_list(flags, keywords=not self._exchange).decode("ascii")[1:-1].split()
        return tuple(sorted(names))

    def flags_of(
        self, mailbox: str, folder: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, tuple[object, ...]]:
        """One UID FETCH FLAGS of the folder."""
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def listing(session: Session) -> dict[str, tuple[object, ...]]:
            uids = self._uids(self._select(session, folder.id), target_ids)
            by_uid = {uid: tid for tid, uid in uids.items()}
            found = session.client.fetch(sorted(by_uid), ["FLAGS"]) if by_uid else {}
            hidden = {b"\\recent", b"\\deleted"}
            return {
                by_uid[uid]: tuple(
                    sorted(
                        f.decode("utf-8", "replace")
                        for f in data[b"FLAGS"]
                        if f.lower() not in hidden
                    )
                )
                for uid, data in found.items()
                if uid in by_uid
            }

        return self._run(mailbox, where, "FETCH", listing)

    def present(
        self, mailbox: str, folder: TargetFolder, target_ids: Collection[str]
    ) -> tuple[set[str], int]:
        """(those of `target_ids` the folder still holds, messages in it): what `verify` checks.
        IMAP keeps no source key on a message (unless tag_header), but the ledger holds each
        upload's UIDVALIDITY:UID, and one UID SEARCH lists the folder."""
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def listing(session: Session) -> tuple[set[str], int]:
            validity = self._select(session, folder.id)
            uids = {f"{validity}:{uid}" for uid in session.client.search(["ALL"])}
            return {tid for tid in target_ids if tid in uids}, len(uids)

        return self._run(mailbox, where, "UID SEARCH", listing)

    def withdraw(self, mailbox: str, folder: TargetFolder, target_ids: Collection[str]) -> None:
        """Delete messages this process stored but may not keep (duplicates of what a worker
        that took the account over stored; see the engine): \\Deleted, then UID EXPUNGE of
        exactly those (UIDPLUS). Without UIDPLUS they stay flagged \\Deleted: a plain EXPUNGE
        would also erase what the user deleted."""
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def delete(session: Session) -> None:
            validity = self._select(session, folder.id, readonly=False)
            uids = [
                int(t.split(":", 1)[1])
                for t in target_ids
                if t.startswith(f"{validity}:") and t.split(":", 1)[1].isdigit()
            ]
            if not uids:
                return
            session.client.delete_messages(uids)
            if session.has("UIDPLUS"):
                session.client.uid_expunge(uids)

        self._run(mailbox, where, "UID EXPUNGE", delete)

    def update_flags(
        self, mailbox: str, folder: TargetFolder, changes: Sequence[FlagChange]
    ) -> list[Exception | None]:
        """Carry flag changes made in the source: UID STORE of the flags added and removed
        (see changes.py). A message whose id names another UIDVALIDITY (the folder was
        renumbered) or no UID is not found."""
        where = f"mailbox {mailbox}, folder {folder.display!r}"
        results: list[Exception | None] = [None] * len(changes)

        def store(session: Session) -> None:
            validity = self._select(session, folder.id, readonly=False)
            wanted = []
            for index, change in enumerate(changes):
                stamp, _, uid = change.target_id.partition(":")
                if stamp != str(validity) or not uid.isdigit():
                    results[index] = PermanentError(
                        f"{where}: message {change.target_id} is no longer there "
                        f"(the folder's UIDVALIDITY is {validity})",
                        reason=Reason.NOT_FOUND,
                    )
                    continue
                wanted.append((int(uid), change.before, change.after))
            # Exchange keeps no IMAP keywords (see _message)
            store_changes(session.client, wanted, keywords=not session.exchange)

        self._run(mailbox, where, "UID STORE", store)
        return results

    @staticmethod
    def _uids(validity: int, target_ids: Sequence[str]) -> dict[str, int]:
        """Target id -> UID, for the ids of this UIDVALIDITY (others name messages of a folder
        that was renumbered since, or none: "?")."""
        out: dict[str, int] = {}
        for tid in target_ids:
            stamp, _, uid = tid.partition(":")
            if stamp == str(validity) and uid.isdigit():
                out[tid] = int(uid)
        return out

    def prepare_move(
        self, mailbox: str, source: TargetFolder, dest: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, Any]:
        """The destination's UIDVALIDITY and UIDNEXT, and each message's Message-ID, size and
        INTERNALDATE: what finds the messages again if the answer to their move is lost."""
        where = f"mailbox {mailbox}, folder {source.display!r}"

        def facts(session: Session) -> dict[str, Any]:
            uids = self._uids(self._select(session, source.id), target_ids)
            found = prints(session.client, list(uids.values()))
            status = session.client.folder_status(dest.id, ["UIDVALIDITY", "UIDNEXT"])
            return {
                "floor": [int(status[b"UIDVALIDITY"]), int(status[b"UIDNEXT"])],
                "prints": {tid: found[uid] for tid, uid in uids.items() if uid in found},
            }

        return self._run(mailbox, where, "FETCH", facts)

    def move(
        self, mailbox: str, source: TargetFolder, dest: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, str | Exception | None]:
        """UID MOVE (or UID COPY and UID EXPUNGE of exactly those) into `dest`; the new ids from
        COPYUID, else looked up as after a lost answer (see changes.py)."""
        where = f"mailbox {mailbox}, folder {source.display!r}"

        def move(session: Session) -> tuple[dict[str, int], dict[int, int], int | None, bool]:
            uids = self._uids(self._select(session, source.id, readonly=False), target_ids)
            if not uids:
                return uids, {}, None, True
            moved = uid_ranges(list(uids.values()))
            verb = b"MOVE" if session.has("MOVE") else b"COPY"
            answer, untagged = command(
                session, b"UID " + verb + b" " + moved + b" " + quoted(dest.id)
            )
            if not answer.ok:
                raise errors.answer_error(answer.text, where=where, what=f"UID {verb.decode()}")
            new = copyuid([*untagged, answer.text])
            if verb == b"COPY":  # the copies are there: remove the originals, exactly those
                session.client.delete_messages(list(uids.values()), silent=True)
                if session.has("UIDPLUS"):
                    session.client.uid_expunge(list(uids.values()))
            validity = int(session.client.folder_status(dest.id, ["UIDVALIDITY"])[b"UIDVALIDITY"])
            return uids, new, validity, session.has("UIDPLUS")

        uids, new, validity, told = self._run(mailbox, where, "UID MOVE", move)
        out: dict[str, str | Exception | None] = {tid: None for tid in target_ids}
        for tid, uid in uids.items():
            if uid in new:
                out[tid] = f"{validity}:{new[uid]}"
            elif not told:
                # a server without UIDPLUS says nothing of the new UIDs: they are "?" (not found
                # again by UID, as an APPEND without APPENDUID); with UIDPLUS a UID COPYUID
                # leaves out was not there to move
                out[tid] = UNKNOWN_UID
        return out

    def locate_moved(
        self,
        mailbox: str,
        source: TargetFolder,
        dest: TargetFolder,
        moved: Mapping[str, str],
        facts: Mapping[str, Any],
        taken: Collection[str],
    ) -> dict[str, str | None]:
        """Which of the moved messages reached `dest`: among the messages that arrived there
        from the UIDNEXT before the move on, those with the same Message-ID, size and
        INTERNALDATE (counted: identical copies pair one to one). A found message whose
        original is still in `source` (a UID COPY whose UID EXPUNGE never came) has the
        original removed, so the move is complete."""
        where = f"mailbox {mailbox}, folder {dest.display!r}"
        floor = facts.get("floor") or [0, 0]
        wanted: dict[str, list[str]] = {}
        for tid, fingerprint in (facts.get("prints") or {}).items():
            if tid in moved:
                wanted.setdefault(fingerprint, []).append(tid)

        def look(session: Session) -> dict[str, str | None]:
            out: dict[str, str | None] = dict.fromkeys(moved)
            validity = self._select(session, dest.id)
            if validity != int(floor[0]) or not wanted:
                return out
            arrived = [
                u
                for u in session.client.search(["UID", f"{int(floor[1])}:*"])
                if u >= int(floor[1])
            ]
            for uid, fingerprint in sorted(prints(session.client, arrived).items()):
                tid = f"{validity}:{uid}"
                olds = wanted.get(fingerprint)
                if olds and tid not in taken:
                    out[olds.pop(0)] = tid
            return out

        found = self._run(mailbox, where, "FETCH", look)
        done = [old for old, new in found.items() if new is not None]
        if done:
            self.withdraw(mailbox, source, done)
        return found

    def rename_folder(
        self, mailbox: str, folder: TargetFolder, path: tuple[str, ...], role: FolderRole
    ) -> tuple[TargetFolder, dict[str, str]] | None:
        """RENAME the target folder of a renamed source folder to where the new name leads;
        its subfolders follow it (the map gives their new names too). None for a well-known
        folder, when the new name is taken, or when the server gave the folder a new
        UIDVALIDITY (the ledger's UIDs would no longer name its messages: it is renamed back)."""
        if self.naming.is_excluded(path) or is_well_known(folder):
            return None
        folders = self._mailbox_folders(mailbox)
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def rename(session: Session) -> tuple[TargetFolder, dict[str, str]] | None:
            with folders.lock:
                if not folders.loaded:
                    folders.load(session)
                target = self.naming.target_path(path, role, folders.role_paths)
                if not target.names:
                    return None
                parent = folders.anchor(session, target.anchor)
                for name in target.names[:-1]:
                    wire = folders.wire_name(parent, name)
                    parent = folders._lookup(wire) or folders.create(session, wire)
                new = folders.wire_name(parent, target.names[-1])
                if new == folder.id:
                    return TargetFolder(new, target.display()), {}
                if folder.id not in folders.existing:
                    if folders._lookup(new) is None:
                        return None
                    # renamed by a pass that stopped before its ledger knew: done already
                    return TargetFolder(new, target.display()), {
                        folder.id + name[len(new) :]: name
                        for name in folders.existing
                        if name == new or name.startswith(new + folders.separator)
                    }
                if folders._lookup(new) is not None:
                    return None
                validity = session.client.folder_status(folder.id, ["UIDVALIDITY"])[b"UIDVALIDITY"]
                session.selected = None
                session.client.rename_folder(folder.id, new)
                if session.client.folder_status(new, ["UIDVALIDITY"])[b"UIDVALIDITY"] != validity:
                    session.client.rename_folder(new, folder.id)
                    return None
                moved = {
                    name: new + name[len(folder.id) :]
                    for name in list(folders.existing)
                    if name == folder.id or name.startswith(folder.id + folders.separator)
                }
                for old, now in moved.items():
                    folders.existing[now] = folders.existing.pop(old)
                with contextlib.suppress(IMAPClientError):
                    session.client.subscribe_folder(new)
                return TargetFolder(new, target.display()), moved

        return self._run(mailbox, where, "RENAME", rename)

    def delete(self, mailbox: str, folder: TargetFolder, target_ids: Sequence[str]) -> None:
        """\\Deleted and UID EXPUNGE of exactly these UIDs (see withdraw)."""
        self.withdraw(mailbox, folder, target_ids)

    def items_by_key(self, mailbox: str, folder: TargetFolder) -> KeyedItems | None:
        """With tag_header, every message of `folder` carrying X-Migrator-Key, from one FETCH
        of that header (what a first pass adopts and `dedupe` looks for copies in); None
        without it (the caller recognises messages by content: find_uploads, identical_items)."""
        if not self.settings.tag_header:
            return None
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def listing(session: Session) -> KeyedItems:
            validity = self._select(session, folder.id)
            by_uid, total = tagged_uids(session.client)
            by_tag = {tag: [f"{validity}:{uid}" for uid in uids] for tag, uids in by_uid.items()}
            return KeyedItems(by_tag, total, tag_of=header_value)

        return self._run(mailbox, where, "FETCH", listing)

    def identical_items(self, mailbox: str, folder: TargetFolder) -> list[list[str]]:
        """Groups of messages of `folder` that are the same message (Message-ID, size,
        INTERNALDATE and content): where `dedupe` finds copies when no tag header was added."""
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def listing(session: Session) -> list[list[str]]:
            if session.converts:
                with self._folder_index(session, mailbox, folder) as index:
                    return [
                        [f"{index.validity}:{uid}" for uid in group]
                        for group in identical_converted(session.client, index)
                    ]
            validity = self._select(session, folder.id)
            return [
                [f"{validity}:{uid}" for uid in group] for group in identical_uids(session.client)
            ]

        return self._run(mailbox, where, "FETCH", listing)

    def find(
        self,
        mailbox: str,
        folder: TargetFolder,
        keys: Sequence[str],
        exclude_ids: Collection[str] = (),
    ) -> dict[str, str]:
        """Keys stored in `folder`: by X-Migrator-Key with tag_header, and always those this
        object stored itself (confirmed on the server). Without the header, after a restart,
        use find_uploads()."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def search(session: Session) -> dict[str, str]:
            if session.converts:
                with self._folder_index(session, mailbox, folder) as index:
                    found = self._journal_hits(session, mailbox, folder, wanted, index)
                    rest = [k for k in wanted if k not in found]
                    if rest and self.settings.tag_header:
                        tags = {header_value(k): k for k in rest}
                        excluded = _uids(exclude_ids, index.validity)
                        for key, uid in find_tags(index, tags, excluded).items():
                            found[key] = f"{index.validity}:{uid}"
                return {key: tid for key, tid in found.items() if tid not in exclude_ids}
            validity = self._select(session, folder.id)
            found = self._journal_hits(session, mailbox, folder, wanted, validity)
            rest = [k for k in wanted if k not in found]
            if rest and self.settings.tag_header:
                for key, uid in find_tagged(session.client, rest).items():
                    found[key] = f"{validity}:{uid}"
            return {key: tid for key, tid in found.items() if tid not in exclude_ids}

        return self._run(mailbox, where, "searching", search)

    def find_uploads(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        known_ids: Collection[str] = (),
    ) -> dict[str, str]:
        """Key -> target id for those of `items` already stored in `folder`, recognised by
        their content (Message-ID, size, INTERNALDATE, then SHA-256; on a converting server
        Message-ID, INTERNALDATE, From/Subject/Date and decoded content) or their tag header.
        `known_ids` are target ids the caller already holds for other source messages of this
        folder: never matched again, so identical copies stay separate."""
        if not items:
            return {}
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def search(session: Session) -> dict[str, str]:
            if session.converts:
                found, journal = self._find_converted(session, mailbox, folder, items, known_ids)
            else:
                found, journal = self._find_sent(session, mailbox, folder, items, known_ids)
            if session.exchange:
                # stored by an upload whose answer never came (a crash, a broken connection):
                # nothing set \\Flagged on them yet
                flagged = {i.key for i in items if i.flags.flagged}
                uids = [
                    int(tid.split(":", 1)[1])
                    for key, tid in found.items()
                    if key in flagged and key not in journal
                ]
                if uids:
                    self._add_flagged(session, folder, uids, where)
            return found

        return self._run(mailbox, where, "searching", search)

    def _find_converted(
        self,
        session: Session,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        known_ids: Collection[str],
    ) -> tuple[dict[str, str], set[str]]:
        """find_uploads() on a server that converts messages: (key -> target id, the keys
        this object's own journal answered)."""
        keys = [i.key for i in items]
        with self._folder_index(session, mailbox, folder) as index:
            validity = index.validity
            found = self._journal_hits(session, mailbox, folder, keys, index)
            journal = set(found)
            exclude = _uids([*known_ids, *found.values()], validity)
            rest = [i for i in items if i.key not in found]
            if self.settings.tag_header:
                hits = find_tags(index, {header_value(i.key): i.key for i in rest}, exclude)
            else:
                sent = [Sent(i.key, self._payload(i), _when(i)) for i in rest]
                hits = find_converted(session.client, index, sent, exclude)
            for key, uid in hits.items():
                found[key] = f"{validity}:{uid}"
        return found, journal

    def _find_sent(
        self,
        session: Session,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        known_ids: Collection[str],
    ) -> tuple[dict[str, str], set[str]]:
        """find_uploads() on a server that keeps what it was given: (key -> target id, the
        keys this object's own journal answered)."""
        validity = self._select(session, folder.id)
        keys = [i.key for i in items]
        found = self._journal_hits(session, mailbox, folder, keys, validity)
        journal = set(found)
        exclude = _uids([*known_ids, *found.values()], validity)
        if self.settings.tag_header:
            rest = [k for k in keys if k not in found]
            for key, uid in find_tagged(session.client, rest, exclude).items():
                found[key] = f"{validity}:{uid}"
        else:
            sent = [Sent(i.key, self._payload(i), _when(i)) for i in items if i.key not in found]
            for key, uid in find_sent(session.client, sent, exclude).items():
                found[key] = f"{validity}:{uid}"
        return found, journal

    def _journal_hits(
        self,
        session: Session,
        mailbox: str,
        folder: TargetFolder,
        keys: Sequence[str],
        seen: int | FolderIndex,
    ) -> dict[str, str]:
        """Key -> target id of what this object stored itself, still in the folder: asked
        with UID SEARCH, or from the index just brought up to date (`seen`: UIDVALIDITY or
        the FolderIndex)."""
        validity = seen.validity if isinstance(seen, FolderIndex) else seen
        with self._lock:
            known = {k: self._journal.get((mailbox, folder.id, k)) for k in keys}
        uids = {k: v[1] for k, v in known.items() if v is not None and v[0] == validity}
        if not uids:
            return {}
        if isinstance(seen, FolderIndex):
            present = set(seen.facts)
        else:
            present = set(session.client.search(["UID", ",".join(str(u) for u in uids.values())]))
        return {k: f"{validity}:{uid}" for k, uid in uids.items() if uid in present}

    def _remember(
        self, mailbox: str, folder: TargetFolder, key: str, validity: int, uid: int
    ) -> None:
        with self._lock:
            self._journal[(mailbox, folder.id, key)] = (validity, uid)
            while len(self._journal) > JOURNAL_SIZE:
                self._journal.popitem(last=False)

    # --- upload ---------------------------------------------------------------------------------
    def _payload(self, item: UploadItem) -> bytes:
        return with_tag_header(item.data, item.key) if self.settings.tag_header else item.data

    def upload(
        self, mailbox: str, folder: TargetFolder, items: Sequence[UploadItem]
    ) -> list[UploadResult]:
        where = f"mailbox {mailbox}, folder {folder.display!r}"
        results: list[UploadResult | None] = [None] * len(items)
        sendable: list[int] = []
        for index, item in enumerate(items):
            error = self._refuse(item, where)
            if error is not None:
                results[index] = UploadResult(item.key, error=error)
            else:
                sendable.append(index)
        todo = sendable
        flagged: set[int] = set()
        for _ in range(2):
            if not todo:
                break
            after = _Afterwards()
            try:
                self._run(
                    mailbox,
                    where,
                    "APPEND",
                    functools.partial(
                        self._send,
                        mailbox=mailbox,
                        folder=folder,
                        items=items,
                        indexes=todo,
                        results=results,
                        after=after,
                    ),
                )
            except (TransientError, PermanentError) as exc:  # login, connection: whole chunk
                for index in todo:
                    if results[index] is None and index not in after.unsure:
                        results[index] = UploadResult(items[index].key, error=exc)
            # lookups take a connection of their own: only once ours is back in the pool
            settled = self._settle_lost(mailbox, folder, items, after, results)
            if after.unknown:
                self._identify(mailbox, folder, items, after.unknown, results, after.floor)
            flagged.update(after.flagged)
            if not (after.expired and settled):
                break
            # The session's token ran out mid-chunk, and the server was asked what the broken
            # connection stored: the rest goes once more, on a session with a fresh token.
            todo = [i for i in todo if (r := results[i]) is not None and r.error is after.lost]
            for index in todo:
                results[index] = None
        self._flag_found(mailbox, folder, items, results, flagged)
        return [
            r
            if r is not None
            else UploadResult(
                items[i].key, error=TransientError(f"{where}: no answer for message {items[i].key}")
            )
            for i, r in enumerate(results)
        ]

    def _refuse(self, item: UploadItem, where: str) -> PermanentError | None:
        # the size limit is the engine's to apply (engine/mailbox.py too_large): this target
        # declares it in max_message_size, APPENDLIMIT included
        if not item.data:
            return PermanentError(f"{where}: message {item.key} is empty", reason=Reason.REJECTED)
        return None

    def _message(self, session: Session, item: UploadItem) -> Message:
        # Exchange keeps no IMAP keywords; sending them only risks a refusal
        return Message(
            flag_list(item.flags, keywords=not session.exchange),
            date_time(_when(item)),
            self._payload(item),
        )

    def _send(
        self,
        session: Session,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        indexes: list[int],
        results: list[UploadResult | None],
        after: _Afterwards,
    ) -> None:
        where = f"mailbox {mailbox}, folder {folder.display!r}"
        todo = [i for i in indexes if results[i] is None]
        if not todo:
            return
        status = session.client.folder_status(folder.id, ["UIDVALIDITY", "UIDNEXT"])
        after.floor = (int(status[b"UIDVALIDITY"]), int(status[b"UIDNEXT"]))
        wire = Wire(session)
        batches: list[list[int]] = []
        if session.has("MULTIAPPEND") and len(todo) > 1:
            batch: list[int] = []
            size = 0
            for index in todo:
                length = len(items[index].data)
                if batch and (len(batch) >= MULTI_ITEMS or size + length > MULTI_BYTES):
                    batches.append(batch)
                    batch, size = [], 0
                batch.append(index)
                size += length
            batches.append(batch)
        else:
            batches = [todo]
        stored: list[tuple[int, int, int]] = []  # (index, uidvalidity, uid)
        # each batch as written: its messages, the index of its first tag in wire.sent, and
        # whether it went as one MULTIAPPEND
        sent_batches: list[tuple[list[int], int, bool]] = []
        try:
            for batch in batches:
                stop = self._send_batch(
                    session, wire, folder, items, batch, results, stored, sent_batches, where
                )
                if stop is not None:
                    for index in todo:
                        if results[index] is None:
                            results[index] = UploadResult(items[index].key, error=stop)
                    break
        except errors.CONNECTION_LOST as exc:
            session.broken = True
            after.expired = self._token_ran_out(session, exc, wire.bye)
            self._settle_answered(wire, sent_batches, items, results, stored, after, where)
            lost = errors.connection_error(
                exc,
                where=where,
                what="APPEND",
                endpoint=self.connector.endpoint,
                timeout=self.settings.timeout,
            )
            # Exchange Online may throttle with "BAD ... Suggested Backoff Time" and hang up:
            # the hint must survive the broken connection
            hint = max(
                (
                    h
                    for h in (errors.backoff_hint(a.text) for a in wire.answers.values())
                    if h is not None
                ),
                default=None,
            )
            after.lost = (
                lost
                if hint is None
                else TransientError(
                    f"{lost}; the server asked to wait {hint:g} s", retry_after=hint, hint=lost.hint
                )
            )
        self._finish(session, mailbox, folder, items, stored, results, after, where)

    def _settle_answered(
        self,
        wire: Wire,
        sent_batches: list[tuple[list[int], int, bool]],
        items: Sequence[UploadItem],
        results: list[UploadResult | None],
        stored: list[tuple[int, int, int]],
        after: _Afterwards,
        where: str,
    ) -> None:
        """The connection broke: take the answers that did arrive; a message whose command
        was written (or was being written) but not answered may or may not be stored."""
        for batch, first, multi in sent_batches:
            if multi:
                tags = wire.sent[first : first + 1]
                answer = wire.answers.get(tags[0]) if tags else None
                if answer is None or not answer.ok:
                    after.unsure.extend(i for i in batch if results[i] is None)
                else:
                    self._stored(batch, answer, stored, items, results)
                continue
            tags = wire.sent[first : first + len(batch)]
            for position, index in enumerate(batch):
                if results[index] is not None:
                    continue
                if position > len(tags):
                    break  # never written: not stored
                answer = wire.answers.get(tags[position]) if position < len(tags) else None
                if answer is None:
                    after.unsure.append(index)  # written (maybe in part), unanswered
                elif answer.ok:
                    self._stored([index], answer, stored, items, results)
                else:
                    results[index] = UploadResult(
                        items[index].key,
                        error=errors.answer_error(
                            answer.text, where=f"{where}, message {items[index].key}", what="APPEND"
                        ),
                    )

    def _send_batch(
        self,
        session: Session,
        wire: Wire,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        batch: list[int],
        results: list[UploadResult | None],
        stored: list[tuple[int, int, int]],
        sent_batches: list[tuple[list[int], int, bool]],
        where: str,
    ) -> Exception | None:
        """Send one batch; record outcomes. Returns an error that should stop the chunk."""
        messages = [self._message(session, items[i]) for i in batch]
        if len(batch) > 1 and session.has("MULTIAPPEND"):
            sent_batches.append((batch, len(wire.sent), True))
            answer = append_multi(wire, folder.id, messages)
            if answer.ok:
                self._stored(batch, answer, stored, items, results)
                return None
            error = errors.answer_error(answer.text, where=where, what="MULTIAPPEND")
            if isinstance(error, TransientError):
                return error
            # stored together or not at all: send one by one to learn which message is refused
            sent_batches.pop()
        sent_batches.append((batch, len(wire.sent), False))
        answers = append_pipelined(wire, folder.id, messages)
        stop: Exception | None = None
        for index, answer in zip(batch, answers, strict=True):
            if answer.ok:
                self._stored([index], answer, stored, items, results)
            else:
                error = errors.answer_error(
                    answer.text, where=f"{where}, message {items[index].key}", what="APPEND"
                )
                results[index] = UploadResult(items[index].key, error=error)
                if isinstance(error, TransientError):
                    stop = error
        return stop

    @staticmethod
    def _stored(
        batch: list[int],
        answer: Answer,
        stored: list[tuple[int, int, int]],
        items: Sequence[UploadItem],
        results: list[UploadResult | None],
    ) -> None:
        """Record stored messages at once: a later failure in the chunk must not mark them."""
        uids = appenduid(answer)
        if uids is not None and len(uids[1]) == len(batch):
            for index, uid in zip(batch, uids[1], strict=True):
                stored.append((index, uids[0], uid))
                results[index] = UploadResult(items[index].key, target_id=f"{uids[0]}:{uid}")
        else:  # no UIDPLUS: stored, but the id has to be looked up
            for index in batch:
                results[index] = UploadResult(items[index].key, target_id=None)

    def _settle_lost(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        after: _Afterwards,
        results: list[UploadResult | None],
    ) -> bool:
        """The connection broke: messages whose command was written but not answered may or may
        not be stored. Ask the server (on a fresh connection) before reporting them missing.
        True when every message is known stored or not (the server could be asked)."""
        if after.lost is None:
            return True
        known = True
        if after.unsure:
            found = self._stored_since(
                mailbox, folder, [items[i] for i in after.unsure], after.floor
            )
            known = found is not None
            for index in after.unsure:
                key = items[index].key
                if found is not None and key in found:
                    results[index] = UploadResult(key, target_id=found[key])
        for index, result in enumerate(results):
            if result is None:
                results[index] = UploadResult(items[index].key, error=after.lost)
        return known

    def _finish(
        self,
        session: Session,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        stored: list[tuple[int, int, int]],
        results: list[UploadResult | None],
        after: _Afterwards,
        where: str,
    ) -> None:
        for index, validity, uid in stored:
            self._remember(mailbox, folder, items[index].key, validity, uid)
        after.unknown = [
            i
            for i, r in enumerate(results)
            if r is not None and r.error is None and r.target_id is None
        ]
        flagged = [(index, uid) for index, _, uid in stored if items[index].flags.flagged]
        if (
            session.exchange
            and flagged
            and not session.broken
            and self._add_flagged(session, folder, [uid for _, uid in flagged], where)
        ):
            after.flagged.extend(index for index, _ in flagged)

    def _add_flagged(
        self, session: Session, folder: TargetFolder, uids: list[int], where: str
    ) -> bool:
        """Exchange ignores \\Flagged in APPEND: set it on the stored copies afterwards. A
        failure is logged; the messages stay stored."""
        try:
            self._select(session, folder.id, readonly=False)
            session.client.add_flags(uids, [b"\\Flagged"], silent=True)
            return True
        except errors.CONNECTION_LOST as exc:
            session.broken = True
            log.warning("%s: \\Flagged not set on %d messages: %s", where, len(uids), exc)
        except IMAPClientError as exc:
            log.warning("%s: \\Flagged not set on %d messages: %s", where, len(uids), exc)
        return False

    def _flag_found(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        results: list[UploadResult | None],
        done: set[int],
    ) -> None:
        """On Exchange, \\Flagged for flagged messages that were found stored after a broken
        connection (their APPEND's answer never came, so nothing set it yet)."""
        if not self._exchange:
            return
        uids = []
        for index, result in enumerate(results):
            if (
                index in done
                or result is None
                or result.error is not None
                or not items[index].flags.flagged
                or not result.target_id
            ):
                continue
            uid = result.target_id.partition(":")[2]
            if uid.isdigit():
                uids.append(int(uid))
        if not uids:
            return
        where = f"mailbox {mailbox}, folder {folder.display!r}"
        try:
            self._run(mailbox, where, "STORE", lambda s: self._add_flagged(s, folder, uids, where))
        except (TransientError, PermanentError) as exc:
            log.warning("%s: \\Flagged not set on %d messages: %s", where, len(uids), exc)

    def _identify(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        unknown: list[int],
        results: list[UploadResult | None],
        floor: tuple[int, int] | None,
    ) -> None:
        """Stored without APPENDUID: find their UIDs by content; else the UID stays unknown."""
        found = self._stored_since(mailbox, folder, [items[i] for i in unknown], floor) or {}
        for index in unknown:
            key = items[index].key
            results[index] = UploadResult(key, target_id=found.get(key, UNKNOWN_UID))

    def _stored_since(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        floor: tuple[int, int] | None,
    ) -> dict[str, str] | None:
        """Key -> target id for those of `items` one upload() call stored: recognised as in
        find_uploads(), but only among UIDs from `floor` (the folder's UIDNEXT before the
        call) on. An identical copy stored before (a twin in the source, an earlier run) is
        never taken for a message whose APPEND broke off: that would lose the message. None
        when in doubt (no floor, the folder renumbered, the lookup failed)."""
        if not items:
            return {}
        if floor is None:
            return None
        validity, first_uid = floor
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def search(session: Session) -> dict[str, str] | None:
            if session.converts:
                with self._folder_index(session, mailbox, folder) as index:
                    if index.validity != validity:
                        return None
                    if self.settings.tag_header:
                        tags = {header_value(i.key): i.key for i in items}
                        uids = find_tags(index, tags, since=first_uid)
                    else:
                        sent = [Sent(i.key, self._payload(i), _when(i)) for i in items]
                        uids = find_converted(session.client, index, sent, since=first_uid)
            elif self._select(session, folder.id) != validity:
                return None
            elif self.settings.tag_header:
                uids = find_tagged(session.client, [i.key for i in items], since=first_uid)
            else:
                sent = [Sent(i.key, self._payload(i), _when(i)) for i in items]
                uids = find_sent(session.client, sent, since=first_uid)
            return {key: f"{validity}:{uid}" for key, uid in uids.items() if uid >= first_uid}

        try:
            return self._run(mailbox, where, "searching", search)
        except (TransientError, PermanentError):
            return None

    def probe(self) -> None:
        """Does the server answer at all? (see Connector.probe)"""
        self.connector.probe()

    def close(self) -> None:
        self.pool.close()


def _uids(target_ids: Collection[str], validity: int) -> set[int]:
    """The UIDs of those target ids that belong to UIDVALIDITY `validity`."""
    prefix = f"{validity}:"
    return {
        int(t[len(prefix) :])
        for t in target_ids
        if t.startswith(prefix) and t[len(prefix) :].isdigit()
    }


def _when(item: UploadItem) -> datetime | None:
    """The date the server keeps as INTERNALDATE: the source's, else the Date header (as the EWS
    target does), never "now" for an old message whose mbox From_ line had no readable date."""
    return item.internal_date or header_date(item.data)
