"""Cut-over state: which accounts' mail Postfix sends to the target, and the waves' steps.

`accounts.cutover` moves NULL -> switching -> switched -> cut-over, and back through
reverting to NULL on a rollback. Each move is one transaction that also writes the accounts'
events, so the state database says for every account when it was switched. The transport map
is derived from these states (every switching, switched or cut-over account is in it): a
state is written before the map changes, so a crash leaves the state ahead of the map, never
behind it, and running the command again converges (docs/state.md).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update

from migrator.model.cutover import ROUTED, WAVE_OPEN, CutoverState, StepStatus, WaveStatus
from migrator.model.events import EventKind
from migrator.model.scope import Scope
from migrator.store import events
from migrator.store.schema import accounts as A
from migrator.store.schema import cutover_steps as S
from migrator.store.schema import cutover_waves as W
from migrator.store.store import Store
from migrator.store.types import utcnow

_CHUNK = 500  # ids per IN list

_ACCOUNT_COLUMNS = (
    A.c.id, A.c.key, A.c.address, A.c.target_address, A.c.batch, A.c.scope, A.c.status, A.c.passes,
    A.c.attempts, A.c.messages_failed, A.c.last_error_reason, A.c.last_pass_at, A.c.lease_owner,
    A.c.lease_expires_at, A.c.cutover, A.c.switched_at, A.c.cutover_at, A.c.cutover_wave,
)  # fmt: skip


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def selection_key(batches: Sequence[str], addresses: Sequence[str]) -> str:
    """The same selection, written in any order, is the same wave."""
    return json.dumps(
        {
            "batches": sorted(set(batches)),
            "accounts": sorted({a.strip().lower() for a in addresses}),
        }
    )


# --- accounts --------------------------------------------------------------------------------
def selected_accounts(
    store: Store,
    plan_id: int,
    batches: Sequence[str],
    addresses: Sequence[str],
    *,
    in_scope_only: bool = True,
) -> list[dict[str, Any]]:
    """Accounts (in scope) of these batches or with these (source or target) addresses."""
    wanted = [a.strip().lower() for a in addresses]
    either: list[Any] = []
    if batches:
        either.append(A.c.batch.in_(list(batches)))
    if wanted:
        either.append(or_(A.c.address.in_(wanted), A.c.target_address.in_(wanted)))
    stmt = select(*_ACCOUNT_COLUMNS).where(A.c.plan_id == plan_id, or_(*either))
    if in_scope_only:
        stmt = stmt.where(A.c.scope == Scope.IN_SCOPE)
    with store.session() as s:
        return [dict(r) for r in s.execute(stmt.order_by(A.c.address)).mappings()]


def accounts_by_id(store: Store, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with store.session() as s:
        for chunk in _chunks(list(ids)):
            rows += [
                dict(r)
                for r in s.execute(select(*_ACCOUNT_COLUMNS).where(A.c.id.in_(chunk))).mappings()
            ]
    return sorted(rows, key=lambda r: str(r["address"]))


def wave_accounts(
    store: Store, wave_id: int, states: Sequence[str] = ROUTED
) -> list[dict[str, Any]]:
    stmt = select(*_ACCOUNT_COLUMNS).where(
        A.c.cutover_wave == wave_id, A.c.cutover.in_(list(states))
    )
    with store.session() as s:
        return [dict(r) for r in s.execute(stmt.order_by(A.c.address)).mappings()]


def routed_addresses(store: Store, plan_id: int) -> list[str]:
    """The addresses the plan's block of the transport map lists: every account switching,
    switched or cut over, whatever its scope now (its mail goes to the target until a
    rollback takes it out)."""
    stmt = select(A.c.address).where(
        A.c.plan_id == plan_id, A.c.cutover.in_(ROUTED), A.c.address.is_not(None)
    )
    with store.session() as s:
        return sorted({str(a).lower() for (a,) in s.execute(stmt)})


def colleague(store: Store, plan_id: int, domain: str, skip: set[str]) -> str | None:
    """An address of `domain` whose mail Postfix keeps: an account in scope not switched,
    else one out of scope; None when the whole domain is switched."""
    pattern = "%@" + domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    base = select(A.c.address).where(
        A.c.plan_id == plan_id, A.c.address.like(pattern, escape="\\"), A.c.cutover.is_(None)
    )
    with store.session() as s:
        for stmt in (
            base.where(A.c.scope == Scope.IN_SCOPE),
            base.where(A.c.scope != Scope.IN_SCOPE),
        ):
            for (address,) in s.execute(stmt.order_by(A.c.id).limit(50)):
                if address and str(address).lower() not in skip:
                    return str(address).lower()
    return None


def _move(
    store: Store,
    plan_id: int,
    where: Any,
    values: dict[str, Any],
    *,
    ids: Sequence[int] | None = None,
    event: EventKind | None = None,
    detail: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Move the accounts matching `where` (and `ids`), writing one event each; the rows as
    they were."""
    moved: list[dict[str, Any]] = []
    with store.session(write=True) as s:
        conn = s.connection()
        for chunk in _chunks(list(ids)) if ids is not None else [None]:
            condition = and_(
                A.c.plan_id == plan_id, where, *([A.c.id.in_(chunk)] if chunk is not None else [])
            )
            rows = [
                dict(r)
                for r in conn.execute(select(A.c.id, A.c.cutover).where(condition)).mappings()
            ]
            if not rows:
                continue
            conn.execute(update(A).where(A.c.id.in_([r["id"] for r in rows])).values(**values))
            if event:
                events.write_many(
                    conn,
                    plan_id,
                    event,
                    [(r["id"], r["cutover"]) for r in rows],
                    to_state=values.get("cutover"),
                    detail=detail or {},
                )
            moved += rows
    return moved


