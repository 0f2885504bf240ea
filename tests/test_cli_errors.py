"""The CLI's error handling as an operator meets it: hints that fit the failure, no "internal
error" for an ordinary situation (a closed pipe, a missing folder, a declined prompt)."""

from __future__ import annotations

import os
import pty
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
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
        store.record_discovery(
            plan_id,
            None,
            [
                DiscoveredAccount(
                    key="ana@ife.org.mx",
                    dn="uid=ana,ou=people,dc=ife,dc=org,dc=mx",
                    scope=Scope.IN_SCOPE,
                    address="ana@ife.org.mx",
                    target_address="ana@ife.org.mx",
                    uid="ana",
                    name="Ana",
                    batch="Office001",
                )
            ],
        )
    finally:
        store.close()


def test_a_read_only_postgresql_state_says_so_and_where_to_write(tmp_path: Path) -> None:
    """A standby (or default_transaction_read_only) refused the write: the hint used to be
    "check the database server and disk space", or the error was an internal one."""
    plan = synthetic_state(tmp_path, 1).plan_path
    with postgres_database("read_only") as url:
        _one_account(url)
        name = url.rsplit("/", 1)[-1]
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
        ) as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        result = CliRunner().invoke(
            cli,
            ["reset", "--plan", str(plan), "--state", url, "--account", "ana@ife.org.mx", "--yes"],
        )
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


def _migrator(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        **kwargs,
    )


def _progress_of(state: Path, address: str) -> tuple[str, int]:
    with sqlite3.connect(state) as db:
        row = db.execute(
            "SELECT status, passes FROM accounts WHERE address = ?", (address,)
        ).fetchone()
    return str(row[0]), int(row[1])


def _reset_on_a_terminal(plan: Path, address: str, answer: bytes) -> tuple[int, str]:
    """`reset` with its stdin on a pseudo-terminal, answering the question with `answer`."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "migrator", "reset", "--plan", str(plan), "--account", address],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(leader, answer)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    return proc.returncode, out + err


def test_reset_answered_no_resets_nothing_and_is_no_internal_error(tmp_path: Path) -> None:
    """`reset` answered "n" said "internal error: Abort" (exit 2)."""
    synthetic = synthetic_state(tmp_path, 3)
    address = next(a for a, s in synthetic.statuses.items() if s == "synced")
    before = _progress_of(synthetic.state_path, address)
    code, output = _reset_on_a_terminal(synthetic.plan_path, address, b"n\n")
    assert code == 1, output
    assert "nothing reset" in output and "internal error" not in output
    assert _progress_of(synthetic.state_path, address) == before
    code, output = _reset_on_a_terminal(synthetic.plan_path, address, b"y\n")
    assert code == 0 and "progress forgotten" in output, output
    assert _progress_of(synthetic.state_path, address) == ("pending", 0)


def test_reset_without_a_terminal_asks_for_yes(tmp_path: Path) -> None:
    """Run from cron or a pipe, `reset` said "internal error: Abort"; it now says to pass --yes."""
    synthetic = synthetic_state(tmp_path, 3)
    address = next(a for a, s in synthetic.statuses.items() if s == "synced")
    before = _progress_of(synthetic.state_path, address)
    for stdin in (subprocess.DEVNULL, None):
        kwargs: dict[str, Any] = {"stdin": stdin} if stdin is not None else {"input": "y\n"}
        result = _migrator(
            "reset", "--plan", str(synthetic.plan_path), "--account", address, **kwargs
        )
        assert result.returncode == 2, result.stderr
        assert "no terminal" in result.stderr and "pass --yes" in result.stderr
        assert "internal error" not in result.stderr
    assert _progress_of(synthetic.state_path, address) == before
    result = _migrator(
        "reset",
        "--plan",
        str(synthetic.plan_path),
        "--account",
        address,
        "--yes",
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0 and _progress_of(synthetic.state_path, address) == ("pending", 0)


# --- closed pipes and unwritable report paths ---------------------------------------------------


def _with_output_closed(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str]:
    """Run migrator with its stdout a pipe whose reader is gone before it writes anything."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=300)
    proc.stderr.close()
    return proc.returncode, err


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--json"],
        ["status"],
        ["report", "--format", "csv", "-o", "-"],
        ["report", "--format", "html", "-o", "-"],
        ["accounts"],
        ["events", "--json"],
    ],
)
def test_a_closed_pipe_ends_quietly_with_141(tmp_path: Path, args: list[str]) -> None:
    """`status --json | head` and `report -o - | head` said "internal error: BrokenPipeError"."""
    plan = synthetic_state(tmp_path, 300).plan_path
    code, err = _with_output_closed(*args, "--plan", str(plan))
    assert (code, err) == (141, "")


def test_a_shell_pipe_to_head_sees_141_like_any_tool(tmp_path: Path) -> None:
    plan = synthetic_state(tmp_path, 3000).plan_path
    shell = subprocess.run(
        [
            "bash",
            "-c",
            f'"{sys.executable}" -m migrator report --format csv -o - --plan "{plan}" | head -n 2; '
            'echo "status=${PIPESTATUS[0]}" >&2',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        shell.stdout.startswith("address,name,batch,state") and len(shell.stdout.splitlines()) == 2
    )
    assert shell.stderr == "status=141\n"


def test_a_report_to_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    """`report -o /nonexistent/dir/r.html` said "internal error: FileNotFoundError"."""
    plan = synthetic_state(tmp_path, 3).plan_path
    missing = tmp_path / "nonexistent" / "dir" / "r.html"
    result = _migrator("report", "--plan", str(plan), "--format", "html", "-o", str(missing))
    assert result.returncode == 2
    assert f"cannot write the report to {missing}: No such file or directory" in words(
        result.stderr
    )
    assert f"the folder {missing.parent} does not exist" in words(result.stderr)
    assert "internal error" not in result.stderr
    folder = _migrator("report", "--plan", str(plan), "--format", "csv", "-o", str(tmp_path))
    assert folder.returncode == 2 and "is a directory" in words(folder.stderr)  # click's own check


def test_a_run_whose_output_reader_goes_away_stops_cleanly(tmp_path: Path) -> None:
    """A closed pipe during `run` is a stop request: the workers finish their chunk, nothing is
    left running, the command ends quietly with 141, and the next run finishes the job."""
    from tests.fixtures.campaign import build_campaign

    with build_campaign(tmp_path / "c", accounts=6, workers=2, chunk=2) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        code, err = _with_output_closed("run", "--plan", str(c.plan_path), env=c.env, cwd=c.root)
        assert (code, err) == (141, "")
        with sqlite3.connect(c.state_path) as db:
            statuses = dict(
                db.execute(
                    "SELECT status, count(*) FROM accounts WHERE scope = 'in_scope' GROUP BY status"
                )
            )
        assert set(statuses) <= {"pending", "synced"}, statuses  # none left running under a lease
        again = c.cli("run", "--plan", str(c.plan_path))
        assert again.returncode == 0, again.stderr
        for address in c.accounts:
            c.compare(address)
