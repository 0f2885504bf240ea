"""Opening the state store: schema created by migrations on both backends, errors, masking."""

from __future__ import annotations

import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text, update

from migrator.model.errors import StateError
from migrator.store import open_store
from migrator.store.database.connect import MIGRATIONS_DIR
from migrator.store.owners import pid_namespace
from migrator.store.schema import metadata, runs
from tests.fixtures.store import *  # noqa: F403

TABLES = {"plans", "runs", "accounts", "folders", "messages", "events", "workers"}
MIGRATIONS = MIGRATIONS_DIR / "versions"
VIEWS = {"v_account_state", "v_progress_by_batch", "v_failures_by_reason", "v_skipped_by_reason"}


def test_migrations_create_every_table_and_view(store_url: str) -> None:
    store = open_store(store_url)
    try:
        found = inspect(store.engine)
        assert set(found.get_table_names()) >= TABLES
        assert set(found.get_view_names()) >= VIEWS
        with store.engine.connect() as conn:
            newest = sorted(p.name for p in MIGRATIONS.glob("v*.py"))[-1][1:5]
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == newest
            for view in VIEWS:  # every view is valid SQL on this backend
                conn.execute(text(f"SELECT * FROM {view}")).fetchall()
    finally:
        store.close()


def test_models_match_what_the_migrations_built(store_url: str) -> None:
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        store.close()


def test_opening_twice_keeps_data_and_schema(store_url: str, plan_name: str) -> None:
    first = open_store(store_url)
    plan_id = first.ensure_plan(plan_name, "maildir", "ews")
    first.close()
    second = open_store(store_url)
    try:
        assert second.ensure_plan(plan_name, "maildir", "ews") == plan_id
        assert second.plan_id(plan_name) == plan_id
        with second.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        second.close()


def test_plan_kinds_follow_the_plan_file(store: object, plan_name: str) -> None:
    from migrator.store import Store

    assert isinstance(store, Store)
    plan_id = store.ensure_plan(plan_name, "maildir", "ews")
    assert store.ensure_plan(plan_name, "imap", "imap") == plan_id
    with store.engine.connect() as conn:
        kinds = conn.execute(
            text("SELECT source_kind, target_kind FROM plans WHERE id = :i"), {"i": plan_id}
        ).one()
    assert tuple(kinds) == ("imap", "imap")