def begin_switch(store: Store, plan_id: int, wave_id: int, ids: Sequence[int]) -> int:
    """These accounts go into the map (not yet verified): switching, owned by the wave."""
    where = or_(A.c.cutover.is_(None), A.c.cutover == CutoverState.REVERTING)
    return len(
        _move(
            store,
            plan_id,
            where,
            {"cutover": CutoverState.SWITCHING, "cutover_wave": wave_id},
            ids=ids,
        )
    )


def abandon_switch(store: Store, plan_id: int, wave_id: int) -> int:
    """The wave's switch did not go live: its accounts are as before it."""
    where = and_(A.c.cutover_wave == wave_id, A.c.cutover == CutoverState.SWITCHING)
    return len(_move(store, plan_id, where, {"cutover": None, "cutover_wave": None}))


def confirm_switch(store: Store, plan_id: int, wave_id: int, at: datetime) -> int:
    where = and_(A.c.cutover_wave == wave_id, A.c.cutover == CutoverState.SWITCHING)
    return len(_move(store, plan_id, where, {"cutover": CutoverState.SWITCHED, "switched_at": at},
                     event=EventKind.SWITCHED,
                     detail={"wave": wave_id}))  # fmt: skip


def finish_accounts(
    store: Store, plan_id: int, wave_id: int, ids: Sequence[int], at: datetime
) -> int:
    """The final delta pass after the switch is done for these accounts: cut over."""
    where = A.c.cutover == CutoverState.SWITCHED
    return len(_move(store, plan_id, where, {"cutover": CutoverState.CUT_OVER, "cutover_at": at},
                     ids=ids, event=EventKind.CUT_OVER,
                     detail={"wave": wave_id}))  # fmt: skip


def begin_revert(store: Store, plan_id: int, ids: Sequence[int]) -> int:
    return len(
        _move(store, plan_id, A.c.cutover.in_(ROUTED), {"cutover": CutoverState.REVERTING}, ids=ids)
    )


def undo_revert(store: Store, plan_id: int, ids: Sequence[int]) -> int:
    """A rollback that did not go live: each account back where it was (its times say where)."""
    back = case(
        (A.c.cutover_at.is_not(None), CutoverState.CUT_OVER.value),
        (A.c.switched_at.is_not(None), CutoverState.SWITCHED.value),
        else_=CutoverState.SWITCHING.value,
    )
    return len(
        _move(store, plan_id, A.c.cutover == CutoverState.REVERTING, {"cutover": back}, ids=ids)
    )


