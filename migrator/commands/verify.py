"""`verify`: per folder, source count vs ledger vs what the target holds, stored with a time.

The target side is checked by the source-key tag of every message the ledger says is done
(so mail that reached the mailbox by other routes, e.g. after the MX switch, does not make a
folder look wrong); the folder's total item count is reported beside it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from migrator.adapters.sources import open_account_source
from migrator.adapters.targets import TargetFolder, open_target
from migrator.adapters.targets.base import ChecksPresence, Inventories, ShowsFlags, Target
from migrator.commands.heartbeat import keep_run_alive
from migrator.commands.secrets import source_password, target_secrets
from migrator.commands.state import check_selection, in_scope_accounts, plan_store
from migrator.engine.mailbox import RETRIED_SKIPS
from migrator.model.errors import EXIT_OK, EXIT_PARTIAL, MigratorError, UsageError
from migrator.model.mail import Flags, MessageRecord, SkippedMessage
from migrator.model.plan import Plan
from migrator.model.status import MessageState, RunStatus, Status
from migrator.retry import RetryPolicy, call_with_retry
from migrator.store import ledger, verification
from migrator.store.fleet import owner_gone
from migrator.store.owners import identify
from migrator.store.verification import FolderCheck

_FIND_BATCH = 100


@dataclass
class FolderResult:
    folder: str
    target_folder: str
    source: int
    ledger_done: int
    ledger_skipped: int
    target_found: int
    target_items: int
    ok: bool
    note: str = ""
    # migrated messages whose flags in the target differ from the source's: changed in the
    # source since the last pass (run again), or changed in the target since (kept)
    flags_pending: int = 0
    flags_changed_in_target: int = 0


@dataclass
class AccountVerification:
    address: str
    ok: bool
    status: str
    folders: list[FolderResult] = field(default_factory=list)
    error: str | None = None


@dataclass
class VerifyReport:
    accounts: list[AccountVerification] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if all(a.ok for a in self.accounts) else EXIT_PARTIAL

    def as_json(self) -> dict[str, Any]:
        errors = sum(1 for a in self.accounts if a.error)
        ok = sum(1 for a in self.accounts if a.ok)
        return {
            "ok": all(a.ok for a in self.accounts),
            # what `status` shows of the last verification (it reads only this part)
            "totals": {
                "accounts": len(self.accounts),
                "ok": ok,
                "differ": len(self.accounts) - ok - errors,
                "errors": errors,
            },
            "accounts": [
                {
                    "address": a.address,
                    "ok": a.ok,
                    "status": a.status,
                    "error": a.error,
                    "folders": [f.__dict__ for f in a.folders],
                }
                for a in self.accounts
            ],
        }


def verify(
    plan: Plan,
    *,
    state_url: str | None = None,
    addresses: Sequence[str] = (),
    batches: Sequence[str] = (),
    workers: int | None = None,
    unverified_only: bool = False,
) -> VerifyReport:
    secrets = target_secrets(plan)
    password = source_password(plan)
    report = VerifyReport()
    with plan_store(plan, state_url, access="write") as (store, plan_id):
        check_selection(store, plan_id, plan, batches=batches, addresses=addresses)
        # accounts with at least one finished pass (a failed later pass still has one)
        rows = [
            r
            for r in in_scope_accounts(store, plan_id, batches=batches, addresses=addresses)
            if r.passes > 0
            and r.status in (Status.SYNCED, Status.VERIFIED, Status.FAILED, Status.RUNNING)
            # --unverified: what a pass changed since it was last verified (a pass that finds
            # nothing new leaves an account verified)
            and not (unverified_only and r.status == Status.VERIFIED)
        ]
        if addresses and not rows:
            raise UsageError(
                "none of the accounts asked for has been migrated yet",
                hint="run `migrator run` first",
            )
        run_id = store.start_run(
            plan_id, "verify", worker=identify(), lease_seconds=plan.run.lease_seconds
        )
        target = open_target(
            plan.target,
            secrets=secrets,
            max_connections=plan.run.target_concurrency,
            plan_file=plan.file,
        )
        policy = RetryPolicy()
        try:
            # accounts are independent: check several at once, like `run` does
            with (
                keep_run_alive(store, run_id, plan.run.lease_seconds),
                ThreadPoolExecutor(max_workers=workers or plan.run.workers) as pool,
            ):
                report.accounts.extend(
                    pool.map(
                        lambda row: _account(
                            plan, store, target, row, password, plan_id, run_id, policy
                        ),
                        rows,
                    )
                )
        finally:
            target.close()
        store.finish_run(
            run_id, RunStatus.DONE if report.exit_code == 0 else RunStatus.PARTIAL, report.as_json()
        )
        return report


def _found_keys(
    target: Target, mailbox: str, tfolder: TargetFolder, keys: list[str], policy: RetryPolicy
) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), _FIND_BATCH):
        part = keys[start : start + _FIND_BATCH]
        found.update(call_with_retry(partial(target.find, mailbox, tfolder, part), policy))
    return found


def _target_side(
    target: Target, mailbox: str, wanted: list[tuple[TargetFolder, Any]], policy: RetryPolicy
) -> dict[str, tuple[dict[str, int], int]]:
    """Target folder id -> (each wanted key -> copies found, items in the folder).

    A target that can list folders with each item's source key (EWS) reads all of them in
    one paged request and sees duplicates; one that keeps no key on a message (IMAP) is
    asked which of the ledger's target ids it still holds; others are searched a hundred
    keys at a time (a key found counts once)."""
    by_folder: dict[str, list[str]] = {}
    ids_by_folder: dict[str, dict[str, str]] = {}  # target folder -> target id -> key
    folders: dict[str, TargetFolder] = {}
    for tfolder, ledger_folder in wanted:
        by_folder.setdefault(tfolder.id, []).extend(ledger_folder.done_keys)
        ids = ids_by_folder.setdefault(tfolder.id, {})
        ids.update(
            (tid, key)
            for key, tid in zip(ledger_folder.done_keys, ledger_folder.done_ids, strict=True)
            if tid
        )
        folders[tfolder.id] = tfolder
    if not by_folder:
        return {}
    if isinstance(target, Inventories):
        answer = call_with_retry(partial(target.inventory, mailbox, by_folder), policy)
        return {fid: (dict(counts), items) for fid, (counts, items) in answer.items()}
    out: dict[str, tuple[dict[str, int], int]] = {}
    if isinstance(target, ChecksPresence):
        for fid, ids in ids_by_folder.items():
            held, items = call_with_retry(
                partial(target.present, mailbox, folders[fid], list(ids)), policy
            )
            out[fid] = ({ids[tid]: 1 for tid in held}, items)
        return out
    for fid, keys in by_folder.items():
        found = _found_keys(target, mailbox, folders[fid], keys, policy)
        out[fid] = (
            {key: 1 for key in found},
            call_with_retry(partial(target.count, mailbox, folders[fid]), policy),
        )
    return out


def _owner_gone(store: Any, owner: str | None) -> bool:
    with store.session() as s:
        return owner_gone(s, owner)


def _flag_differences(
    target: Target,
    mailbox: str,
    tfolder: TargetFolder,
    folder_ledger: verification.FolderLedger,
    source_flags: dict[str, Flags],
    policy: RetryPolicy,
) -> tuple[int, int]:
    """(messages whose flags changed in the source since the last pass, messages whose flags
    were changed in the target since): the migrated messages whose target flags differ from
    what the target shows of the source's flags, told apart by the flags the ledger says the
    target was last given."""
    if not isinstance(target, ShowsFlags):
        return 0, 0
    wanted = {
        key: tid
        for key, (tid, _) in folder_ledger.given.items()
        if tid and tid != "?" and key in source_flags and key not in folder_ledger.removed_keys
    }
    if not wanted:
        return 0, 0
    now = call_with_retry(partial(target.flags_of, mailbox, tfolder, list(wanted.values())), policy)
    pending = changed = 0
    for key, tid in wanted.items():
        shown = now.get(tid)
        flags = source_flags[key]
        if shown is None or shown == target.shown(flags):
            continue
        given = folder_ledger.given[key][1]
        if given is not None and given != flags.token():
            pending += 1
        else:
            changed += 1
    return pending, changed


def _target_folder(folder_row: Any) -> TargetFolder:
    return TargetFolder(
        folder_row.target_folder_id, tuple((folder_row.target_path or "").split("/"))
    )


def _account(
    plan: Plan,
    store: Any,
    target: Target,
    row: Any,
    password: str | None,
    plan_id: int,
    run_id: int,
    policy: RetryPolicy,
) -> AccountVerification:
    mailbox = row.target_address or row.address
    result = AccountVerification(address=row.address or row.key, ok=True, status=row.status)
    if row.status == Status.RUNNING:
        result.ok = False
        expired = row.lease_expires_at is not None and row.lease_expires_at < datetime.now(UTC)
        if expired or _owner_gone(store, row.lease_owner):
            # a SIGKILL or a crash leaves the account "running" until a run takes it over
            result.error = (
                "its last pass was interrupted (the worker stopped); `migrator run` resumes it"
            )
        else:
            result.error = "being migrated right now; verify it when the run has finished"
        return result
    stored = {f.native: f for f in ledger.folders(store, row.id)}
    ledgers = verification.account_ledger(store, row.id, retried=RETRIED_SKIPS)
    checks: list[FolderCheck] = []
    try:
        listed: list[
            tuple[Any, set[str], Any]
        ] = []  # (source folder, its keys now, ledger folder row)
        flags_now: dict[str, dict[str, Flags]] = {}  # folder native -> key -> the source's flags
        # per folder, what the source could not read as a whole (key "cur/", "folder/", "./.Leak/":
        # a directory, a folder file, a link): its messages are not counted anywhere, so the
        # folder cannot be called verified, whatever the ledger says
        unread: dict[str, list[SkippedMessage]] = {}
        with open_account_source(plan.source, row.source_path, row.attributes, password) as source:
            for folder in source.folders():
                if target.is_excluded(folder.path):
                    continue
                now: set[str] = set()
                flags = flags_now.setdefault(folder.native, {})
                for m in source.messages(folder):
                    now.add(m.key)
                    if isinstance(m, MessageRecord):
                        flags[m.key] = m.flags
                    if isinstance(m, SkippedMessage) and m.key.endswith("/"):
                        unread.setdefault(folder.native, []).append(m)
                listed.append((folder, now, stored.get(folder.native)))
        empty = verification.FolderLedger({}, [], [])
        wanted = [
            (_target_folder(folder_row), ledgers.get(folder_row.id) or empty)
            for _, _, folder_row in listed
            if folder_row is not None and folder_row.target_folder_id
        ]
        in_target = _target_side(target, mailbox, wanted, policy)
        # Keys are unique per source folder only: "Sent" and "Elementos enviados" may both hold
        # key K, and both copies carry tag K in Sent Items. Per target folder, how many copies
        # of each key the ledger says are there.
        expected: dict[str, Counter[str]] = {}
        for tfolder, folder_ledger in wanted:
            expected.setdefault(tfolder.id, Counter()).update(
                dict.fromkeys(folder_ledger.done_keys, 1)
            )
        for folder, source_keys, folder_row in listed:
            source_count = len(source_keys)
            if folder_row is None or not folder_row.target_folder_id:
                fr = FolderResult(
                    folder.display,
                    "",
                    source_count,
                    0,
                    0,
                    0,
                    0,
                    source_count == 0,
                    "" if source_count == 0 else "not migrated yet; run again",
                )
                result.folders.append(fr)
                result.ok &= fr.ok
                continue
            folder_ledger = ledgers.get(folder_row.id) or empty
            totals, keys = folder_ledger.totals, folder_ledger.done_keys
            tagged, items = in_target.get(folder_row.target_folder_id, ({}, 0))
            copies = expected.get(folder_row.target_folder_id, Counter())
            present = [
                (tagged[key], copies[key] or 1) for key in dict.fromkeys(keys) if tagged.get(key)
            ]
            # a key shared with another source folder counts as found only when every copy is there
            found = sum(1 for n, want in present if n >= want)
            duplicates = sum(n - want for n, want in present if n > want)
            # users keep working for weeks: mail that arrived since the last pass is not migrated
            # yet (run again); mail deleted after it was migrated stays in the target, as a
            # note: it must not keep the account from ever being verified
            # a message skipped because it vanished while it was read (its folder was moved
            # away meanwhile) and back in the source now is missing, not settled
            back = len(source_keys & folder_ledger.retry_keys)
            arrived = len(source_keys - folder_ledger.settled_keys) - back
            gone = folder_ledger.settled_keys - source_keys
            kept = (
                len(gone)
                if plan.run.deletions == "keep"
                else len(gone & folder_ledger.removed_keys)
            )
            deleted = len(gone) - kept  # not carried yet: the next pass deletes them
            not_read = unread.get(folder.native, [])
            pending_flags, target_flags = _flag_differences(
                target,
                mailbox,
                _target_folder(folder_row),
                folder_ledger,
                flags_now.get(folder.native, {}),
                policy,
            )
            ok = (
                found == totals.get(MessageState.DONE, 0)
                and not duplicates
                and not arrived
                and not back
                and not totals.get(MessageState.INFLIGHT)
                and not not_read
                and not deleted
                and not pending_flags
            )
            note = ""
            if not_read:
                shown = ", ".join(f"{m.key} ({m.reason})" for m in not_read[:3])
                more = f" and {len(not_read) - 3} more" if len(not_read) > 3 else ""
                note = f"not read from the source: {shown}{more}; see `migrator show`"
            elif duplicates:
                note = f"{duplicates} migrated message(s) present more than once in the target"
            elif found < totals.get(MessageState.DONE, 0):
                note = f"{totals.get('done', 0) - found} migrated message(s) missing in the target"
            elif back:
                note = (
                    f"{back} message(s) skipped as vanished are in the source again and not in "
                    "the target; run again"
                )
            elif arrived:
                note = f"{arrived} new message(s) since the last pass; run again"
            elif deleted:
                note = (
                    f"{deleted} message(s) deleted or moved in the source since the last pass; "
                    "run again"
                )
            elif pending_flags:
                note = (
                    f"{pending_flags} message(s) whose flags changed in the source since the last "
                    "pass; run again"
                )
            elif kept:
                note = (
                    f"{kept} message(s) deleted in the source after they were migrated (kept in "
                    "the target)"
                )
            elif target_flags:
                note = (
                    f"{target_flags} message(s) whose flags were changed in the target since "
                    "migrator set them (kept: a pass carries only changes made in the source)"
                )
            fr = FolderResult(
                folder.display,
                folder_row.target_path or "",
                source_count,
                totals.get(MessageState.DONE, 0),
                totals.get(MessageState.SKIPPED, 0),
                found,
                items,
                ok,
                note,
                pending_flags,
                target_flags,
            )
            result.folders.append(fr)
            checks.append(
                FolderCheck(
                    folder_row.id, source_count, totals.get(MessageState.DONE, 0), found, ok
                )
            )
            result.ok &= ok
    except MigratorError as exc:
        result.ok = False
        result.error = exc.message
    if checks and result.error is None:
        new = verification.record(store, plan_id, row.id, checks, run_id=run_id)
        result.status = new or row.status
    return result
