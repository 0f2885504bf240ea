"""`migrator run` against the strict simulator where Exchange pushes back without saying how
long to wait (the HTTP-200 ErrorServerBusy, ErrorExceededConnectionCount) and where a mailbox
fills up: the run slows down, a full mailbox stops its account with the reason and what to do,
and once there is room again every message arrives exactly once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from migrator.simulator.ews import Faults
from tests.fixtures.campaign import build_campaign


def done_by_account(state: Path) -> dict[str, int]:
    with sqlite3.connect(state) as db:
        rows = db.execute(
            "select a.address, count(*) from messages m join accounts a on a.id = m.account_id "
            "where m.state = 'done' group by a.address"
        ).fetchall()
    return {str(address): int(n) for address, n in rows}


def states(state: Path) -> dict[str, int]:
    with sqlite3.connect(state) as db:
        return {
            str(s): int(n)
            for s, n in db.execute("select state, count(*) from messages group by state")
        }


def test_throttling_without_a_hint_slows_the_run_and_loses_nothing(tmp_path: Path) -> None:
    faults = Faults(internal_busy_rate=0.3, operations=frozenset({"CreateItem"}), seed=8)
    with build_campaign(tmp_path / "c", accounts=3, workers=3, chunk=4, faults=faults) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        result = c.cli("run", "--plan", str(c.plan_path), "--json")
        summary = json.loads(result.stdout)
        assert result.returncode == 0, result.stderr + result.stdout
        # the limiter halved its ceiling on answers that carried no back-off hint
        assert summary["throttled"] > 0
        assert c.sim.stats().faults["internal_busy"] > 0
        for address in c.accounts:
            c.compare(address)


def test_a_full_mailbox_stops_its_account_and_nothing_is_counted_as_done(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=2, workers=1, chunk=3) as c:
        full, other = c.accounts
        source_bytes = sum(len(raw) for rows in c.source_messages(full).values() for raw, _ in rows)
        c.sim.set_mailbox_limits(full, prohibit_send_receive_bytes=source_bytes // 3)
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        result = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert result.returncode == 1, result.stderr + result.stdout
        summary = json.loads(result.stdout)
        (failure,) = summary["failures"]
        assert failure["account"] == full and failure["reason"] == "quota"
        assert (
            "ErrorQuotaExceeded" in failure["error"]
            and "ProhibitSendReceiveQuota" in failure["hint"]
        )
        assert summary["messages"]["skipped_by_reason"].get("quota", 0) == 0  # none given up
        c.compare(other)
        # only what the target holds is done; the messages it refused are not done, skipped or failed
        stored = len(c.sim.items(full))
        assert 0 < stored < sum(len(rows) for rows in c.source_messages(full).values())
        assert done_by_account(c.state_path).get(full, 0) <= stored
        assert set(states(c.state_path)) <= {"done", "inflight"}

        c.sim.set_mailbox_limits(full)  # the administrator raised the quota
        again = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert again.returncode == 0, again.stderr + again.stdout
        for address in c.accounts:
            c.compare(address)
        assert set(states(c.state_path)) == {"done"}
