"""`routing --format postfix-transport`: transport_maps lines for migrated accounts only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.fixtures.reports import Reported, invoke, synthetic_state


def _entries(text: str) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")) for line in text.splitlines() if "\t" in line and not line.startswith("#")]  # type: ignore[misc]


def test_routing_lists_migrated_accounts_sorted(reported_campaign: Reported) -> None:
    result = invoke("routing", "--plan", str(reported_campaign.plan_path), "--format", "postfix-transport")
    assert result.exit_code == 0, result.output
    host = reported_campaign.campaign.sim.url.split("//")[1].split(":")[0].split("/")[0]
    assert _entries(result.output) == [(a, f"smtp:[{host}]:25") for a in sorted(reported_campaign.migrated)]
    assert result.output.startswith("# migrator routing")


def test_routing_by_batch_and_nexthop(tmp_path: Path) -> None:
    data = synthetic_state(tmp_path / "s", 60)
    plan = str(data.plan_path)
    everyone = _entries(invoke("routing", "--plan", plan).output)
    synced = sorted(a for a, s in data.statuses.items() if s == "synced")
    assert everyone == [(a, "smtp:[exchange.ife.org.mx]:25") for a in synced]  # host of [target] url

    batch = _entries(invoke("routing", "--plan", plan, "--batch", "Office001", "--batch", "Office002").output)
    want = [a for a in synced if int(a[4:9]) % 12 in (1, 2)]
    assert [a for a, _ in batch] == want and want

    hop = _entries(invoke("routing", "--plan", plan, "--batch", "Office001", "--nexthop", "mx.example.org").output)
    assert {n for _, n in hop} == {"smtp:[mx.example.org]:25"}
    hop = _entries(invoke("routing", "--plan", plan, "--batch", "Office001", "--nexthop", "smtp:[10.0.0.5]:587").output)
    assert {n for _, n in hop} == {"smtp:[10.0.0.5]:587"}

    # a delta pass running or failed on a migrated account keeps it routed; a first pass does not
    db = sqlite3.connect(data.state_path)
    pending = sorted(a for a, s in data.statuses.items() if s == "pending")
    db.execute("UPDATE accounts SET status = 'running' WHERE address IN (?, ?)", (synced[1], pending[0]))
    db.execute("UPDATE accounts SET status = 'failed' WHERE address = ?", (synced[2],))
    db.commit()
    assert _entries(invoke("routing", "--plan", plan).output) == everyone

    # an address that would break the map file is left out, with a warning
    db.execute("UPDATE accounts SET address = 'bad user@ife.org.mx' WHERE address = ?", (synced[0],))
    db.commit()
    db.close()
    result = invoke("routing", "--plan", plan)
    assert [a for a, _ in _entries(result.output)] == synced[1:]
    assert "bad user@ife.org.mx cannot be a transport_maps key" in result.output