def test_runs_record_host_pid_times_and_summary(store_url: str, plan_name: str) -> None:
    import os
    import socket

    store = open_store(store_url)
    try:
        plan_id = store.ensure_plan(plan_name, "maildir", "ews")
        before = datetime.now(UTC)
        run_id = store.start_run(plan_id, "discover")
        store.finish_run(run_id, "done", {"in_scope": 3, "batches": {"sales": 3}})
        with store.session() as s:
            run = s.execute(select(runs).where(runs.c.id == run_id)).one_or_none()
            assert run is not None
            assert (run.host, run.pid, run.command, run.status) == (
                socket.gethostname(), os.getpid(), "discover", "done",
            )  # fmt: skip
            assert run.summary == {"in_scope": 3, "batches": {"sales": 3}}
            # aware UTC on both backends, and in the right order
            assert run.started_at.tzinfo is UTC and run.finished_at is not None
            assert before <= run.started_at <= run.finished_at <= datetime.now(UTC)
        with pytest.raises(StateError, match="run 999999 is not in the state database"):
            store.finish_run(999_999, "done", {})
        # a run whose process died (SIGKILL) is closed as interrupted when the next one starts:
        # at once when the process ran in this PID namespace, else once its heartbeat lapsed
        gone = subprocess.Popen(["true"])
        gone.wait()
        killed = store.start_run(plan_id, "run", lease_seconds=600)
        elsewhere = store.start_run(plan_id, "run", lease_seconds=600)  # another host, alive
        lapsed = store.start_run(plan_id, "run", lease_seconds=600)  # another host, silent
        with store.session(write=True) as s:
            s.execute(
                update(runs)
                .where(runs.c.id == killed)
                .values(process=f"{pid_namespace()}/{gone.pid}/1")
            )
            s.execute(
                update(runs)
                .where(runs.c.id == elsewhere)
                .values(process="other-boot/4026531836/1/1")
            )
            s.execute(
                update(runs)
                .where(runs.c.id == lapsed)
                .values(alive_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        store.start_run(plan_id, "verify")
        with store.session() as s:
            found = s.execute(
                select(runs.c.id, runs.c.status, runs.c.finished_at).where(
                    runs.c.id.in_([killed, elsewhere, lapsed])
                )
            ).all()
        statuses = {run_id: (status, finished is not None) for run_id, status, finished in found}
        assert statuses == {
            killed: ("interrupted", True),
            elsewhere: ("running", False),
            lapsed: ("interrupted", True),
        }
    finally:
        store.close()


def test_session_commits_on_success_and_rolls_back_on_error(store_url: str, plan_name: str) -> None:
    store = open_store(store_url)
    try:
        plan_id = store.ensure_plan(plan_name, "maildir", "ews")
        with pytest.raises(RuntimeError), store.session(write=True) as s:
            s.execute(
                insert(runs).values(
                    plan_id=plan_id, command="run", host="h", pid=1, status="running"
                )
            )
            raise RuntimeError("boom")
        with store.session(write=True) as s:
            s.execute(
                insert(runs).values(
                    plan_id=plan_id, command="verify", host="h", pid=1, status="running"
                )
            )
        with store.engine.connect() as conn:
            commands = (
                conn.execute(text("SELECT command FROM runs WHERE plan_id = :p"), {"p": plan_id})
                .scalars()
                .all()
            )
        assert commands == ["verify"]
    finally:
        store.close()


def test_naive_timestamps_are_refused(store_url: str, plan_name: str) -> None:
    store = open_store(store_url)
    try:
        plan_id = store.ensure_plan(plan_name, "maildir", "ews")
        with pytest.raises(Exception, match="naive datetime"), store.session(write=True) as s:
            s.execute(
                insert(runs).values(
                    plan_id=plan_id, command="x", host="h", pid=1, started_at=datetime.now()
                )
            )
    finally:
        store.close()


def test_default_url_is_a_sqlite_file_under_state_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store()
    try:
        assert store.backend == "sqlite"
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        store.close()
    assert (tmp_path / "state" / "migrator.db").is_file()


def test_postgresql_urls_are_rewritten_to_psycopg(postgres_module_url: str) -> None:
    assert postgres_module_url.startswith("postgresql://")
    store = open_store(postgres_module_url)
    try:
        assert store.url.startswith("postgresql+psycopg://")
        with store.engine.connect() as conn:  # sessions read timestamps in UTC
            assert conn.exec_driver_sql("SHOW timezone").scalar() == "UTC"
    finally:
        store.close()


@pytest.mark.parametrize(
    "url, words",
    [
        ("not a url at all", "is not valid"),
        ("mysql://admin:S3cretPw@db.example/state", "only SQLite and PostgreSQL"),
        ("postgresql+psycopg2://admin:S3cretPw@db.example/state", "psycopg 3"),
    ],
)
def test_bad_urls_give_a_state_error(url: str, words: str) -> None:
    with pytest.raises(StateError) as caught:
        open_store(url)
    assert words in str(caught.value)
    assert caught.value.hint
    assert "S3cretPw" not in f"{caught.value} {caught.value.hint}"


def test_unreachable_postgresql_masks_the_password() -> None:
    # port 1 on loopback: connection refused at once
    with pytest.raises(StateError) as caught:
        open_store("postgresql://migrator:Tr0ub4dor@127.0.0.1:1/state")
    message = f"{caught.value} {caught.value.hint}"
    assert "Tr0ub4dor" not in message
    assert "migrator:***@127.0.0.1:1/state" in message
    assert "PostgreSQL is running on 127.0.0.1:1" in (caught.value.hint or "")


def test_missing_postgresql_database_names_it(postgres_module_url: str) -> None:
    base = postgres_module_url.rsplit("/", 1)[0].replace("postgres@", "postgres:Zebra99@")
    with pytest.raises(StateError) as caught:
        open_store(f"{base}/no_such_db_here")
    assert "no_such_db_here" in str(caught.value)
    assert "createdb" in (caught.value.hint or "")
    assert "Zebra99" not in f"{caught.value} {caught.value.hint}"


def test_sqlite_path_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError) as caught:
        open_store(f"sqlite:///{blocker / 'state' / 'migrator.db'}")
    assert "cannot create directory" in str(caught.value)
    assert caught.value.hint


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "migrator.db"
    bogus.write_bytes(b"this is certainly not SQLite" * 200)
    with pytest.raises(StateError) as caught:
        open_store(f"sqlite:///{bogus}")
    assert "not a database" in str(caught.value)
    assert str(bogus) in str(caught.value)


def test_database_from_a_newer_migrator_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "migrator.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StateError) as caught:
        open_store(f"sqlite:///{path}")
    assert "newer migrator" in (caught.value.hint or "")


def test_sqlite_writers_wait_for_each_other(tmp_path: Path) -> None:
    """A second process-like writer waits for the lock (busy timeout) instead of failing."""
    import threading

    url = f"sqlite:///{tmp_path / 'migrator.db'}"
    first, second = open_store(url), open_store(url)
    try:
        plan_id = first.ensure_plan("p", "maildir", "ews")
        outcome: list[object] = []

        def write() -> None:
            try:
                outcome.append(second.add_event(plan_id, "from-second"))
            except Exception as exc:  # reported below
                outcome.append(exc)

        with first.session(write=True) as s:
            s.execute(text("INSERT INTO runs (plan_id, command, host, pid, started_at, status) "
                           "VALUES (:p, 'run', 'h', 1, '2026-01-01 00:00:00.000000', 'running')"),
                      {"p": plan_id})  # fmt: skip
            waiting = threading.Thread(target=write)
            waiting.start()
            waiting.join(timeout=0.5)
            assert waiting.is_alive() and outcome == []  # blocked on the lock, not failed
        waiting.join(timeout=20)
        assert len(outcome) == 1 and isinstance(outcome[0], int), outcome
    finally:
        first.close()
        second.close()


def test_fixture_fails_clearly_without_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures import store as fixtures

    monkeypatch.setattr(fixtures, "PG_PORT", 1)
    unreachable = "PostgreSQL is not reachable on 127.0.0.1:1"
    with pytest.raises(pytest.fail.Exception, match=unreachable), fixtures.postgres_database("x"):
        pass


def test_sqlite_page_caches_stay_bounded_with_many_connections(tmp_path: Path) -> None:
    """A run holds a connection per worker. Each has a page cache of its own, which fills as
    the database grows: at 32 MB each, 9 connections came to 300 MB of RSS (issue 19). One
    connection keeps the big cache (bulk writes take turns); the others get 8 MB."""
    import threading

    from migrator.store.database.connect import CACHE_KIB, EXTRA_CACHE_KIB

    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    sizes: list[int] = []
    inside = threading.Barrier(9)
    lock = threading.Lock()

    def hold() -> None:
        with store.session() as s:
            size = int(s.execute(text("PRAGMA cache_size")).scalar_one())
            with lock:
                sizes.append(size)
            inside.wait(timeout=30)  # all nine hold a connection at once

    threads = [threading.Thread(target=hold) for _ in range(9)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        store.close()
    # the big cache went to the first connection the store opened (that may be one of these)
    assert len(sizes) == 9 and sizes.count(-CACHE_KIB) <= 1, sizes
    assert sizes.count(-EXTRA_CACHE_KIB) >= 8, sizes
    assert sum(-s for s in sizes) <= CACHE_KIB + 8 * EXTRA_CACHE_KIB
