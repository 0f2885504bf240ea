"""Read-only cut-over aggregates for `status` and the reports, in plain SQL (no SQLAlchemy),
like aggregates.py, whose MIGRATED_SQL rule they share."""

from __future__ import annotations

from typing import Any

from migrator.model.cutover import CutoverState
from migrator.store.database.raw import Raw
from migrator.store.reporting.aggregates import MIGRATED_SQL

# accounts.cutover as `status` words it
SWITCHED = (CutoverState.SWITCHED,)
FINISHED = (CutoverState.CUT_OVER,)
IN_PROGRESS = (CutoverState.SWITCHING, CutoverState.REVERTING)


def cutover_by_batch(db: Raw, plan_id: int) -> dict[str, dict[str, int]]:
    """Per batch with any account touched by a cut-over: accounts switched (final delta to
    come), cut over (finished), being switched or switched back, and how many of them are
    migrated (to tell the pre-staged rest). Only switched accounts are read (an index range)."""
    rows = db.all(
        "SELECT batch, cutover, count(*),"
        f" sum(CASE WHEN {MIGRATED_SQL} THEN 1 ELSE 0 END)"
        " FROM accounts WHERE plan_id = ? AND cutover IS NOT NULL AND scope = 'in_scope'"
        " GROUP BY batch, cutover",
        (plan_id,),
    )
    found: dict[str, dict[str, int]] = {}
    for batch, state, n, migrated in rows:
        row = found.setdefault(
            batch or "", {"switched": 0, "cut_over": 0, "in_progress": 0, "migrated": 0}
        )
        key = (
            "cut_over" if state in FINISHED else "switched" if state in SWITCHED else "in_progress"
        )
        row[key] += int(n)
        row["migrated"] += int(migrated or 0)
    return found


def waves(db: Raw, plan_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """The newest cut-over waves (switches and rollbacks), oldest first, with their steps."""
    rows = db.all(
        "SELECT id, kind, selection, status, step, accounts, nexthop, error, started_at, "
        "switched_at,"
        " finished_at, updated_at FROM cutover_waves WHERE plan_id = ? ORDER BY id DESC LIMIT ?",
        (plan_id, limit),
    )
    found = []
    for (
        wave_id,
        kind,
        selection,
        status,
        step,
        accounts,
        nexthop,
        error,
        started,
        switched,
        finished,
        updated,
    ) in rows:
        found.append({
            "id": int(wave_id), "kind": kind, "selection": db.read_json(selection) or {},
            "status": status,
            "step": step, "accounts": int(accounts or 0), "nexthop": nexthop, "error": error,
            "started_at": db.read_time(started), "switched_at": db.read_time(switched),
            "finished_at": db.read_time(finished), "updated_at": db.read_time(updated), "steps": [],
        })  # fmt: skip
    found.reverse()
    if found:
        by_id = {w["id"]: w for w in found}
        marks = ", ".join("?" for _ in by_id)
        for wave_id, step, status, started, finished, detail in db.all(
            f"SELECT wave_id, step, status, started_at, finished_at, detail FROM cutover_steps"
            f" WHERE wave_id IN ({marks}) ORDER BY id", list(by_id),
        ):  # fmt: skip
            by_id[int(wave_id)]["steps"].append({
                "step": step, "status": status, "started_at": db.read_time(started),
                "finished_at": db.read_time(finished), "detail": db.read_json(detail),
            })  # fmt: skip
    return found


def has_cutover(db: Raw, plan_id: int) -> bool:
    return bool(db.all("SELECT 1 FROM cutover_waves WHERE plan_id = ? LIMIT 1", (plan_id,)))
