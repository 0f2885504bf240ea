"""`migrator verify` compares source, ledger and target per folder, and notices a migrated
message that vanished from the target or is there twice."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from exchangelib import Account, Configuration, Credentials, Message
from exchangelib.folders import Folder

from migrator.store.owners import pid_namespace
from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.ews import SIM_PASSWORD, SIM_USER

SOURCE_KEY_EXT = "name:8f0c5b1e-3d2a-4f6b-9a7e-6d4c2b1a0e93:MigratorSourceKey"


def _reader(c: Campaign, mailbox: str) -> Account:
    config = Configuration(
        service_endpoint=c.sim.url,
        credentials=Credentials(SIM_USER, SIM_PASSWORD),
        auth_type="basic",
    )
    return Account(mailbox, config=config, autodiscover=False, access_type="impersonation")


def _folders(report: dict, address: str) -> dict[str, dict]:  # type: ignore[type-arg]
    account = next(a for a in report["accounts"] if a["address"] == address)
    return {f["folder"]: f for f in account["folders"]}


def test_verify_finds_missing_and_duplicated_messages(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=2) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.cli("run", "--plan", str(c.plan_path)).returncode == 0
        clean = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        report = json.loads(clean.stdout)
        assert report["ok"] is True
        for address in c.accounts:
            for folder in _folders(report, address).values():
                assert folder["source"] == folder["ledger_done"] + folder["ledger_skipped"]
                assert folder["target_found"] == folder["ledger_done"]
                # "Sent" and "Elementos enviados" both land in Sent Items: items counts both
                assert folder["target_items"] >= folder["target_found"]

        # one migrated message disappears from the target, another shows up twice
        victim = c.accounts[0]
        inbox = next(f for f in c.sim.folders(victim) if f.path == ("Inbox",))
        items = c.sim.items(victim, inbox.id)
        gone, twice = items[0], items[1]
        account = _reader(c, victim)
        account.bulk_delete(ids=[(gone.id, None)], delete_type="HardDelete")
        target_inbox = Folder(root=account.root, id=inbox.id)
        account.bulk_create(
            folder=target_inbox,
            items=[
                Message(account=account, mime_content=twice.mime),  # untagged: someone else's mail
                _tagged(account, twice.mime, twice.extended[SOURCE_KEY_EXT]),
            ],
        )

        checked = c.cli("verify", "--plan", str(c.plan_path), "--account", victim, "--json")
        assert checked.returncode == 1, checked.stdout + checked.stderr
        folder = _folders(json.loads(checked.stdout), victim)["INBOX"]
        assert folder["ok"] is False
        assert folder["target_found"] == folder["ledger_done"] - 1
        before = _folders(report, victim)["INBOX"]["target_items"]
        assert folder["target_items"] == before + 1  # one deleted, two added
        assert "more than once" in folder["note"]
        shown = c.cli("verify", "--plan", str(c.plan_path), "--account", victim)
        assert "more than once" in shown.stdout


def _tagged(account: Account, mime: bytes, key: str) -> Message:
    from migrator.adapters.targets.ews.properties import MimeMessage

    return MimeMessage(account=account, mime_content=mime, migrator_source_key=key)


def _users_delete_one_and_receive_one(c: object, address: str) -> None:
    box = c.maildir(address)  # type: ignore[attr-defined]
    # after the pass, the user deletes a migrated message in INBOX and gets new mail in
    # another folder (as many did in a weeks-long campaign)
    sorted((box / "cur").iterdir())[0].unlink()
    other = sorted(p for p in box.iterdir() if p.name.startswith(".") and (p / "cur").is_dir())[0]
    (other / "new" / "1800000000.M1P1.mx:2,").write_bytes(
        b"From: a@example.org\r\nSubject: later\r\nDate: Mon, 01 Jan 2027 10:00:00 +0000\r\n\r\nnew\r\n"
    )


def test_users_keep_working_new_mail_and_deletions_fail_verify_until_the_next_pass(
    tmp_path: Path,
) -> None:
    with build_campaign(tmp_path / "c", accounts=1) as c:
        [address] = c.accounts
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.cli("run", "--plan", str(c.plan_path)).returncode == 0
        before = len(c.sim.items(address))
        _users_delete_one_and_receive_one(c, address)
        checked = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert checked.returncode == 1, checked.stdout + checked.stderr
        folders = _folders(json.loads(checked.stdout), address)
        assert folders["INBOX"]["ok"] is False
        assert (
            folders["INBOX"]["note"]
            == "1 message(s) deleted or moved in the source since the last pass; run again"
        )
        [new] = [f for name, f in folders.items() if name != "INBOX" and not f["ok"]]
        assert new["note"] == "1 new message(s) since the last pass; run again"
        # the next pass carries both (deletions = "mirror", the default); then the account verifies
        assert c.cli("run", "--plan", str(c.plan_path)).returncode == 0
        again = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        account = json.loads(again.stdout)["accounts"][0]
        assert account["status"] == "verified"
        assert _folders(json.loads(again.stdout), address)["INBOX"]["note"] == ""
        assert len(c.sim.items(address)) == before  # one deleted, one added


def test_with_deletions_kept_a_deleted_message_stays_in_the_target_as_a_note(
    tmp_path: Path,
) -> None:
    with build_campaign(tmp_path / "c", accounts=1) as c:
        c.plan_path.write_text(
            c.plan_path.read_text().replace("[run]\n", '[run]\ndeletions = "keep"\n')
        )
        [address] = c.accounts
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.cli("run", "--plan", str(c.plan_path)).returncode == 0
        before = len(c.sim.items(address))
        _users_delete_one_and_receive_one(c, address)
        ran = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["messages"]["changes"] == {"kept": 1}
        again = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads(again.stdout)["accounts"][0]["status"] == "verified"
        note = _folders(json.loads(again.stdout), address)["INBOX"]["note"]
        assert (
            note
            == "1 message(s) deleted in the source after they were migrated (kept in the target)"
        )
        assert len(c.sim.items(address)) == before + 1  # the deleted one kept, the new one added
        # kept means reported once: a later pass does not count it again
        later = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert json.loads(later.stdout)["messages"]["changes"] == {}


def test_an_account_left_running_by_a_killed_run_is_said_to_be_interrupted(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=1) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.cli("run", "--plan", str(c.plan_path)).returncode == 0
        # what a SIGKILL leaves: the account "running", held by a worker whose process is gone
        gone = subprocess.Popen(["true"])
        gone.wait()
        with sqlite3.connect(c.state_path) as db:
            db.execute("UPDATE workers SET process = ?", (f"{pid_namespace()}/{gone.pid}/1",))
            db.execute(
                "UPDATE accounts SET status = 'running', lease_owner = (SELECT name FROM workers)"
            )
        checked = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert checked.returncode == 1
        [account] = json.loads(checked.stdout)["accounts"]
        assert (
            account["error"]
            == "its last pass was interrupted (the worker stopped); `migrator run` resumes it"
        )


def test_links_junk_and_odd_folders_in_a_maildir_are_reported_never_followed(
    tmp_path: Path,
) -> None:
    """What a first-time operator may have in a Maildir: a link to a file of another user is not
    read, a linked folder is not migrated, a PNG does not arrive as a message, a ".INBOX"
    folder is not passed over, and verify does not say "verified" while they are skipped."""
    with build_campaign(tmp_path / "c", accounts=1) as c:
        [address] = c.accounts
        box = c.maildir(address)
        outside = tmp_path / "outside"
        (outside / "Maildir" / "cur").mkdir(parents=True)
        (outside / "Maildir" / "new").mkdir()
        (outside / "Maildir" / "cur" / "1700000000.M1P1.other:2,S").write_bytes(
            b"From: boss@example.org\nSubject: payroll\n\nconfidential\n"
        )
        # reads like mail on purpose: only the link may keep it out
        (outside / "shadow").write_bytes(b"Subject: root:$6$not-a-real-hash\n\nsecret\n")
        (box / "cur" / "1700000001.M2P2.mx:2,S").symlink_to(outside / "shadow")
        (box / ".Leak").symlink_to(outside / "Maildir")
        (box / "new" / "1700000002.M3P3.mx").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        for sub in ("cur", "new", "tmp"):
            (box / ".INBOX" / sub).mkdir(parents=True)
        kept = b"From: a@example.org\nSubject: in .INBOX\nMessage-ID: <dot-inbox@example.org>\n\nkeep me\n"
        (box / ".INBOX" / "cur" / "1700000003.M4P4.mx:2,S").write_bytes(kept)

        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        run = c.cli("run", "--plan", str(c.plan_path))
        assert run.returncode == 1, run.stdout + run.stderr  # finished, with skipped messages
        assert "symlink" in run.stdout and "not-mail" in run.stdout

        items = c.sim.items(address)
        assert not [i for i in items if b"confidential" in i.mime or b"not-a-real-hash" in i.mime]
        assert not [i for i in items if i.mime.startswith(b"\x89PNG")]
        folder = next(f for f in c.sim.folders(address) if f.path == ("Inbox", "INBOX"))
        assert [i.mime for i in c.sim.items(address, folder.id)] == [kept]

        shown = json.loads(c.cli("show", address, "--plan", str(c.plan_path), "--json").stdout)
        skipped = {m["key"]: m for m in shown["skipped_messages"]}
        assert skipped["./.Leak/"]["reason"] == "symlink"
        assert str(outside / "Maildir") in skipped["./.Leak/"]["detail"]
        assert skipped["1700000001.M2P2.mx"]["reason"] == "symlink"
        assert skipped["1700000002.M3P3.mx"]["reason"] == "not-mail"
        for m in skipped.values():
            assert not m["advice"].startswith("read the error"), m  # each reason has its advice

        checked = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert checked.returncode == 1, checked.stdout + checked.stderr
        inbox = _folders(json.loads(checked.stdout), address)["INBOX"]
        assert inbox["ok"] is False and "./.Leak/ (symlink)" in inbox["note"]
        assert _folders(json.loads(checked.stdout), address)["INBOX/INBOX"]["ok"] is True
