"""Claims at campaign scale (issue 19): each query of a claim is an index range scan that starts
at the first account the run may take, so the 100,000th claim costs what the first did; and a
run leaves alone the accounts whose pass ended after it started, or within `[run]
pass_interval` before. On SQLite and PostgreSQL (the plans are the databases' own, read with
EXPLAIN)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text, update

from migrator.store import Store
from migrator.store.claims import ClaimFilter, _claim_probes, claim_next, release
from migrator.store.schema import accounts as A


def _accounts(store: Store, plan_id: int, rows: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC)
    base = {"plan_id": plan_id, "dn": "uid=x", "scope": "in_scope", "fingerprint": "fp", "aliases": [],
            "attributes": {}, "discovered_at": now, "last_seen_at": now, "status": "pending", "passes": 0,
            "attempts": 0, "messages_done": 0, "messages_skipped": 0, "messages_failed": 0, "bytes_done": 0,
            "lease_epoch": 0, "batch": None, "last_pass_at": None, "updated_at": None, "lease_owner": None,
            "lease_expires_at": None}  # fmt: skip
    # one set of columns for every row: an executemany takes the first row's
    with store.session(write=True) as s:
        s.execute(A.insert(), [{**base, "address": r["key"] + "@example.org", **r} for r in rows])


def _claim_all(
    store: Store, plan_id: int, run_started: datetime, f: ClaimFilter | None = None
) -> Iterator[str]:
    """Claim and release (synced) until nothing is left for the run; the keys in claim order."""
    while (
        claim := claim_next(
            store,
            plan_id,
            worker="w",
            lease_seconds=60,
            run_started=run_started,
            filters=f or ClaimFilter(),
        )
    ) is not None:
        release(store, claim, status="synced", run_id=None, completed_pass=True)
        yield claim.key


def _plans(
    store: Store, plan_id: int, run_started: datetime, f: ClaimFilter | None = None
) -> list[str]:
    """What the database does for each query of a claim (EXPLAIN, not run)."""
    prefix = "EXPLAIN QUERY PLAN " if store.backend == "sqlite" else "EXPLAIN (COSTS OFF) "

    def explain(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        return prefix + statement, parameters

    found = []
    event.listen(store.engine, "before_cursor_execute", explain, retval=True)
    try:
        # the statements a claim runs, as it runs them (limited, locked on PostgreSQL)
        for stmt in _claim_probes(store.backend, plan_id, run_started, f or ClaimFilter(), ()):
            with store.session() as s:
                rows = s.execute(stmt, {"b_now": datetime.now(UTC)}).all()
                found.append("\n".join(str(r[-1]) for r in rows))
    finally:
        event.remove(store.engine, "before_cursor_execute", explain)
    return found


def test_every_query_of_a_claim_is_an_index_range_scan(store: Store, plan_name: str) -> None:
    """Half the plan's 4,000 accounts were passed by this run: a claim must not read them. Each
    query reads an index in the order it answers in (no sort) from the first eligible row."""
    plan_id = store.ensure_plan(plan_name, "maildir", "ews")
    run_started = datetime.now(UTC) - timedelta(minutes=5)
    before, after = run_started - timedelta(days=1), run_started + timedelta(minutes=1)
    rows: list[dict[str, Any]] = []
    for n in range(4000):
        status = ("synced", "pending", "synced", "verified", "failed")[n % 5]
        passed = after if n % 2 else before
        rows.append({"key": f"u{n:05d}", "batch": f"B{n // 400:02d}", "status": status,
                     "last_pass_at": passed if status != "pending" else None,
                     "updated_at": passed, "passes": 0 if status == "pending" else 1})  # fmt: skip
    _accounts(store, plan_id, rows)
    if (
        store.backend == "postgresql"
    ):  # as autovacuum would; SQLite goes without (nothing runs ANALYZE)
        with store.session(write=True) as s:
            s.execute(text("ANALYZE accounts"))
    takeover, pending, synced, verified, failed = _plans(store, plan_id, run_started)
    if store.backend == "sqlite":
        assert (
            "USING INDEX ix_accounts_claim_status (plan_id=? AND scope=? AND status=?)" in pending
        )
        assert (
            "USING INDEX ix_accounts_claim_pass (plan_id=? AND scope=? AND status=? AND last_pass_at<?)"
            in synced
        )
        assert (
            "USING INDEX ix_accounts_claim_pass (plan_id=? AND scope=? AND status=? AND last_pass_at<?)"
            in verified
        )
        for plan in (takeover, pending, synced, verified, failed):
            assert "SEARCH" in plan and "TEMP B-TREE" not in plan, plan
    else:
        assert "Index Scan using ix_accounts_claim_status" in pending and "Sort" not in pending, (
            pending
        )
        for plan in (synced, verified):
            assert "Index Scan using ix_accounts_claim_pass" in plan and "Sort" not in plan, plan
            assert "last_pass_at <" in plan.split("Filter")[0], (
                plan
            )  # a bound of the range, not a filter
        for plan in (takeover, failed):
            assert "Seq Scan" not in plan, plan
    # a run of one batch (a cut-over wave's final delta) reads that batch's synced accounts
    # from its first due one, not every other batch's before
    _, pending, synced, verified, _ = _plans(
        store, plan_id, run_started, ClaimFilter(batches=["B07"])
    )
    for plan in (synced, verified):
        assert "ix_accounts_claim_batch_pass" in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    assert "ix_accounts_claim_status" in pending, pending


def test_a_run_of_some_batches_takes_them_one_after_the_other(store: Store, plan_name: str) -> None:
    plan_id = store.ensure_plan(plan_name, "maildir", "ews")
    run_started = datetime.now(UTC) - timedelta(minutes=5)
    rows: list[dict[str, Any]] = [
        {"key": f"{batch}-{n}", "batch": batch, "status": "synced", "passes": 1,
         "last_pass_at": run_started - timedelta(days=n + 1 + (5 if batch == "B2" else 0))}
        for batch in ("B1", "B2", "B3") for n in range(2)
    ]  # fmt: skip
    rows.append({"key": "B2-new", "batch": "B2"})
    _accounts(store, plan_id, rows)
    taken = list(_claim_all(store, plan_id, run_started, ClaimFilter(batches=["B3", "B1"])))
    assert taken == ["B1-1", "B1-0", "B3-1", "B3-0"]


def test_a_run_takes_each_account_once_in_the_order_it_is_due(store: Store, plan_name: str) -> None:
    """Expired leases first, then pending accounts by batch, then delta passes the longest
    waiting first, then failed accounts below max_attempts; nothing passed or failed since the
    run started, nothing exhausted, nothing under a live lease."""
    plan_id = store.ensure_plan(plan_name, "maildir", "ews")
    run_started = datetime.now(UTC) - timedelta(minutes=5)
    now = datetime.now(UTC)
    _accounts(store, plan_id, [
        {"key": "pending-b2", "batch": "B2"},
        {"key": "pending-b1", "batch": "B1"},
        {"key": "synced-old", "batch": "B1", "status": "synced", "passes": 1, "last_pass_at": run_started - timedelta(days=3)},
        {"key": "synced-older", "batch": "B2", "status": "synced", "passes": 1, "last_pass_at": run_started - timedelta(days=9)},
        {"key": "synced-this-run", "batch": "B0", "status": "synced", "passes": 1, "last_pass_at": run_started + timedelta(minutes=1)},
        {"key": "verified-old", "batch": "B0", "status": "verified", "passes": 1, "last_pass_at": run_started - timedelta(days=1)},
        {"key": "failed-retry", "batch": "B0", "status": "failed", "attempts": 1, "updated_at": run_started - timedelta(hours=1)},
        {"key": "failed-this-run", "batch": "B0", "status": "failed", "attempts": 1, "updated_at": run_started + timedelta(minutes=1)},
        {"key": "failed-exhausted", "batch": "B0", "status": "failed", "attempts": 3, "updated_at": run_started - timedelta(hours=1)},
        {"key": "running-dead", "batch": "B9", "status": "running", "passes": 0, "lease_owner": "gone", "lease_expires_at": now - timedelta(seconds=5)},
        {"key": "running-live", "batch": "B0", "status": "running", "passes": 0, "lease_owner": "alive", "lease_expires_at": now + timedelta(minutes=5)},
        {"key": "excluded", "batch": "B0", "scope": "excluded"},
    ])  # fmt: skip
    assert list(_claim_all(store, plan_id, run_started)) == [
        "running-dead", "pending-b1", "pending-b2", "synced-older", "synced-old", "verified-old", "failed-retry",
    ]  # fmt: skip
    # and a second look in the same run finds nothing: what it passed is done for this run
    assert list(_claim_all(store, plan_id, run_started)) == []


def test_pass_interval_keeps_a_run_off_accounts_another_host_has_just_passed(
    store: Store, plan_name: str
) -> None:
    """Three hosts started moments apart used to delta-pass what another had passed just before
    it started. With `[run] pass_interval`, a run leaves alone the accounts whose last pass
    ended less than that before it started; the others it passes as before."""
    plan_id = store.ensure_plan(plan_name, "maildir", "ews")
    run_started = datetime.now(UTC)
    _accounts(store, plan_id, [
        {"key": "passed-a-second-before", "status": "synced", "passes": 1, "last_pass_at": run_started - timedelta(seconds=1)},
        {"key": "passed-an-hour-before", "status": "synced", "passes": 1, "last_pass_at": run_started - timedelta(hours=1)},
        {"key": "verified-a-minute-before", "status": "verified", "passes": 1, "last_pass_at": run_started - timedelta(minutes=1)},
    ])  # fmt: skip
    assert list(_claim_all(store, plan_id, run_started, ClaimFilter(pass_interval=600))) == [
        "passed-an-hour-before"
    ]
    # without the interval, only a pass after the run started keeps an account out
    with store.session(write=True) as s:
        s.execute(update(A).where(A.c.plan_id == plan_id, A.c.key == "passed-an-hour-before")
                  .values(last_pass_at=run_started - timedelta(hours=1)))  # fmt: skip
    assert sorted(_claim_all(store, plan_id, run_started)) == [
        "passed-a-second-before",
        "passed-an-hour-before",
        "verified-a-minute-before",
    ]
    with store.session() as s:
        passes = dict(s.execute(select(A.c.key, A.c.passes).where(A.c.plan_id == plan_id)).all())  # type: ignore[arg-type]
    assert passes == {
        "passed-a-second-before": 2,
        "passed-an-hour-before": 3,
        "verified-a-minute-before": 2,
    }


@pytest.mark.parametrize("value, seconds", [("15m", 900.0), (30, 30.0), ("2h", 7200.0)])
def test_pass_interval_is_a_plan_key(value: object, seconds: float) -> None:
    from migrator.plan.loader import parse_plan

    body = '"' + value + '"' if isinstance(value, str) else str(value)
    plan = parse_plan(_PLAN + f"[run]\npass_interval = {body}\n")
    assert plan.run.pass_interval == seconds


def test_pass_interval_has_bounds() -> None:
    from migrator.model.errors import PlanError
    from migrator.plan.loader import parse_plan

    with pytest.raises(PlanError, match="pass_interval"):
        parse_plan(_PLAN + '[run]\npass_interval = "90d"\n')


_PLAN = """\
[plan]
name = "ife"
[directory]
url = "ldap://127.0.0.1:1"
base = "dc=example,dc=org"
[source]
kind = "maildir"
root = "/srv/vmail"
path = "{root}/{domain}/{local}/Maildir"
[target]
kind = "ews"
url = "https://127.0.0.1:1/EWS/Exchange.asmx"
username = "svc"
password_env = "X"
"""
