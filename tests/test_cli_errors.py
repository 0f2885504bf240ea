"""The CLI's error handling as an operator meets it: hints that fit the failure, no "internal
error" for an ordinary situation (a closed pipe, a missing folder, a declined prompt)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from click.testing import CliRunner
from sqlalchemy import create_engine

from migrator.cli.main import cli
from migrator.model.account import DiscoveredAccount, Scope
from migrator.model.errors import StateError
from migrator.store import Store, open_store
from tests.fixtures.reports import synthetic_state
from tests.fixtures.store import PG_HOST, PG_PORT, PG_USER, postgres_database


def words(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def _one_account(url: str) -> None:
    store = open_store(url)
    try:
        plan_id = store.ensure_plan("synthetic", "maildir", "ews")
        store.record_discovery(plan_id, None, [DiscoveredAccount(
            key="ana@ife.org.mx", dn="uid=ana,ou=people,dc=ife,dc=org,dc=mx", scope=Scope.IN_SCOPE,
            address="ana@ife.org.mx", target_address="ana@ife.org.mx", uid="ana", name="Ana", batch="Office001")])
    finally:
        store.close()


def test_a_read_only_postgresql_state_says_so_and_where_to_write(tmp_path: Path) -> None:
    """A standby (or default_transaction_read_only) refused the write: the hint used to be
    "check the database server and disk space", or the error was an internal one."""
    plan = synthetic_state(tmp_path, 1).plan_path
    with postgres_database("read_only") as url:
        _one_account(url)
        name = url.rsplit("/", 1)[-1]
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        result = CliRunner().invoke(cli, ["reset", "--plan", str(plan), "--state", url, "--account", "ana@ife.org.mx", "--yes"])
    assert result.exit_code == 2, result.output
    said = words(result.output)
    assert "is read-only" in said and "internal error" not in said
    assert "standby" in said and "disk space" not in said


def test_a_read_only_sqlite_state_says_so(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _one_account(f"sqlite:///{path}")
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    store = Store(engine, f"sqlite:///{path}")
    try:
        try:
            store.ensure_plan("another", "maildir", "ews")
        except StateError as exc:
            assert "is read-only" in exc.message
            assert "permissions" in (exc.hint or "") and "disk space" not in (exc.hint or "")
        else:
            raise AssertionError("a write to a read-only database succeeded")
    finally:
        store.close()
