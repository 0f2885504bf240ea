"""A Maildir holding what failed deliveries leave behind (0-byte files),
migrated with the CLI to the EWS simulator: the account finishes, the empty files are skipped
with reason "empty" (not blamed on Exchange as "rejected"), everything else arrives exactly
once, and `verify` and `show` agree with the ledger."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.campaign import build_campaign


def test_empty_maildir_files_are_reported_as_empty_and_the_rest_migrates(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=1, messages_per_folder=2) as c:
        address = c.accounts[0]
        box = c.maildir(address)
        (box / "cur" / "1591000001.M2P7.mx1:2,S").write_bytes(b"")
        (box / "new" / "1591000002.M3P7.mx1").write_bytes(b"")
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        run = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert run.returncode == 1, run.stderr  # finished, with messages skipped
        summary = json.loads(run.stdout)
        assert summary["accounts"]["synced"] == 1
        assert sorted((s["key"], s["reason"]) for s in summary["skipped"]) == [
            ("1591000001.M2P7.mx1", "empty"),
            ("1591000002.M3P7.mx1", "empty"),
        ]
        c.compare(address)  # every listed message once, bytes and read state kept, no drafts
        verify = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        inbox = next(
            f
            for a in json.loads(verify.stdout)["accounts"]
            for f in a["folders"]
            if f["folder"] == "INBOX"
        )
        assert inbox["ledger_skipped"] == 2 and inbox["target_found"] == inbox["ledger_done"]
        show = c.cli("show", address, "--plan", str(c.plan_path), "--json")
        assert show.returncode == 0, show.stderr
        text = show.stdout
        assert "1591000001.M2P7.mx1" in text and "is empty (0 bytes)" in text
        assert "rejected" not in text and "refused" not in text
