"""`workers`: the fleet of `migrator run` processes working on a plan, from the state database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from migrator.commands.state import plan_store
from migrator.model.heartbeat import beat_seconds, gone_after, stale_after
from migrator.model.plan import Plan
from migrator.model.status import LIVE_WORKERS, WorkerState
from migrator.store.fleet import ceiling_of, list_workers, set_ceiling, target_key
from migrator.store.reporting import aggregates
from migrator.store.types import utcnow

RECENT = timedelta(hours=24)  # stopped and gone workers older than this are shown only with --all
RATE_WINDOW = timedelta(seconds=60)  # messages/s: over the last minute (or since the start)


def plan_target(plan: Plan) -> str:
    """The name of the plan's target server, as the fleet shares its ceiling under it."""
    return target_key(plan)


def workers(
    plan: Plan,
    *,
    state_url: str | None = None,
    include_all: bool = False,
    ceiling: int | None = None,
) -> dict[str, Any]:
    """Each worker's name, host, pid, start, heartbeat, accounts in hand and pace.

    A worker is stale when it has not been heard from for three beats (it hangs, is frozen or
    lost the database: its leases still hold), gone when not for longer than the plan's lease
    (or at once, when it ran in this PID namespace and its process is gone): whatever it held
    has expired and is taken over, so no account is listed for it. With `ceiling`, first
    store a new shared ceiling for the plan's target.
    """
    target = target_key(plan)
    lease = plan.run.lease_seconds
    with plan_store(plan, state_url, access="read" if ceiling is None else "write") as (
        store,
        plan_id,
    ):
        if ceiling is not None:
            set_ceiling(store, target, ceiling)
        stored = ceiling_of(store, target)
        now = utcnow()
        rows = list_workers(store, plan_id, since=None if include_all else now - RECENT)
        states = {w.id: w.state(now, lease) for w in rows}
        live = [w for w in rows if states[w.id] in LIVE_WORKERS]
        # What a worker writes in its row is as old as its last heartbeat (one beat: 5 s at
        # most, model/heartbeat.py), and nothing before the first one. The accounts it holds
        # and the messages the ledger recorded for it are known at once, so they come from there.
        with store.reader() as db:
            held = aggregates.leases_by_owner(db, plan_id)
            since = min([now - RATE_WINDOW, *(w.heartbeat_at or w.started_at for w in live)])
            done = aggregates.done_by_worker(db, plan_id, since) if live else []
    listed: list[dict[str, Any]] = []
    for w in rows:
        state = states[w.id]
        last = w.heartbeat_at or w.started_at
        messages, nbytes = int(w.stats.get("messages_done", 0)), int(w.stats.get("bytes_done", 0))
        rate = 0.0
        accounts: list[str] = []
        if state in LIVE_WORKERS:
            # the counters as of the heartbeat, and what the ledger recorded for it since
            mine = [(at, size) for name, at, size in done if name == w.name]
            messages += sum(1 for at, _ in mine if at >= last)
            nbytes += sum(size for at, size in mine if at >= last)
            window_start = max(now - RATE_WINDOW, w.started_at)
            seconds = (now - window_start).total_seconds()
            recent = sum(1 for at, _ in mine if at >= window_start)
            rate = recent / seconds if seconds > 0 else 0.0
        if state in LIVE_WORKERS:
            accounts = held.get(w.name, [])  # a stale one's until its leases expire
        listed.append(
            {
                "name": w.label,
                "id": w.name,
                "host": w.host,
                "pid": w.pid,
                "run_id": w.run_id,
                "state": state,
                "started_at": w.started_at.isoformat(),
                "heartbeat_at": last.isoformat(),
                "heartbeat_age_s": round((now - last).total_seconds(), 1),
                "stopped_at": w.stopped_at.isoformat() if w.stopped_at else None,
                "current_account": w.current_account if state in LIVE_WORKERS else None,
                "accounts": accounts,
                "messages_done": messages,
                "bytes_done": nbytes,
                "rate": round(rate, 2),
                "share": w.share if state in LIVE_WORKERS else None,
                "target": w.target,
            }
        )
    running = [w for w in listed if w["state"] == WorkerState.RUNNING]
    return {
        "plan": plan.name,
        "target": target,
        "ceiling": stored if stored is not None else plan.run.target_concurrency,
        "ceiling_stored": stored is not None,
        "lease_seconds": plan.run.lease_seconds,
        # how old what a worker reports can be, and when silence makes it stale or gone
        "beat_seconds": beat_seconds(lease),
        "stale_after_s": stale_after(lease),
        "gone_after_s": gone_after(lease),
        "rate_window_s": int(RATE_WINDOW.total_seconds()),
        "workers": listed,
        "totals": {
            WorkerState.RUNNING: len(running),
            **{
                s: sum(1 for w in listed if w["state"] == s)
                for s in (WorkerState.STALE, WorkerState.GONE, WorkerState.STOPPED)
            },
            "rate": round(sum(w["rate"] for w in running), 2),
            "accounts_in_hand": sum(len(w["accounts"]) for w in running),
        },
    }
