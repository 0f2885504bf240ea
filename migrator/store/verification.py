"""Persisting `verify` results: per folder counts with a timestamp, and the account's state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, update

from migrator.model.events import EventKind
from migrator.model.status import NOT_SENT, MessageState, Status
from migrator.store import events
from migrator.store.database.raw import Raw
from migrator.store.schema import accounts as A
from migrator.store.schema import folders as F
from migrator.store.store import Store
from migrator.store.types import utcnow


@dataclass(frozen=True)
class FolderCheck:
    folder_id: int
    source: int
    ledger: int
    target: int
    ok: bool


@dataclass
class FolderLedger:
    """What the ledger holds for one folder: messages by state, and the tags of the done ones."""

    totals: dict[str, int]
    done_keys: list[str]
    done_ids: list[str | None]  # the target's id of each done message, beside done_keys
    # the source keys of the messages a pass has settled (done, skipped or failed), to tell
    # new mail from mail the user deleted after it was migrated
    settled_keys: set[str] = field(default_factory=set)
    # skipped for a reason the next pass retries (the message vanished while it was read):
    # not settled; one the source holds again is missing from the target
    retry_keys: set[str] = field(default_factory=set)
    # source key -> (target id, the flags the target was last given) of the done messages
    given: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # done messages the source no longer holds whose target copy is kept (deletions = "keep")
    removed_keys: set[str] = field(default_factory=set)


def account_ledger(
    store: Store, account_id: int, *, retried: Sequence[str] = ()
) -> dict[int, FolderLedger]:
    """Folder id -> its ledger, for every folder of the account, in one read (per-folder
    queries cost more than the rows; verify reads thousands of small accounts). Skips whose
    reason is in `retried` are not settled (see FolderLedger.retry_keys)."""
    out: dict[int, FolderLedger] = {}
    again = frozenset(retried)
    with store.session() as s:
        rows = Raw(s.connection()).rows(
            "SELECT folder_id, state, COALESCE(tag_key, source_key), target_id, source_key, "
            "reason, flags, removed_at"
            " FROM messages WHERE account_id = ? ORDER BY id",
            (account_id,),
        )
        for folder_id, state, key, target_id, source_key, reason, flags, removed_at in rows:
            folder = out.get(folder_id)
            if folder is None:
                folder = out[folder_id] = FolderLedger({}, [], [])
            folder.totals[state] = folder.totals.get(state, 0) + 1
            if state == MessageState.DONE:
                folder.done_keys.append(key)
                folder.done_ids.append(target_id)
                folder.given[source_key] = (target_id, flags)
                if removed_at is not None:
                    folder.removed_keys.add(source_key)
            if state == MessageState.SKIPPED and reason in again:
                folder.retry_keys.add(source_key)
            elif state in _SETTLED:
                folder.settled_keys.add(source_key)
    return out


_SETTLED = frozenset({MessageState.DONE, *NOT_SENT})

_RECORD_FOLDER = (
    update(F)
    .where(F.c.id == bindparam("b_id"))
    .values(
        verify_source=bindparam("b_source"),
        verify_ledger=bindparam("b_ledger"),
        verify_target=bindparam("b_target"),
        verify_ok=bindparam("b_ok"),
        verified_at=bindparam("b_at"),
    )
)


def record(
    store: Store,
    plan_id: int,
    account_id: int,
    checks: Sequence[FolderCheck],
    *,
    run_id: int | None,
) -> str | None:
    """Store the checks; a synced account whose folders all agree becomes verified (and a
    verified one that no longer agrees goes back to synced). Returns the new status, if any."""
    now = utcnow()
    all_ok = all(c.ok for c in checks)
    with store.session(write=True) as s:
        if checks:
            s.connection().execute(
                _RECORD_FOLDER,
                [
                    {
                        "b_id": c.folder_id,
                        "b_source": c.source,
                        "b_ledger": c.ledger,
                        "b_target": c.target,
                        "b_ok": c.ok,
                        "b_at": now,
                    }
                    for c in checks
                ],
            )
        current = s.execute(select(A.c.status).where(A.c.id == account_id)).scalar_one()
        new = None
        if all_ok and current == Status.SYNCED:
            new = Status.VERIFIED
        elif not all_ok and current == Status.VERIFIED:
            new = Status.SYNCED
        if new:
            s.execute(
                update(A)
                .where(A.c.id == account_id, A.c.status == current)
                .values(status=new, updated_at=now)
            )
        events.write(
            s.connection(),
            plan_id,
            EventKind.VERIFIED if all_ok else EventKind.VERIFY_MISMATCH,
            account_id=account_id,
            run_id=run_id,
            from_state=current,
            to_state=new or current,
            detail={"folders": len(checks), "mismatched": sum(not c.ok for c in checks)},
            at=now,
        )
        return new
