"""The ledger's record of what the target was last given, for delta passes that carry users'
changes: flags per message (what a pass compares the source with, so only what changed in the
source since is carried), and the moves and deletions in progress.

A move or a deletion is announced before it is sent (`messages.pending`, committed, durable)
and recorded in one transaction with its outcome, like a chunk's upload: a run stopped in
between finds the announcement and settles it against the target before doing anything else.
All writes are fenced by the account's lease epoch.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, update

from migrator.model.status import MessageState
from migrator.store.claims import Claim, fence
from migrator.store.database.raw import Raw
from migrator.store.schema import accounts as A
from migrator.store.schema import folders as F
from migrator.store.schema import messages as M
from migrator.store.store import Store
from migrator.store.types import utcnow

_BATCH = 2000

_SET_FLAGS = (
    update(M)
    .where(M.c.folder_id == bindparam("b_folder"), M.c.source_key == bindparam("b_key"))
    .values(flags=bindparam("b_flags"))
)


@dataclass(frozen=True)
class Known:
    """What the ledger holds of one message of a folder: its state and the flags the target
    was last given (None: not recorded yet, a row written before flags were kept)."""

    state: str
    flags: str | None
    pending: bool = False
    removed: bool = False


def known_states(store: Store, folder_id: int) -> dict[str, Known]:
    """Key -> what the ledger holds, for every message of a folder: a delta pass skips the
    known ones without reading their bodies and compares their flags."""
    # straight from the DBAPI cursor, as known_keys: a delta pass reads every row of a folder
    with store.connection() as conn:
        rows = Raw(conn).rows(
            "SELECT source_key, state, flags, pending, removed_at FROM messages WHERE folder_id = "
            "?",
            (folder_id,),
        )
        return {
            key: Known(state, flags, pending is not None, removed is not None)
            for key, state, flags, pending, removed in rows
        }


def record_flags(
    store: Store, claim: Claim, folder_id: int, flags: Sequence[tuple[str, str]]
) -> None:
    """The target was given these (key, Flags.token) or holds them already: the next pass
    compares with them."""
    if not flags:
        return
    with store.session(write=True) as s:
        fence(s, claim)
        params = [{"b_folder": folder_id, "b_key": key, "b_flags": token} for key, token in flags]
        for start in range(0, len(params), _BATCH):
            s.connection().execute(_SET_FLAGS, params[start : start + _BATCH])


def pending_json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# --- moves and deletions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A migrated message (a done row): where the target holds it, and what it is."""

    id: int  # the ledger row
    folder_id: int
    key: str
    identity: str  # what recognises it in another folder: the content fingerprint, else the key
    tag: str  # the key its target copy is tagged with
    target_id: str | None
    flags: str | None
    pending: dict[str, Any] | None = None


_PLACED = (
    "SELECT id, folder_id, source_key, fingerprint, tag_key, target_id, flags, pending FROM "
    "messages"
)


def _placed(row: Sequence[Any]) -> Placed:
    row_id, folder_id, key, fingerprint, tag_key, target_id, flags, pending = row
    return Placed(
        int(row_id),
        int(folder_id),
        key,
        fingerprint or key,
        tag_key or key,
        target_id,
        flags,
        json.loads(pending) if pending else None,
    )


def placed(store: Store, folder_id: int, keys: Sequence[str]) -> list[Placed]:
    """The done rows of a folder among `keys`."""
    out: list[Placed] = []
    with store.session() as s:
        raw = Raw(s.connection())
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            marks = ", ".join("?" for _ in part)
            out.extend(
                _placed(r)
                for r in raw.rows(
                    f"{_PLACED} WHERE folder_id = ? AND state = 'done' AND source_key IN ({marks})",
                    (folder_id, *part),
                )
            )
    return out


def unsent_rows(store: Store, folder_id: int, keys: Sequence[str]) -> list[tuple[int, int, str]]:
    """(row id, folder id, state) of the folder's skipped and failed rows among `keys`."""
    out: list[tuple[int, int, str]] = []
    with store.session() as s:
        raw = Raw(s.connection())
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            marks = ", ".join("?" for _ in part)
            out.extend(
                (int(i), int(f), st)
                for i, f, st in raw.rows(
                    "SELECT id, folder_id, state FROM messages WHERE folder_id = ? AND state IN "
                    "('skipped', 'failed')"
                    f" AND source_key IN ({marks})",
                    (folder_id, *part),
                )
            )
    return out


