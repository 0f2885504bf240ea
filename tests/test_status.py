"""`migrator status`: the campaign's numbers, on both backends, and a start-up without SQLAlchemy.

The campaign is written through the store (discovery, ledger rows, events, a verify run), then
`status` is asked through the CLI, as an operator would, and its numbers checked one by one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from migrator.commands import state as state_module
from migrator.model.account import DiscoveredAccount, Scope
from migrator.store import open_store
from migrator.store.schema import AccountDbRow, EventRow, FolderRow, MessageRow
from migrator.store.types import utcnow
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
OUS = {a: "Norte" if a[0] == "a" or a in ("b1@example.org", "b2@example.org") else "Sur" for a in PROGRESS}


@dataclass
class StatusCampaign:
    plan_path: Path
    state_url: str

    def status(self, *extra: str) -> dict[str, Any]:
        result = invoke("status", "--plan", str(self.plan_path), "--state", self.state_url, "--json", *extra)
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
            DiscoveredAccount(key=a, dn=f"uid={a[:2]},ou={OUS[a]},ou=people,dc=example,dc=org", scope=Scope.IN_SCOPE, address=a, batch=batch)
            for a, (batch, *_rest) in PROGRESS.items()
        ]
        entries.append(DiscoveredAccount(key="x1@example.org", dn="uid=x1", scope=Scope.EXCLUDED, reason="filtered-out", address="x1@example.org"))
        entries.append(DiscoveredAccount(key="x2@example.org", dn="uid=x2", scope=Scope.INVALID, reason="no-address"))
        store.record_discovery(plan_id, None, entries)
        ids = {row.address: row.id for row in store.list_accounts(plan_id)}
        with store.session(write=True) as s:
            for address, (_batch, status, passes, done, nbytes, reason) in PROGRESS.items():
                skipped = 3 if address == "a2@example.org" else 1 if address == "b1@example.org" else 0
                s.execute(
                    update(AccountDbRow).where(AccountDbRow.id == ids[address]).values(
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
            for address, reasons in (("a2@example.org", ["too-large", "too-large", "unreadable"]), ("b1@example.org", ["too-large"])):
                folder = FolderRow(account_id=ids[address], native=".", display="Inbox", role="inbox")
                s.add(folder)
                s.flush()
                for n, reason in enumerate(reasons):
                    s.add(MessageRow(folder_id=folder.id, account_id=ids[address], source_key=f"k{n}", state="skipped", reason=reason))
                s.add(MessageRow(folder_id=folder.id, account_id=ids[address], source_key="done", state="done"))
        # released in the last hour: a2 and b1 (synced, 50 messages); a1 two hours ago
        for address in ("a2@example.org", "b1@example.org", "a1@example.org"):
            _batch, status, _passes, done, nbytes, _reason = PROGRESS[address]
            store.add_event(plan_id, "released", account_id=ids[address], from_state="running", to_state="synced",
                            detail={"messages_done": done, "bytes_done": nbytes})  # fmt: skip
        with store.session(write=True) as s:
            s.execute(update(EventRow).where(EventRow.account_id == ids["a1@example.org"]).values(at=utcnow() - timedelta(hours=2)))
        run_id = store.start_run(plan_id, "verify")
        store.finish_run(run_id, "partial", {"ok": False, "totals": {"accounts": 3, "ok": 2, "differ": 1, "errors": 0}, "accounts": []})
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
    assert data["failures_by_reason"][0] == {"reason": "auth", "accounts": 2, "example": "a3@example.org: auth"}
    assert data["failures_by_reason"][1]["reason"] == "no-mailbox"
    assert data["groups"] == [
        {"batch": "Office-A", "total": 3, "migrated": 2, "verified": 1, "failed": 1, "running": 0, "pending": 0},
        {"batch": "Office-B", "total": 4, "migrated": 2, "verified": 0, "failed": 2, "running": 1, "pending": 0},
        {"batch": "Office-C", "total": 1, "migrated": 0, "verified": 0, "failed": 0, "running": 0, "pending": 1},
    ]  # fmt: skip
    assert data["last_hour"] == {"hours": 1.0, "accounts": 2, "messages": 50, "bytes": 50_000}
    assert data["eta_hours"] == pytest.approx(4 / 2)  # 4 left, 2 first passes in the last hour
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
    result = invoke("status", "--plan", str(campaign.plan_path), "--state", campaign.state_url, "--by", "ou")
    assert result.exit_code == 0, result.output
    assert "Progress by OU" in result.output and "Norte" in result.output


def test_the_quick_read_and_the_store_give_the_same_answer(campaign: StatusCampaign, monkeypatch: pytest.MonkeyPatch) -> None:
    quick = campaign.status()
    monkeypatch.setattr(state_module, "open_readonly", lambda url: None)  # as when the schema needs an upgrade
    through_store = campaign.status()
    assert through_store == quick


def test_status_text_starts_with_the_headline(campaign: StatusCampaign) -> None:
    result = invoke("status", "--plan", str(campaign.plan_path), "--state", campaign.state_url)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "4 of 8 accounts migrated (50.0 %)"
    assert "3 accounts checked, 2 match the source, 1 differ, 0 could not be checked" in " ".join(result.output.split())


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
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "NO-SQLALCHEMY"
    assert json.loads(done.stdout.rsplit("\n", 2)[0])["headline"] == "4 of 8 accounts migrated (50.0 %)"


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
