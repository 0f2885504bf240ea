"""Migrate one claimed account: the exactly-once chunk protocol.

Per folder, per chunk:
1. pick the next messages whose keys the ledger does not hold (no body is read for the rest);
2. write them to the ledger as in flight, with the chunk id and our lease epoch; commit;
3. read their bytes and upload the chunk, each item tagged with its source key;
4. mark them done with the target ids (or skipped with a reason); commit.
Before any of that, keys left in flight by an interrupted attempt are looked up in the target
by their tag: found ones are marked done, the others forgotten and sent again.

A folder the ledger holds no message of (a first pass, a new state database, a reset account)
may land in a target folder that already holds migrated mail: before a chunk is sent, its
messages are looked up there (by source key, or by content where the target keeps no key) and
the items found are adopted, recorded as done with their ids, instead of being sent again.

What the target declares (adapters/targets/base.py, checked with isinstance) decides how:
- in-flight keys, and an upload whose answer was lost: `Target.find` by source key, or, for a
  target that `FindsByContent` (IMAP), `find_uploads` with the messages read again (from the
  folder where the user filed a message since, at the end of the pass: `_settle_strays`);
- adoption: one `ListsByKey.items_by_key` listing per target folder, else by content;
- a chunk whose upload went out after the lease was lost: `Withdraws.withdraw` of our copies.
Every request to the target but that withdrawal first confirms the lease (`Context.check_lease`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from migrator.adapters.sources import Renumbers, Source, open_account_source
from migrator.adapters.targets.base import (
    FindsByContent,
    KeyedItems,
    ListsByKey,
    Target,
    TargetFolder,
    Withdraws,
)
from migrator.engine import crashpoints
from migrator.engine.limiter import AdaptiveLimiter
from migrator.engine.progress import AccountOutcome, Progress, SkippedInfo
from migrator.engine.reconcile import Held, Reconciler
from migrator.model.errors import MigratorError, PermanentError, SourceError, TransientError
from migrator.model.mail import (
    Flags,
    FolderInfo,
    KnownMessage,
    MessageRecord,
    SkippedMessage,
    UploadItem,
    UploadResult,
)
from migrator.model.plan import Plan
from migrator.model.reasons import Reason
from migrator.model.status import MessageState, PassOutcome
from migrator.retry import RetryPolicy, RetryStats, StoppedWaiting, call_with_retry
from migrator.store import Store, changes, ledger
from migrator.store.claims import Claim, LeaseLost
from migrator.store.ledger import Outcome

T = TypeVar("T")

# Skips that say the source could not give the message *this time*: the next pass that lists
# it tries again (they are forgotten when their folder is listed), and `verify` does not count
# them as settled.
RETRIED_SKIPS = (Reason.VANISHED, Reason.CHANGED)


class Stopped(MigratorError):
    """The run was asked to stop; the account is left consistent and resumes next time."""


class _Unsettled(TransientError):
    """Items of a chunk the last upload attempt left unsettled: retried by AccountJob._upload,
    never seen outside it. `retry_after` is the longest hint the answers gave; `last` the
    last error, which is what the run says it waits for."""

    def __init__(self, last: TransientError, hint: float | None, throttled: bool) -> None:
        super().__init__(last.message, retry_after=hint, throttled=throttled)
        self.last = last


@dataclass
class Context:
    """What every account job shares within one run."""

    store: Store
    plan: Plan
    target: Target
    limiter: AdaptiveLimiter
    retry: RetryPolicy
    stop: threading.Event
    progress: Progress
    source_password: str | None = None
    run_id: int | None = None
    source_factory: Callable[..., Source] = open_account_source
    # told before each back-off wait (the error, the seconds): the run says what it waits for
    on_wait: Callable[[TransientError, float], None] | None = None
    # deletions past [run] deletion_limit are carried out (`run --allow-deletions`)
    allow_deletions: bool = False
    # asked right before each request to the target: raises LeaseLost when this worker's lease
    # on the account ran out while it was not heard from (the runner's Runner._check_lease)
    check_lease: Callable[[], None] = lambda: None
    # whether the target `FindsByContent`, asked once per run rather than per account: an
    # isinstance against a runtime-checkable Protocol walks its members every time
    finds_by_content: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.finds_by_content = isinstance(self.target, FindsByContent)


@dataclass
class Holdings:
    """What one target folder held before this pass sent anything into it, for adoption.

    `keyed`: its tagged items (EWS; IMAP with the tag header). `by_content`: the target keeps
    no key, and the folder was not empty: recognise messages by content (IMAP). `namesakes`:
    when several source folders land in this target folder, how many of them list each key
    (keys are unique per source folder only). `taken`: target ids that stand for a message
    already (the ledger's, and what this pass recorded): never adopted again."""

    keyed: KeyedItems | None = None
    by_content: bool = False
    namesakes: Counter[str] | None = None
    taken: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not self.by_content and (self.keyed is None or not self.keyed.by_tag)


def _read_all(record: MessageRecord) -> bytes:
    """The raw bytes of a message; SourceError when the source cannot give them."""
    try:
        stream = record.open()
    except SourceError:
        raise
    except OSError as exc:
        raise SourceError(
            f"cannot open message {record.key}: {exc.strerror}", reason=Reason.UNREADABLE
        ) from exc
    try:
        # one read: a file gives its bytes in a single allocation, where gathering blocks and
        # joining them would hold a big message twice
        return stream.read()
    except SourceError:
        raise
    except OSError as exc:
        raise SourceError(
            f"cannot read message {record.key}: {exc.strerror}", reason=Reason.UNREADABLE
        ) from exc
    finally:
        stream.close()


def too_large(size: int, target: Target) -> str | None:
    """Why a message of `size` bytes is not sent to `target` (reason "too-large"), or None.

    The one place that decides: the target only declares its limit (`max_message_size`, the
    plan's, lowered by what the server announces once connected: IMAP's APPENDLIMIT), so the
    limit is read at each call, never kept."""
    limit = target.max_message_size
    if size > limit:
        return f"{size:,} bytes is over the target's limit of {limit:,}"
    return None


_RENUMBERING: dict[type, bool] = {}


def _renumbers(source: Source) -> bool:
    """isinstance(source, Renumbers), asked once per kind of source: a runtime-checkable
    Protocol walks its members at every isinstance, and this is asked for every folder."""
    kind = type(source)
    known = _RENUMBERING.get(kind)
    if known is None:
        known = _RENUMBERING[kind] = isinstance(source, Renumbers)
    return known


def target_mailbox(claim: Claim) -> str:
    """The target mailbox an account's mail goes to."""
    return claim.target_address or claim.address or claim.key


class AccountJob(Reconciler):
    def __init__(self, ctx: Context, claim: Claim) -> None:
        self.ctx = ctx
        self.claim = claim
        self.mailbox = target_mailbox(claim)
        self.outcome = AccountOutcome(
            address=claim.address or claim.key,
            status=PassOutcome.RUNNING,
            first_pass=claim.passes == 0,
        )
        self.run = ctx.plan.run
        self.synced_folders: list[tuple[int, int | None, int | None, str | None]] = []
        self.new_folders = 0  # folders this pass recorded for the first time
        # targets that cannot search by source key find earlier uploads by their content
        self._by_content = ctx.finds_by_content
        self._inflight_by_folder: dict[int, list[str]] = {}
        # by content: per folder whose in-flight keys were looked up when it was listed, the
        # keys it no longer listed (settled at the end of the pass)
        self._strays: dict[int, list[str]] = {}
        self._targets: dict[int, str] = {}
        # adoption: source folders of this pass the ledger knew no message of, and per target
        # folder what it held before this pass sent anything there
        self._adopting: set[int] = set()
        self._holdings: dict[str, Holdings] = {}
        self._ensured: dict[str, TargetFolder] = {}  # source folder native name -> target folder
        self._source: Source | None = None
        self._source_folders: list[FolderInfo] = []
        self._init_reconcile()

    # --- helpers -------------------------------------------------------------------------
    def _retry(self, fn: Callable[[], T]) -> T:
        def on_retry(exc: Exception, wait: float, attempt: int) -> None:
            assert isinstance(exc, TransientError)  # the only errors retried here
            if exc.throttled:
                self.ctx.limiter.throttled()
            if self.ctx.on_wait is not None:
                self.ctx.on_wait(exc, wait)

        def limited() -> T:
            with self.ctx.limiter.slot():
                # after the wait for a slot, which may be long: is the account still ours?
                self.ctx.check_lease()
                return fn()

        return call_with_retry(limited, self.ctx.retry, stop=self.ctx.stop, on_retry=on_retry)

    def _find(
        self, tfolder: TargetFolder, keys: Sequence[str], exclude_ids: Collection[str] = ()
    ) -> dict[str, str]:
        return self._retry(
            lambda: self.ctx.target.find(self.mailbox, tfolder, keys, exclude_ids=exclude_ids)
        )

    def _check_stop(self) -> None:
        if self.ctx.stop.is_set():
            raise Stopped("stopped on request")

    # --- the job -------------------------------------------------------------------------
    def execute(self) -> AccountOutcome:
        started = time.monotonic()
        target = self.ctx.target
        # A first pass checks the target mailbox up front; a delta pass only once it has
        # something to send, so a pass with nothing new costs no request to the target.
        self._preflighted = False
        if self.claim.passes == 0:
            self._preflight()
        source = self.ctx.source_factory(
            self.ctx.plan.source,
            self.claim.source_path,
            self.claim.attributes,
            self.ctx.source_password,
        )
        with source:
            self._stored = {
                f.native: f for f in ledger.folders(self.ctx.store, self.claim.account_id)
            }
            # source folder id -> its target folder: where two share one, keys may collide
            self._targets = {
                f.id: f.target_folder_id for f in self._stored.values() if f.target_folder_id
            }
            self._resolve_inflight()
            self._done_before = sum(f.done_count for f in self._stored.values())
            if self._stored:  # announced moves and deletions are on ledger rows, under folder rows
                self._resolve_pending()
            synced: list[tuple[int, int | None, int | None, str | None]] = []
            self._source = source
            listed = source.folders()
            self._follow_renames(source, listed)
            self._targets = {
                f.id: f.target_folder_id for f in self._stored.values() if f.target_folder_id
            }
            self._source_folders = [f for f in listed if not target.is_excluded(f.path)]
            for folder in self._source_folders:
                self._check_stop()
                synced.append((*self._folder(source, folder), folder.mark))
                self.outcome.folders += 1
            self._note_vanished_folders({f.native for f in listed})
            self._settle_strays()
            self._reconcile()
            self.synced_folders = synced  # recorded with the release, in one transaction
        self.outcome.status = PassOutcome.SYNCED
        self.outcome.seconds = time.monotonic() - started
        return self.outcome

    def _ensure(self, folder: FolderInfo) -> TargetFolder:
        """The target folder of a source folder (created when missing), asked once per pass."""
        known = self._ensured.get(folder.native)
        if known is None:
            self._preflight()
            known = self._retry(
                lambda: self.ctx.target.ensure_folder(self.mailbox, folder.path, folder.role)
            )
            self._ensured[folder.native] = known
        return known

    def _target_id_of(self, folder: FolderInfo) -> str:
        ensured = self._ensured.get(folder.native)
        if ensured is not None:
            return ensured.id
        row = self._stored.get(folder.native)
        if row is not None and row.target_folder_id:
            return row.target_folder_id
        return self._ensure(folder).id

    def _holdings_of(self, tfolder: TargetFolder) -> Holdings:
        """What `tfolder` held before this pass sent anything there: nothing when the target
        knows it was empty (created just now); else one listing per target folder and pass
        (EWS, IMAP with the tag header), or one message count (IMAP by content: each chunk is
        then looked up by its messages' content)."""
        found = self._holdings.get(tfolder.id)
        if found is not None:
            return found
        target = self.ctx.target
        holdings = Holdings()
        if not tfolder.empty:
            keyed: KeyedItems | None = None
            if isinstance(target, ListsByKey):
                keyed = self._retry(lambda: target.items_by_key(self.mailbox, tfolder))
            if keyed is not None:
                holdings.keyed = keyed
                if keyed.by_tag:
                    holdings.namesakes = self._namesakes(tfolder)
            elif self._by_content:
                holdings.by_content = self._retry(lambda: target.count(self.mailbox, tfolder)) > 0
        if not holdings.empty:
            holdings.taken = ledger.target_ids(self.ctx.store, self.claim.account_id, tfolder.id)
        self._holdings[tfolder.id] = holdings
        return holdings

    def _namesakes(self, tfolder: TargetFolder) -> Counter[str] | None:
        """Where several source folders land in `tfolder` ("Sent" and "Elementos enviados" both
        go to Sent Items), how many of them list each key: keys are unique per source folder
        only, so a tagged item found there may be another folder's message. None when only
        one source folder lands there (no key can be another's)."""
        sharing = [f for f in self._source_folders if self._target_id_of(f) == tfolder.id]
        if len(sharing) < 2 or self._source is None:
            return None
        counts: Counter[str] = Counter()
        for folder in sharing:
            counts.update({record.key for record in self._source.messages(folder)})
        return counts

    def _adopt_by_key(self, holdings: Holdings, records: Sequence[MessageRecord]) -> dict[str, str]:
        """Key -> target id of the tagged items adopted for these records. An item adopted
        once is never adopted for another message. Where several source folders list a key,
        its items are adopted only when there are at least as many as source messages with
        that key (anything less, and one found may be the other folder's: sending again risks
        a duplicate, adopting risks losing a message)."""
        keyed = holdings.keyed
        adopted: dict[str, str] = {}
        if keyed is None:
            return adopted
        for record in records:
            ids = keyed.ids(record.key)
            if not ids:
                continue
            if holdings.namesakes is not None and len(ids) < holdings.namesakes[record.key]:
                continue
            free = next((i for i in ids if i not in holdings.taken), None)
            if free is not None:
                adopted[record.key] = free
                holdings.taken.add(free)
        return adopted

    def _preflight(self) -> None:
        if not self._preflighted:
            self._retry(lambda: self.ctx.target.preflight(self.mailbox))
            self._preflighted = True

    def _resolve_inflight(self) -> None:
        # ledger rows hang off folder rows: an account without folders has nothing in flight
        pending = ledger.inflight(self.ctx.store, self.claim.account_id) if self._stored else {}
        self._inflight_by_folder = pending
        if not pending or self._by_content:
            # a target that recognises uploads by content (IMAP) needs their bytes: each
            # folder resolves its own in-flight keys when it is listed (see _folder)
            return
        self._preflight()
        by_id = {f.id: f for f in self._stored.values()}
        for folder_id, keys in pending.items():
            row = by_id.get(folder_id)
            found: dict[str, str] = {}
            if row is not None and row.target_folder_id:
                tfolder = TargetFolder(
                    row.target_folder_id, tuple((row.target_path or "").split("/"))
                )
                taken = ledger.target_ids(
                    self.ctx.store, self.claim.account_id, row.target_folder_id
                )
                for start in range(0, len(keys), 100):
                    found.update(self._find(tfolder, keys[start : start + 100], taken))
            ledger.resolve_inflight(self.ctx.store, self.claim, folder_id, keys, found)
            self.ctx.progress.note(
                f"{self.outcome.address}: {len(keys)} in-flight message(s) from an interrupted "
                f"run: {len(found)} already in the target, {len(keys) - len(found)} to send again"
            )

    def _folder(self, source: Source, folder: FolderInfo) -> tuple[int, int, int | None]:
        """Migrate what is new in one folder; returns (folder id, messages, bytes) listed
        (bytes None when the listing gave known messages without their size)."""
        store, claim = self.ctx.store, self.claim
        row = self._stored.get(folder.native)
        tfolder_box: list[TargetFolder] = []

        def ensure_target() -> TargetFolder:
            return self._ensure(folder)

        if row is None:
            self.new_folders += 1
            # a folder seen for the first time is created in the target (even if empty) and
            # recorded with its target id in one transaction
            tfolder_box.append(ensure_target())
            folder_id = ledger.ensure_folder(store, claim, folder, target=tfolder_box[0])
            self._targets[folder_id] = tfolder_box[0].id
            known_target: str | None = tfolder_box[0].id
        else:
            folder_id, known_target = row.id, row.target_folder_id

        def tfolder() -> TargetFolder:
            # an existing folder is asked for only when something new goes there
            if not tfolder_box:
                found = ensure_target()
                if found.id != known_target:
                    ledger.set_folder_target(store, claim, folder_id, found.id, found.display)
                    self._targets[folder_id] = found.id
                tfolder_box.append(found)
            return tfolder_box[0]

        if (
            row is not None
            and folder.mark is not None
            and row.mark == folder.mark
            and not row.skipped_count
            and folder_id not in self._inflight_by_folder
        ):
            # the source says nothing in the folder changed since the last pass (an IMAP
            # server's UIDVALIDITY and HIGHESTMODSEQ): nothing new, no flag changed, none gone
            self.outcome.messages_seen += folder.message_count or 0
            return folder_id, folder.message_count or 0, folder.byte_total
        self._check_numbering(
            source, folder, folder_id, row.uidvalidity if row is not None else None
        )
        inflight = self._inflight_by_folder.get(folder_id) if self._by_content else None
        if inflight:
            self._resolve_by_content(source, folder, folder_id, tfolder(), inflight)
        if row is not None and row.skipped_count:
            again = ledger.forget_retried_skips(store, claim, folder_id, RETRIED_SKIPS)
            if again:
                self.ctx.progress.note(
                    f"{self.outcome.address}: {again} message(s) of {folder.display} that an "
                    "earlier pass could not read (they vanished or changed meanwhile) are looked "
                    "for again"
                )
        # a folder recorded just now has no ledger rows yet
        known = changes.known_states(store, folder_id) if row is not None else {}
        # in-flight rows left now are keys this folder no longer lists (_settle_strays)
        if all(entry.state == MessageState.INFLIGHT for entry in known.values()):
            # the ledger knows nothing of this folder's mail: what its target folder already
            # holds is adopted, not sent again (a folder created just now holds nothing)
            self._adopting.add(folder_id)
        adopted_before = self.outcome.messages_adopted
        chunk: list[MessageRecord] = []
        chunk_bytes = 0
        skips: list[Outcome] = []
        listed = 0
        # flags changed since the last pass only (CONDSTORE), unless some rows have no flags
        # recorded yet (written before they were kept): those need the flags of now
        since = (
            row.mark
            if row is not None
            and all(e.flags is not None for e in known.values() if e.state == MessageState.DONE)
            else None
        )
        # a source that can leave known keys out of its listing spares a stat or a fetch per
        # message: it gives their keys and flags only (KnownMessage)
        listing = source.messages(folder, known=known, since=since)
        seen: set[str] = set()  # a source listing the same key twice must not send it twice
        flag_changes: list[tuple[str, str, Flags]] = []  # (key, flags last given, flags now)
        first_flags: list[tuple[str, str]] = []  # rows written before flags were kept
        for record in listing:
            self.outcome.messages_seen += 1
            listed += 1
            if isinstance(record, KnownMessage) or record.key in known:
                entry = known.get(record.key)
                flags = record.flags if isinstance(record, KnownMessage | MessageRecord) else None
                if (
                    entry is not None
                    and flags is not None
                    and record.key not in seen
                    and entry.state == MessageState.DONE
                ):
                    token = flags.token()
                    if entry.flags is None:
                        first_flags.append((record.key, token))
                    elif token != entry.flags and not entry.pending:
                        flag_changes.append((record.key, entry.flags, flags))
                seen.add(record.key)
                continue
            if record.key in seen:
                continue
            seen.add(record.key)
            self.outcome.messages_new += 1
            if isinstance(record, SkippedMessage):
                skips.append(
                    Outcome(
                        record.key, MessageState.SKIPPED, reason=record.reason, detail=record.detail
                    )
                )
                self._note_skip(folder, record.key, record.reason, record.detail)
                continue
            if self._may_have_moved(record, folder_id):
                self._held.append(Held(folder, folder_id, record))
                continue
            detail = too_large(record.size, self.ctx.target)
            if detail is not None:
                # found from the listed size: nothing is read or announced for it
                skips.append(
                    Outcome(
                        record.key,
                        MessageState.SKIPPED,
                        size=record.size,
                        reason=Reason.TOO_LARGE,
                        detail=detail,
                    )
                )
                self._note_skip(folder, record.key, Reason.TOO_LARGE, detail)
                continue
            if chunk and (
                len(chunk) >= self.run.chunk_messages
                or chunk_bytes + record.size > self.run.chunk_bytes
            ):
                self._chunk(folder, folder_id, tfolder(), chunk)
                chunk, chunk_bytes = [], 0
            chunk.append(record)
            chunk_bytes += record.size
            if len(skips) >= 500:
                ledger.finish_chunk(store, claim, folder_id, skips, in_flight=False)
                skips = []
        if skips:
            ledger.finish_chunk(store, claim, folder_id, skips, in_flight=False)
        if chunk or known_target is None:
            target_folder = tfolder()  # a new folder is created even when it holds no mail
            if chunk:
                self._chunk(folder, folder_id, target_folder, chunk)
        changes.record_flags(store, claim, folder_id, first_flags)
        if flag_changes:
            given = self._ensured.get(folder.native) or (
                self._tfolder_of_row(row) if row is not None else None
            )
            if given is not None:
                self._carry_flags(folder, folder_id, given, flag_changes)
        if known and not listing.partial:
            # a listing that missed a whole directory or file did not see its messages: none is gone
            self._note_gone(folder_id, known, seen)
        adopted = self.outcome.messages_adopted - adopted_before
        if adopted:
            self.ctx.progress.note(
                f"{self.outcome.address}: {adopted} message(s) of {folder.display} were in the "
                "target already (an earlier migration the ledger does not know): adopted, not "
                "sent again"
            )
        return folder_id, listed, listing.bytes

    def _check_numbering(
        self, source: Source, folder: FolderInfo, folder_id: int, recorded: int | None
    ) -> None:
        """IMAP sources number messages per UIDVALIDITY. When the server renumbered a folder
        since the last pass, every key changed: carry what was migrated over to the new keys
        by content fingerprint, so nothing is sent twice."""
        if not _renumbers(source):
            return
        current = cast(Renumbers, source).uidvalidity(folder)
        if recorded is None:
            ledger.record_uidvalidity(self.ctx.store, self.claim, folder_id, current)
            return
        if recorded == current:
            return
        pairs = [
            (record.key, record.extra["fingerprint"])
            for record in source.messages(folder)
            if isinstance(record, MessageRecord) and record.extra.get("fingerprint")
        ]
        carried, gone = ledger.rekey(
            self.ctx.store, self.claim, folder_id, f"{recorded}:", pairs, current
        )
        self.ctx.progress.note(
            f"{self.outcome.address}: folder {folder.display} was renumbered by the server "
            f"(UIDVALIDITY {recorded} -> {current}); {carried} migrated message(s) recognised by "
            f"content, {gone} no longer in the source"
        )

    def _resolve_by_content(
        self,
        source: Source,
        folder: FolderInfo,
        folder_id: int,
        tfolder: TargetFolder,
        keys: list[str],
    ) -> None:
        """In-flight keys of one folder, looked up in the target by the messages' content.
        Keys the folder no longer lists (the user moved or deleted the message after the
        interrupted upload) stay in flight: the bytes to look for are where the message went,
        known at the end of the pass (`_settle_strays`)."""
        wanted = set(keys)
        listed: set[str] = set()
        items: list[UploadItem] = []
        for record in source.messages(folder):
            if record.key not in wanted:
                continue
            listed.add(record.key)
            if isinstance(record, MessageRecord):
                try:
                    data = _read_all(record)
                except SourceError:
                    continue  # unreadable now: forgotten below, and skipped when listed again
                items.append(
                    UploadItem(record.key, data, record.flags, record.internal_date, folder.role)
                )
        strays = [key for key in keys if key not in listed]
        self._strays[folder_id] = strays
        keys = [key for key in keys if key in listed]
        found: dict[str, str] = {}
        if items:
            found = self._confirm(tfolder, items, folder_id)
        ledger.resolve_inflight(self.ctx.store, self.claim, folder_id, keys, found)
        elsewhere = f", {len(strays)} no longer in {folder.display}" if strays else ""
        self.ctx.progress.note(
            f"{self.outcome.address}: {len(keys) + len(strays)} in-flight message(s) from an "
            f"interrupted run: {len(found)} already in the target, {len(keys) - len(found)} to "
            f"send again{elsewhere}"
        )

    def _settle_strays(self) -> None:
        """In-flight keys of folders that no longer list them (and of folders not listed at
        all): the user moved or deleted the message after an interrupted upload, and a target
        that recognises uploads by content (IMAP) needs its bytes to tell whether it stored
        it. A message new to another folder with the same identity was held there (its
        identity is the in-flight row's): its bytes are looked for in the target folder the
        upload went to. Found, the row is done there and gone from its folder, so `_reconcile`
        moves that copy with the message; not found, the row is forgotten and the message is
        sent as new mail. One the source holds nowhere any more cannot be looked for without
        its bytes: forgotten."""
        if not self._by_content:
            return  # found by source key before the pass listed anything (_resolve_inflight)
        unlisted = {
            row.id
            for row in self._stored.values()
            if row.id not in self._strays  # not listed in this pass
            # left out by the plan now: its rows wait until it is listed again
            and not self.ctx.target.is_excluded(tuple(row.display.split("/")))
        }
        for folder_id, keys in self._inflight_by_folder.items():
            if folder_id in unlisted:
                self._strays[folder_id] = list(keys)
        store, claim = self.ctx.store, self.claim
        held_by_identity: dict[str, list[Held]] = {}
        for held in self._held:
            held_by_identity.setdefault(held.identity, []).append(held)
        for folder_id, keys in self._strays.items():
            if not keys:
                continue
            identities = changes.inflight_identities(store, folder_id, keys)
            tfolder = self._target_of(folder_id)
            items: list[UploadItem] = []
            for key in keys:
                candidates = held_by_identity.get(identities.get(key, key))
                if not candidates or tfolder is None:
                    continue
                # the same key first (Maildir and mbox keep it), else the oldest
                held = next((h for h in candidates if h.record.key == key), candidates[0])
                candidates.remove(held)
                try:
                    data = _read_all(held.record)
                except SourceError:
                    continue  # unreadable now: forgotten, and the message skipped as new mail
                items.append(
                    UploadItem(
                        key, data, held.record.flags, held.record.internal_date, held.folder.role
                    )
                )
            found: dict[str, str] = {}
            if items and tfolder is not None:
                self._preflight()
                found = self._confirm(tfolder, items, folder_id)
            ledger.resolve_inflight(store, claim, folder_id, keys, found)
            # done now, and no longer in its source folder: paired with where it went
            self._gone.extend(changes.placed(store, folder_id, list(found)))
            self.ctx.progress.note(
                f"{self.outcome.address}: {len(keys)} in-flight message(s) from an interrupted "
                f"run had left their folder: {len(found)} found in the target (moved with the "
                f"message), {len(keys) - len(found)} not stored there"
            )

    def _confirm(
        self,
        tfolder: TargetFolder,
        items: Sequence[UploadItem],
        folder_id: int,
        settled_ids: Collection[str] = (),
    ) -> dict[str, str]:
        """Which of these items the target already holds: by source key where the target can
        search for it, else by content; never matching a target id that already stands for
        another message (in the ledger, or `settled_ids` of this chunk)."""
        target = self.ctx.target
        known_ids = ledger.target_ids(self.ctx.store, self.claim.account_id, tfolder.id) | set(
            settled_ids
        )
        if not isinstance(target, FindsByContent):
            return self._find(tfolder, [item.key for item in items], known_ids)
        return self._retry(
            lambda: target.find_uploads(self.mailbox, tfolder, items, known_ids=known_ids)
        )

    def _note_skip(self, folder: FolderInfo, key: str, reason: str, detail: str) -> None:
        self.outcome.skipped.append(SkippedInfo(folder.display, key, reason, detail))

    def _chunk(
        self,
        folder: FolderInfo,
        folder_id: int,
        tfolder: TargetFolder,
        records: Sequence[MessageRecord],
    ) -> None:
        self._check_stop()
        store, claim = self.ctx.store, self.claim
        # asked before the chunk is announced: a target that cannot answer leaves nothing in flight
        holdings = self._holdings_of(tfolder) if folder_id in self._adopting else None
        if holdings is not None and holdings.empty:
            holdings = None
        ledger.begin_chunk(
            store,
            claim,
            folder_id,
            uuid.uuid4().hex,
            [(r.key, r.size, r.extra.get("fingerprint"), r.flags.token()) for r in records],
        )
        crashpoints.reached("begin_chunk")
        outcomes: list[Outcome] = []
        adopted: dict[str, str] = {}
        foreign: set[str] = set()  # items tagged with our keys that stand for other messages
        if holdings is not None and holdings.keyed is not None:
            # found by key: adopted without reading the message
            adopted = self._adopt_by_key(holdings, records)
            foreign = {
                i for r in records if r.key not in adopted for i in holdings.keyed.ids(r.key)
            }
        items: list[UploadItem] = []
        for record in records:
            if record.key in adopted:
                outcomes.append(
                    Outcome(
                        record.key,
                        MessageState.DONE,
                        size=record.size,
                        target_id=adopted[record.key],
                    )
                )
                continue
            try:
                data = _read_all(record)
            except SourceError as exc:
                outcomes.append(
                    Outcome(
                        record.key,
                        MessageState.SKIPPED,
                        size=record.size,
                        reason=exc.reason,
                        detail=exc.message,
                    )
                )
                self._note_skip(folder, record.key, exc.reason, exc.message)
                continue
            # asked again of the bytes read: the limit may have come down since the listing
            # (connecting to the target told it the server's), or the file grew
            detail = too_large(len(data), self.ctx.target)
            if detail is not None:
                outcomes.append(
                    Outcome(
                        record.key,
                        MessageState.SKIPPED,
                        size=len(data),
                        reason=Reason.TOO_LARGE,
                        detail=detail,
                    )
                )
                self._note_skip(folder, record.key, Reason.TOO_LARGE, detail)
                continue
            items.append(
                UploadItem(record.key, data, record.flags, record.internal_date, folder.role)
            )
        if holdings is not None and holdings.by_content and items:
            found = self._adopt_by_content(holdings, tfolder, items)
            for item in items:
                if item.key in found:
                    outcomes.append(
                        Outcome(
                            item.key,
                            MessageState.DONE,
                            size=len(item.data),
                            target_id=found[item.key],
                        )
                    )
            items = [item for item in items if item.key not in found]
            adopted.update(found)
        self.outcome.messages_adopted += len(adopted)
        sizes = {item.key: len(item.data) for item in items}
        results, unresolved = self._upload(tfolder, items, folder_id, foreign)
        crashpoints.reached("upload")
        del items  # the bytes are no longer needed
        for result in results:
            size = sizes[result.key]
            if result.error is None:
                outcomes.append(
                    Outcome(result.key, MessageState.DONE, size=size, target_id=result.target_id)
                )
            else:
                reason = (
                    result.error.reason
                    if isinstance(result.error, PermanentError)
                    else Reason.REJECTED
                )
                outcomes.append(
                    Outcome(
                        result.key,
                        MessageState.SKIPPED,
                        size=size,
                        reason=reason,
                        detail=str(result.error),
                    )
                )
                self._note_skip(folder, result.key, reason, str(result.error))
        try:
            ledger.finish_chunk(store, claim, folder_id, outcomes, in_flight=True)
        except LeaseLost:
            self._withdraw(folder_id, tfolder, outcomes)
            raise
        crashpoints.reached("finish_chunk")
        done = [o for o in outcomes if o.state == MessageState.DONE]
        settled_here = self._holdings.get(tfolder.id)
        if settled_here is not None and not settled_here.empty:
            settled_here.taken.update(o.target_id for o in done if o.target_id)
        self.outcome.messages_done += len(done)
        nbytes = sum(o.size for o in done)
        self.outcome.bytes_done += nbytes
        self.ctx.progress.messages_done(self.outcome.address, len(done), nbytes)
        if unresolved is not None:
            # left in flight on purpose: the next attempt asks the target before resending
            raise unresolved

    def _adopt_by_content(
        self, holdings: Holdings, tfolder: TargetFolder, items: Sequence[UploadItem]
    ) -> dict[str, str]:
        """Key -> target id of the items of this chunk the target folder holds already,
        recognised by content (Message-ID, size, date, then the bytes; see find_uploads),
        never taking an item that stands for another message."""
        target = self.ctx.target
        assert isinstance(
            target, FindsByContent
        )  # holdings.by_content is only set for such targets
        taken = set(holdings.taken)
        found = self._retry(
            lambda: target.find_uploads(self.mailbox, tfolder, items, known_ids=taken)
        )
        found = {key: tid for key, tid in found.items() if tid not in holdings.taken}
        holdings.taken.update(found.values())
        return found

    def _withdraw(self, folder_id: int, tfolder: TargetFolder, outcomes: list[Outcome]) -> None:
        """This chunk's lease was taken over while its upload was on the way (the process was
        frozen after confirming the lease: SIGSTOP, a VM pause). The new owner found none of
        these messages in the target and stored its own copies, which the ledger now holds
        as done under other ids: ours are duplicates, and are deleted. A message the ledger
        holds under our id (the new owner found our copy) or has not settled yet stays."""
        target = self.ctx.target
        ours = {
            o.key: o.target_id for o in outcomes if o.state == MessageState.DONE and o.target_id
        }
        if not isinstance(target, Withdraws) or not ours:
            return
        theirs = ledger.done_target_ids(self.ctx.store, folder_id, list(ours))
        extra = [tid for key, tid in ours.items() if theirs.get(key) not in (None, tid)]
        if not extra:
            return
        try:
            target.withdraw(self.mailbox, tfolder, extra)
        except MigratorError as exc:
            self.ctx.progress.note(
                f"{self.outcome.address}: {len(extra)} message(s) sent after the lease was lost "
                f"are duplicates and could not be removed from {tfolder.display!r}: {exc.message}"
            )
            return
        self.ctx.progress.note(
            f"{self.outcome.address}: removed {len(extra)} duplicate(s) this worker sent to "
            f"{tfolder.display!r} after its lease was taken over"
        )

    def _upload(
        self,
        tfolder: TargetFolder,
        items: list[UploadItem],
        folder_id: int,
        foreign: Collection[str] = (),
    ) -> tuple[list[UploadResult], TransientError | None]:
        """Upload until every item is stored or refused for good, confirming with find()
        before anything is sent again. Returns the result of each settled item (stored: its
        target id; refused for good: a PermanentError), and the last transient error if some
        could not be settled. `foreign`: ids of items the target held before, tagged with
        keys of this chunk but not adopted for them: a search by key must never take one for
        our upload.

        The retry loop is migrator/retry.py's: each attempt that leaves items unsettled raises
        `_Unsettled` (the server's longest hint, throttled or not); an attempt that got some
        stored counts as the first again (`progress`); a stop request ends the back-off, and
        the items left stay in flight for the next attempt to look up before resending."""
        target = self.ctx.target
        settled: dict[str, UploadResult] = {}
        pending = {item.key: item for item in items}
        answered = 0  # items the target's answers settled: progress
        last: TransientError | None = None
        namesakes: set[str] | None = None  # ids other source folders' copies of our keys hold
        given: set[str] = set()  # target ids settled for this chunk's messages so far
        sent = False

        def attempt() -> None:
            nonlocal answered, last, namesakes, sent
            if sent:
                # the server may have stored some of them before failing: ask before resending
                # (a TransientError here ends the loop: nothing is sent unconfirmed)
                found = self._confirm(
                    tfolder, list(pending.values()), folder_id, [*given, *foreign]
                )
                for key, target_id in found.items():
                    if key in pending:
                        settled[key] = UploadResult(key, target_id)
                        given.add(target_id)
                        del pending[key]
                if not pending:
                    return
            sent = True
            hint: float | None = None
            throttled = False
            with self.ctx.limiter.slot():
                # a worker paused past its lease (SIGSTOP, a VM freeze) must not send what the
                # worker that took the account over sends too: the ledger would refuse this
                # chunk's stale epoch, but the target cannot
                self.ctx.check_lease()
                crashpoints.reached("before_upload")
                try:
                    answers = target.upload(self.mailbox, tfolder, list(pending.values()))
                except TransientError as exc:  # adapters report per item, but be safe
                    answers = []
                    last = exc
                    hint = exc.retry_after
                    throttled = exc.throttled
            for answer in answers:
                if answer.key not in pending:
                    continue
                if answer.error is None:
                    if namesakes is None:
                        shared = any(
                            t == tfolder.id for f, t in self._targets.items() if f != folder_id
                        )
                        namesakes = (
                            ledger.target_ids(
                                self.ctx.store,
                                self.claim.account_id,
                                tfolder.id,
                                keys=list(pending),
                                other_than=folder_id,
                            )
                            if shared
                            else set()
                        )
                    taken = answer.target_id is not None and (
                        answer.target_id in namesakes
                        or answer.target_id in given
                        or answer.target_id in foreign
                    )
                    if taken:
                        # the target found an item by its tag after an ambiguous failure, but
                        # that item is another message's copy (a namesake from another source
                        # folder landing in the same target folder): ours is unconfirmed
                        last = TransientError(
                            f"the target answered for message {answer.key} with the id of another "
                            "message carrying the same key"
                        )
                        continue
                    settled[answer.key] = answer
                    if answer.target_id is not None:
                        given.add(answer.target_id)
                    del pending[answer.key]
                    answered += 1
                elif isinstance(answer.error, PermanentError):
                    settled[answer.key] = answer
                    del pending[answer.key]
                    answered += 1
                else:
                    err = answer.error
                    if not isinstance(err, TransientError):
                        err = TransientError(str(err))
                    last = err
                    throttled = throttled or err.throttled
                    if err.retry_after is not None:
                        hint = max(hint or 0.0, err.retry_after)
            if not pending:
                self.ctx.limiter.succeeded()
                return
            if throttled:
                self.ctx.limiter.throttled()
            if last is None:  # an adapter answers for every item; should one not, try again
                last = TransientError(f"the target gave no answer for {len(pending)} message(s)")
            raise _Unsettled(last, hint, throttled)

        def on_retry(exc: Exception, wait: float, attempt: int) -> None:
            if self.ctx.on_wait is not None and isinstance(exc, _Unsettled):
                self.ctx.on_wait(exc.last, wait)

        stats = RetryStats()
        try:
            call_with_retry(
                attempt,
                self.ctx.retry,
                stop=self.ctx.stop,
                on_retry=on_retry,
                stats=stats,
                retry_if=lambda exc: isinstance(exc, _Unsettled),
                progress=lambda: answered,
            )
        except _Unsettled:
            pass  # attempts or time ran out, or a stop request came: `last` says why
        except StoppedWaiting:
            pass  # stopped during the back-off
        except TransientError as exc:
            last = exc  # the confirmation before resending failed
        results = list(settled.values())
        if pending:
            assert last is not None
            return results, TransientError(
                f"{len(pending)} message(s) could not be uploaded after {stats.attempts} "
                f"attempt(s); last error: {last}",
                retry_after=last.retry_after,
                throttled=last.throttled,
            )
        return results, None
