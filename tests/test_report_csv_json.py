"""CSV and JSON reports: one row per account in scope, the numbers the state database holds."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.fixtures.reports import HOSTILE_NAME, Reported, invoke, synthetic_state

# the shared campaign fixture (one per session, whichever module asks first)

COLUMNS = [
    "address",
    "name",
    "batch",
    "state",
    "passes",
    "messages_source",
    "messages_done",
    "messages_skipped",
    "messages_failed",
    "bytes",
    "first_pass",
    "last_pass",
    "last_error_reason",
    "last_error",
]


def test_csv_rows_match_the_campaign(reported_campaign: Reported, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    result = invoke(
        "report",
        "--plan",
        str(reported_campaign.plan_path),
        "--format",
        "csv",
        "--output",
        str(out),
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert list(rows[0]) == COLUMNS
    assert [r["address"] for r in rows] == reported_campaign.campaign.accounts
    for r in rows:
        address = r["address"]
        if address == reported_campaign.failed:
            assert (r["state"], r["last_error_reason"], r["passes"], r["messages_done"]) == (
                "failed",
                "no-mailbox",
                "0",
                "0",
            )
            assert address in r["last_error"]
            continue
        source = reported_campaign.campaign.source_messages(address)
        in_source = sum(len(v) for v in source.values())
        assert r["state"] == "verified" and r["passes"] == "1"
        assert int(r["messages_source"]) == in_source
        assert int(r["messages_done"]) == in_source - 1 and r["messages_skipped"] == "1"
        assert int(r["bytes"]) == sum(
            len(raw) for v in source.values() for raw, _ in v if len(raw) < 100_000
        )
        assert r["first_pass"].endswith("Z") and r["first_pass"] <= r["last_pass"]


def test_json_report_and_csv_formula_guard(tmp_path: Path) -> None:
    data = synthetic_state(tmp_path / "s", 40)
    import sqlite3

    db = sqlite3.connect(data.state_path)
    db.execute(
        "UPDATE accounts SET name = '=HYPERLINK(\"http://evil\")' WHERE address = 'user00001@ife.org.mx'"
    )
    db.commit()
    db.close()
    result = invoke("report", "--plan", str(data.plan_path), "--format", "json", "--output", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["accounts"]["total"] == 40
    migrated = sum(1 for s in data.statuses.values() if s == "synced")
    assert report["headline"] == f"{migrated} of 40 accounts migrated ({100 * migrated / 40:.1f} %)"
    by_address = {r["address"]: r for r in report["rows"]}
    assert by_address["user00007@ife.org.mx"]["name"] == HOSTILE_NAME
    assert {a: r["state"] for a, r in by_address.items()} == data.statuses
    assert report["timeline"]["points"][-1][1] == migrated

    out = tmp_path / "r.csv"
    assert (
        invoke("report", "--plan", str(data.plan_path), "--format", "csv", "-o", str(out)).exit_code
        == 0
    )
    rows = {r["address"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert rows["user00001@ife.org.mx"]["name"] == '\'=HYPERLINK("http://evil")'
    assert rows["user00007@ife.org.mx"]["name"] == HOSTILE_NAME


def test_report_before_discovery_is_a_clear_error(tmp_path: Path) -> None:
    data = synthetic_state(tmp_path / "s", 1)
    result = invoke(
        "report",
        "--plan",
        str(data.plan_path),
        "--state",
        f"sqlite:///{tmp_path}/empty.db",
        "--format",
        "csv",
        "-o",
        "-",
    )
    assert result.exit_code == 2
    # no database there at all (a read command creates none): said so, with the way out
    assert "no state database at" in result.output and "migrator discover" in result.output
