"""`migrator dedupe` on a campaign migrated twice (as a fresh state database did before a first
pass adopted what the target held): a dry run lists the extra copies and deletes nothing,
`--apply` deletes exactly those, keeps the copy the ledger names and never touches mail
migrator did not place. On the EWS simulator (copies found by their source-key tag) and on
Dovecot as IMAP target (copies found by Message-ID, size, date and content)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

from exchangelib import Account, Configuration, Credentials, Message
from exchangelib.folders import Folder
from imapclient import IMAPClient

from migrator.adapters.targets import open_target
from migrator.model.mail import UploadItem
from migrator.plan import load_plan
from migrator.samples.mail import SAMPLE_ROLES
from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.dovecot import MASTER_PASSWORD, MASTER_USER, DovecotServer
from tests.fixtures.ews import SIM_PASSWORD, SIM_USER
from tests.fixtures.imap_campaign import TARGET_DOMAIN, ImapCampaign, build_imap_campaign
from tests.test_verify import SOURCE_KEY_EXT, _tagged


def _reader(c: Campaign, mailbox: str) -> Account:
    config = Configuration(
        service_endpoint=c.sim.url,
        credentials=Credentials(SIM_USER, SIM_PASSWORD),
        auth_type="basic",
    )
    return Account(mailbox, config=config, autodiscover=False, access_type="impersonation")


def _dedupe(c: Campaign | ImapCampaign, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = c.cli("dedupe", "--plan", str(c.plan_path), "--json", *extra)
    assert result.returncode in (0, 1), result.stdout + result.stderr[-5000:]
    return result.returncode, json.loads(result.stdout)


def test_dedupe_removes_the_extra_tagged_copies_in_exchange(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=2, messages_per_folder=3) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.cli("run", "--plan", str(c.plan_path)).returncode == 0
        victim, spared = c.accounts
        # the campaign sent the victim's Inbox and Sent Items a second time (tagged copies),
        # and the user got a message identical to a migrated one by other means (no tag)
        account = _reader(c, victim)
        copied = 0
        foreign_id = ""
        for folder in c.sim.folders(victim):
            if folder.path not in (("Inbox",), ("Sent Items",)):
                continue
            items = c.sim.items(victim, folder.id)
            target = Folder(root=account.root, id=folder.id)
            copies = [_tagged(account, i.mime, i.extended[SOURCE_KEY_EXT]) for i in items]
            if folder.path == ("Inbox",):
                copies.append(Message(account=account, mime_content=items[0].mime))
            answers = account.bulk_create(folder=target, items=copies)
            copied += len(items)
            if folder.path == ("Inbox",):
                foreign_id = answers[-1].id
        assert copied >= 6
        verified = c.cli("verify", "--plan", str(c.plan_path), "--account", victim)
        assert verified.returncode == 1 and "more than once" in verified.stdout

        before = len(c.sim.items(victim))
        code, dry = _dedupe(c)
        assert code == 1  # copies found: something to do
        assert dry["applied"] is False and dry["duplicates"] == copied and dry["deleted"] == 0
        assert {a["address"]: a["duplicates"] for a in dry["accounts"]} == {
            victim: copied,
            spared: 0,
        }
        assert len(c.sim.items(victim)) == before  # a dry run deletes nothing
        shown = c.cli("dedupe", "--plan", str(c.plan_path))
        assert shown.returncode == 1 and f"{copied} extra copies in 1 of 2 accounts" in shown.stdout
        assert "--apply" in shown.stdout
        [listed] = [a for a in dry["accounts"] if a["address"] == victim]
        assert (
            len(listed["folders"]) == 2
            and sum(f["duplicates"] for f in listed["folders"]) == copied
        ), listed

        code, applied = _dedupe(c, "--apply")
        assert code == 0 and applied["deleted"] == copied
        remaining = {i.id for i in c.sim.items(victim)}
        assert foreign_id in remaining  # not migrator's: left alone
        # the copies the ledger names are the ones kept
        with sqlite3.connect(c.state_path) as db:
            named = {
                r[0]
                for r in db.execute(
                    "SELECT m.target_id FROM messages m JOIN accounts a ON a.id = m.account_id WHERE a.address = ?",
                    (victim,),
                )
            }
        assert named <= remaining
        account.bulk_delete(ids=[(foreign_id, None)], delete_type="HardDelete")
        for address in c.accounts:
            c.compare(address)
        assert _dedupe(c)[1]["duplicates"] == 0
        assert c.cli("verify", "--plan", str(c.plan_path)).returncode == 0
        with sqlite3.connect(c.state_path) as db:
            kinds = [r[0] for r in db.execute("SELECT kind FROM events WHERE kind = 'dedupe'")]
        assert kinds == ["dedupe"]


def _imap(c: ImapCampaign, address: str) -> IMAPClient:
    client = IMAPClient(c.server.host, port=c.server.port, ssl=False, timeout=30)
    client.login(f"{c.users[address]}*{MASTER_USER}", MASTER_PASSWORD)
    return client


def _send_again(c: ImapCampaign, address: str, paths: list[tuple[str, ...]]) -> int:
    """Upload these source folders once more through migrator's own IMAP target (the bytes,
    flags and dates it sends), without the ledger knowing."""
    plan = load_plan(c.plan_path)
    target = open_target(plan.target, secrets={"password": MASTER_PASSWORD})
    mailbox = f"{c.users[address]}@{TARGET_DOMAIN}"
    sent = 0
    try:
        for path in paths:
            messages = c.mailboxes[address][path]
            folder = target.ensure_folder(mailbox, path, SAMPLE_ROLES[path])
            items = [
                UploadItem(f"again-{i}", m.raw, m.flags, m.internal_date)
                for i, m in enumerate(messages)
            ]
            answers = target.upload(mailbox, folder, items)
            assert all(a.error is None for a in answers), answers
            sent += len(items)
    finally:
        target.close()
    return sent


def test_dedupe_removes_identical_copies_in_dovecot(dovecot: DovecotServer, tmp_path: Path) -> None:
    c = build_imap_campaign(
        tmp_path / "c", dovecot, accounts=1, messages_per_folder=3, twin_across_folders=True
    )
    try:
        [address] = c.accounts
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.cli("run", "--plan", str(c.plan_path)).returncode == 0
        c.compare(address)
        # the INBOX and Sent were migrated a second time, as a fresh state database did
        copied = _send_again(c, address, [("INBOX",), ("Sent",), ("Elementos enviados",)])
        # someone else's mail, twice: no copy of it is the ledger's
        client = _imap(c, address)
        try:
            foreign = b"From: x@example.org\r\nSubject: not ours\r\nMessage-ID: <x@example.org>\r\n\r\nhi\r\n"
            client.append("INBOX", foreign)
            client.append("INBOX", foreign)
        finally:
            client.logout()
        total = sum(c.target_copies(address).values())

        code, dry = _dedupe(c)
        assert code == 1 and dry["duplicates"] == copied and dry["deleted"] == 0
        assert sum(c.target_copies(address).values()) == total

        code, applied = _dedupe(c, "--apply")
        assert code == 0 and applied["deleted"] == copied
        got = c.target_copies(address)
        assert sum(n for (_, raw, _, _), n in got.items() if b"not ours" in raw) == 2  # left alone
        # the identical copy in "Elementos enviados" (which also lands in Sent) is a message
        # of its own: kept
        want = c.expected(address)
        assert Counter({k: n for k, n in got.items() if b"not ours" not in k[1]}) == want
        assert _dedupe(c)[1]["duplicates"] == 0
        assert c.cli("verify", "--plan", str(c.plan_path)).returncode == 0
    finally:
        c.close()
