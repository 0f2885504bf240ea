"""Read commands never write: not the state file, not files beside it, not a folder, not a row.

On a copy of a real campaign's SQLite state (discovered, run and verified through the CLI):
every read command leaves the folder exactly as it was (same files, inodes, sizes, times,
bytes; no -wal or -shm created), also while a writer has the database open (then they read
what it committed); they work on a read-only mount (a private mount namespace, so nothing
leaks if the test dies); a mistyped --state path is an error naming the path, and creates
nothing. On PostgreSQL a read session cannot write, and `accounts` no longer registers a plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import text

from migrator.store import open_store
from tests.fixtures.ews import SIM_PASSWORD
from tests.fixtures.reports import Reported, invoke
from tests.fixtures.store import postgres_database

REPO = Path(__file__).resolve().parent.parent


def read_commands(r: Reported, url: str, out: Path) -> list[tuple[str, ...]]:
    plan = str(r.plan_path)
    return [
        ("status", "--plan", plan, "--state", url, "--json"),
        ("status", "--plan", plan, "--state", url, "--by", "ou"),
        ("accounts", "--plan", plan, "--state", url, "--json"),
        ("show", r.failed, "--plan", plan, "--state", url, "--json"),
        ("events", "--plan", plan, "--state", url, "--json"),
        (
            "events",
            "--plan",
            plan,
            "--state",
            url,
            "--follow",
            "--follow-timeout",
            "0.3",
            "--poll-interval",
            "0.05",
        ),
        ("report", "--plan", plan, "--state", url, "--format", "json", "--output", str(out)),
        ("routing", "--plan", plan, "--state", url),
        ("workers", "--plan", plan, "--state", url, "--json"),
        ("run", "--plan", plan, "--state", url, "--dry-run", "--json"),
    ]


def snapshot(folder: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every file of the folder (and the folder itself): inode, size, mtime, content digest."""
    files = {
        p.name: (
            p.stat().st_ino,
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in folder.iterdir()
    }
    stat = folder.stat()
    return {**files, ".": (stat.st_ino, 0, stat.st_mtime_ns, "")}


def copy_state(r: Reported, folder: Path) -> Path:
    """A closed copy of the campaign's state (the backup API: no -wal is left beside it)."""
    folder.mkdir()
    target = folder / "state.db"
    with sqlite3.connect(r.campaign.state_path) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    copy.close()
    assert sorted(p.name for p in folder.iterdir()) == ["state.db"]
    return target


@pytest.fixture
def ews_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_TEST_EWS_PASSWORD", SIM_PASSWORD)  # `run --dry-run` connects


def ok(result: Result, args: tuple[str, ...]) -> None:
    assert result.exit_code in (0, 1), (args, result.output)


def test_read_commands_leave_the_state_folder_untouched(
    reported_campaign: Reported, tmp_path: Path, ews_password: None
) -> None:
    folder = tmp_path / "archive"
    url = f"sqlite:///{copy_state(reported_campaign, folder)}"
    before = snapshot(folder)
    for args in read_commands(reported_campaign, url, tmp_path / "report.json"):
        ok(invoke(*args), args)
        assert snapshot(folder) == before, args
    status = json.loads(
        invoke(
            "status", "--plan", str(reported_campaign.plan_path), "--state", url, "--json"
        ).stdout
    )
    assert status["headline"] == "3 of 4 accounts migrated (75.0 %)"


def test_reads_see_what_a_writer_committed_and_leave_its_files_alone(
    reported_campaign: Reported, tmp_path: Path, ews_password: None
) -> None:
    folder = tmp_path / "live"
    path = copy_state(reported_campaign, folder)
    url = f"sqlite:///{path}"
    writer = sqlite3.connect(path)  # as a `migrator run` holds it: WAL, a commit not checkpointed
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute(
            "UPDATE accounts SET status = 'synced' WHERE address = ?", (reported_campaign.failed,)
        )
        writer.commit()
        assert (folder / "state.db-wal").exists()
        db_before = snapshot(folder)["state.db"]
        names = sorted(p.name for p in folder.iterdir())
        for args in read_commands(reported_campaign, url, tmp_path / "report.json"):
            ok(invoke(*args), args)
        assert sorted(p.name for p in folder.iterdir()) == names
        assert snapshot(folder)["state.db"] == db_before
        status = invoke(
            "status", "--plan", str(reported_campaign.plan_path), "--state", url, "--json"
        )
        assert json.loads(status.stdout)["headline"] == "4 of 4 accounts migrated (100.0 %)"
    finally:
        writer.close()


def _mount_namespace() -> list[str]:
    """How to run a command with a private mount namespace (root: unshare -m; else a user
    namespace too). The bind mount made inside vanishes with the command."""
    probe = ["unshare", "-m", "true"] if os.geteuid() == 0 else ["unshare", "-rm", "true"]
    if (
        shutil.which("unshare") is None
        or subprocess.run(probe, capture_output=True).returncode != 0
    ):
        pytest.skip(
            "this system cannot make a private mount namespace (unshare) for a read-only mount"
        )
    return probe[:-1]


def on_read_only_mount(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`migrator ARGS` with `folder` mounted read-only over itself."""
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return subprocess.run(
        [*_mount_namespace(), "sh", "-c", script, str(folder), sys.executable, "-m", "migrator", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "MIGRATOR_TEST_EWS_PASSWORD": SIM_PASSWORD},
    )  # fmt: skip


@pytest.fixture
def archived(reported_campaign: Reported, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two archived copies: one closed cleanly, one copied with its -wal and -shm while a
    writer held it (the last commit is only in the -wal)."""
    closed = copy_state(reported_campaign, tmp_path / "closed")
    live_folder = tmp_path / "with-wal"
    live = copy_state(reported_campaign, live_folder)
    writer = sqlite3.connect(live)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute(
            "UPDATE accounts SET status = 'synced' WHERE address = ?", (reported_campaign.failed,)
        )
        writer.commit()
        frozen = tmp_path / "frozen"
        frozen.mkdir()
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            shutil.copy2(live_folder / name, frozen / name)
    finally:
        writer.close()
    yield closed, frozen / "state.db"


def test_an_archived_campaign_on_a_read_only_mount_can_be_read(
    reported_campaign: Reported, archived: tuple[Path, Path], tmp_path: Path
) -> None:
    plan = str(reported_campaign.plan_path)
    for path, migrated in ((archived[0], 3), (archived[1], 4)):
        url = f"sqlite:///{path}"
        before = snapshot(path.parent)
        done = on_read_only_mount(path.parent, "status", "--plan", plan, "--state", url, "--json")
        assert done.returncode == 0, done.stderr
        assert (
            json.loads(done.stdout)["headline"]
            == f"{migrated} of 4 accounts migrated ({migrated * 25}.0 %)"
        )
        for args in (
            ("accounts", "--json"),
            ("events", "--json"),
            ("report", "--format", "json", "--output", str(tmp_path / "r.json")),
        ):
            done = on_read_only_mount(
                path.parent, args[0], "--plan", plan, "--state", url, *args[1:]
            )
            assert done.returncode == 0, (args, done.stderr)
        report = json.loads((tmp_path / "r.json").read_text())["accounts"]
        assert (report["total"], report["migrated"]) == (4, migrated)
        assert snapshot(path.parent) == before


def test_a_mistyped_state_path_is_an_error_and_creates_nothing(
    reported_campaign: Reported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ews_password: None
) -> None:
    monkeypatch.chdir(tmp_path)
    plan = str(reported_campaign.plan_path)
    url = "sqlite:///typo-dir/typo.db"
    for args in (
        *read_commands(reported_campaign, url, tmp_path / "r.json"),
        ("run", "--plan", plan, "--state", url),
        ("verify", "--plan", plan, "--state", url),
        ("retry", "--plan", plan, "--state", url, "--failed"),
        ("reset", "--plan", plan, "--state", url, "--account", reported_campaign.failed, "--yes"),
        ("workers", "--plan", plan, "--state", url, "--ceiling", "4"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        said = " ".join(result.output.split())
        assert (
            f"no state database at {tmp_path / 'typo-dir' / 'typo.db'} (given with --state; a relative path starts at the current directory)"
            in said
        ), args
    assert list(tmp_path.iterdir()) == []


def test_a_read_session_cannot_write_and_accounts_registers_no_plan(
    reported_campaign: Reported, tmp_path: Path
) -> None:
    with postgres_database("readonly") as url:
        open_store(url).close()  # an empty campaign database
        result = invoke("accounts", "--plan", str(reported_campaign.plan_path), "--state", url)
        assert result.exit_code == 2 and "is not in" in result.output
        for each in (url, f"sqlite:///{copy_state(reported_campaign, tmp_path / 'copy')}"):
            store = open_store(each, "read")
            try:
                with pytest.raises(Exception, match="(?i)read-only|readonly"):
                    store.ensure_plan("intruder", "maildir", "ews")
                with store.engine.connect() as conn:
                    assert (
                        conn.execute(
                            text("SELECT count(*) FROM plans WHERE name = 'intruder'")
                        ).scalar()
                        == 0
                    )
                    assert conn.execute(
                        text("SELECT count(*) FROM plans WHERE name = 't'")
                    ).scalar() == (0 if each == url else 1)
            finally:
                store.close()


def test_events_follow_sees_a_writer_that_started_after_it(
    reported_campaign: Reported, tmp_path: Path
) -> None:
    from migrator.commands.events import follow_events
    from migrator.plan import load_plan

    path = copy_state(reported_campaign, tmp_path / "follow")
    db = sqlite3.connect(path)
    newest = db.execute("SELECT max(id) FROM events").fetchone()[0]
    db.close()
    assert not (tmp_path / "follow" / "state.db-wal").exists()  # nobody has it open
    writer: list[sqlite3.Connection] = []
    ticks = iter([0.0, 1.0, 99.0])  # start; after the first poll; after the second: past the end

    def clock() -> float:
        now = next(ticks)
        if now == 1.0:  # the follower has read once, with nobody else on the file: a writer starts
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "INSERT INTO events (at, plan_id, kind) SELECT '2030-01-01 00:00:00.000000', id, 'probe' FROM plans"
            )
            conn.commit()
            writer.append(conn)  # stays open: its commit is in the -wal only
        return now

    try:
        seen = list(
            follow_events(
                load_plan(reported_campaign.plan_path),
                after_id=newest,
                state_url=f"sqlite:///{path}",
                poll_seconds=0.01,
                timeout=10,
                clock=clock,
            )
        )
    finally:
        for conn in writer:
            conn.close()
    assert [e["kind"] for e in seen] == ["probe"]
