"""Counts and SQL views answer the operator's questions with the right numbers on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, text, update

from migrator.model.account import DiscoveredAccount, Scope
from migrator.store import Store, open_store
from migrator.store.schema import accounts as A
from migrator.store.schema import folders as F
from migrator.store.schema import messages as M
from tests.fixtures.store import *  # noqa: F403


def entry(n: int, batch: str | None, scope: Scope = Scope.IN_SCOPE, reason: str | None = None):  # type: ignore[no-untyped-def]
    address = f"p{n:03d}@example.org"
    return DiscoveredAccount(
        key=address, dn=f"uid=p{n:03d},dc=example,dc=org", scope=scope, reason=reason,
        address=address, batch=batch,
    )  # fmt: skip


def directory() -> list[DiscoveredAccount]:
    """sales: 4 in scope, it: 3 in scope, none: 1 in scope; plus 3 excluded, 2 invalid."""
    return [
        *(entry(n, "sales") for n in range(4)),
        *(entry(n, "it") for n in range(4, 7)),
        entry(7, None),
        entry(8, "sales", Scope.EXCLUDED, "filtered-out"),
        entry(9, "it", Scope.EXCLUDED, "filtered-out"),
        entry(10, "it", Scope.EXCLUDED, "disabled"),
        entry(11, "sales", Scope.INVALID, "no-address"),
        entry(12, "sales", Scope.INVALID, "bad-target"),
    ]


@pytest.fixture
def campaign(store_url: str, plan_name: str) -> Iterator[tuple[Store, int]]:
    store = open_store(store_url)
    try:
        plan_id = store.ensure_plan(plan_name, "maildir", "ews")
        entries = directory()
        entries.append(entry(13, "it"))
        store.record_discovery(plan_id, None, entries)
        store.record_discovery(plan_id, None, directory())  # p013 vanishes
        progress: dict[str, dict[str, Any]] = {
            "p000@example.org": {"status": "synced", "passes": 1},
            "p001@example.org": {"status": "verified", "passes": 2},
            "p002@example.org": {"status": "failed", "last_error_reason": "auth"},
            "p004@example.org": {"status": "failed", "last_error_reason": "auth"},
            "p005@example.org": {"status": "failed", "last_error_reason": None},
            "p006@example.org": {"status": "running"},
        }
        with store.session(write=True) as s:
            for key, values in progress.items():
                s.execute(update(A).where(A.c.plan_id == plan_id, A.c.key == key).values(**values))
        yield store, plan_id
    finally:
        store.close()


def query(store: Store, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params)]


def test_discovery_counts(campaign: tuple[Store, int]) -> None:
    store, plan_id = campaign
    counts = store.discovery_counts(plan_id)
    assert counts["in_scope"] == 8
    assert counts["excluded"] == {"filtered-out": 2, "disabled": 1}
    assert counts["invalid"] == {"no-address": 1, "bad-target": 1}
    assert counts["vanished"] == 1
    assert counts["batches"] == {"sales": 4, "it": 3, "": 1}
    assert counts["statuses"] == {
        "pending": 2, "synced": 1, "verified": 1, "failed": 3, "running": 1,
    }  # fmt: skip
    assert counts["total"] == 14


def test_progress_by_batch_view_and_method(campaign: tuple[Store, int]) -> None:
    store, plan_id = campaign
    rows = query(
        store,
        "SELECT batch, total, migrated, verified, failed, running, pending "
        "FROM v_progress_by_batch WHERE plan_id = :p ORDER BY batch",
        p=plan_id,
    )
    expected = {
        "it": (3, 0, 0, 2, 1, 0),
        "sales": (4, 2, 1, 1, 0, 1),
        None: (1, 0, 0, 0, 0, 1),
    }
    assert {row[0]: tuple(int(v) for v in row[1:]) for row in rows} == expected
    method = {r["batch"]: r for r in store.progress_by_batch(plan_id)}
    assert {b: (r["total"], r["migrated"], r["failed"], r["pending"]) for b, r in method.items()} == {
        "it": (3, 0, 2, 0), "sales": (4, 2, 1, 1), None: (1, 0, 0, 1),
    }  # fmt: skip


def test_account_state_view(campaign: tuple[Store, int]) -> None:
    store, plan_id = campaign
    rows = dict(
        query(store, "SELECT key, state FROM v_account_state WHERE plan_id = :p", p=plan_id)
    )
    assert rows["p000@example.org"] == "synced"
    assert rows["p003@example.org"] == "pending"
    assert rows["p008@example.org"] == "excluded"
    assert rows["p011@example.org"] == "invalid"
    assert rows["p013@example.org"] == "vanished"
    by_state = query(
        store,
        "SELECT state, count(*) FROM v_account_state WHERE plan_id = :p GROUP BY state",
        p=plan_id,
    )
    listed = {state: len(store.list_accounts(plan_id, state=state)) for state, _ in by_state}
    assert {state: int(n) for state, n in by_state} == listed


def test_failures_and_skipped_messages_by_reason(campaign: tuple[Store, int]) -> None:
    store, plan_id = campaign
    accounts = {row.key: row.id for row in store.list_accounts(plan_id)}
    with store.session(write=True) as s:
        folders = {}
        for key in ("p000@example.org", "p001@example.org"):
            folder_id = s.execute(
                insert(F)
                .values(account_id=accounts[key], native="INBOX", display="INBOX")
                .returning(F.c.id)
            ).scalar_one()
            folders[key] = folder_id
        ledger = [
            ("p000@example.org", "m1", "done", None),
            ("p000@example.org", "m2", "skipped", "too-large"),
            ("p000@example.org", "m3", "skipped", "unreadable"),
            ("p001@example.org", "m1", "skipped", "too-large"),
            ("p001@example.org", "m2", "failed", "rejected"),
            ("p001@example.org", "m3", "inflight", None),
        ]
        for key, source_key, state, reason in ledger:
            s.execute(
                insert(M).values(
                    folder_id=folders[key],
                    account_id=accounts[key],
                    source_key=source_key,
                    state=state,
                    reason=reason,
                    size=1000,
                )  # fmt: skip
            )
    failures = query(
        store,
        "SELECT level, reason, accounts, items FROM v_failures_by_reason "
        "WHERE plan_id = :p ORDER BY level, reason",
        p=plan_id,
    )
    assert [(a, b, int(c), int(d)) for a, b, c, d in failures] == [
        ("account", "auth", 2, 2),
        ("account", "error", 1, 1),
        ("message", "rejected", 1, 1),
    ]
    skipped = query(
        store,
        "SELECT reason, accounts, messages FROM v_skipped_by_reason "
        "WHERE plan_id = :p ORDER BY reason",
        p=plan_id,
    )
    assert [(a, int(b), int(c)) for a, b, c in skipped] == [
        ("too-large", 2, 2),
        ("unreadable", 1, 1),
    ]


def test_events_of_one_account(campaign: tuple[Store, int]) -> None:
    store, plan_id = campaign
    account = store.get_account(plan_id, "p000@example.org")
    assert account is not None
    run_id = store.start_run(plan_id, "run")
    store.add_event(
        plan_id, "claimed", account_id=account.id, run_id=run_id, worker="host:1",
        from_state="pending", to_state="running", detail={"epoch": 1},
    )  # fmt: skip
    store.add_event(
        plan_id, "pass_done", account_id=account.id, run_id=run_id, worker="host:1",
        from_state="running", to_state="synced", detail={"messages": 3},
    )  # fmt: skip
    events = store.list_events(plan_id, account_id=account.id)
    assert [(e["kind"], e["from_state"], e["to_state"], e["worker"]) for e in events] == [
        ("pass_done", "running", "synced", "host:1"),
        ("claimed", "pending", "running", "host:1"),
    ]
    assert events[0]["detail"] == {"messages": 3} and events[0]["run_id"] == run_id
    history = query(
        store,
        "SELECT e.kind FROM events e JOIN accounts a ON a.id = e.account_id "
        "WHERE a.plan_id = :p AND a.address = :addr ORDER BY e.at, e.id",
        p=plan_id,
        addr="p000@example.org",
    )
    assert [k for (k,) in history] == ["claimed", "pass_done"]
