"""`events`: the campaign's event log (claims, releases, resets, scope changes), optionally
followed."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from migrator.commands.report import iso
from migrator.commands.state import plan_store
from migrator.model.errors import UsageError
from migrator.model.plan import Plan
from migrator.store.reporting import queries

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2h`, `30m`, `3d`, `1w` (ago), or an ISO date/time (UTC unless it says otherwise)."""
    match = _DURATION.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since {text!r} is neither a duration nor an ISO time",
            hint="use e.g. 2h, 30m, 3d, 1w or 2026-11-20T08:00 (UTC)",
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _event(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": e["id"],
        "at": iso(e["at"]),
        "account": e["address"] or e["key"],
        "kind": e["kind"],
        "from": e["from_state"],
        "to": e["to_state"],
        "worker": e["worker"],
        "run": e["run_id"],
        "detail": e["detail"],
    }


def list_events(
    plan: Plan,
    *,
    state_url: str | None = None,
    account: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Events oldest first; with `limit`, the newest `limit` of them (still oldest first)."""
    with plan_store(plan, state_url, access="read") as (store, plan_id):
        account_id = _account_id(store, plan_id, plan, account)
        rows = queries.events(
            store, plan_id, account_id=account_id, since=since, limit=limit, newest_first=True
        )
    return [_event(e) for e in reversed(rows)]


def _account_id(store: Any, plan_id: int, plan: Plan, account: str | None) -> int | None:
    if account is None:
        return None
    row = queries.find_account(store, plan_id, account)
    if row is None:
        raise UsageError(
            f"no account {account!r} in plan {plan.name!r}",
            hint=f"check the address; `migrator accounts --plan {plan.file}` lists them",
        )
    return int(row["id"])


def follow_events(
    plan: Plan,
    *,
    after_id: int,
    state_url: str | None = None,
    account: str | None = None,
    poll_seconds: float = 1.0,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[dict[str, Any]]:
    """New events (id > after_id) as they are written, until interrupted or `timeout` passes."""
    deadline = None if timeout is None else clock() + timeout
    with plan_store(plan, state_url, access="read") as (store, plan_id):
        account_id = _account_id(store, plan_id, plan, account)
        last = after_id
        while True:
            for e in queries.events(
                store, plan_id, account_id=account_id, after_id=last, limit=1000
            ):
                last = max(last, int(e["id"]))
                yield _event(e)
            if deadline is not None and clock() >= deadline:
                return
            # polling is the portable way across SQLite and PostgreSQL; the interval bounds the lag
            time.sleep(poll_seconds)