def confirm_revert(store: Store, plan_id: int, wave_id: int, ids: Sequence[int]) -> int:
    values = {"cutover": None, "switched_at": None, "cutover_at": None, "cutover_wave": None}
    return len(_move(store, plan_id, A.c.cutover == CutoverState.REVERTING, values, ids=ids,
                     event=EventKind.SWITCHED_BACK,
                     detail={"wave": wave_id}))  # fmt: skip


def reverting_ids(store: Store, plan_id: int, ids: Sequence[int]) -> list[int]:
    found: list[int] = []
    with store.session() as s:
        for chunk in _chunks(list(ids)):
            found += [int(i) for (i,) in s.execute(
                select(A.c.id).where(A.c.plan_id == plan_id, A.c.cutover == CutoverState.REVERTING,
                                     A.c.id.in_(chunk))
            )]  # fmt: skip
    return found


# --- waves and steps -------------------------------------------------------------------------
def open_wave(
    store: Store, plan_id: int, kind: str, selection: dict[str, Any], key: str
) -> tuple[dict[str, Any], bool]:
    """The unfinished wave of this kind and selection (resumed), or a new one; True when new."""
    with store.session(write=True) as s:
        found = s.execute(
            select(W).where(W.c.plan_id == plan_id, W.c.kind == kind, W.c.selection_key == key,
                            W.c.status.in_(WAVE_OPEN)).order_by(W.c.id.desc()).limit(1)
        ).mappings().first()  # fmt: skip
        now = utcnow()
        if found is not None:
            s.execute(
                update(W)
                .where(W.c.id == found["id"])
                .values(host=socket.gethostname(), pid=os.getpid(), updated_at=now)
            )
            return dict(found), False
        wave_id = s.execute(
            insert(W).values(plan_id=plan_id, kind=kind, selection=selection, selection_key=key,
                             status=WaveStatus.RUNNING,
                             accounts=0, host=socket.gethostname(), pid=os.getpid(),
                             started_at=now, updated_at=now)
            .returning(W.c.id)
        ).scalar_one()  # fmt: skip
        row = s.execute(select(W).where(W.c.id == wave_id)).mappings().one()
        return dict(row), True


def update_wave(store: Store, wave_id: int, **values: Any) -> None:
    with store.session(write=True) as s:
        s.execute(update(W).where(W.c.id == wave_id).values(updated_at=utcnow(), **values))


def waves_of(store: Store, plan_id: int, kind: str, status: Sequence[str]) -> list[dict[str, Any]]:
    with store.session() as s:
        stmt = select(W).where(
            W.c.plan_id == plan_id, W.c.kind == kind, W.c.status.in_(list(status))
        )
        return [dict(r) for r in s.execute(stmt.order_by(W.c.id)).mappings()]


def close_rolled_back_waves(store: Store, plan_id: int) -> None:
    """Switch waves none of whose accounts are routed any more were rolled back."""
    still = (
        select(func.count())
        .select_from(A)
        .where(A.c.cutover_wave == W.c.id, A.c.cutover.in_(ROUTED))
        .scalar_subquery()
    )
    with store.session(write=True) as s:
        s.execute(
            update(W).where(W.c.plan_id == plan_id, W.c.kind == "switch",
                            W.c.status.in_((WaveStatus.SWITCHED, WaveStatus.FINISHED)), still == 0)
            .values(status=WaveStatus.ROLLED_BACK, updated_at=utcnow())
        )  # fmt: skip


def start_step(store: Store, wave_id: int, step: str) -> int:
    with store.session(write=True) as s:
        now = utcnow()
        s.execute(update(W).where(W.c.id == wave_id).values(step=step, updated_at=now))
        return int(
            s.execute(
                insert(S)
                .values(wave_id=wave_id, step=step, status=StepStatus.RUNNING, started_at=now)
                .returning(S.c.id)
            ).scalar_one()
        )


def finish_step(
    store: Store, step_id: int, status: str, detail: dict[str, Any] | None = None
) -> None:
    with store.session(write=True) as s:
        s.execute(
            update(S)
            .where(S.c.id == step_id)
            .values(status=status, finished_at=utcnow(), detail=detail)
        )


def steps_of(store: Store, wave_id: int) -> list[dict[str, Any]]:
    with store.session() as s:
        return [
            dict(r)
            for r in s.execute(select(S).where(S.c.wave_id == wave_id).order_by(S.c.id)).mappings()
        ]
