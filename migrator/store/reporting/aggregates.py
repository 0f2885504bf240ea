"""Read-only aggregates for `status`, `discover` and reports, computed by the database.

Plain SQL on the DBAPI connection (through Raw), the same text on SQLite and PostgreSQL, so
`status` can answer without importing SQLAlchemy (half a second of its start-up) while the
other commands run the very same queries inside their Store sessions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from migrator.model.events import EventKind
from migrator.model.scope import Scope
from migrator.model.status import RunStatus
from migrator.store.database.raw import Raw

# "N of M accounts migrated": a pass completed, whatever a later delta pass is doing (at work,
# failed, or killed: a SIGKILL must not make the headline go down). The one rule for status,
# the per-batch/OU rows, run's live count and routing; the view v_progress_by_batch (migration
# 0005) spells out the same.
MIGRATED_SQL = (
    "(status IN ('synced', 'verified') OR (passes > 0 AND status IN ('running', 'failed')))"
)


def plan_id(db: Raw, name: str) -> int | None:
    found = db.all("SELECT id FROM plans WHERE name = ?", (name,))
    return int(found[0][0]) if found else None


def account_counts(db: Raw, plan_id: int) -> dict[str, Any]:
    """{"in_scope": n, "excluded": {reason: n}, "invalid": {reason: n}, "vanished": n,
    "statuses": {status: n in scope}, "total": n}; entries without a reason count under
    "unspecified"."""
    counts: dict[str, Any] = {
        Scope.IN_SCOPE: 0,
        Scope.EXCLUDED: {},
        Scope.INVALID: {},
        Scope.VANISHED: 0,
        "statuses": {},
        "total": 0,
    }
    rows = db.all(
        "SELECT scope, status, reason, count(*) FROM accounts WHERE plan_id = ? GROUP BY scope, "
        "status, reason",
        (plan_id,),
    )
    for scope, status, reason, n in rows:
        count = int(n)
        counts["total"] += count
        if scope == Scope.IN_SCOPE:
            counts[Scope.IN_SCOPE] += count
            counts["statuses"][status] = counts["statuses"].get(status, 0) + count
        elif scope == Scope.VANISHED:
            counts[Scope.VANISHED] += count
        else:
            bucket = counts[scope]
            label = reason or "unspecified"
            bucket[label] = bucket.get(label, 0) + count
    return counts


def progress_counts(db: Raw, plan_id: int) -> dict[str, int]:
    """Accounts in scope migrated (MIGRATED_SQL), and "running" ones whose lease expired: their
    worker is gone (a SIGKILL), and the next `migrator run` resumes them."""
    now = db.time(datetime.now(UTC))
    [(migrated, interrupted)] = db.all(
        f"SELECT coalesce(sum(CASE WHEN {MIGRATED_SQL} THEN 1 ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN status = 'running' AND lease_expires_at < ? THEN 1 ELSE 0 END), 0)"
        " FROM accounts WHERE plan_id = ? AND scope = 'in_scope'",
        (now, plan_id),
    )
    return {"migrated": int(migrated), "interrupted": int(interrupted)}


def batch_sizes(db: Raw, plan_id: int) -> dict[str, int]:
    """Accounts in scope per batch; accounts without a batch under ""."""
    sizes: dict[str, int] = {}
    rows = db.all(
        "SELECT batch, count(*) FROM accounts WHERE plan_id = ? AND scope = 'in_scope' GROUP BY "
        "batch",
        (plan_id,),
    )
    for batch, n in rows:
        sizes[batch or ""] = sizes.get(batch or "", 0) + int(n)
    return sizes


_BY_BATCH = f"""
SELECT batch, count(*),
  sum(CASE WHEN {MIGRATED_SQL} THEN 1 ELSE 0 END),
  sum(CASE WHEN status = 'verified' THEN 1 ELSE 0 END),
  sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),
  sum(CASE WHEN status = 'running' THEN 1 ELSE 0 END),
  sum(CASE WHEN status = 'pending' THEN 1 ELSE 0 END)
