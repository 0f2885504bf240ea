"""`dedupe`: find, and with `apply` delete, the extra copies migrator itself left in a target.

Campaigns hit before a folder's first pass adopted what the target held (a lost state
database, a second host, a reset account) sent every message again. Per target folder, the
copies of one migrated message are found
- by source-key tag (EWS; IMAP with `tag_header`): items carrying the tag of a message the
  ledger holds, beyond the number of source messages with that key placed in the folder
  (keys are unique per source folder only: "Sent" and "Elementos enviados" may both hold
  key K for two messages, both landing in Sent Items);
- by content where the target keeps no tag (IMAP): groups of messages that are the same
  message (Message-ID, size, INTERNALDATE and content; on a server that rebuilds what it
  serves, Exchange, what survives that: see the IMAP target's `identical_items`), one of which
  is the ledger's.
The copy the ledger names is kept (or, when the ledger's is gone, as many others as
needed); only the rest are deleted (EWS: hard delete; IMAP: \\Deleted and UID EXPUNGE of
exactly those UIDs). Mail that is not migrator's (no tag, or no copy the ledger names) is
never touched. Accounts being migrated, or with a pass interrupted mid-chunk, are left for
later: their ledger is not settled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from migrator.adapters.targets import KeyedItems, TargetFolder, open_target
from migrator.adapters.targets.base import GroupsIdentical, ListsByKey, Target, Withdraws
from migrator.commands.secrets import target_secrets
from migrator.commands.state import check_selection, in_scope_accounts, plan_store
from migrator.model.errors import EXIT_OK, EXIT_PARTIAL, MigratorError, UsageError
from migrator.model.events import EventKind
from migrator.model.plan import Plan
from migrator.model.status import MessageState, RunStatus, Status
from migrator.retry import RetryPolicy, call_with_retry
from migrator.store import ledger
from migrator.store.claims import worker_name
from migrator.store.ledger import PlacedCopy
from migrator.store.owners import process_gone

DELETE_BATCH = 500  # target ids per delete request


@dataclass
class FolderDuplicates:
    folder: str  # the target folder's path
    messages: int  # migrated messages with more than one copy there
    extra: list[str] = field(default_factory=list)  # target ids of the copies to delete
    deleted: int = 0
    error: str | None = None


@dataclass
class AccountDuplicates:
    address: str
    folders: list[FolderDuplicates] = field(default_factory=list)
    error: str | None = None

    @property
    def extra(self) -> int:
        return sum(len(f.extra) for f in self.folders)

    @property
    def deleted(self) -> int:
        return sum(f.deleted for f in self.folders)

    @property
    def ok(self) -> bool:
        return self.error is None and all(f.error is None for f in self.folders)


@dataclass
class DedupeReport:
    applied: bool
    accounts: list[AccountDuplicates] = field(default_factory=list)

    @property
    def extra(self) -> int:
        return sum(a.extra for a in self.accounts)

    @property
    def deleted(self) -> int:
        return sum(a.deleted for a in self.accounts)

    @property
    def exit_code(self) -> int:
        """0 nothing (left) to remove; 1 duplicates found by a dry run, or some could not be
        checked or removed."""
        if any(not a.ok for a in self.accounts):
            return EXIT_PARTIAL
        if not self.applied and self.extra:
            return EXIT_PARTIAL
        return EXIT_OK

    def as_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "duplicates": self.extra,
            "deleted": self.deleted,
            "accounts": [
                {
                    "address": a.address,
                    "error": a.error,
                    "duplicates": a.extra,
                    "deleted": a.deleted,
                    "folders": [
                        {
                            "folder": f.folder,
                            "messages": f.messages,
                            "duplicates": len(f.extra),
                            "deleted": f.deleted,
                            "error": f.error,
                            "target_ids": f.extra,
                        }
                        for f in a.folders
                    ],
                }
                for a in self.accounts
            ],
        }


def dedupe(
    plan: Plan,
    *,
    state_url: str | None = None,
    addresses: Sequence[str] = (),
    batches: Sequence[str] = (),
    apply: bool = False,
    workers: int | None = None,
) -> DedupeReport:
    """Find (and with `apply` delete) the extra copies of migrated messages in the target."""
    secrets = target_secrets(plan)
    report = DedupeReport(applied=apply)
    with plan_store(plan, state_url, access="write") as (store, plan_id):
        check_selection(store, plan_id, plan, batches=batches, addresses=addresses)
        rows = [
            r
            for r in in_scope_accounts(store, plan_id, batches=batches, addresses=addresses)
            if r.passes > 0
        ]
        if addresses and not rows:
            raise UsageError(
                "none of the accounts asked for has been migrated yet",
                hint="nothing to deduplicate",
            )
        run_id = store.start_run(plan_id, "dedupe --apply" if apply else "dedupe")
        target = open_target(
            plan.target,
            secrets=secrets,
            max_connections=plan.run.target_concurrency,
            plan_file=plan.file,
        )
        policy = RetryPolicy()
        try:
            with ThreadPoolExecutor(max_workers=workers or plan.run.workers) as pool:
                report.accounts.extend(
                    pool.map(lambda row: _account(store, target, row, apply, policy), rows)
                )
        finally:
            target.close()
        if apply:
            for row, result in zip(rows, report.accounts, strict=True):
                if result.deleted:
                    store.add_event(
                        plan_id,
                        EventKind.DEDUPE,
                        account_id=row.id,
                        run_id=run_id,
                        worker=worker_name(),
                        detail={
                            "deleted": result.deleted,
                            "folders": sum(1 for f in result.folders if f.deleted),
                        },
                    )
        store.finish_run(
            run_id,
            RunStatus.DONE if report.exit_code == EXIT_OK else RunStatus.PARTIAL,
            report.as_json(),
        )
    return report


def _busy(row: Any) -> str | None:
    if row.status != Status.RUNNING:
        return None
    expired = row.lease_expires_at is not None and row.lease_expires_at < datetime.now(UTC)
    if expired or process_gone(row.lease_owner):
        return "its last pass was interrupted; run `migrator run` first, then dedupe"
    return "being migrated right now; dedupe it when the run has finished"


def _account(
    store: Any, target: Target, row: Any, apply: bool, policy: RetryPolicy
) -> AccountDuplicates:
    result = AccountDuplicates(address=row.address or row.key)
    busy = _busy(row)
    if busy is not None:
        result.error = busy
        return result
    mailbox = row.target_address or row.address
    placed = ledger.placed_copies(store, row.id)
    inflight = sum(
        1 for copies in placed.values() for c in copies if c.state == MessageState.INFLIGHT
    )
    if inflight:
        result.error = (
            f"{inflight} message(s) are in flight from an interrupted pass; run `migrator run` "
            "first, then dedupe"
        )
        return result
    paths = {
        f.target_folder_id: f.target_path or ""
        for f in ledger.folders(store, row.id)
        if f.target_folder_id
    }
    for folder_id, copies in sorted(placed.items(), key=lambda kv: paths.get(kv[0], "")):
        tfolder = TargetFolder(folder_id, tuple(paths.get(folder_id, "").split("/")))
        found = FolderDuplicates(folder=tfolder.display, messages=0)
        try:
            found.messages, found.extra = _extra_copies(target, mailbox, tfolder, copies, policy)
            if apply and found.extra:
                if not isinstance(target, Withdraws):
                    raise MigratorError(
                        f"the target cannot delete the copies found in {tfolder.display!r}"
                    )
                for start in range(0, len(found.extra), DELETE_BATCH):
                    part = found.extra[start : start + DELETE_BATCH]
                    call_with_retry(partial(target.withdraw, mailbox, tfolder, part), policy)
                    found.deleted += len(part)
        except MigratorError as exc:
            found.error = exc.message
        if found.extra or found.error:
            result.folders.append(found)
    return result


def _extra_copies(
    target: Target,
    mailbox: str,
    tfolder: TargetFolder,
    copies: list[PlacedCopy],
    policy: RetryPolicy,
) -> tuple[int, list[str]]:
    """(migrated messages found more than once, target ids of the copies to delete)."""
    keyed: KeyedItems | None = None
    if isinstance(target, ListsByKey):
        keyed = call_with_retry(partial(target.items_by_key, mailbox, tfolder), policy)
    if keyed is not None:
        return _extra_by_key(keyed, copies)
    if not isinstance(target, GroupsIdentical):
        raise MigratorError(
            f"the target cannot list the items of {tfolder.display!r} to find copies"
        )
    groups = call_with_retry(partial(target.identical_items, mailbox, tfolder), policy)
    named = {c.target_id for c in copies if c.target_id}
    messages, extra = 0, []
    for group in groups:
        keep = [tid for tid in group if tid in named]
        if not keep:
            continue  # none of them is the ledger's: not recognisably migrator's copies
        surplus = [tid for tid in group if tid not in named]
        if surplus:
            messages += 1
            extra.extend(surplus)
    return messages, extra


def _extra_by_key(keyed: KeyedItems, copies: list[PlacedCopy]) -> tuple[int, list[str]]:
    wanted: dict[str, list[PlacedCopy]] = defaultdict(list)
    for copy in copies:
        wanted[keyed.tag_of(copy.tag_key)].append(copy)
    messages, extra = 0, []
    for tag, ids in keyed.by_tag.items():
        mine = wanted.get(tag)
        if not mine or len(ids) <= len(mine):
            continue  # a tag the ledger does not hold is left alone
        named = {c.target_id for c in mine}
        keep = [tid for tid in ids if tid in named]
        for tid in ids:  # the ledger's copy is gone: keep others in its place
            if len(keep) >= len(mine):
                break
            if tid not in keep:
                keep.append(tid)
        surplus = [tid for tid in ids if tid not in keep]
        if surplus:
            messages += 1
            extra.extend(surplus)
    return messages, extra
