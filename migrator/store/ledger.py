"""The per-message ledger: the record that makes every message reach the target once.

Per chunk: `begin_chunk` writes the chunk's keys as in flight and commits before anything is
uploaded; `finish_chunk` marks them done (with the target's id) or skipped/failed (with a
reason) and commits. After a crash, `inflight` lists what may or may not have reached the
target; the engine asks the target and calls `resolve_inflight`. All writes are fenced by
the account's lease epoch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from migrator.model.mail import FolderInfo
from migrator.model.status import NOT_SENT, MessageState
from migrator.store.claims import Claim, fence
from migrator.store.database.raw import Raw
from migrator.store.schema import accounts as A
from migrator.store.schema import folders as F
from migrator.store.schema import messages as M
from migrator.store.store import Store
from migrator.store.types import utcnow

# Rows per statement in bulk writes: bounded so a 100,000-message folder is many small writes.
_BATCH = 2000

# Statements of the per-chunk path, built once: building a SQLAlchemy statement (and its cache
# key) costs more client CPU than SQLite takes to run it, and a campaign runs these millions
# of times.
_INSERT_MESSAGES = insert(M)
_EXISTING_KEYS = select(M.c.source_key).where(
    M.c.folder_id == bindparam("b_folder"), M.c.source_key.in_(bindparam("b_keys", expanding=True))
)
_SETTLE = (
    update(M)
    .where(M.c.folder_id == bindparam("b_folder"), M.c.source_key == bindparam("b_key"))
    .values(
        state=bindparam("state"),
        target_id=bindparam("target_id"),
        reason=bindparam("reason"),
        detail=bindparam("detail"),
        lease_epoch=bindparam("lease_epoch"),
        updated_at=bindparam("updated_at"),
    )
)
_COUNT_FOLDER = (
    update(F)
    .where(F.c.id == bindparam("b_folder"))
    .values(
        done_count=F.c.done_count + bindparam("b_done"),
        skipped_count=F.c.skipped_count + bindparam("b_skipped"),
        failed_count=F.c.failed_count + bindparam("b_failed"),
    )
)
_COUNT_ACCOUNT = (
    update(A)
    .where(A.c.id == bindparam("b_account"))
    .values(
        messages_done=A.c.messages_done + bindparam("b_done"),
        messages_skipped=A.c.messages_skipped + bindparam("b_skipped"),
        messages_failed=A.c.messages_failed + bindparam("b_failed"),
        bytes_done=A.c.bytes_done + bindparam("b_bytes"),
    )
)


def _upsert_folder(dialect_insert: Any, with_target: bool) -> Any:
    stmt = dialect_insert(F)
    # RETURNING gives the row's id whether it was inserted or updated (SQLite >= 3.35)
    return stmt.on_conflict_do_update(
        index_elements=["account_id", "native"],
        set_={
            "display": stmt.excluded.display,
            "role": stmt.excluded.role,
            "source_count": stmt.excluded.source_count,
            "source_bytes": stmt.excluded.source_bytes,
            **(
                {
                    "target_folder_id": stmt.excluded.target_folder_id,
                    "target_path": stmt.excluded.target_path,
                }
                if with_target
                else {}
            ),
        },
    ).returning(F.c.id)


_UPSERT_FOLDER: dict[tuple[str, bool], Any] = {}  # built on first use, per backend


@dataclass(frozen=True)
class Outcome:
    """What became of one message of a chunk."""

    key: str
    state: str  # done | skipped | failed
    size: int = 0
    target_id: str | None = None
    reason: str | None = None
    detail: str | None = None


class TargetRef(Protocol):
    """What the ledger keeps of a target folder (adapters' TargetFolder satisfies it)."""

    @property
    def id(self) -> str: ...

    @property
    def display(self) -> str: ...


@dataclass(frozen=True)
class StoredFolder:
    id: int
    native: str
    display: str
    role: str
    target_folder_id: str | None
    target_path: str | None
    source_count: int | None
    done_count: int
    skipped_count: int
    failed_count: int
    uidvalidity: int | None
    mark: str | None = None  # the source's change mark at the last completed pass


def ensure_folder(
    store: Store, claim: Claim, folder: FolderInfo, *, target: TargetRef | None = None
) -> int:
    """The id of the account's folder row for `folder` (by its native name), kept up to date;
    with `target`, the target folder's id and path are recorded in the same transaction."""
    values: dict[str, object] = {
        "account_id": claim.account_id,
        "native": folder.native,
        "display": folder.display,
        "role": str(folder.role),
        "source_count": folder.message_count,
        "source_bytes": folder.byte_total,
        "created_at": utcnow(),
    }
    if target is not None:
        values["target_folder_id"] = target.id
        values["target_path"] = target.display
    shape = (store.backend, target is not None)
    stmt = _UPSERT_FOLDER.get(shape)
    if stmt is None:
        stmt = _UPSERT_FOLDER[shape] = _upsert_folder(store.dialect_insert(), target is not None)
    with store.connection(write=True) as conn:
        fence(conn, claim)
        return int(conn.execute(stmt, values).scalar_one())


def set_folder_target(
    store: Store, claim: Claim, folder_id: int, target_id: str, target_path: str
) -> None:
    with store.session(write=True) as s:
        fence(s, claim)
        s.execute(
            update(F)
            .where(F.c.id == folder_id)
            .values(target_folder_id=target_id, target_path=target_path)
        )


_FOLDERS = (
    select(
        F.c.id,
        F.c.native,
        F.c.display,
        F.c.role,
        F.c.target_folder_id,
        F.c.target_path,
        F.c.source_count,
        F.c.done_count,
        F.c.skipped_count,
        F.c.failed_count,
        F.c.uidvalidity,
        F.c.mark,
    )  # fmt: skip
    .where(F.c.account_id == bindparam("b_account"))
    .order_by(F.c.display)
)


def folders(store: Store, account_id: int) -> list[StoredFolder]:
    with store.connection() as conn:
        rows = conn.execute(_FOLDERS, {"b_account": account_id})
        return [StoredFolder(*row) for row in rows]


def known_keys(store: Store, folder_id: int) -> set[str]:
    """Every key the ledger holds for a folder, whatever its state: a delta pass skips them
    without reading their bodies."""
    # straight from the DBAPI cursor: a delta pass reads every key of every folder, and
    # SQLAlchemy's row objects cost more than SQLite takes to find them
    with store.session() as s:
        rows = Raw(s.connection()).rows(
            "SELECT source_key FROM messages WHERE folder_id = ?", (folder_id,)
        )
        return {key for (key,) in rows}


def target_ids(
    store: Store,
    account_id: int,
    target_folder_id: str,
    *,
    keys: Sequence[str] | None = None,
    other_than: int | None = None,
) -> set[str]:
    """Target ids of the account's done messages in one target folder, from every source
    folder that lands there ("Sent" and "Elementos enviados" both go to Sent Items): a search
    for an interrupted upload must never take one of these for it, or that copy is lost.

    `keys` and `other_than` (a source folder id) narrow it to the namesakes of a chunk: keys
    are unique per source folder only, so another folder may hold a key K too, and both copies
    carry tag K in the target folder. Narrowed, it is one indexed lookup (the keys are few)."""
    where = [
        F.c.account_id == account_id,
        F.c.target_folder_id == target_folder_id,
        M.c.state == MessageState.DONE,
        M.c.target_id.is_not(None),
    ]
    if other_than is not None:
        where.append(F.c.id != other_than)
    if keys is not None:
        if not keys:
            return set()
        # a row re-keyed after an IMAP renumbering is tagged with its old key (tag_key) and is
        # left out unless that is one of ours too
        wanted = list(keys)
        where.append(M.c.source_key.in_(wanted) & (M.c.tag_key.is_(None) | M.c.tag_key.in_(wanted)))
    with store.session() as s:
        return set(
            s.execute(
                select(M.c.target_id).select_from(M.join(F, F.c.id == M.c.folder_id)).where(*where)
            ).scalars()
        )


def done_target_ids(store: Store, folder_id: int, keys: Sequence[str]) -> dict[str, str]:
    """Source key -> target id of the folder's done messages among `keys` (read without a
    fence: a worker that lost its lease asks what the new owner recorded)."""
    if not keys:
        return {}
    with store.session() as s:
        rows = s.execute(
            select(M.c.source_key, M.c.target_id).where(
                M.c.folder_id == folder_id,
                M.c.source_key.in_(list(keys)),
                M.c.state == MessageState.DONE,
                M.c.target_id.is_not(None),
            )
        )
        return {key: tid for key, tid in rows}


def begin_chunk(
    store: Store,
    claim: Claim,
    folder_id: int,
    chunk_id: str,
    items: Sequence[tuple[str, int]]
    | Sequence[tuple[str, int, str | None]]
    | Sequence[tuple[str, int, str | None, str | None]],
) -> None:
    """Write the chunk's (key, size[, fingerprint[, flags]]) rows as in flight, in one fenced
    transaction. `flags` (a Flags.token) is what the target is given: what a delta pass
    compares the source's flags with later."""
    now = utcnow()
    rows = [
        {
            "folder_id": folder_id,
            "account_id": claim.account_id,
            "state": MessageState.INFLIGHT,
            "chunk_id": chunk_id,
            "lease_epoch": claim.epoch,
            "size": item[1],
            "fingerprint": item[2] if len(item) > 2 else None,  # type: ignore[misc]
            "flags": item[3] if len(item) > 3 else None,  # type: ignore[misc]
            "created_at": now,
            "updated_at": now,
            "source_key": item[0],
        }
        for item in items
    ]
    # durable: these rows are what stops a power cut during the upload from causing duplicates
    with store.connection(write=True, durable=True) as conn:
        fence(conn, claim)
        for start in range(0, len(rows), _BATCH):
            conn.execute(_INSERT_MESSAGES, rows[start : start + _BATCH])


def finish_chunk(
    store: Store,
    claim: Claim,
    folder_id: int,
    outcomes: Iterable[Outcome],
    *,
    in_flight: bool | None = None,
) -> None:
    """Record the outcome of in-flight (or new, for skips found before upload) messages.

    `in_flight`: True when every key was written by `begin_chunk` (rows to update), False when
    none is in the ledger yet (rows to insert), None to look it up.
    """
    outcomes = list(outcomes)
    if not outcomes:
        return
    now = utcnow()
    with store.connection(write=True) as conn:
        fence(conn, claim)
        if in_flight is None:
            existing = set(
                conn.execute(
                    _EXISTING_KEYS, {"b_folder": folder_id, "b_keys": [o.key for o in outcomes]}
                ).scalars()
            )
        else:
            existing = {o.key for o in outcomes} if in_flight else set()
        updates = [
            {
                "b_folder": folder_id,
                "b_key": o.key,
                "state": o.state,
                "target_id": o.target_id,
                "reason": o.reason,
                "detail": (o.detail or "")[:2000] or None,
                "lease_epoch": claim.epoch,
                "updated_at": now,
            }
            for o in outcomes
            if o.key in existing
        ]
        inserts = [
            {
                "folder_id": folder_id,
                "account_id": claim.account_id,
                "source_key": o.key,
                "state": o.state,
                "size": o.size,
                "target_id": o.target_id,
                "reason": o.reason,
                "detail": (o.detail or "")[:2000] or None,
                "lease_epoch": claim.epoch,
                "created_at": now,
                "updated_at": now,
            }
            for o in outcomes
            if o.key not in existing
        ]
        for start in range(0, len(updates), _BATCH):
            conn.execute(_SETTLE, updates[start : start + _BATCH])
        for start in range(0, len(inserts), _BATCH):
            conn.execute(_INSERT_MESSAGES, inserts[start : start + _BATCH])
        _count(conn, claim, folder_id, outcomes)


def _count(
    session: Session | Connection, claim: Claim, folder_id: int, outcomes: Sequence[Outcome]
) -> None:
    states = Counter(o.state for o in outcomes)
    counts = {
        "b_done": states[MessageState.DONE],
        "b_skipped": states[MessageState.SKIPPED],
        "b_failed": states[MessageState.FAILED],
    }
    session.execute(_COUNT_FOLDER, {"b_folder": folder_id, **counts})
    done_bytes = sum(o.size for o in outcomes if o.state == MessageState.DONE)
    session.execute(
        _COUNT_ACCOUNT, {"b_account": claim.account_id, "b_bytes": done_bytes, **counts}
    )


_INFLIGHT = select(M.c.folder_id, M.c.source_key).where(
    M.c.account_id == bindparam("b_account"), M.c.state == MessageState.INFLIGHT
)


def inflight(store: Store, account_id: int) -> dict[int, list[str]]:
    """Folder id -> keys left in flight by an earlier, interrupted attempt."""
    by_folder: dict[int, list[str]] = defaultdict(list)
    with store.connection() as conn:
        rows = conn.execute(_INFLIGHT, {"b_account": account_id})
        for folder_id, key in rows:
            by_folder[folder_id].append(key)
    return dict(by_folder)


def resolve_inflight(
    store: Store, claim: Claim, folder_id: int, keys: Sequence[str], found: dict[str, str]
) -> None:
    """In-flight keys the target has (`found`: key -> target id) become done; the others are
    forgotten so the next pass sends them again."""
    with store.session(write=True) as s:
        fence(s, claim)
        sizes = dict(
            s.execute(
                select(M.c.source_key, M.c.size).where(
                    M.c.folder_id == folder_id,
                    M.c.source_key.in_(list(keys)),
                    M.c.state == MessageState.INFLIGHT,
                )
            ).all()
        )
    outcomes = [
        Outcome(key=k, state=MessageState.DONE, size=int(sizes.get(k) or 0), target_id=found[k])
        for k in keys
        if k in found and k in sizes
    ]
    finish_chunk(store, claim, folder_id, outcomes, in_flight=True)
    missing = [k for k in keys if k not in found]
    if missing:
        with store.session(write=True) as s:
            fence(s, claim)
            for start in range(0, len(missing), _BATCH):
                s.execute(
                    delete(M).where(
                        M.c.folder_id == folder_id,
                        M.c.state == MessageState.INFLIGHT,
                        M.c.source_key.in_(missing[start : start + _BATCH]),
                    )
                )


def rekey(
    store: Store,
    claim: Claim,
    folder_id: int,
    old_prefix: str,
    records: Sequence[tuple[str, str]],
    uidvalidity: int,
) -> tuple[int, int]:
    """A renumbered folder (IMAP UIDVALIDITY changed): carry each settled message over from its
    old key to its new one, matched by content fingerprint; byte-identical copies are matched
    by count. `records` are (new key, fingerprint) of the folder now. Returns (carried over,
    old rows left unmatched — messages that are gone from the source)."""
    with store.session(write=True) as s:
        fence(s, claim)
        old = s.execute(
            select(M.c.id, M.c.source_key, M.c.tag_key, M.c.fingerprint, M.c.state)
            .where(
                M.c.folder_id == folder_id,
                M.c.source_key.like(old_prefix.replace("%", r"\%") + "%"),
            )
            .order_by(M.c.id)
        ).all()
        by_print: dict[str, list[Any]] = defaultdict(list)
        for row in old:
            if row.fingerprint and row.state in (MessageState.DONE, MessageState.SKIPPED):
                by_print[row.fingerprint].append(row)
        now = utcnow()
        moved: list[dict[str, object]] = []
        for key, fingerprint in records:
            candidates = by_print.get(fingerprint)
            if not candidates:
                continue
            row = candidates.pop(0)
            moved.append(
                {
                    "b_id": row.id,
                    "source_key": key,
                    "tag_key": row.tag_key or row.source_key,
                    "updated_at": now,
                }
            )  # type: ignore[attr-defined]
        if moved:
            s.connection().execute(
                update(M)
                .where(M.c.id == bindparam("b_id"))
                .values(
                    source_key=bindparam("source_key"),
                    tag_key=bindparam("tag_key"),
                    updated_at=bindparam("updated_at"),
                ),
                moved,
            )
        s.execute(update(F).where(F.c.id == folder_id).values(uidvalidity=uidvalidity))
        return len(moved), len(old) - len(moved)


def record_uidvalidity(store: Store, claim: Claim, folder_id: int, uidvalidity: int) -> None:
    with store.session(write=True) as s:
        fence(s, claim)
        s.execute(update(F).where(F.c.id == folder_id).values(uidvalidity=uidvalidity))


def forget_skipped(store: Store, account_id: int, reasons: Sequence[str] | None = None) -> int:
    """Drop skipped/failed rows of an account (only those of `reasons`, when given) so the next
    pass tries those messages again. The folder and account counts drop by what was dropped:
    what is still recorded stays counted. Returns how many rows were dropped."""
    if not reasons:
        with store.session(write=True) as s:
            removed = s.execute(
                delete(M).where(M.c.account_id == account_id, M.c.state.in_(NOT_SENT))
            )
            # none is left: zero is the truth, whatever the counts said before
            s.execute(
                update(A).where(A.c.id == account_id).values(messages_skipped=0, messages_failed=0)
            )
            s.execute(
                update(F)
                .where(F.c.account_id == account_id)
                .values(skipped_count=0, failed_count=0)
            )
            return int(removed.rowcount or 0)  # type: ignore[attr-defined]
    wanted = and_(
        M.c.account_id == account_id, M.c.state.in_(NOT_SENT), M.c.reason.in_(list(reasons))
    )
    with store.session(write=True) as s:
        dropped: dict[int, Counter[str]] = defaultdict(Counter)
        for folder_id, state, n in s.execute(
            select(M.c.folder_id, M.c.state, func.count())
            .where(wanted)
            .group_by(M.c.folder_id, M.c.state)
        ):
            dropped[folder_id][state] += int(n)
        if not dropped:
            return 0
        s.execute(delete(M).where(wanted))
        for folder_id, n in dropped.items():
            s.execute(
                update(F)
                .where(F.c.id == folder_id)
                .values(
                    skipped_count=F.c.skipped_count - n[MessageState.SKIPPED],
                    failed_count=F.c.failed_count - n[MessageState.FAILED],
                )
            )
        total = sum(dropped.values(), Counter[str]())
        s.execute(
            update(A)
            .where(A.c.id == account_id)
            .values(
                messages_skipped=A.c.messages_skipped - total[MessageState.SKIPPED],
                messages_failed=A.c.messages_failed - total[MessageState.FAILED],
            )
        )
        return total.total()


def forget_retried_skips(store: Store, claim: Claim, folder_id: int, reasons: Sequence[str]) -> int:
    """Drop the folder's skipped rows whose reason says the source could not give the message
    *this time* (it vanished between listing and reading, the spool changed under us): the
    pass that lists the folder next tries them again, and one no longer listed is simply
    gone. Such a row never had an upload, so forgetting it can never cause a duplicate.
    Returns how many were forgotten."""
    wanted = list(reasons)
    with store.session() as s:
        # by account and state first (an index): the account's skips are few, its folder's
        # messages may be a hundred thousand, and this runs on every pass of a folder with skips
        keys = list(
            s.execute(
                select(M.c.source_key).where(
                    M.c.account_id == claim.account_id,
                    M.c.state == MessageState.SKIPPED,
                    M.c.folder_id == folder_id,
                    M.c.reason.in_(wanted),
                )
            ).scalars()
        )
    if not keys:
        return 0
    with store.session(write=True) as s:
        fence(s, claim)
        removed = 0
        for start in range(0, len(keys), _BATCH):
            result = s.execute(
                delete(M).where(
                    M.c.folder_id == folder_id,
                    M.c.state == MessageState.SKIPPED,
                    M.c.reason.in_(wanted),
                    M.c.source_key.in_(keys[start : start + _BATCH]),
                )
            )
            removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
        s.execute(
            update(F).where(F.c.id == folder_id).values(skipped_count=F.c.skipped_count - removed)
        )
        s.execute(
            update(A)
            .where(A.c.id == claim.account_id)
            .values(messages_skipped=A.c.messages_skipped - removed)
        )
        return removed


@dataclass(frozen=True)
class PlacedCopy:
    """One message the ledger placed in a target folder: the tag its item carries (the key
    it was sent under), the target id the ledger holds for it, and its state."""

    tag_key: str
    target_id: str | None
    state: str  # done | inflight


def placed_copies(store: Store, account_id: int) -> dict[str, list[PlacedCopy]]:
    """Target folder id -> the account's done and in-flight messages placed there, from every
    source folder that lands there: what `dedupe` compares a target folder's items with."""
    out: dict[str, list[PlacedCopy]] = defaultdict(list)
    with store.session() as s:
        rows = Raw(s.connection()).rows(
            "SELECT f.target_folder_id, COALESCE(m.tag_key, m.source_key), m.target_id, m.state"
            " FROM messages m JOIN folders f ON f.id = m.folder_id"
            " WHERE m.account_id = ? AND m.state IN ('done', 'inflight') AND f.target_folder_id "
            "IS NOT NULL",
            (account_id,),
        )
        for target_folder_id, tag_key, target_id, state in rows:
            out[target_folder_id].append(PlacedCopy(tag_key, target_id, state))
    return dict(out)
