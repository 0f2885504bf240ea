"""`show ADDR`: what the help desk needs about one account."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.fixtures.reports import BIG_SUBJECT, Reported, invoke

# the shared campaign fixture (one per session, whichever module asks first)


def _show(plan: Path, *args: str) -> dict:
    result = invoke("show", *args, "--plan", str(plan), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_show_migrated_account_with_skipped_message(reported_campaign: Reported) -> None:
    address = reported_campaign.migrated[0]
    data = _show(reported_campaign.plan_path, address.upper())  # addresses match case-insensitively
    assert data["address"] == address
    assert data["directory"]["batch"].startswith("Office")
    assert data["directory"]["source_path"] == str(reported_campaign.campaign.maildir(address))
    assert data["state"]["status"] == "verified" and data["state"]["passes"] == 1
    assert data["last_error"] is None
    source = reported_campaign.campaign.source_messages(address)
    counts = {"/".join(path): len(rows) for path, rows in source.items()}
    assert {f["folder"]: f["source"] for f in data["folders"]} == counts
    inbox = next(f for f in data["folders"] if f["folder"] == "INBOX")
    assert inbox["done"] == counts["INBOX"] - 1 and inbox["skipped"] == 1
    for f in data["folders"]:  # the last verification, per folder
        n = counts[f["folder"]]
        assert f["verify"]["ok"] is True and f["verify"]["at"].endswith("Z")
        migrated = n - 1 if f["folder"] == "INBOX" else n
        assert (f["verify"]["source"], f["verify"]["ledger"], f["verify"]["target"]) == (n, migrated, migrated)
    [skipped] = data["skipped_messages"]
    assert skipped["reason"] == "too-large" and skipped["folder"] == "INBOX"
    assert skipped["subject"] == BIG_SUBJECT and skipped["date"] == "Tue, 05 Mar 2024 10:00:00 -0600"
    assert "max_message_size" in skipped["advice"]
    assert data["source_note"] is None
    kinds = [e["kind"] for e in data["events"]]
    assert kinds == ["verified", "released", "claimed"], kinds  # newest first
    assert data["events"][1]["to"] == "synced" and data["events"][0]["to"] == "verified"

    text = invoke("show", address, "--plan", str(reported_campaign.plan_path)).output
    assert address in text and BIG_SUBJECT in text and "too-large" in text


def test_show_failed_account_gives_advice(reported_campaign: Reported) -> None:
    data = _show(reported_campaign.plan_path, reported_campaign.failed)
    assert data["state"]["status"] == "failed"
    assert data["last_error"]["reason"] == "no-mailbox"
    assert f"migrator retry --plan {reported_campaign.plan_path} --account {reported_campaign.failed}" in data["last_error"]["advice"]
    text = invoke("show", reported_campaign.failed, "--plan", str(reported_campaign.plan_path)).output
    assert "what to do: create the mailbox in Exchange" in text


def test_show_survives_an_unreachable_source(reported_campaign: Reported, tmp_path: Path) -> None:
    address = reported_campaign.migrated[1]
    maildir = reported_campaign.campaign.maildir(address)
    moved = tmp_path / "moved"
    shutil.move(maildir, moved)
    try:
        data = _show(reported_campaign.plan_path, address)
    finally:
        shutil.move(moved, maildir)
    assert "could not be read" in data["source_note"] and str(maildir) in data["source_note"]
    [skipped] = data["skipped_messages"]
    assert skipped["reason"] == "too-large" and skipped["subject"] is None


def test_show_unknown_account(reported_campaign: Reported) -> None:
    result = invoke("show", "nobody@ife.org.mx", "--plan", str(reported_campaign.plan_path))
    assert result.exit_code == 2
    assert "no account 'nobody@ife.org.mx'" in result.output and "migrator accounts" in result.output