def identities(store: Store, account_id: int) -> dict[str, set[tuple[int, str]]]:
    """Identity (content fingerprint, else key) -> the (folder id, key) of the account's done
    messages that have it: a message new in one folder may be one moved from another. Rows
    left in flight by an interrupted upload count too: the target may hold that message in
    the folder it was sent to."""
    out: dict[str, set[tuple[int, str]]] = {}
    with store.session() as s:
        rows = Raw(s.connection()).rows(
            "SELECT folder_id, source_key, fingerprint FROM messages WHERE account_id = ?"
            " AND state IN ('done', 'inflight')",
            (account_id,),
        )
        for folder_id, key, fingerprint in rows:
            out.setdefault(fingerprint or key, set()).add((int(folder_id), key))
    return out


def inflight_identities(store: Store, folder_id: int, keys: Sequence[str]) -> dict[str, str]:
    """Key -> identity (content fingerprint, else key) of the folder's in-flight rows among
    `keys`."""
    out: dict[str, str] = {}
    with store.session() as s:
        raw = Raw(s.connection())
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            marks = ", ".join("?" for _ in part)
            for key, fingerprint in raw.rows(
                "SELECT source_key, fingerprint FROM messages WHERE folder_id = ?"
                f" AND state = 'inflight' AND source_key IN ({marks})",
                (folder_id, *part),
            ):
                out[key] = fingerprint or key
    return out


def pending(store: Store, account_id: int) -> list[Placed]:
    """The account's moves and deletions announced by a pass that stopped before it recorded
    their outcome."""
    with store.session() as s:
        rows = Raw(s.connection()).rows(
            f"{_PLACED} WHERE account_id = ? AND state = 'done' AND pending IS NOT NULL",
            (account_id,),
        )
        return [_placed(r) for r in rows]