FROM accounts WHERE plan_id = ? AND scope = 'in_scope'
GROUP BY batch ORDER BY batch"""
_BY_BATCH_NAMES = ("total", "migrated", "verified", "failed", "running", "pending")


def progress_by_batch(db: Raw, plan_id: int) -> list[dict[str, Any]]:
    """Per batch of accounts in scope: total, migrated, verified, failed, running, pending."""
    return [
        {"batch": batch, **{k: int(v) for k, v in zip(_BY_BATCH_NAMES, numbers, strict=True)}}
        for batch, *numbers in db.all(_BY_BATCH, (plan_id,))
    ]


# Everything `status` counts over the accounts in scope, in one read of them: per batch (the
# rows of progress_by_batch), plus the interrupted leases, the first passes since a moment and
# the message counters. Four reads of 100,000 accounts were most of `status`'s queries.
_IN_SCOPE = f"""
SELECT batch, count(*),
  sum(CASE WHEN {MIGRATED_SQL} THEN 1 ELSE 0 END),
  sum(CASE WHEN status = 'verified' THEN 1 ELSE 0 END),
  sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),
  sum(CASE WHEN status = 'running' THEN 1 ELSE 0 END),
  sum(CASE WHEN status = 'pending' THEN 1 ELSE 0 END),
  sum(CASE WHEN status = 'running' AND lease_expires_at < ? THEN 1 ELSE 0 END),
  sum(CASE WHEN first_pass_at >= ? THEN 1 ELSE 0 END),
  coalesce(sum(messages_done), 0), coalesce(sum(messages_skipped), 0),
  coalesce(sum(messages_failed), 0), coalesce(sum(bytes_done), 0), coalesce(sum(passes), 0)
FROM accounts WHERE plan_id = ? AND scope = 'in_scope'
GROUP BY batch ORDER BY batch"""
_MESSAGE_NAMES = ("done", "skipped", "failed", "bytes", "passes")


def in_scope_progress(
    db: Raw, plan_id: int, *, now: datetime, since: datetime
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """progress_by_batch's rows, and over all of them: progress_counts' "migrated" and
    "interrupted" (leases expired at `now`), "first_passes" (accounts whose first pass ended
    at or after `since`, as recent_throughput counts them) and "messages" (totals())."""
    groups: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"migrated": 0, "interrupted": 0, "first_passes": 0}
    messages = dict.fromkeys(_MESSAGE_NAMES, 0)
    for batch, *numbers in db.all(_IN_SCOPE, (db.time(now), db.time(since), plan_id)):
        counts = [int(v or 0) for v in numbers]
        row = dict(zip(_BY_BATCH_NAMES, counts, strict=False))
        groups.append({"batch": batch, **row})
        interrupted, first_passes, *sums = counts[len(_BY_BATCH_NAMES) :]
        summary["migrated"] += row["migrated"]
        summary["interrupted"] += interrupted
        summary["first_passes"] += first_passes
        for name, value in zip(_MESSAGE_NAMES, sums, strict=True):
            messages[name] += value
    summary["messages"] = messages
    return groups, summary


def dn_statuses(db: Raw, plan_id: int) -> list[tuple[str, str, bool]]:
    """(DN, status, migrated) of every account in scope, for groupings the database cannot
    compute (OU)."""
    return [(dn, status, bool(migrated)) for dn, status, migrated in db.all(
        f"SELECT dn, status, CASE WHEN {MIGRATED_SQL} THEN 1 ELSE 0 END FROM accounts"
        " WHERE plan_id = ? AND scope = 'in_scope'", (plan_id,)
    )]  # fmt: skip


def totals(db: Raw, plan_id: int) -> dict[str, int]:
    """Messages and bytes over the plan's accounts in scope (from the per-account counters)."""
    [row] = db.all(
        "SELECT coalesce(sum(messages_done), 0), coalesce(sum(messages_skipped), 0),"
        " coalesce(sum(messages_failed), 0), coalesce(sum(bytes_done), 0), coalesce(sum(passes), 0)"
        " FROM accounts WHERE plan_id = ? AND scope = 'in_scope'",
        (plan_id,),
    )
    done, skipped, failed, nbytes, passes = (int(v) for v in row)
    return {"done": done, "skipped": skipped, "failed": failed, "bytes": nbytes, "passes": passes}


def failures_by_reason(db: Raw, plan_id: int, limit: int = 10) -> list[dict[str, Any]]:
    rows = db.all(
        "SELECT last_error_reason, count(*) AS n, min(last_error) FROM accounts"
        " WHERE plan_id = ? AND scope = 'in_scope' AND status = 'failed'"
        " GROUP BY last_error_reason ORDER BY n DESC LIMIT ?",
        (plan_id, limit),
    )
    return [{"reason": r or "unknown", "accounts": int(n), "example": e} for r, n, e in rows]


