"""Exchange over EWS: the Target implementation (exchangelib lives in this package only)."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from exchangelib import Account, Configuration, Q
from exchangelib.errors import ErrorIrresolvableConflict, ErrorItemNotFound
from exchangelib.items import ALWAYS_OVERWRITE, NEVER_OVERWRITE, SAVE_ONLY, SEND_TO_NONE
from exchangelib.restriction import Restriction
from exchangelib.util import safe_xml_value
from lxml import etree

from migrator.model.errors import PermanentError, TransientError
from migrator.model.mail import Flags, FolderRole, UploadItem, UploadResult
from migrator.model.plan import TargetSettings
from migrator.model.reasons import Reason

from ..base import ExcludedFolderError, FlagChange, KeyedItems, TargetFolder, is_well_known
from ..dates import submit_and_delivery
from ..naming import FolderNaming, TargetPath
from . import errors, reachability
from .changes import (
    PreparedUpdateItem,
    categories_update,
    flag_updates,
    item_change,
    merged_categories,
    verb_of,
)
from .connection import (
    forget_protocol,
    make_account,
    make_configuration,
    parse_answers_whole,
    quiet_exchangelib_logging,
    remember_environment_per_session,
)
from .create import PreparedCreateItem, message_element
from .folders import MailboxFolders
from .inventory import keyed_items
from .properties import (
    FLAG_STATUS_FLAGGED,
    MSGFLAG_READ,
    MimeMessage,
)

T = TypeVar("T")

DEFAULT_REQUEST_BYTES = 25 * 1024 * 1024  # base64 per CreateItem; Exchange takes ~64 MB
DEFAULT_REQUEST_ITEMS = 100  # exchangelib's and Exchange's usual batch size
DEFAULT_MAX_CONNECTIONS = 4
# Keys per FindItem restriction: one Or of IsEqualTo, flat whatever the number of keys (a chain of
# `query |= Q(...)` nests one Or per key, and Exchange's reader stops at 32 levels of XML:
# ErrorSchemaValidation "The maximum read depth (32) has been exceeded"). More keys are more
# requests, never a deeper one. 50 keys' matches fit one page of a restricted search, which
# Exchange caps at 250 (EWSFindCountLimit for searches with a restriction).
FIND_BATCH = 50
INVENTORY_PAGE = 1000  # items per FindItem page when listing a folder (Exchange's usual cap)

# IMAP keywords that are protocol state, not user labels: never shown as categories.
SYSTEM_KEYWORDS = frozenset(k.casefold() for k in ("Junk", "NonJunk", "NotJunk", "Old", "Unseen"))
# Thunderbird's built-in tags are stored as $label1..5; users know them by these names.
THUNDERBIRD_LABELS = {
    "$label1": "Important",
    "$label2": "Work",
    "$label3": "Personal",
    "$label4": "To Do",
    "$label5": "Later",
}
MAX_CATEGORY_LENGTH = 255


def categories_for(flags: Flags) -> list[str]:
    """Exchange categories for the IMAP keywords of a message (see docs/targets.md)."""
    out: list[str] = []
    seen: set[str] = set()
    for keyword in flags.keywords:
        name = THUNDERBIRD_LABELS.get(keyword.casefold())
        if name is None:
            if keyword.startswith(("$", "\\")) or keyword.casefold() in SYSTEM_KEYWORDS:
                continue
            name = keyword.strip()[:MAX_CATEGORY_LENGTH]
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    return out


def base64_size(n: int) -> int:
    return 4 * ((n + 2) // 3)


def request_batches(
    sizes: Sequence[tuple[int, int]], *, max_bytes: int, max_items: int
) -> Iterator[list[int]]:
    """Group (index, raw size) pairs into requests of at most max_items and max_bytes of base64.

    A message bigger than max_bytes on its own still gets a request of its own.
    """
    batch: list[int] = []
    total = 0
    for index, size in sizes:
        cost = base64_size(size)
        if batch and (len(batch) >= max_items or total + cost > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(index)
        total += cost
    if batch:
        yield batch


class EwsTarget:
    """Writes into Exchange mailboxes over EWS with one service account. Thread-safe."""

    def __init__(
        self,
        settings: TargetSettings,
        *,
        secrets: Mapping[str, str],
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        request_bytes: int = DEFAULT_REQUEST_BYTES,
        request_items: int = DEFAULT_REQUEST_ITEMS,
        plan_file: str = "plan",
    ) -> None:
        quiet_exchangelib_logging()
        parse_answers_whole()
        remember_environment_per_session()
        self.settings = settings
        self.max_message_size = settings.max_message_size
        self.request_bytes = request_bytes
        self.request_items = request_items
        self.naming = FolderNaming(
            archive_folder=settings.archive_folder,
            folder_map=settings.folder_map,
            exclude_folders=settings.exclude_folders,
            plan_file=plan_file,
        )
        self._config: Configuration = make_configuration(
            settings, secrets, max_connections=max_connections
        )
        # every request carries them (basic/NTLM/OAuth2): what a server says is shown without
        self._secrets = tuple(value for value in secrets.values() if value)
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._folders: dict[str, MailboxFolders] = {}
        self._closed = False

    # --- plumbing -----------------------------------------------------------------------------
    def _account(self, mailbox: str) -> Account:
        key = mailbox.casefold()
        with self._lock:
            if self._closed:
                raise RuntimeError("EwsTarget used after close()")
            account = self._accounts.get(key)
            if account is None:
                try:
                    account = make_account(
                        mailbox,
                        self._config,
                        impersonation=self.settings.impersonation,
                        timeout=self.settings.timeout,
                    )
                except ValueError as exc:  # not an e-mail address
                    raise PermanentError(f"{mailbox}: {exc}", reason=Reason.NO_MAILBOX) from exc
                self._accounts[key] = account
                self._folders[key] = MailboxFolders(account)
            return account

    def forget_mailbox(self, mailbox: str) -> None:
        """Drop the mailbox's Account and folder map once its account is done (the engine
        says when). Kept for every mailbox a run touched, they grew the process by about 6 KB
        per account: 600 MB over a campaign of 100,000 (issue 19)."""
        key = mailbox.casefold()
        with self._lock:
            self._accounts.pop(key, None)
            self._folders.pop(key, None)

    def _mailbox_folders(self, mailbox: str) -> MailboxFolders:
        self._account(mailbox)
        with self._lock:
            return self._folders[mailbox.casefold()]

    def _call(self, where: str, fn: Callable[[], T]) -> T:
        """Run fn, translating whatever exchangelib/requests raise into our errors."""
        try:
            return fn()
        except Exception as exc:
            translated = errors.translate(exc, where=where, secrets=self._secrets)
            if translated is exc:
                raise
            raise translated from exc

    # --- contract -----------------------------------------------------------------------------
    def preflight(self, mailbox: str) -> None:
        where = f"mailbox {mailbox}"
        folders = self._mailbox_folders(mailbox)
        # Reading the inbox proves the mailbox exists and that impersonation (or delegate
        # access) works; with a wrong password the server answers 401 before that.
        self._call(where, folders.prefetch)
        self._call(where, lambda: folders.anchor(FolderRole.INBOX))

    def is_excluded(self, path: tuple[str, ...]) -> bool:
        return self.naming.is_excluded(path)

    def ensure_folder(self, mailbox: str, path: tuple[str, ...], role: FolderRole) -> TargetFolder:
        if self.naming.is_excluded(path):
            raise ExcludedFolderError(path)
        folders = self._mailbox_folders(mailbox)
        target = self.naming.target_path(path, role, folders.role_paths)
        where = f"mailbox {mailbox}, folder {'/'.join(path)!r}"

        def ensure() -> TargetFolder:
            anchor = folders.anchor(target.anchor)
            if not target.names:  # a well-known folder itself
                return TargetFolder(
                    id=anchor.id, path=target.display(), empty=folders.take_empty(target.anchor)
                )
            folder, created, placed = folders.ensure_path(anchor, target.names)
            # the names it has: one a calendar or contacts folder holds got a suffix
            shown = TargetPath(target.anchor, placed).display()
            return TargetFolder(id=folder.id, path=shown, empty=created)

        result = self._call(where, ensure)
        if target.anchor is not None and not target.names:
            folders.role_paths[path] = target.anchor
        return result

    def upload(
        self, mailbox: str, folder: TargetFolder, items: Sequence[UploadItem]
    ) -> list[UploadResult]:
        results: list[UploadResult | None] = [None] * len(items)
        sendable: list[tuple[int, int]] = []
        for index, item in enumerate(items):
            # the size limit is the engine's to apply (engine/mailbox.py too_large)
            size = len(item.data)
            if size == 0:
                results[index] = UploadResult(
                    item.key,
                    error=PermanentError(
                        f"mailbox {mailbox}: message {item.key} is empty", reason=Reason.REJECTED
                    ),
                )
            else:
                sendable.append((index, size))
        batches = list(
            request_batches(sendable, max_bytes=self.request_bytes, max_items=self.request_items)
        )
        stop: Exception | None = None
        for batch in batches:
            if stop is not None:
                # After a whole-request failure (busy, auth, connection) sending the rest of the
                # chunk now would only make it worse: report the same error for it.
                for index in batch:
                    results[index] = UploadResult(items[index].key, error=stop)
                continue
            stop = self._upload_batch(mailbox, folder, items, batch, results)
        if isinstance(stop, PermanentError) and stop.reason == Reason.QUOTA:
            # The mailbox is full: every message after this one would be refused too, and none
            # of them is a bad message. The account stops here; the chunk's messages stay
            # unconfirmed (the next run finds those stored before the refusal, and sends the rest).
            stored = sum(1 for r in results if r is not None and r.ok)
            raise PermanentError(
                f"{stop.message}; {stored} of {len(items)} message(s) of this chunk were stored "
                "before it refused",
                reason=Reason.QUOTA,
                hint="raise the mailbox's quota on Exchange (ProhibitSendReceiveQuota) or make "
                "room in it, then run again: what is missing is sent then, nothing twice "
                '(if Exchange said "Cannot get ID from name", it is the mailbox\'s '
                "named-property quota that is full)",
            )
        return [
            r
            if r is not None
            else UploadResult(
                items[i].key,
                error=TransientError(f"mailbox {mailbox}: no answer for message {items[i].key}"),
            )
            for i, r in enumerate(results)
        ]

    def _upload_batch(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        batch: list[int],
        results: list[UploadResult | None],
    ) -> Exception | None:
        """Send one CreateItem and fill `results` for its items. Returns the request-level
        error that should stop the rest of the chunk, if any."""
        where = f"mailbox {mailbox}, folder {folder.display!r}"
        try:
            answers, failure = self._send(mailbox, folder, [items[i] for i in batch])
        except PermanentError as exc:  # the mailbox address is unusable
            for index in batch:
                results[index] = UploadResult(items[index].key, error=exc)
            return exc
        if isinstance(failure, errors.RequestTooLarge):
            return self._split(mailbox, folder, items, batch, results, where)
        unresolved = self._take_answers(items, batch, answers, failure, results, where)
        if not unresolved:
            return None
        error: Exception | None = None
        if failure is not None:
            error = errors.translate(failure, where=where, secrets=self._secrets)
            if error is failure:
                raise failure  # a bug of ours, not a server problem
            if not errors.is_ambiguous(failure) and not answers:
                # The server refused the request as a whole: nothing of it was stored.
                for index in unresolved:
                    results[index] = UploadResult(items[index].key, error=error)
                return error
        self._look_up(mailbox, folder, items, unresolved, error, results, where)
        return error

    def _send(
        self, mailbox: str, folder: TargetFolder, items: Sequence[UploadItem]
    ) -> tuple[list[Any], Exception | None]:
        """CreateItem for `items`: the answers received, and the exception that ended it."""
        account = self._account(mailbox)
        target_folder = self._mailbox_folders(mailbox).by_id(folder.id)
        messages = [self._message(item) for item in items]
        answers: list[Any] = []
        service = PreparedCreateItem(account=account, chunk_size=len(messages))
        # Consume the generator ourselves: exchangelib raises (e.g. ErrorServerBusy) in the middle
        # of a response after yielding the answers for the items before it.
        try:
            for answer in service.call(
                items=messages,
                folder=target_folder,
                message_disposition=SAVE_ONLY,
                send_meeting_invitations=SEND_TO_NONE,
            ):
                answers.append(answer)
        except Exception as exc:
            return answers, exc
        return answers, None

    def _split(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        batch: list[int],
        results: list[UploadResult | None],
        where: str,
    ) -> Exception | None:
        """HTTP 413 or 404.13: the server's request limit is below ours. Halve until it fits (a
        refused request stored nothing); a single message that does not fit is too large."""
        if len(batch) == 1:
            key = items[batch[0]].key
            results[batch[0]] = UploadResult(
                key,
                error=PermanentError(
                    f"{where}: message {key} alone is over the server's request limit "
                    "(HTTP 413 or IIS's 404.13)",
                    reason=Reason.TOO_LARGE,
                    hint="lower [target] max_message_size to what the server accepts",
                ),
            )
            return None  # the next request may well fit
        half = len(batch) // 2
        first = self._upload_batch(mailbox, folder, items, batch[:half], results)
        if first is not None:
            for index in batch[half:]:
                results[index] = UploadResult(items[index].key, error=first)
            return first
        return self._upload_batch(mailbox, folder, items, batch[half:], results)

    def _take_answers(
        self,
        items: Sequence[UploadItem],
        batch: list[int],
        answers: list[Any],
        failure: Exception | None,
        results: list[UploadResult | None],
        where: str,
    ) -> list[int]:
        """Record the per-item answers; return the indexes whose fate is still unknown."""
        if failure is None and len(answers) != len(batch):
            # Success without ids (exchangelib issue #984): every item is to be looked up.
            return list(batch)
        unresolved: list[int] = []
        for index, answer in zip(batch, answers, strict=False):
            key = items[index].key
            if isinstance(answer, Exception):
                results[index] = UploadResult(key, error=self._item_error(answer, where, key))
            elif getattr(answer, "id", None):
                results[index] = UploadResult(key, target_id=answer.id)
            else:
                unresolved.append(index)
        unresolved.extend(batch[len(answers) :])
        return unresolved

    def _look_up(
        self,
        mailbox: str,
        folder: TargetFolder,
        items: Sequence[UploadItem],
        unresolved: list[int],
        error: Exception | None,
        results: list[UploadResult | None],
        where: str,
    ) -> None:
        """Ask the target which of `unresolved` it stored (the request broke off after it may
        have reached the server, or it answered without ids) before reporting any as missing."""
        try:
            found = self.find(mailbox, folder, [items[i].key for i in unresolved])
        except (TransientError, PermanentError) as exc:
            # a lookup the server throttled carries its back-off hint: report that one, or the
            # caller comes back before the server asked it to
            hinted = isinstance(exc, TransientError) and exc.retry_after is not None
            found, error = {}, exc if hinted or error is None else error
        for index in unresolved:
            key = items[index].key
            if key in found:
                results[index] = UploadResult(key, target_id=found[key])
            else:
                results[index] = UploadResult(
                    key,
                    error=error
                    or TransientError(
                        f"{where}: the server reported success for message {key} but it cannot "
                        "be found"
                    ),
                )

    def _item_error(self, answer: Exception, where: str, key: str) -> Exception:
        translated = errors.translate(
            answer, where=f"{where}, message {key}", secrets=self._secrets
        )
        if translated is answer:  # not an exchangelib error: still one item's problem
            return PermanentError(f"{where}, message {key}: {answer!r}", reason=Reason.EWS_ERROR)
        return translated

    @staticmethod
    def _message(item: UploadItem) -> etree._Element:
        flags = item.flags
        submitted, delivered = submit_and_delivery(item.data, item.internal_date)
        return message_element(
            mime=item.data,
            is_read=flags.seen,
            message_flags=MSGFLAG_READ if flags.seen else 0,
            source_key=item.key,
            submit_time=submitted,
            delivery_time=delivered,
            flag_status=FLAG_STATUS_FLAGGED if flags.flagged else None,
            last_verb=verb_of(flags),
            categories=categories_for(flags),
        )

    def find(
        self,
        mailbox: str,
        folder: TargetFolder,
        keys: Sequence[str],
        exclude_ids: Collection[str] = (),
    ) -> dict[str, str]:
        where = f"mailbox {mailbox}, folder {folder.display!r}"
        wanted = list(dict.fromkeys(keys))
        wanted_set = set(wanted)
        excluded = set(exclude_ids)
        found: dict[str, str] = {}
        if not wanted:
            return found

        def search() -> None:
            account = self._account(mailbox)
            target_folder = self._mailbox_folders(mailbox).by_id(folder.id)
            key_field = _source_key_field()
            for start in range(0, len(wanted), FIND_BATCH):
                query = Q(migrator_source_key__in=wanted[start : start + FIND_BATCH])
                restriction = Restriction(
                    query, folders=[target_folder], applies_to=Restriction.ITEMS
                )
                # read from the XML whatever element the item is answered as: a meeting request
                # is a t:MeetingRequest, which exchangelib's own objects would not read our key from
                for answer in keyed_items(
                    account, [target_folder], key_field, FIND_BATCH * 2, restriction=restriction
                ):
                    if isinstance(answer, Exception):
                        raise answer
                    item_id, stored, _ = answer
                    if (
                        stored in wanted_set
                        and stored not in found
                        and item_id
                        and item_id not in excluded
                    ):
                        found[stored] = item_id

        self._call(where, search)
        return found

    def update_flags(
        self, mailbox: str, folder: TargetFolder, changes: Sequence[FlagChange]
    ) -> list[Exception | None]:
        """Carry flag changes made in the source (see changes.py): only the properties that
        differ, categories merged into what the item holds now."""
        where = f"mailbox {mailbox}, folder {folder.display!r}"
        results: list[Exception | None] = [None] * len(changes)
        plain: list[tuple[int, etree._Element]] = []
        labelled: dict[int, tuple[list[str], list[str], list[etree._Element]]] = {}
        for index, change in enumerate(changes):
            updates = flag_updates(change.before, change.after)
            was, now = categories_for(change.before), categories_for(change.after)
            added = [c for c in now if c.casefold() not in {w.casefold() for w in was}]
            removed = [c for c in was if c.casefold() not in {n.casefold() for n in now}]
            if added or removed:
                labelled[index] = (added, removed, updates)
            elif updates:
                plain.append((index, item_change(change.target_id, None, updates)))

        def send(elements: list[etree._Element], conflict: str) -> list[Any]:
            service = PreparedUpdateItem(account=self._account(mailbox), chunk_size=len(elements))
            return list(
                service.call(
                    items=elements,
                    conflict_resolution=conflict,
                    message_disposition=SAVE_ONLY,
                    send_meeting_invitations_or_cancellations=SEND_TO_NONE,
                    suppress_read_receipts=True,
                )
            )

        for start in range(0, len(plain), self.request_items):
            part = plain[start : start + self.request_items]
            answers = self._call(
                where,
                lambda part=part: send([e for _, e in part], ALWAYS_OVERWRITE),  # type: ignore[misc]
            )
            for (index, _), answer in zip(part, answers, strict=False):
                results[index] = self._change_error(answer, where, changes[index].target_id)
        for _ in range(
            3
        ):  # a user changing the item between our read and our write, again and again
            if not labelled:
                break
            labelled = self._relabel(mailbox, where, changes, labelled, results, send)
        for index in labelled:
            results[index] = TransientError(
                f"{where}: item {changes[index].target_id} kept changing while its "
                "categories were updated (ErrorIrresolvableConflict)"
            )
        return results

    def _relabel(
        self,
        mailbox: str,
        where: str,
        changes: Sequence[FlagChange],
        labelled: dict[int, tuple[list[str], list[str], list[etree._Element]]],
        results: list[Exception | None],
        send: Callable[[list[etree._Element], str], list[Any]],
    ) -> dict[int, tuple[list[str], list[str], list[etree._Element]]]:
        """Read the categories (and ChangeKey) of the items whose categories change, write them
        back merged with NeverOverwrite; the items Exchange found changed meanwhile are returned
        to be read again."""
        order = list(labelled)
        ids = [(changes[i].target_id, None) for i in order]
        read = self._call(
            where, lambda: list(self._account(mailbox).fetch(ids=ids, only_fields=["categories"]))
        )
        elements: list[tuple[int, etree._Element]] = []
        for index, item in zip(order, read, strict=False):
            if isinstance(item, Exception):
                results[index] = self._change_error(item, where, changes[index].target_id)
                continue
            added, removed, updates = labelled[index]
            merged = merged_categories(list(item.categories or []), added, removed)
            elements.append(
                (index, item_change(item.id, item.changekey, [*updates, categories_update(merged)]))
            )
        again: dict[int, tuple[list[str], list[str], list[etree._Element]]] = {}
        for start in range(0, len(elements), self.request_items):
            part = elements[start : start + self.request_items]
            answers = self._call(
                where,
                lambda part=part: send([e for _, e in part], NEVER_OVERWRITE),  # type: ignore[misc]
            )
            for (index, _), answer in zip(part, answers, strict=False):
                if isinstance(answer, ErrorIrresolvableConflict):
                    added, removed, _updates = labelled[index]
                    # built anew from the source's change: the elements went into the request
                    again[index] = (
                        added,
                        removed,
                        flag_updates(changes[index].before, changes[index].after),
                    )
                else:
                    results[index] = self._change_error(answer, where, changes[index].target_id)
        return again

    def _change_error(self, answer: Any, where: str, target_id: str) -> Exception | None:
        if not isinstance(answer, Exception):
            return None
        translated = errors.translate(
            answer, where=f"{where}, item {target_id[:24]}...", secrets=self._secrets
        )
        if translated is answer:  # not an exchangelib error: still one item's problem
            return PermanentError(f"{where}: {answer!r}", reason=Reason.EWS_ERROR)
        return translated

    def prepare_move(
        self, mailbox: str, source: TargetFolder, dest: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, Any]:
        """Nothing: a moved item keeps its source-key tag, which finds it in `dest`."""
        return {}

    def move(
        self, mailbox: str, source: TargetFolder, dest: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, str | Exception | None]:
        """MoveItem: each item gets a new id in `dest` (Exchange's ids change with the folder)."""
        where = f"mailbox {mailbox}, folder {source.display!r}"
        out: dict[str, str | Exception | None] = {}
        ids = list(dict.fromkeys(target_ids))

        def move() -> None:
            account = self._account(mailbox)
            to_folder = self._mailbox_folders(mailbox).by_id(dest.id)
            for start in range(0, len(ids), self.request_items):
                part = ids[start : start + self.request_items]
                answers = account.bulk_move(ids=[(i, None) for i in part], to_folder=to_folder)
                for old, answer in zip(part, answers, strict=False):
                    if isinstance(answer, ErrorItemNotFound):
                        out[old] = None
                    elif isinstance(answer, Exception):
                        out[old] = self._change_error(answer, where, old)
                    else:
                        out[old] = (
                            answer[0] if isinstance(answer, tuple) else getattr(answer, "id", None)
                        )

        self._call(where, move)
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
        """The moved items found in `dest` by their source-key tag."""
        found = self.find(mailbox, dest, list(dict.fromkeys(moved.values())), exclude_ids=taken)
        out: dict[str, str | None] = {}
        given: set[str] = set()
        for old, tag in moved.items():
            new = found.get(tag)
            out[old] = new if new is not None and new not in given else None
            if new is not None:
                given.add(new)
        return out

    def rename_folder(
        self, mailbox: str, folder: TargetFolder, path: tuple[str, ...], role: FolderRole
    ) -> tuple[TargetFolder, dict[str, str]] | None:
        """Put the target folder of a renamed source folder where the new name leads (MoveFolder,
        UpdateFolder): it keeps its id and its items. None for a well-known folder, or when
        another folder holds that place already."""
        if self.naming.is_excluded(path):
            return None
        folders = self._mailbox_folders(mailbox)
        target = self.naming.target_path(path, role, folders.role_paths)
        if not target.names or is_well_known(folder):
            return None
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def rename() -> tuple[TargetFolder, dict[str, str]] | None:
            done = folders.relocate(folder.id, folders.anchor(target.anchor), target.names)
            return None if done is None else (TargetFolder(done.id, target.display()), {})

        return self._call(where, rename)

    def delete(self, mailbox: str, folder: TargetFolder, target_ids: Sequence[str]) -> None:
        """SoftDelete: the items go to Recoverable Items, where an administrator can restore
        them until the retention period ends. An item already gone is fine."""
        ids = [i for i in dict.fromkeys(target_ids) if i]
        if not ids:
            return
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def delete() -> None:
            account = self._account(mailbox)
            for start in range(0, len(ids), self.request_items):
                part = ids[start : start + self.request_items]
                for answer in account.bulk_delete(
                    ids=[(i, None) for i in part], delete_type="SoftDelete"
                ):
                    if isinstance(answer, Exception) and not isinstance(answer, ErrorItemNotFound):
                        raise answer

        self._call(where, delete)

    def withdraw(self, mailbox: str, folder: TargetFolder, target_ids: Collection[str]) -> None:
        """Hard-delete items this process stored but may not keep (duplicates of what a worker
        that took the account over stored; see the engine). An item already gone is fine."""
        ids = [i for i in dict.fromkeys(target_ids) if i]
        if not ids:
            return
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def delete() -> None:
            account = self._account(mailbox)
            for answer in account.bulk_delete(
                ids=[(i, None) for i in ids], delete_type="HardDelete"
            ):
                if isinstance(answer, Exception) and not isinstance(answer, ErrorItemNotFound):
                    raise answer

        self._call(where, delete)

    def inventory(
        self, mailbox: str, folders: Mapping[str, Sequence[str]]
    ) -> dict[str, tuple[Counter[str], int]]:
        """For each target folder id of `folders` (-> the source keys wanted there): (each of
        those keys -> how many items carry it, items in the folder), from one paged FindItem
        over all the folders. What `verify` needs, without a search restriction per hundred
        keys (which costs the client and the server far more than reading ids and one
        property), and without a request per folder."""
        # a key XML cannot carry was written with "?" in place of the bad characters
        wanted = {fid: {safe_xml_value(key): key for key in keys} for fid, keys in folders.items()}
        where = f"mailbox {mailbox}"

        def listing(fids: list[str]) -> dict[str, tuple[Counter[str], int]] | None:
            """None when an item names a folder by an id other than ours (the caller then
            asks folder by folder)."""
            account = self._account(mailbox)
            known = self._mailbox_folders(mailbox)
            counts: dict[str, Counter[str]] = {fid: Counter() for fid in fids}
            totals: dict[str, int] = dict.fromkeys(fids, 0)
            targets = [known.by_id(fid) for fid in fids]
            for answer in keyed_items(account, targets, _source_key_field(), INVENTORY_PAGE):
                if isinstance(answer, Exception):
                    raise answer
                _, tag, parent = answer
                if parent not in totals:
                    if len(fids) != 1:
                        return None
                    parent = fids[0]
                totals[parent] += 1
                key = wanted[parent].get(tag)
                if key is not None:
                    counts[parent][key] += 1
            return {fid: (counts[fid], totals[fid]) for fid in fids}

        def all_folders() -> dict[str, tuple[Counter[str], int]]:
            together = listing(list(wanted))
            if together is not None:
                return together
            out: dict[str, tuple[Counter[str], int]] = {}
            for fid in wanted:
                out.update(listing([fid]) or {})
            return out

        return self._call(where, all_folders)

    def items_by_key(self, mailbox: str, folder: TargetFolder) -> KeyedItems:
        """Every item of `folder` that carries a source-key tag, from one paged FindItem (ids
        and the tag only): what a first pass adopts instead of sending again, and what
        `dedupe` looks for copies in."""
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        def listing() -> KeyedItems:
            account = self._account(mailbox)
            target_folder = self._mailbox_folders(mailbox).by_id(folder.id)
            by_tag: dict[str, list[str]] = {}
            total = 0
            for answer in keyed_items(
                account, [target_folder], _source_key_field(), INVENTORY_PAGE
            ):
                if isinstance(answer, Exception):
                    raise answer
                item_id, tag, _ = answer
                total += 1
                if tag is not None and item_id:
                    by_tag.setdefault(tag, []).append(item_id)
            return KeyedItems(by_tag, total, tag_of=safe_xml_value)

        return self._call(where, listing)

    def shown(self, flags: Flags) -> tuple[object, ...]:
        """Read, flagged, the verb Outlook shows (replied, else forwarded), the categories."""
        return (flags.seen, flags.flagged, verb_of(flags), tuple(sorted(categories_for(flags))))

    def flags_of(
        self, mailbox: str, folder: TargetFolder, target_ids: Sequence[str]
    ) -> dict[str, tuple[object, ...]]:
        """From one paged FindItem of the folder (ids, the read state, the flag and verb
        properties, the categories): what `verify` compares with the source."""
        where = f"mailbox {mailbox}, folder {folder.display!r}"
        wanted = set(target_ids)

        def listing() -> dict[str, tuple[object, ...]]:
            account = self._account(mailbox)
            target_folder = self._mailbox_folders(mailbox).by_id(folder.id)
            out: dict[str, tuple[object, ...]] = {}
            for answer in keyed_items(
                account,
                [target_folder],
                _source_key_field(),
                INVENTORY_PAGE,
                flag_fields=_flag_fields(),
            ):
                if isinstance(answer, Exception):
                    raise answer
                if answer[0] in wanted:
                    out[answer[0]] = answer[3]
            return out

        return self._call(where, listing)

    def count(self, mailbox: str, folder: TargetFolder) -> int:
        where = f"mailbox {mailbox}, folder {folder.display!r}"

        folders = self._mailbox_folders(mailbox)
        return self._call(where, lambda: folders.total_count(folder.id))

    def probe(self) -> None:
        """Does the server answer at all? (the engine asks after a timeout or a reset, to tell
        a server that is down from one slow request; see reachability.py)"""
        reachability.probe(self.settings)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._accounts.clear()
            self._folders.clear()
        forget_protocol(self._config)


def _flag_fields() -> tuple[Any, ...]:
    """The read state, PR_FLAG_STATUS, PR_LAST_VERB_EXECUTED and the categories, for FindItem."""
    fields = []
    for name in ("migrator_flag_status", "migrator_last_verb"):
        field = copy.copy(MimeMessage.get_field_by_fieldname(name))
        field.is_complex = False
        fields.append(field)
    return (
        MimeMessage.get_field_by_fieldname("is_read"),
        MimeMessage.get_field_by_fieldname("categories"),
        *fields,
    )


def _source_key_field() -> Any:
    """The source key field, usable in FindItem's AdditionalProperties.

    exchangelib marks every extended property "complex" (fetch with GetItem only), but
    Exchange returns extended properties from FindItem; asking there saves a GetItem per find.
    """
    field = copy.copy(MimeMessage.get_field_by_fieldname("migrator_source_key"))
    field.is_complex = False
    return field
