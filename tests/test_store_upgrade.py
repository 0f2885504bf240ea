"""Who may change the state database's schema (docs/state.md, "Schema upgrades"), on both backends.

Read commands never upgrade: on an older schema they stop and say what to run. `migrator
upgrade` upgrades, and refuses while workers still send heartbeats. On PostgreSQL no other
command upgrades (a shared database must not change under older hosts); on SQLite the write
commands do. A database of a newer migrator stops every command. Upgrading from the previous
revision builds the same schema as a fresh database (the same SQL text, byte for byte), and
keeps the data.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, inspect, text

from migrator.cli.main import cli
from migrator.cli.reports import register
from migrator.samples.directory import DEFAULT_BASE, DEFAULT_FILTER, generate_people, write_ldif
from migrator.store.database.connect import MIGRATIONS_DIR, normalize_url
from migrator.store.database.revision import known_revisions, newest_revision
from migrator.store.schema import metadata
from migrator.store.types import utcnow
from tests.fixtures.store import postgres_database

HEAD = newest_revision()
PREVIOUS = known_revisions()[-2]

PLAN = """\
[plan]
name = "ife"
[directory]
url = "ldif:{ldif}"
base = "ou=people,{base}"
filter = "{filter}"
[source]
kind = "maildir"
root = "{root}"
[target]
kind = "ews"
url = "https://exchange.example.org/EWS/Exchange.asmx"
"""


def invoke(*args: str) -> Result:
    register(cli)
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def said(result: Result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with postgres_database("upgrade") as pg:
        yield pg


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    people = generate_people(12, in_scope=4, offices=2, seed=3, hostile=False)
    ldif = write_ldif(tmp_path / "people.ldif", DEFAULT_BASE, people)
    path = tmp_path / "plan.toml"
    path.write_text(
        PLAN.format(ldif=ldif, base=DEFAULT_BASE, filter=DEFAULT_FILTER, root=tmp_path / "vmail")
    )
    return path


def engine_of(url: str) -> Engine:
    return create_engine(normalize_url(url))


def build_at(url: str, revision: str) -> None:
    """A database as an older migrator left it: migrations up to `revision`, and a plan."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = engine_of(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.execute(
                text("INSERT INTO plans (name, source_kind, target_kind, created_at, updated_at) "
                     "VALUES ('ife', 'maildir', 'ews', :now, :now)"),
                {"now": utcnow()},
            )  # fmt: skip
    finally:
        engine.dispose()