def announce(store: Store, claim: Claim, ops: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Record (row id, operation) before the operation is sent: durable, like a chunk's
    in-flight rows, so a crash right after the request leaves its trace."""
    if not ops:
        return
    with store.session(write=True, durable=True) as s:
        fence(s, claim)
        s.connection().execute(
            update(M).where(M.c.id == bindparam("b_id")).values(pending=bindparam("b_pending")),
            [{"b_id": row_id, "b_pending": pending_json(op)} for row_id, op in ops],
        )


def settle(store: Store, claim: Claim, row_ids: Sequence[int]) -> None:
    """The announced operations of these rows did not happen (or need not): forget them."""
    if not row_ids:
        return
    with store.session(write=True) as s:
        fence(s, claim)
        s.connection().execute(
            update(M).where(M.c.id == bindparam("b_id")).values(pending=None),
            [{"b_id": i} for i in row_ids],
        )


@dataclass(frozen=True)
class Moved:
    """A migrated message that moved from one source folder to another, and its target copy
    with it: the row now stands for the message in `folder_id` under `key`."""

    row_id: int
    from_folder: int
    folder_id: int
    key: str
    fingerprint: str | None
    tag: str  # what the target copy is tagged with (the key it was sent under)
    target_id: str | None


def record_moves(store: Store, claim: Claim, moves: Sequence[Moved]) -> None:
    """Rows follow their messages into the new folder (and key), with the target's id for the
    moved copy, in one transaction with the folders' counts; the announcement is cleared."""
    if not moves:
        return
    now = utcnow()
    with store.session(write=True) as s:
        fence(s, claim)
        s.connection().execute(
            update(M)
            .where(M.c.id == bindparam("b_id"))
            .values(
                folder_id=bindparam("b_folder"),
                source_key=bindparam("b_key"),
                fingerprint=bindparam("b_fingerprint"),
                tag_key=bindparam("b_tag"),
                target_id=bindparam("b_target"),
                pending=None,
                removed_at=None,
                updated_at=bindparam("b_at"),
            ),
            [
                {
                    "b_id": m.row_id,
                    "b_folder": m.folder_id,
                    "b_key": m.key,
                    "b_fingerprint": m.fingerprint,
                    "b_tag": None if m.tag == m.key else m.tag,
                    "b_target": m.target_id,
                    "b_at": now,
                }
                for m in moves
            ],
        )
        delta: Counter[int] = Counter()
        for m in moves:
            delta[m.from_folder] -= 1
            delta[m.folder_id] += 1
        _count_done(s, delta)


def forget(store: Store, claim: Claim, rows: Sequence[tuple[int, int, str]]) -> None:
    """Drop ledger rows (row id, folder id, state) of messages the source no longer holds (a
    deletion carried out, a skip of a message that is gone), keeping the counts true."""
    if not rows:
        return
    with store.session(write=True) as s:
        fence(s, claim)
        ids = [row_id for row_id, _, _ in rows]
        for start in range(0, len(ids), _BATCH):
            s.execute(M.delete().where(M.c.id.in_(ids[start : start + _BATCH])))
        done: Counter[int] = Counter()
        skipped: Counter[int] = Counter()
        failed: Counter[int] = Counter()
        by_state: dict[str, Counter[int]] = {
            MessageState.DONE: done,
            MessageState.SKIPPED: skipped,
            MessageState.FAILED: failed,
        }
        for _, folder_id, state in rows:
            by_state.get(state, Counter())[folder_id] -= 1
        _count_done(s, done)
        for folder_id, n in skipped.items():
            s.execute(
                update(F).where(F.c.id == folder_id).values(skipped_count=F.c.skipped_count + n)
            )
        for folder_id, n in failed.items():
            s.execute(
                update(F).where(F.c.id == folder_id).values(failed_count=F.c.failed_count + n)
            )
        lost_skips = -sum(skipped.values())
        lost_failures = -sum(failed.values())
        if lost_skips or lost_failures:
            s.execute(
                update(A)
                .where(A.c.id == claim.account_id)
                .values(
                    messages_skipped=A.c.messages_skipped - lost_skips,
                    messages_failed=A.c.messages_failed - lost_failures,
                )
            )


def mark_removed(store: Store, claim: Claim, row_ids: Sequence[int], removed: bool = True) -> None:
    """The source no longer holds these messages and their target copies stay (deletions =
    "keep"), or (removed=False) the source holds them again."""
    if not row_ids:
        return
    with store.session(write=True) as s:
        fence(s, claim)
        s.connection().execute(
            update(M).where(M.c.id == bindparam("b_id")).values(removed_at=bindparam("b_at")),
            [{"b_id": i, "b_at": utcnow() if removed else None} for i in row_ids],
        )


def _count_done(session: Any, delta: Counter[int]) -> None:
    for folder_id, n in delta.items():
        if n:
            session.execute(
                update(F).where(F.c.id == folder_id).values(done_count=F.c.done_count + n)
            )


def identities_of(store: Store, folder_id: int) -> Counter[str]:
    """How many done messages of a folder have each identity (fingerprint, else key)."""
    with store.session() as s:
        rows = Raw(s.connection()).rows(
            "SELECT source_key, fingerprint FROM messages WHERE folder_id = ? AND state = 'done'",
            (folder_id,),
        )
        return Counter(fingerprint or key for key, fingerprint in rows)


def rename_folder(
    store: Store,
    claim: Claim,
    folder_id: int,
    native: str,
    display: str,
    role: str,
    target_id: str,
    target_path: str,
) -> None:
    """A source folder renamed by the user, its target folder renamed with it: the row takes
    the new name (its messages stay its own); its change mark is forgotten."""
    with store.session(write=True) as s:
        fence(s, claim)
        s.execute(
            update(F)
            .where(F.c.id == folder_id)
            .values(
                native=native,
                display=display,
                role=role,
                target_folder_id=target_id,
                target_path=target_path,
                mark=None,
            )
        )


def retarget(store: Store, claim: Claim, moved: dict[str, str]) -> None:
    """Target folders whose id changed (subfolders renamed with their parent): the account's
    folder rows follow."""
    if not moved:
        return
    with store.session(write=True) as s:
        fence(s, claim)
        for old, new in moved.items():
            s.execute(
                update(F)
                .where(F.c.account_id == claim.account_id, F.c.target_folder_id == old)
                .values(target_folder_id=new)
            )
