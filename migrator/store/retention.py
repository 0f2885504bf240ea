"""Retention (`migrator prune`): the event log, finished runs and gone workers stop growing.

A weeks-long campaign of 100,000 accounts writes millions of events. What may go is what no
one needs to migrate, resume or report on the state as it is: events older than the cut-off
(except those of a run still going), runs finished before it (never a running one, nor the
run the plan's last discovery was), and the `workers` rows of processes not heard from for
longer than the lease (stopped or gone: whatever they held has expired). The ledger
(`messages`), `folders`, `accounts`, `target_limits`, cut-over waves and Sieve results are
never touched: a pruned campaign resumes, verifies, reports and cuts over as before; only
the history of `events`/`show` and the list of `workers` are shorter.

Deletions go in slices of ids, each its own transaction, so that on SQLite the writers of a
running campaign wait for at most one slice, not for the whole prune.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, or_, select

from migrator.store.schema import events as E
from migrator.store.schema import plans as P
from migrator.store.schema import runs as R
from migrator.store.schema import workers as W
from migrator.store.store import Store

SLICE = 5_000  # rows per deleting transaction


@dataclass(frozen=True)
class Prunable:
    """What a prune removes (or, in a dry run, would remove)."""

    events: int
    runs: int
    workers: int
    events_before: datetime  # the cut-off of events and runs
    workers_before: datetime  # workers not heard from since


def _live_runs(plan_id: int) -> Any:
    return select(R.c.id).where(R.c.plan_id == plan_id, R.c.status == "running")


def _events(plan_id: int, before: datetime) -> Any:
    # a live run's events stay: its summary and `show` still read them
    return (E.c.plan_id == plan_id, E.c.at < before,
            or_(E.c.run_id.is_(None), E.c.run_id.notin_(_live_runs(plan_id))))  # fmt: skip


def _runs(plan_id: int, before: datetime) -> Any:
    discovery = select(P.c.last_discovery_run_id).where(
        P.c.id == plan_id, P.c.last_discovery_run_id.is_not(None)
    )
    return (R.c.plan_id == plan_id, R.c.status != "running", R.c.finished_at.is_not(None),
            R.c.finished_at < before, R.c.id.notin_(discovery))  # fmt: skip


def _workers(plan_id: int, silent_since: datetime) -> Any:
    # a row never beaten counts from its start
    return (W.c.plan_id == plan_id, func.coalesce(W.c.heartbeat_at, W.c.started_at) < silent_since)


def prunable(
    store: Store, plan_id: int, *, before: datetime, workers_silent_since: datetime
) -> Prunable:
    """Count what `prune` would remove: events and finished runs older than `before`, and
    workers rows not heard from since `workers_silent_since`."""
    with store.session() as s:
        events = s.execute(
            select(func.count()).select_from(E).where(*_events(plan_id, before))
        ).scalar_one()
        runs = s.execute(
            select(func.count()).select_from(R).where(*_runs(plan_id, before))
        ).scalar_one()
        workers = s.execute(
            select(func.count()).select_from(W).where(*_workers(plan_id, workers_silent_since))
        ).scalar_one()
    return Prunable(int(events), int(runs), int(workers), before, workers_silent_since)


def _delete_in_slices(store: Store, table: Table, where: Any) -> int:
    deleted = 0
    while True:
        with store.session(write=True) as s:
            # no ORDER BY: the slice is the first rows the index range gives, never a sort of
            # all of them (millions of events)
            ids = s.execute(select(table.c.id).where(*where).limit(SLICE)).scalars().all()
            if not ids:
                return deleted
            s.execute(table.delete().where(table.c.id.in_(ids)))
            deleted += len(ids)


def prune(
    store: Store, plan_id: int, *, before: datetime, workers_silent_since: datetime
) -> Prunable:
    """Remove what `prunable` counts; what was removed. Events go first, so that deleting a
    run sets no surviving event's run_id to NULL but those of the run's own stragglers."""
    events = _delete_in_slices(store, E, _events(plan_id, before))
    runs = _delete_in_slices(store, R, _runs(plan_id, before))
    workers = _delete_in_slices(store, W, _workers(plan_id, workers_silent_since))
    return Prunable(events, runs, workers, before, workers_silent_since)