def revision_of(url: str) -> list[str]:
    engine = engine_of(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return []
            return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


def execute(url: str, sql: str, **params: object) -> None:
    engine = engine_of(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


READ_COMMANDS = [
    ("status",),
    ("accounts",),
    ("events",),
    ("workers",),
    ("routing",),
    ("show", "ana@ife.org.mx"),
    ("report", "--format", "json", "--output", "/dev/null"),
]


def test_read_commands_never_upgrade_an_older_schema(url: str, plan: Path) -> None:
    build_at(url, PREVIOUS)
    for args in READ_COMMANDS:
        result = invoke(*args, "--plan", str(plan), "--state", url)
        assert result.exit_code == 2, (args, result.output)
        assert f"has schema {PREVIOUS}; this migrator needs {HEAD}" in said(result), args
        assert f"migrator upgrade --state {url}" in said(result), args
    assert revision_of(url) == [PREVIOUS]
    # the explicit command upgrades, once
    result = invoke("upgrade", "--state", url)
    assert result.exit_code == 0, result.output
    assert f"upgraded from schema {PREVIOUS} to {HEAD}" in said(result)
    assert revision_of(url) == [HEAD]
    result = invoke("upgrade", "--plan", str(plan), "--state", url, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "state": json.loads(result.stdout)["state"],
        "before": HEAD,
        "after": HEAD,
        "changed": False,
    }
    result = invoke("status", "--plan", str(plan), "--state", url)
    assert result.exit_code == 0, result.output


def test_only_upgrade_changes_an_older_postgresql_schema(plan: Path) -> None:
    with postgres_database("shared") as url:
        build_at(url, PREVIOUS)
        for args in (("discover",), ("run",), ("verify",), ("retry", "--failed")):
            result = invoke(*args, "--plan", str(plan), "--state", url)
            assert result.exit_code == 2, (args, result.output)
            assert "migrator upgrade" in said(result) and "every host" in said(result), args
        assert revision_of(url) == [PREVIOUS]


def test_write_commands_upgrade_an_older_sqlite_file(tmp_path: Path, plan: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    build_at(url, PREVIOUS)
    result = invoke("discover", "--plan", str(plan), "--state", url, "--json")
    assert result.exit_code == 0, result.output
    assert f"upgraded state database {url} from schema {PREVIOUS} to {HEAD}" in " ".join(
        result.stderr.split()
    )
    assert json.loads(result.stdout)["in_scope"] == 4
    assert revision_of(url) == [HEAD]


def test_no_upgrade_while_workers_still_send_heartbeats(url: str, plan: Path) -> None:
    build_at(url, PREVIOUS)
    execute(
        url,
        "INSERT INTO workers (name, host, pid, started_at, heartbeat_at) VALUES ('otherhost:4242', 'otherhost', 4242, :at, :at)",
        at=utcnow() - timedelta(seconds=30),
    )
    # upgrade, and on SQLite the write commands that would upgrade on their own
    writers = [("discover", "--plan", str(plan))] if url.startswith("sqlite") else []
    for args in (("upgrade",), *writers):
        result = invoke(*args, "--state", url)
        assert result.exit_code == 2, (args, result.output)
        assert "1 migrator process(es) still work on it: otherhost:4242" in said(result), args
    assert revision_of(url) == [PREVIOUS]
    # a worker whose heartbeat stopped long ago is gone (its host died): no longer in the way
    execute(url, "UPDATE workers SET heartbeat_at = :at", at=utcnow() - timedelta(minutes=20))
    result = invoke("upgrade", "--state", url)
    assert result.exit_code == 0, result.output
    assert revision_of(url) == [HEAD]


def test_a_newer_schema_stops_every_command(url: str, plan: Path) -> None:
    build_at(url, HEAD)
    execute(url, "UPDATE alembic_version SET version_num = '9999'")
    for args in (*READ_COMMANDS, ("discover",), ("run",), ("upgrade",)):
        result = invoke(*args, "--plan", str(plan), "--state", url)
        assert result.exit_code == 2, (args, result.output)
        assert "revision 9999, newer than this migrator knows" in said(result), args
    assert revision_of(url) == ["9999"]


def test_an_empty_database_is_created_by_discover_not_by_reading(plan: Path) -> None:
    with postgres_database("empty") as url:
        result = invoke("status", "--plan", str(plan), "--state", url)
        assert result.exit_code == 2
        assert "holds no migrator state yet" in said(
            result
        ) and f"migrator discover --plan {plan}" in said(result)
        assert revision_of(url) == []
        result = invoke("discover", "--plan", str(plan), "--state", url, "--json")
        assert result.exit_code == 0, result.output
        assert "created state database" in result.stderr and f"(schema {HEAD};" in " ".join(
            result.stderr.split()
        )
        assert revision_of(url) == [HEAD]


def test_upgrading_builds_what_a_fresh_database_has_and_keeps_the_data(url: str) -> None:
    build_at(url, PREVIOUS)
    execute(
        url,
        "INSERT INTO accounts (plan_id, key, dn, name, aliases, attributes, scope, fingerprint, discovered_at,"
        " last_seen_at, status, passes, attempts, messages_done, messages_skipped, messages_failed, bytes_done,"
        " lease_epoch) SELECT id, 'ana@ife.org.mx', 'uid=ana', 'Ana', '[]', '{}', 'in_scope', 'x', :at, :at,"
        " 'synced', 1, 0, 3, 0, 0, 10, 0 FROM plans",
        at=utcnow(),
    )
    assert invoke("upgrade", "--state", url).exit_code == 0
    engine = engine_of(url)
    try:
        with engine.begin() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            # a name of any length, in the views too
            conn.execute(text("UPDATE accounts SET name = :name"), {"name": "Ñ" * 5000})
            assert conn.execute(text("SELECT key, length(name) FROM v_account_state")).all() == [
                ("ana@ife.org.mx", 5000)
            ]
            assert conn.execute(text("SELECT total, migrated FROM v_progress_by_batch")).all() == [
                (1, 1)
            ]
    finally:
        engine.dispose()


def schema_text(url: str) -> str:
    """The database's whole schema as text: sqlite_master's SQL, or pg_dump --schema-only."""
    if url.startswith("sqlite"):
        engine = engine_of(url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
                ).all()
        finally:
            engine.dispose()
        return "\n".join(f"{kind} {name}: {sql}" for kind, name, sql in rows)
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", url],
        capture_output=True,
        text=True,
        check=True,
    )
    # pg_dump 15.14 and later fence the dump with a random key (\restrict, \unrestrict)
    return "\n".join(
        line
        for line in dump.stdout.splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def test_an_upgraded_database_has_the_schema_of_a_new_one_byte_for_byte(
    url: str, tmp_path: Path
) -> None:
    """compare_metadata above leaves out CHECK constraints, views and the SQL text itself."""
    build_at(url, PREVIOUS)
    assert invoke("upgrade", "--state", url).exit_code == 0
    if url.startswith("sqlite"):
        fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
        build_at(fresh_url, HEAD)
        assert schema_text(url) == schema_text(fresh_url)
        return
    with postgres_database("fresh") as fresh_url:
        build_at(fresh_url, HEAD)
        assert schema_text(url) == schema_text(fresh_url)
