"""Store.connection(): the bare-connection transactions of the per-account path (issue 19).
Committed when the block ends, rolled back when it raises, on both backends; on a SQLite file
every write goes through one connection kept open, whose page cache no other writer empties."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from migrator.store import Store, open_store
from migrator.store.schema import plans as P
from tests.fixtures.store import *  # noqa: F403


def _kind(store: Store, plan_id: int) -> str:
    with store.connection() as conn:
        return str(conn.execute(select(P.c.source_kind).where(P.c.id == plan_id)).scalar_one())


def test_a_block_commits_and_one_that_raises_rolls_back(store: Store, plan_name: str) -> None:
    plan_id = store.ensure_plan(plan_name, "maildir", "ews")
    with store.connection(write=True) as conn:
        conn.execute(update(P).where(P.c.id == plan_id).values(source_kind="imap"))
    assert _kind(store, plan_id) == "imap"
    with pytest.raises(RuntimeError), store.connection(write=True, durable=True) as conn:
        conn.execute(update(P).where(P.c.id == plan_id).values(source_kind="mbox"))
        raise RuntimeError("half-way")
    assert _kind(store, plan_id) == "imap"
    # the store goes on writing after the failure
    with store.connection(write=True) as conn:
        conn.execute(update(P).where(P.c.id == plan_id).values(source_kind="maildir"))
    assert _kind(store, plan_id) == "maildir"


def test_sqlite_writes_go_through_one_kept_connection(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        plan_id = store.ensure_plan("p", "maildir", "ews")
        seen: list[int] = []
        lock = threading.Lock()

        def write(n: int) -> None:
            for _ in range(n):
                with store.connection(write=True, durable=n % 2 == 0) as conn:
                    with lock:
                        seen.append(id(conn.connection.driver_connection))
                    conn.execute(
                        update(P)
                        .where(P.c.id == plan_id)
                        .values(updated_at=func.current_timestamp())
                    )

        threads = [threading.Thread(target=write, args=(n,)) for n in (3, 4, 5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == 12 and len(set(seen)) == 1
        # a failed transaction drops it: the next write opens another, and it is kept in turn
        with pytest.raises(RuntimeError), store.connection(write=True):
            raise RuntimeError("half-way")
        after = []
        for _ in range(2):
            with store.connection(write=True) as conn:
                after.append(id(conn.connection.driver_connection))
        assert after[0] == after[1]
    finally:
        store.close()
