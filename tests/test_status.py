"""`migrator status`: the campaign's numbers, on both backends, and a start-up without SQLAlchemy.

The campaign is written through the store (discovery, ledger rows, events, a verify run), then
`status` is asked through the CLI, as an operator would, and its numbers checked one by one.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update

from migrator.commands import state as state_module
from migrator.model.account import DiscoveredAccount, Scope
from migrator.store import open_store
from migrator.store.schema import accounts as A
from migrator.store.schema import events as E
from migrator.store.schema import folders as F
from migrator.store.schema import messages as M
from migrator.store.schema import runs as R
from migrator.store.types import utcnow
from tests.fixtures.campaign import Campaign
from tests.fixtures.reports import PLAN, invoke
from tests.fixtures.store import *  # noqa: F403

REPO = Path(__file__).resolve().parents[1]


# address -> (batch, status, passes, messages done, bytes, last error reason)
PROGRESS: dict[str, tuple[str, str, int, int, int, str | None]] = {
    "a1@example.org": ("Office-A", "verified", 2, 10, 10_000, None),
    "a2@example.org": ("Office-A", "synced", 1, 20, 20_000, None),
    "a3@example.org": ("Office-A", "failed", 0, 0, 0, "auth"),
    "b1@example.org": ("Office-B", "synced", 1, 30, 30_000, None),
    "b2@example.org": ("Office-B", "failed", 0, 0, 0, "auth"),
    "b3@example.org": ("Office-B", "failed", 1, 5, 5_000, "no-mailbox"),
    "b4@example.org": ("Office-B", "running", 0, 0, 0, None),
    "c1@example.org": ("Office-C", "pending", 0, 0, 0, None),
}


# the directory's OUs cut across the plan's batches
OUS = {
    a: "Norte" if a[0] == "a" or a in ("b1@example.org", "b2@example.org") else "Sur"
    for a in PROGRESS
}


@dataclass
class StatusCampaign:
    plan_path: Path
    state_url: str

    def status(self, *extra: str) -> dict[str, Any]:
        result = invoke(
            "status", "--plan", str(self.plan_path), "--state", self.state_url, "--json", *extra
        )
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.output)
        return data


@pytest.fixture
def campaign(store_url: str, tmp_path: Path) -> Iterator[StatusCampaign]:
    plan_name = f"status-{uuid.uuid4().hex[:8]}"  # a plan file's name is short and plain
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(PLAN.format(name=plan_name, root=tmp_path))
    store = open_store(store_url)
    try:
        plan_id = store.ensure_plan(plan_name, "maildir", "ews")
        entries = [
            DiscoveredAccount(
                key=a,
                dn=f"uid={a[:2]},ou={OUS[a]},ou=people,dc=example,dc=org",
                scope=Scope.IN_SCOPE,
                address=a,
                batch=batch,
            )
            for a, (batch, *_rest) in PROGRESS.items()
        ]
        entries.append(
            DiscoveredAccount(
                key="x1@example.org",
                dn="uid=x1",
                scope=Scope.EXCLUDED,
                reason="filtered-out",
                address="x1@example.org",
            )
        )
        entries.append(
            DiscoveredAccount(
                key="x2@example.org", dn="uid=x2", scope=Scope.INVALID, reason="no-address"
            )
        )
        store.record_discovery(plan_id, None, entries)
        ids = {row.address: row.id for row in store.list_accounts(plan_id)}
        with store.session(write=True) as s:
            for address, (_batch, status, passes, done, nbytes, reason) in PROGRESS.items():
                skipped = (
                    3 if address == "a2@example.org" else 1 if address == "b1@example.org" else 0
                )
                s.execute(
                    update(A).where(A.c.id == ids[address]).values(
                        status=status, passes=passes, messages_done=done, bytes_done=nbytes,
                        messages_skipped=skipped, last_error_reason=reason,
                        last_error=f"{address}: {reason}" if reason else None,
                        # first passes: a2 and b1 in the last hour, the others earlier
                        first_pass_at=(utcnow() - timedelta(minutes=10 if address in ("a2@example.org", "b1@example.org") else 300)) if passes else None,
                        # b4's worker died (SIGKILL): its lease expired a minute ago
                        lease_expires_at=utcnow() - timedelta(minutes=1) if status == "running" else None,
                    )
                )  # fmt: skip
            # the ledger's skipped rows: a2 has two too-large and one unreadable, b1 one too-large
            for address, reasons in (
                ("a2@example.org", ["too-large", "too-large", "unreadable"]),
                ("b1@example.org", ["too-large"]),
            ):
                folder_id = s.execute(
                    insert(F)
                    .values(account_id=ids[address], native=".", display="Inbox", role="inbox")
                    .returning(F.c.id)
                ).scalar_one()
                for n, reason in enumerate(reasons):
                    s.execute(
                        insert(M).values(
                            folder_id=folder_id,
                            account_id=ids[address],
                            source_key=f"k{n}",
                            state="skipped",
                            reason=reason,
                        )
                    )
                s.execute(
                    insert(M).values(
                        folder_id=folder_id,
                        account_id=ids[address],
                        source_key="done",
                        state="done",
                        size=1000,
                    )
                )
            # a1's messages went three hours ago: the ledger's older part, out of the last hour
            folder_id = s.execute(
                insert(F)
                .values(account_id=ids["a1@example.org"], native=".", display="Inbox", role="inbox")
                .returning(F.c.id)
            ).scalar_one()
            long_ago = utcnow() - timedelta(hours=3)
            for n in range(5):
                s.execute(insert(M).values(folder_id=folder_id, account_id=ids["a1@example.org"], source_key=f"old{n}", state="done",
                                           size=700, created_at=long_ago, updated_at=long_ago))  # fmt: skip
            s.flush()
            # ledger ids grow with time: the rows of three hours ago get the lowest ones
            s.execute(update(M).where(M.c.source_key.like("old%")).values(id=M.c.id - 1000))
            # runs at work in the last hour: two hosts, overlapping (30 min together); one long before
            for host, start, end in (("h1", 50, 30), ("h2", 40, 20), ("h1", 180, 120)):
                s.execute(insert(R).values(plan_id=plan_id, command="run", host=host, pid=1, status="done",
                                           started_at=utcnow() - timedelta(minutes=start), finished_at=utcnow() - timedelta(minutes=end)))  # fmt: skip
        # released in the last hour: a2 and b1 (synced, 50 messages); a1 two hours ago
        for address in ("a2@example.org", "b1@example.org", "a1@example.org"):
            _batch, status, _passes, done, nbytes, _reason = PROGRESS[address]
            store.add_event(plan_id, "released", account_id=ids[address], from_state="running", to_state="synced",
                            detail={"messages_done": done, "bytes_done": nbytes})  # fmt: skip
        with store.session(write=True) as s:
            s.execute(
                update(E)
                .where(E.c.account_id == ids["a1@example.org"])
                .values(at=utcnow() - timedelta(hours=2))
            )
        run_id = store.start_run(plan_id, "verify")
        store.finish_run(
            run_id,
            "partial",
            {
                "ok": False,
                "totals": {"accounts": 3, "ok": 2, "differ": 1, "errors": 0},
                "accounts": [],
            },
        )
    finally:
        store.close()
    yield StatusCampaign(plan_path, store_url)


def test_status_numbers(campaign: StatusCampaign) -> None:
    data = campaign.status()
    assert data["headline"] == "4 of 8 accounts migrated (50.0 %)"
    assert data["accounts"] == {
        "total": 8, "migrated": 4, "verified": 1, "synced": 2, "failed": 3, "pending": 1, "running": 1,
        "interrupted": 1, "excluded": 1, "invalid": 1, "vanished": 0,
    }  # fmt: skip
    assert data["messages"] == {"done": 65, "skipped": 4, "failed": 0, "bytes": 65_000, "passes": 5}
    assert data["skipped_by_reason"] == {"too-large": 3, "unreadable": 1}
    assert data["failures_by_reason"][0] == {
        "reason": "auth",
        "accounts": 2,
        "example": "a3@example.org: auth",
    }
    assert data["failures_by_reason"][1]["reason"] == "no-mailbox"
    assert data["groups"] == [
        {"batch": "Office-A", "total": 3, "migrated": 2, "verified": 1, "failed": 1, "running": 0, "pending": 0},
        {"batch": "Office-B", "total": 4, "migrated": 2, "verified": 0, "failed": 2, "running": 1, "pending": 0},
        {"batch": "Office-C", "total": 1, "migrated": 0, "verified": 0, "failed": 0, "running": 0, "pending": 1},
    ]  # fmt: skip
    # from the ledger: the done rows of a2 and b1 (a1's are three hours old); the runs' union
    recent = data["last_hour"]
    assert {k: v for k, v in recent.items() if k != "running_seconds"} == {
        "hours": 1.0,
        "accounts": 2,
        "messages": 2,
        "bytes": 2000,
    }
    assert recent["running_seconds"] == pytest.approx(1800, abs=2)
    # two accounts in half an hour: too few to say when the other four are done
    assert data["eta_hours"] is None
    assert data["eta_basis"].startswith(
        "too early to estimate: 2 account(s) migrated in 30 min of running"
    )
    assert data["last_verification"]["status"] == "partial"
    assert data["last_verification"]["totals"] == {"accounts": 3, "ok": 2, "differ": 1, "errors": 0}
    assert data["state"].endswith(campaign.state_url.split("://", 1)[1])
    by_status = campaign.status("--by", "status")
    assert by_status["groups"] == [
        {"status": "failed", "accounts": 3}, {"status": "pending", "accounts": 1}, {"status": "running", "accounts": 1},
        {"status": "synced", "accounts": 2}, {"status": "verified", "accounts": 1},
    ]  # fmt: skip


def test_status_by_ou_follows_the_dns_not_the_batches(campaign: StatusCampaign) -> None:
    data = campaign.status("--by", "ou")
    assert data["groups"] == [
        {"ou": "Norte", "total": 5, "migrated": 3, "verified": 1, "failed": 2, "running": 0, "pending": 0},
        {"ou": "Sur", "total": 3, "migrated": 1, "verified": 0, "failed": 1, "running": 1, "pending": 1},
    ]  # fmt: skip
    result = invoke(
        "status", "--plan", str(campaign.plan_path), "--state", campaign.state_url, "--by", "ou"
    )
    assert result.exit_code == 0, result.output
    assert "Progress by OU" in result.output and "Norte" in result.output


def test_the_quick_read_and_the_store_give_the_same_answer(
    campaign: StatusCampaign, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = campaign.status()
    monkeypatch.setattr(
        state_module, "open_readonly", lambda url: None
    )  # as when the schema needs an upgrade
    through_store = campaign.status()
    assert through_store == quick


def test_status_text_starts_with_the_headline(campaign: StatusCampaign) -> None:
    result = invoke("status", "--plan", str(campaign.plan_path), "--state", campaign.state_url)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "4 of 8 accounts migrated (50.0 %)"
    assert "3 accounts checked, 2 match the source, 1 differ, 0 could not be checked" in " ".join(
        result.output.split()
    )


def test_status_starts_without_sqlalchemy(campaign: StatusCampaign) -> None:
    # Importing SQLAlchemy is half of what `status` would take on 100,000 accounts: the quick
    # read-only path must not pull it in by accident (a timed test would be flaky; this is not).
    probe = (
        "import sys\n"
        "from migrator.cli.main import cli\n"
        f"cli.main(['status', '--plan', {str(campaign.plan_path)!r}, '--state', {campaign.state_url!r}, '--json'],"
        " standalone_mode=False)\n"
        "print('SQLALCHEMY' if 'sqlalchemy' in sys.modules else 'NO-SQLALCHEMY')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "NO-SQLALCHEMY"
    assert (
        json.loads(done.stdout.rsplit("\n", 2)[0])["headline"]
        == "4 of 8 accounts migrated (50.0 %)"
    )


def test_status_of_a_plan_never_discovered(tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(PLAN.format(name="never", root=tmp_path))
    url = f"sqlite:///{tmp_path / 'none.db'}"
    # no database at all: said so, with the path looked for, and none is created
    result = invoke("status", "--plan", str(plan_path), "--state", url)
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert f"no state database at {tmp_path / 'none.db'}" in said and "migrator discover" in said
    assert not (tmp_path / "none.db").exists()
    # a database that holds other plans only
    open_store(url).close()
    result = invoke("status", "--plan", str(plan_path), "--state", url)
    assert result.exit_code == 2
    assert "is not in" in result.output and "migrator discover" in result.output


# --- the numbers of a real campaign against its ledger (EWS simulator, Maildirs, the CLI)


def _ledger(c: Campaign, sql: str, *args: object) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(c.state_path)
    try:
        return list(db.execute(sql, args))
    finally:
        db.close()


def _status(c: Campaign) -> dict[str, Any]:
    out = c.cli("status", "--plan", str(c.plan_path), "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def _process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _poll(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling an outside process's state, not standing in for a sync


def test_last_hour_counts_every_message_the_ledger_recorded(
    campaign_factory: Callable[..., Campaign],
) -> None:
    """A run killed half-way: the accounts it was on moved messages, but were never released.
    `status` counts what the ledger holds as done, not only the passes that finished."""
    c = campaign_factory(accounts=4, messages_per_folder=3, workers=2, chunk=5)
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    started = time.monotonic()
    killed = c.cli(
        "run",
        "--plan",
        str(c.plan_path),
        "--quiet",
        env={**c.env, "MIGRATOR_CRASH_AT": "finish_chunk:8"},
    )
    elapsed = time.monotonic() - started
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    data = _status(c)
    [(done, nbytes)] = _ledger(
        c, "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE state = 'done'"
    )
    [(first_passes,)] = _ledger(c, "SELECT count(*) FROM accounts WHERE first_pass_at IS NOT NULL")
    total = sum(len(messages) for box in c.mailboxes.values() for messages in box.values())
    assert 8 * 3 <= done < total  # eight chunks of three messages at least; not all
    recent = data["last_hour"]
    assert (recent["messages"], recent["bytes"], recent["accounts"]) == (done, nbytes, first_passes)
    # a few seconds of running (up to one heartbeat more for the killed run) is no basis for an ETA
    assert 0 < recent["running_seconds"] <= elapsed + 10
    assert data["eta_hours"] is None and data["eta_basis"].startswith("too early to estimate")
    text = c.cli("status", "--plan", str(c.plan_path))
    assert text.returncode == 0, text.stderr
    assert f"last hour: {first_passes} accounts migrated, {done:,} messages" in text.stdout
    assert "too early to estimate" in " ".join(text.stdout.split())
    assert "at this pace" not in text.stdout

    rerun = c.cli("run", "--plan", str(c.plan_path), "--quiet")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    data = _status(c)
    [(done, nbytes)] = _ledger(
        c, "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE state = 'done'"
    )
    assert done == total and data["messages"]["done"] == done
    assert (
        data["last_hour"]["messages"],
        data["last_hour"]["bytes"],
        data["last_hour"]["accounts"],
    ) == (done, nbytes, 4)
    assert data["eta_basis"] == "nothing left to migrate"


def test_workers_show_accounts_and_pace_before_the_first_heartbeat(
    campaign_factory: Callable[..., Campaign],
) -> None:
    """A worker's row is refreshed every beat (5 s at most, model/heartbeat.py). Before its
    first heartbeat, `workers` still shows the accounts it holds and the messages
    it moved: they come from the leases and the ledger."""
    c = campaign_factory(accounts=4, messages_per_folder=3, workers=2, chunk=5, lease=120)
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    # the worker freezes itself (SIGSTOP) after its fifth chunk is in the ledger
    proc = c.start(
        "run",
        "--plan",
        str(c.plan_path),
        "--quiet",
        env={**c.env, "MIGRATOR_CRASH_AT": "finish_chunk:5:stop"},
    )
    try:
        _poll(
            "the worker to freeze", lambda: proc.poll() is None and _process_state(proc.pid) == "T"
        )
        [(name, started_at)] = _ledger(c, "SELECT name, started_at FROM workers")
        started = datetime.fromisoformat(started_at).replace(tzinfo=UTC)
        before = datetime.now(UTC)
        out = c.cli("workers", "--plan", str(c.plan_path), "--json")
        after = datetime.now(UTC)
        assert out.returncode == 0, out.stderr
        fleet = json.loads(out.stdout)
        held = sorted(
            a for (a,) in _ledger(c, "SELECT address FROM accounts WHERE lease_owner = ?", name)
        )
        [(done, nbytes)] = _ledger(
            c, "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE state = 'done'"
        )
        [(beats,)] = _ledger(c, "SELECT count(*) FROM workers WHERE heartbeat_at > started_at")
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert beats == 0, "the worker has sent a heartbeat: it took more than a beat to get here"
    [w] = fleet["workers"]
    assert w["id"] == name and w["state"] == "running"
    assert (
        held and sorted(w["accounts"]) == held and fleet["totals"]["accounts_in_hand"] == len(held)
    )
    assert done >= 5 * 3
    assert (w["messages_done"], w["bytes_done"]) == (done, nbytes)
    # all of it within the last minute: the messages over the seconds since the worker started
    assert (
        done / (after - started).total_seconds() - 0.01
        <= w["rate"]
        <= done / (before - started).total_seconds() + 0.01
    )
    assert fleet["totals"]["rate"] == w["rate"] > 0


def test_the_estimate_needs_a_basis_and_counts_running_time_only() -> None:
    from migrator.commands.status import estimate

    # six accounts in 30 minutes of running: four more take 20 minutes of running
    hours, basis = estimate(4, {"accounts": 6, "running_seconds": 1800})
    assert (
        hours == pytest.approx(1 / 3)
        and basis == "6 accounts in 30 min of running in the last hour"
    )
    # the same six accounts in a 3-second run: no estimate, and why
    hours, basis = estimate(4, {"accounts": 6, "running_seconds": 3})
    assert hours is None and basis.startswith(
        "too early to estimate: 6 account(s) migrated in 3 s of running"
    )
    assert estimate(4, {"accounts": 2, "running_seconds": 3000})[0] is None  # too few accounts
    assert estimate(0, {"accounts": 6, "running_seconds": 1800}) == (
        None,
        "nothing left to migrate",
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_first_ledger_row_of_a_window_is_found_by_id(backend: str, tmp_path: Path) -> None:
    """The last hour's ledger rows are found by a binary search on the id (the ledger has no
    index on time), whatever gaps the ids have. A database of its own: the ledger is global."""
    from contextlib import nullcontext

    from tests.fixtures.store import postgres_database

    with (
        postgres_database("ledger_ids")
        if backend == "postgresql"
        else nullcontext(f"sqlite:///{tmp_path / 's.db'}")
    ) as url:
        _first_ledger_rows(url)


def _first_ledger_rows(url: str) -> None:
    from migrator.store.reporting import aggregates

    store = open_store(url)
    try:
        plan_id = store.ensure_plan(f"ids-{uuid.uuid4().hex[:8]}", "maildir", "ews")
        store.record_discovery(
            plan_id,
            None,
            [DiscoveredAccount(key="a@x", dn="uid=a", scope=Scope.IN_SCOPE, address="a@x")],
        )
        [account] = store.list_accounts(plan_id)
        now = utcnow()
        with store.reader() as db:
            assert (
                aggregates.first_id_since(db, now - timedelta(hours=1)) is None
            )  # an empty ledger
        with store.session(write=True) as s:
            folder_id = s.execute(
                insert(F)
                .values(account_id=account.id, native=".", display="Inbox", role="inbox")
                .returning(F.c.id)
            ).scalar_one()
            # ids 10, 20, ... 300 (gaps, as after a reset), one every ten minutes up to now
            for n in range(30):
                at = now - timedelta(minutes=10 * (29 - n))
                s.execute(insert(M).values(id=10 * (n + 1), folder_id=folder_id, account_id=account.id, source_key=f"k{n}",
                                           state="done", size=1, created_at=at, updated_at=at))  # fmt: skip
        with store.reader() as db:
            for minutes, first in ((5, 300), (59, 250), (60, 240), (61, 240), (290, 10), (600, 10)):
                assert aggregates.first_id_since(db, now - timedelta(minutes=minutes)) == first, (
                    minutes
                )
            assert aggregates.first_id_since(db, now + timedelta(seconds=1)) is None
            assert aggregates.done_since(db, plan_id, now - timedelta(minutes=60)) == (7, 7)
    finally:
        store.close()


def test_status_by_ou_parses_each_parent_once_and_escaped_commas_whole() -> None:
    """The OU of 100,000 DNs comes from their parents (parsed once each); a first RDN with an
    escaped comma (cn=Pérez\\, Ana) is not mistaken for a parent."""
    from migrator.commands.status import _by_ou

    rows = [
        ("cn=Pérez\\, Ana,ou=Sur,dc=ife,dc=org", "failed", False),
        ("uid=ana,ou=Sur,dc=ife,dc=org", "verified", True),
        ("uid=bea,ou=Sur,dc=ife,dc=org", "pending", False),
        ("uid=eva,ou=Norte,ou=people,dc=ife,dc=org", "synced", True),
        ("uid=root,dc=ife,dc=org", "running", False),
    ]
    assert _by_ou(rows) == [
        {
            "ou": "(none)",
            "total": 1,
            "migrated": 0,
            "verified": 0,
            "failed": 0,
            "running": 1,
            "pending": 0,
        },
        {
            "ou": "Norte",
            "total": 1,
            "migrated": 1,
            "verified": 0,
            "failed": 0,
            "running": 0,
            "pending": 0,
        },
        {
            "ou": "Sur",
            "total": 3,
            "migrated": 1,
            "verified": 1,
            "failed": 1,
            "running": 0,
            "pending": 1,
        },
    ]
