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
        assert (f["verify"]["source"], f["verify"]["ledger"], f["verify"]["target"]) == (
            n,
            migrated,
            migrated,
        )
    [skipped] = data["skipped_messages"]
    assert skipped["reason"] == "too-large" and skipped["folder"] == "INBOX"
    assert (
        skipped["subject"] == BIG_SUBJECT and skipped["date"] == "Tue, 05 Mar 2024 10:00:00 -0600"
    )
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
    assert (
        f"migrator retry --plan {reported_campaign.plan_path} --account {reported_campaign.failed}"
        in data["last_error"]["advice"]
    )
    text = invoke(
        "show", reported_campaign.failed, "--plan", str(reported_campaign.plan_path)
    ).output
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
    assert (
        "no account 'nobody@ife.org.mx'" in result.output and "migrator accounts" in result.output
    )


def test_show_leads_with_the_scope_of_an_account_out_of_scope(tmp_path: Path) -> None:
    """`show` on an invalid account said "state: pending ... scope invalid" (as if it were
    waiting for a run); it now leads with the scope, discovery's reason and what to do."""
    import sqlite3

    from migrator.model.account import DiscoveredAccount, Scope
    from migrator.store import open_store
    from tests.fixtures.reports import synthetic_state

    synthetic = synthetic_state(tmp_path, 2)
    store = open_store(f"sqlite:///{synthetic.state_path}")
    try:
        plan_id = store.plan_id("synthetic")
        assert plan_id is not None
        kept = [
            DiscoveredAccount(
                key=r.key,
                dn=r.dn,
                scope=Scope.IN_SCOPE,
                address=r.address,
                target_address=r.target_address,
                uid=r.uid,
                name=r.name,
                batch=r.batch,
            )
            for r in store.list_accounts(plan_id)
        ]
        # user00001 (synced) left the filter's selection; rota was never valid
        kept[1] = DiscoveredAccount(
            key=kept[1].key,
            dn=kept[1].dn,
            scope=Scope.EXCLUDED,
            reason="not-selected",
            detail="the plan's filter does not select this person",
            address=kept[1].address,
            uid=kept[1].uid,
            name=kept[1].name,
            batch=kept[1].batch,
        )
        store.record_discovery(
            plan_id,
            None,
            [
                *kept,
                DiscoveredAccount(
                    key="rota@ife.org.mx",
                    dn="uid=../rota,ou=people,dc=ife,dc=org,dc=mx",
                    scope=Scope.INVALID,
                    reason="unsafe-path",
                    detail="uid '../rota' would leave the source root",
                    address="rota@ife.org.mx",
                    uid="../rota",
                    name="Rota",
                ),
            ],
        )
    finally:
        store.close()
    with sqlite3.connect(synthetic.state_path) as db:
        assert db.execute(
            "SELECT status, passes FROM accounts WHERE address = 'user00001@ife.org.mx'"
        ).fetchone() == ("synced", 1)

    text = invoke(
        "show", "rota@ife.org.mx", "--plan", str(synthetic.plan_path), "--no-source"
    ).output
    said = " ".join(text.split())
    # right under the address and name, before anything else
    assert said.startswith(
        "rota@ife.org.mx Rota not in scope: invalid (unsafe-path: uid '../rota' would leave the "
        "source root); run, verify and retry leave it alone what to do: fix its directory entry"
    ), said
    assert "pending" not in said  # never migrated, never going to be as it is: no progress line
    data = json.loads(
        invoke(
            "show", "rota@ife.org.mx", "--plan", str(synthetic.plan_path), "--no-source", "--json"
        ).output
    )
    assert data["scope"]["scope"] == "invalid" and data["scope"]["reason"] == "unsafe-path"
    assert "migrator discover" in data["scope"]["advice"]

    said = " ".join(
        invoke(
            "show", "user00001@ife.org.mx", "--plan", str(synthetic.plan_path), "--no-source"
        ).output.split()
    )
    assert said.startswith(
        "user00001@ife.org.mx Persona 00001 not in scope: excluded (not-selected: the plan's filter "
        "does not select this person)"
    ), said
    assert said.index("[directory] filter") < said.index(
        "progress kept from when it was in scope: synced, 1 pass(es)"
    )
    in_scope = " ".join(
        invoke(
            "show", "user00000@ife.org.mx", "--plan", str(synthetic.plan_path), "--no-source"
        ).output.split()
    )
    assert "state: failed" in in_scope and "not in scope" not in in_scope
