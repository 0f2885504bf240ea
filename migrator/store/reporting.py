"""Read-only aggregates for `status`, `discover` and reports, computed by the database.

Plain SQL on the DBAPI connection (through Raw), the same text on SQLite and PostgreSQL, so
`status` can answer without importing SQLAlchemy (half a second of its start-up) while the
other commands run the very same queries inside their Store sessions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from migrator.store.raw import Raw

# "N of M accounts migrated": a pass completed, whatever a later delta pass is doing (at work,
# failed, or killed: a SIGKILL must not make the headline go down). The one rule for status,
# the per-batch/OU rows, run's live count and routing; the view v_progress_by_batch (migration
# 0005) spells out the same.
MIGRATED_SQL = "(status IN ('synced', 'verified') OR (passes > 0 AND status IN ('running', 'failed')))"


def plan_id(db: Raw, name: str) -> int | None:
    found = db.all("SELECT id FROM plans WHERE name = ?", (name,))
    return int(found[0][0]) if found else None


def account_counts(db: Raw, plan_id: int) -> dict[str, Any]:
    """{"in_scope": n, "excluded": {reason: n}, "invalid": {reason: n}, "vanished": n,
    "statuses": {status: n in scope}, "total": n}; entries without a reason count under
    "unspecified"."""
    counts: dict[str, Any] = {"in_scope": 0, "excluded": {}, "invalid": {}, "vanished": 0, "statuses": {}, "total": 0}
    rows = db.all(
        "SELECT scope, status, reason, count(*) FROM accounts WHERE plan_id = ? GROUP BY scope, status, reason",
        (plan_id,),
    )
    for scope, status, reason, n in rows:
        count = int(n)
        counts["total"] += count
        if scope == "in_scope":
            counts["in_scope"] += count
            counts["statuses"][status] = counts["statuses"].get(status, 0) + count
        elif scope == "vanished":
            counts["vanished"] += count
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
        "SELECT batch, count(*) FROM accounts WHERE plan_id = ? AND scope = 'in_scope' GROUP BY batch",
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


def recent_throughput(db: Raw, plan_id: int, hours: float = 1.0) -> dict[str, float]:
    """Accounts migrated for the first time in the last `hours` (the pace the rest of the
    campaign goes at; delta passes of accounts already migrated do not count), and messages and
    bytes moved by every pass then, from the event log."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    [(accounts,)] = db.all(
        "SELECT count(*) FROM accounts WHERE plan_id = ? AND scope = 'in_scope' AND first_pass_at >= ?",
        (plan_id, db.time(since)),
    )
    rows = db.all(
        "SELECT to_state, detail FROM events WHERE plan_id = ? AND at >= ? AND kind = 'released'",
        (plan_id, db.time(since)),
    )
    messages = nbytes = 0
    for _to_state, detail in rows:
        numbers = db.read_json(detail) or {}
        messages += int(numbers.get("messages_done", 0) or 0)
        nbytes += int(numbers.get("bytes_done", 0) or 0)
    return {"hours": hours, "accounts": int(accounts), "messages": messages, "bytes": nbytes}


def last_run(db: Raw, plan_id: int, command: str) -> dict[str, Any] | None:
    """The newest run of `command`, with the "totals" of its summary when it wrote some (only
    that part is read: a verify summary lists every account)."""
    totals = "json_extract(summary, '$.totals')" if db.sqlite else "summary -> 'totals'"
    rows = db.all(
        f"SELECT id, started_at, finished_at, status, host, {totals} FROM runs"
        " WHERE plan_id = ? AND command = ? ORDER BY started_at DESC LIMIT 1",
        (plan_id, command),
    )
    if not rows:
        return None
    run_id, started, finished, status, host, summary_totals = rows[0]
    return {
        "id": int(run_id),
        "started_at": db.read_time(started),
        "finished_at": db.read_time(finished),
        "status": status,
        "host": host,
        "totals": db.read_json(summary_totals),
    }
