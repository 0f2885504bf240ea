"""record_discovery: idempotent upsert, vanish/reappear, scope events, progress never reset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text, update

from migrator.model.account import DiscoveredAccount, Scope
from migrator.model.errors import StateError, UsageError
from migrator.store import Store, open_store
from migrator.store.database.raw import Raw
from migrator.store.schema import accounts as A
from tests.fixtures.store import *  # noqa: F403


def person(n: int, batch: str = "sales", **changes: object) -> DiscoveredAccount:
    address = f"user{n:05d}@example.org"
    account = DiscoveredAccount(
        key=address,
        dn=f"uid=user{n:05d},ou={batch},dc=example,dc=org",
        scope=Scope.IN_SCOPE,
        address=address,
        target_address=f"user{n:05d}@example.com",
        uid=f"user{n:05d}",
        name=f"User Number {n}",
        batch=batch,
        aliases=[f"u{n}@example.org", f"alias{n}@example.org"],
        source_path=f"/var/vmail/example.org/user{n:05d}",
        attributes={"title": "Clerk", "city": "Zürich"},
    )
    return replace(account, **changes)  # type: ignore[arg-type]


def campaign() -> list[DiscoveredAccount]:
    return [
        person(1),
        person(2),
        person(3, batch="it"),
        person(4, scope=Scope.EXCLUDED, reason="filtered-out", detail="not in (ou=sales)"),
        person(
            5, scope=Scope.INVALID, reason="no-address", detail="entry has no mail", address=None
        ),
    ]


@pytest.fixture
def opened(store_url: str, plan_name: str) -> Iterator[tuple[Store, int]]:
    store = open_store(store_url)
    try:
        yield store, store.ensure_plan(plan_name, "maildir", "ews")
    finally:
        store.close()


def discover(store: Store, plan_id: int, accounts: list[DiscoveredAccount]):  # type: ignore[no-untyped-def]
    run_id = store.start_run(plan_id, "discover")
    summary = store.record_discovery(plan_id, run_id, accounts)
    store.finish_run(run_id, "done", summary.as_dict())
    return summary


def states(store: Store, plan_id: int) -> dict[str, str]:
    return {row.key: row.state for row in store.list_accounts(plan_id)}


def set_progress(store: Store, plan_id: int, key: str, **values: object) -> None:
    with store.session(write=True) as s:
        s.execute(update(A).where(A.c.plan_id == plan_id, A.c.key == key).values(**values))


def test_first_discovery_inserts_every_entry(opened: tuple[Store, int]) -> None:
    store, plan_id = opened
    summary = discover(store, plan_id, campaign())
    assert (summary.new, summary.updated, summary.unchanged, summary.vanished) == (5, 0, 0, 0)
    assert (summary.total_in_scope, summary.total_excluded, summary.total_invalid) == (3, 1, 1)

    rows = {row.key: row for row in store.list_accounts(plan_id)}
    assert [row.state for row in rows.values()] == [
        "pending", "pending", "pending", "excluded", "invalid",
    ]  # fmt: skip
    first = rows["user00001@example.org"]
    assert first.dn == "uid=user00001,ou=sales,dc=example,dc=org"
    assert first.target_address == "user00001@example.com"
    assert first.aliases == ["u1@example.org", "alias1@example.org"]
    assert first.attributes == {"title": "Clerk", "city": "Zürich"}
    assert first.source_path == "/var/vmail/example.org/user00001"
    assert (first.status, first.passes, first.attempts, first.lease_epoch) == ("pending", 0, 0, 0)
    assert first.discovered_at.tzinfo is UTC and first.discovered_at == first.last_seen_at
    invalid = rows["user00005@example.org"]
    assert (invalid.reason, invalid.detail, invalid.address) == (
        "no-address", "entry has no mail", None,
    )  # fmt: skip


def _row_versions(store: Store, plan_id: int) -> list[tuple[object, ...]]:
    """Something that changes whenever a row is rewritten: xmin on PostgreSQL, else a trigger."""
    with store.engine.connect() as conn:
        if store.backend == "postgresql":
            sql = "SELECT id, xmin::text FROM accounts WHERE plan_id = :p ORDER BY id"
        else:
            sql = "SELECT id, 0 FROM accounts WHERE plan_id = :p UNION ALL SELECT -1, n FROM write_count"
        return [tuple(row) for row in conn.execute(text(sql), {"p": plan_id})]


def test_rediscovery_without_changes_writes_no_account_rows(opened: tuple[Store, int]) -> None:
    store, plan_id = opened
    if store.backend == "sqlite":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE write_count (n INTEGER)")
            conn.exec_driver_sql("INSERT INTO write_count VALUES (0)")
            for op in ("INSERT", "UPDATE", "DELETE"):
                conn.exec_driver_sql(
                    f"CREATE TRIGGER count_{op.lower()} AFTER {op} ON accounts "
                    "BEGIN UPDATE write_count SET n = n + 1; END"
                )
    discover(store, plan_id, campaign())
    before = store.list_accounts(plan_id)
    versions = _row_versions(store, plan_id)
    events_before = len(store.list_events(plan_id))

    summary = store.record_discovery(plan_id, None, campaign())

    assert (summary.new, summary.updated, summary.unchanged, summary.vanished) == (0, 0, 5, 0)
    assert _row_versions(store, plan_id) == versions  # not one account row rewritten
    events = store.list_events(plan_id)
    assert len(events) == events_before + 1 and events[0]["kind"] == "discovery"
    assert events[0]["detail"]["unchanged"] == 5
    after = store.list_accounts(plan_id)
    # last_seen_at still moves: it follows the plan's last discovery
    assert [
        replace(a, last_seen_at=b.last_seen_at) for a, b in zip(after, before, strict=True)
    ] == before
    assert all(a.last_seen_at > b.last_seen_at for a, b in zip(after, before, strict=True))


def test_changed_entries_are_updated(opened: tuple[Store, int]) -> None:
    store, plan_id = opened
    discover(store, plan_id, campaign())
    changed = campaign()
    changed[0] = person(1, name="Renamed Person", batch="it", aliases=["new@example.org"])
    summary = discover(store, plan_id, changed)
    assert (summary.new, summary.updated, summary.unchanged) == (0, 1, 4)
    row = store.get_account(plan_id, "user00001@example.org")
    assert row is not None
    assert (row.name, row.batch, row.aliases) == ("Renamed Person", "it", ["new@example.org"])
    assert row.discovered_at < row.last_seen_at


def test_vanished_and_reappeared(opened: tuple[Store, int]) -> None:
    store, plan_id = opened
    discover(store, plan_id, campaign())
    first_seen = store.get_account(plan_id, "user00002@example.org")
    assert first_seen is not None

    summary = discover(store, plan_id, [a for a in campaign() if a.key != "user00002@example.org"])
    assert (summary.vanished, summary.unchanged, summary.total_in_scope) == (1, 4, 2)
    gone = store.get_account(plan_id, "user00002@example.org")
    assert gone is not None and gone.state == "vanished" and gone.vanished_at is not None
    assert gone.last_seen_at == first_seen.last_seen_at  # seen by the first discovery only
    assert [r.key for r in store.list_accounts(plan_id, state="vanished")] == [
        "user00002@example.org"
    ]
    events = store.list_events(plan_id, account_id=gone.id)
    assert [(e["kind"], e["from_state"], e["to_state"]) for e in events] == [
        ("vanished", "pending", "vanished")
    ]

    again = discover(store, plan_id, [a for a in campaign() if a.key != "user00002@example.org"])
    assert (again.vanished, again.unchanged) == (0, 4)  # vanishing is recorded once

    back = discover(store, plan_id, campaign())
    assert (back.new, back.updated, back.reappeared, back.unchanged) == (0, 1, 1, 4)
    row = store.get_account(plan_id, "user00002@example.org")
    assert row is not None and row.state == "pending" and row.vanished_at is None
    assert row.discovered_at == first_seen.discovered_at  # first discovery is kept
    kinds = [e["kind"] for e in store.list_events(plan_id, account_id=row.id)]
    assert kinds == ["reappeared", "vanished"]


def test_scope_changes_are_events(opened: tuple[Store, int]) -> None:
    store, plan_id = opened
    discover(store, plan_id, campaign())
    changed = campaign()
    changed[2] = person(3, batch="it", scope=Scope.EXCLUDED, reason="filtered-out")
    summary = discover(store, plan_id, changed)
    assert (summary.updated, summary.scope_changed) == (1, 1)
    row = store.get_account(plan_id, "user00003@example.org")
    assert row is not None and row.state == "excluded" and row.reason == "filtered-out"
    (event_row,) = store.list_events(plan_id, account_id=row.id)
    assert (event_row["kind"], event_row["from_state"], event_row["to_state"]) == (
        "scope_changed", "pending", "excluded",
    )  # fmt: skip
    assert event_row["detail"] == {
        "from_scope": "in_scope", "to_scope": "excluded", "reason": "filtered-out",
    }  # fmt: skip


def test_rediscovery_never_resets_progress(opened: tuple[Store, int]) -> None:
    store, plan_id = opened
    discover(store, plan_id, campaign())
    finished = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    set_progress(
        store, plan_id, "user00001@example.org",
        status="synced", passes=2, attempts=3, messages_done=1234, bytes_done=98765,
        first_pass_at=finished, last_pass_at=finished, lease_epoch=7,
    )  # fmt: skip
    set_progress(store, plan_id, "user00002@example.org", status="failed",
                 last_error="EWS said no", last_error_reason="auth")  # fmt: skip

    def kept(row_key: str) -> tuple[object, ...]:
        row = store.get_account(plan_id, row_key)
        assert row is not None
        return (row.status, row.passes, row.attempts, row.messages_done, row.bytes_done,
                row.first_pass_at, row.last_pass_at, row.lease_epoch, row.last_error)  # fmt: skip

    synced = ("synced", 2, 3, 1234, 98765, finished, finished, 7, None)
    failed = ("failed", 0, 0, 0, 0, None, None, 0, "EWS said no")
    discover(store, plan_id, campaign())  # unchanged
    assert kept("user00001@example.org") == synced
    changed = campaign()
    changed[0] = person(1, name="Changed", source_path="/srv/mail/user1")
    changed[1] = person(2, scope=Scope.EXCLUDED, reason="filtered-out")
    discover(store, plan_id, changed)  # changed fields, and a scope change
    assert kept("user00001@example.org") == synced
    assert kept("user00002@example.org") == failed
    assert states(store, plan_id)["user00002@example.org"] == "excluded"
    discover(store, plan_id, campaign()[2:])  # both vanish
    assert states(store, plan_id)["user00001@example.org"] == "vanished"
    discover(store, plan_id, campaign())  # and come back
    assert kept("user00001@example.org") == synced
    assert kept("user00002@example.org") == failed
    assert states(store, plan_id)["user00001@example.org"] == "synced"
    assert states(store, plan_id)["user00002@example.org"] == "failed"


def test_duplicate_keys_are_counted_not_stored_twice(opened: tuple[Store, int]) -> None:
    store, plan_id = opened
    summary = discover(store, plan_id, [*campaign(), person(1, name="Twin")])
    assert (summary.new, summary.duplicates, summary.duplicate_keys) == (
        5, 1, ["user00001@example.org"],
    )  # fmt: skip
    assert len(store.list_accounts(plan_id)) == 5


def test_list_accounts_filters(opened: tuple[Store, int]) -> None:
    store, plan_id = opened
    discover(store, plan_id, campaign())
    set_progress(store, plan_id, "user00002@example.org", status="verified")
    keys = lambda rows: [r.key for r in rows]  # noqa: E731
    assert keys(store.list_accounts(plan_id, state="pending")) == [
        "user00001@example.org", "user00003@example.org",
    ]  # fmt: skip
    assert keys(store.list_accounts(plan_id, state="verified")) == ["user00002@example.org"]
    assert keys(store.list_accounts(plan_id, state="excluded")) == ["user00004@example.org"]
    assert keys(store.list_accounts(plan_id, state="invalid")) == ["user00005@example.org"]
    assert keys(store.list_accounts(plan_id, batch="it")) == ["user00003@example.org"]
    assert keys(store.list_accounts(plan_id, state="pending", batch="sales")) == [
        "user00001@example.org"
    ]
    assert store.list_accounts(plan_id, state="synced") == []
    with pytest.raises(UsageError) as caught:
        store.list_accounts(plan_id, state="done")
    assert "vanished" in (caught.value.hint or "")


def test_plans_are_kept_apart(opened: tuple[Store, int], plan_name: str) -> None:
    store, plan_id = opened
    other = store.ensure_plan(plan_name + "-other", "mbox", "imap")
    discover(store, plan_id, campaign())
    summary = discover(store, other, campaign()[:1])
    assert (summary.new, summary.vanished) == (1, 0)
    assert len(store.list_accounts(plan_id)) == 5 and len(store.list_accounts(other)) == 1


def test_large_discovery_is_set_wise(
    opened: tuple[Store, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 accounts take a bounded number of statements, not one or more per account."""
    store, plan_id = opened
    accounts = [person(n, batch=f"ou{n % 7}") for n in range(5000)]
    count = {"n": 0}

    def spy(*_args: object) -> None:
        count["n"] += 1

    for name in ("rows", "execute_many", "insert_many"):  # the DBAPI-level bulk paths
        original = getattr(Raw, name)

        def counted(self: Raw, *args: object, _original: Any = original) -> Any:
            count["n"] += 1
            return _original(self, *args)

        monkeypatch.setattr(Raw, name, counted)
    event.listen(store.engine, "before_cursor_execute", spy)
    try:
        first = store.record_discovery(plan_id, None, accounts)
        accounts[10] = person(10, batch="ou3", name="Moved")
        del accounts[20]
        second = store.record_discovery(plan_id, None, accounts)
    finally:
        event.remove(store.engine, "before_cursor_execute", spy)
    assert (first.new, second.updated, second.vanished, second.unchanged) == (5000, 1, 1, 4998)
    assert count["n"] < 40, f"{count['n']} statements for two discoveries of 5,000 accounts"
    assert len(store.list_accounts(plan_id)) == 5000
    moved = store.get_account(plan_id, person(10).key)
    assert moved is not None and (moved.name, moved.batch) == ("Moved", "ou3")


def test_unknown_plan_is_a_state_error(opened: tuple[Store, int]) -> None:
    store, plan_id = opened
    with pytest.raises(StateError, match=f"plan id {plan_id + 1000} is not in the state database"):
        store.record_discovery(plan_id + 1000, None, campaign())