def skipped_by_reason(db: Raw, plan_id: int) -> dict[str, int]:
    # accounts with skipped messages are few; the ledger is reached through its account index
    rows = db.all(
        "SELECT reason, count(*) FROM messages WHERE state = 'skipped' AND account_id IN"
        " (SELECT id FROM accounts WHERE plan_id = ? AND messages_skipped > 0) GROUP BY reason",
        (plan_id,),
    )
    found: dict[str, int] = {}
    for reason, n in rows:
        found[reason or "unknown"] = found.get(reason or "unknown", 0) + int(n)
    return found


# Ledger rows get their id when written in flight and are marked done seconds later (or, after
# a crash, when the account is resumed). Rows are looked for from this long before the window,
# so a few hosts' clocks that disagree, or a chunk that took long, do not drop any.
LEDGER_CLOCK_MARGIN = timedelta(minutes=10)


def first_id_since(db: Raw, moment: datetime) -> int | None:
    """The id of the first ledger row written at or after `moment`, or None when none was.

    The ledger has no index on time (it is kept narrow: it holds every message of the
    campaign), but its ids grow with time: a binary search on the primary key finds the first
    row of the last hour in some 25 lookups, where a filter on the time would read it all."""
    # two statements: SQLite answers min() or max() alone from the primary key, both at once
    # by reading the whole table
    [(high,)] = db.all("SELECT max(id) FROM messages")
    if high is None:
        return None
    [(low,)] = db.all("SELECT min(id) FROM messages")
    mark = db.time(moment)
    [(newest_at,)] = db.all("SELECT created_at FROM messages WHERE id = ?", (high,))
    if newest_at < mark:
        return None
    found, low, high = int(high), int(low), int(high) - 1
    # `found` was written at or after `moment`; look for an earlier one among ids low..high
    while low <= high:
        middle = (low + high) // 2
        rows = db.all(
            "SELECT id, created_at FROM messages WHERE id >= ? AND id <= ? ORDER BY id LIMIT 1",
            (middle, high),
        )
        if not rows:  # no row between middle and high (ids have gaps: a reset deletes rows)
            high = middle - 1
        elif rows[0][1] < mark:
            low = int(rows[0][0]) + 1
        else:
            found, high = int(rows[0][0]), middle - 1
    return found


def done_since(db: Raw, plan_id: int, since: datetime) -> tuple[int, int]:
    """Messages the ledger recorded as done at or after `since` (first passes, delta passes,
    accounts that later failed or were interrupted alike), and their bytes."""
    first = first_id_since(db, since - LEDGER_CLOCK_MARGIN)
    if first is None:
        return 0, 0
    # the ledger drives the join: only the window's rows are read (CROSS JOIN keeps SQLite
    # from starting with the plan's accounts and reading every message of each)
    [(messages, nbytes)] = db.all(
        "SELECT count(*), coalesce(sum(m.size), 0) FROM messages m CROSS JOIN accounts a"
        " WHERE m.id >= ? AND m.state = 'done' AND m.updated_at >= ? AND a.id = m.account_id AND "
        "a.plan_id = ?",
        (first, db.time(since), plan_id),
    )
    return int(messages), int(nbytes)


def done_by_worker(db: Raw, plan_id: int, since: datetime) -> list[tuple[str, datetime, int]]:
    """(worker, when, size) of each message recorded done at or after `since` (keep it short:
    a row each). A ledger row carries the lease epoch it was written under, and the claim
    that took that epoch names the worker, so this holds however often workers report."""
    first = first_id_since(db, since - LEDGER_CLOCK_MARGIN)
    if first is None:
        return []
    rows = db.all(
        "SELECT m.account_id, m.lease_epoch, m.updated_at, m.size FROM messages m CROSS JOIN "
        "accounts a"
        " WHERE m.id >= ? AND m.state = 'done' AND m.updated_at >= ? AND a.id = m.account_id AND "
        "a.plan_id = ?",
        (first, db.time(since), plan_id),
    )
    holders: dict[tuple[int, int], str] = {}
    accounts = sorted({int(r[0]) for r in rows})
    for start in range(0, len(accounts), 500):
        part = accounts[start : start + 500]
        for account_id, worker, detail in db.all(
            "SELECT account_id, worker, detail FROM events WHERE kind IN (?, ?)"
            f" AND account_id IN ({', '.join('?' for _ in part)})",
            [EventKind.CLAIMED.value, EventKind.TAKEN_OVER.value, *part],
        ):
            epoch = (db.read_json(detail) or {}).get("epoch")
            if worker and epoch is not None:
                holders[(int(account_id), int(epoch))] = worker
    found: list[tuple[str, datetime, int]] = []
    for account_id, epoch, at, size in rows:
        worker = holders.get((int(account_id), int(epoch)))
        when = db.read_time(at)
        if worker is not None and when is not None:
            found.append((worker, when, int(size or 0)))
    return found


def leases_by_owner(db: Raw, plan_id: int) -> dict[str, list[str]]:
    """The accounts each worker holds a live lease on (address, or key without one): what it
    is migrating now, from the moment it claimed them."""
    held: dict[str, list[str]] = {}
    for owner, address, key in db.all(
        "SELECT lease_owner, address, key FROM accounts WHERE plan_id = ? AND status = 'running'"
        " AND lease_owner IS NOT NULL AND lease_expires_at > ? ORDER BY id",
        (plan_id, db.time(datetime.now(UTC))),
    ):
        held.setdefault(owner, []).append(address or key)
    return held


def running_seconds(
    db: Raw, plan_id: int, since: datetime, now: datetime, heartbeat: timedelta
) -> float:
    """How long, between `since` and `now`, at least one `migrator run` of the plan was at
    work (runs on several hosts at once count once). A run that never finished (killed) ends
    one heartbeat after its workers' last one: it was closed only when the next run began."""
    spans: list[tuple[datetime, datetime]] = []
    for started, finished, last_beat in db.all(
        "SELECT r.started_at, r.finished_at, (SELECT max(w.heartbeat_at) FROM workers w WHERE "
        "w.run_id = r.id)"
        " FROM runs r WHERE r.plan_id = ? AND r.command = 'run' AND (r.finished_at IS NULL OR "
        "r.finished_at >= ?)",
        (plan_id, db.time(since)),
    ):
        begin = db.read_time(started)
        end = db.read_time(finished) or now
        beat = db.read_time(last_beat)
        if beat is not None:
            end = min(end, beat + heartbeat)
        if begin is None:
            continue
        begin, end = max(begin, since), min(end, now)
        if end > begin:
            spans.append((begin, end))
    total = 0.0
    reach: datetime | None = None
    for begin, end in sorted(spans):
        if reach is not None and begin < reach:
            begin = reach
        if end > begin:
            total += (end - begin).total_seconds()
        reach = max(reach or end, end)
    return total


def recent_throughput(
    db: Raw,
    plan_id: int,
    *,
    heartbeat: timedelta,
    hours: float = 1.0,
    now: datetime | None = None,
    first_passes: int | None = None,
) -> dict[str, float]:
    """The last `hours` before `now`: accounts migrated for the first time (the pace the rest
    of the campaign goes at; delta passes over migrated accounts do not count; given as
    `first_passes` when in_scope_progress counted them already), the messages and bytes the
    ledger recorded as done by every pass, and how long runs were at work."""
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=hours)
    if first_passes is None:
        [(first_passes,)] = db.all(
            "SELECT count(*) FROM accounts WHERE plan_id = ? AND scope = 'in_scope' AND "
            "first_pass_at >= ?",
            (plan_id, db.time(since)),
        )
    accounts = first_passes
    messages, nbytes = done_since(db, plan_id, since)
    return {
        "hours": hours,
        "accounts": int(accounts),
        "messages": messages,
        "bytes": nbytes,
        "running_seconds": round(running_seconds(db, plan_id, since, now, heartbeat), 1),
    }


def last_run(db: Raw, plan_id: int, command: str) -> dict[str, Any] | None:
    """The newest run of `command`, with the "totals" of its summary when it wrote some (only
    that part is read: a verify summary lists every account)."""
    totals = "json_extract(summary, '$.totals')" if db.sqlite else "summary -> 'totals'"
    rows = db.all(
        f"SELECT id, started_at, finished_at, status, host, {totals}, alive_until FROM runs"
        " WHERE plan_id = ? AND command = ? ORDER BY started_at DESC LIMIT 1",
        (plan_id, command),
    )
    if not rows:
        return None
    run_id, started, finished, status, host, summary_totals, alive_until = rows[0]
    until = db.read_time(alive_until)
    if status == RunStatus.RUNNING and until is not None and until < datetime.now(UTC):
        status = (
            RunStatus.INTERRUPTED
        )  # its process stopped beating; the next writer will record it
    return {
        "id": int(run_id),
        "started_at": db.read_time(started),
        "finished_at": db.read_time(finished),
        "status": status,
        "host": host,
        "totals": db.read_json(summary_totals),
    }
