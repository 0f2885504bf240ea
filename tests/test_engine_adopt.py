"""A state database that knows nothing of mail already in the target (lost, another host, a
reset account) must not make `run` send everything again: on a folder's first pass the
engine adopts what the target folder holds for the source keys (EWS: the source-key property;
IMAP: Message-ID, size, date and content) and records it as done with its target id.

Each test migrates a campaign, forgets the state database (or resets an account) and runs
again; the target must then hold every source message exactly once, nothing new must have
been created for what was there, and `verify` must agree."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from migrator.samples.mail import write_maildir
from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.imap_campaign import ImapCampaign, build_imap_campaign
from tests.test_chaos_namesakes import _messages


def _fresh_state(c: Campaign | ImapCampaign) -> None:
    """The campaign goes on with a new, empty state database (the old one is lost)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{c.state_path}{suffix}").unlink(missing_ok=True)
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0


def _ledger(c: Campaign | ImapCampaign) -> tuple[dict[str, int], list[str]]:
    with sqlite3.connect(c.state_path) as db:
        states = dict(db.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall())
        ids = [r[0] for r in db.execute("SELECT target_id FROM messages WHERE state = 'done'")]
    return states, ids


def _run(c: Campaign | ImapCampaign, *extra: str) -> dict:  # type: ignore[type-arg]
    result = c.cli("run", "--plan", str(c.plan_path), "--json", *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def test_a_new_state_database_adopts_what_the_ews_target_holds(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=2, messages_per_folder=3, chunk=4) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        _run(c)
        created = c.sim.stats().items_created
        total = sum(len(m) for box in c.mailboxes.values() for m in box.values())
        assert created == total
        # into fresh mailboxes there is nothing to adopt, and nothing is looked up: folders are
        # created, the well-known ones' item counts came with their GetFolder
        assert c.sim.stats().requests.get("FindItem", 0) == 0
        _fresh_state(c)
        requests_before = dict(c.sim.stats().requests)
        _run(c)
        assert c.sim.stats().items_created == created  # nothing sent again
        for address in c.accounts:
            c.compare(address)
        states, ids = _ledger(c)
        assert states == {"done": total}
        assert len(set(ids)) == total  # one target item per source message
        # one listing per target folder, not a search per chunk
        finds = c.sim.stats().requests.get("FindItem", 0) - requests_before.get("FindItem", 0)
        folders = sum(len({f.path for f in c.sim.folders(a)}) for a in c.accounts)
        assert finds <= folders, (finds, folders)
        checked = c.cli("verify", "--plan", str(c.plan_path))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        # the next pass is a delta pass: it asks the target nothing
        before = c.sim.stats().requests
        _run(c)
        assert c.sim.stats().requests.get("FindItem", 0) == before.get("FindItem", 0)


def test_a_reset_account_is_not_sent_again(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=1, messages_per_folder=3, chunk=4) as c:
        [address] = c.accounts
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        _run(c)
        created = c.sim.stats().items_created
        reset = c.cli("reset", "--plan", str(c.plan_path), "--account", address, "--yes")
        assert reset.returncode == 0, reset.stderr
        summary = _run(c)
        assert c.sim.stats().items_created == created
        c.compare(address)
        assert summary["messages"]["adopted"] == created


def test_a_run_killed_mid_account_then_a_lost_state_sends_only_the_rest(tmp_path: Path) -> None:
    """Part of the mailbox reached the target (one chunk even after its ledger rows were
    written, the kill came before they were marked done); the state is then lost. The next
    run adopts what is there and sends the rest: every message exactly once."""
    with build_campaign(tmp_path / "c", accounts=1, messages_per_folder=4, workers=1, chunk=3) as c:
        [address] = c.accounts
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        killed = c.cli(
            "run", "--plan", str(c.plan_path), env={**c.env, "MIGRATOR_CRASH_AT": "upload:3"}
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        partial = c.sim.stats().items_created
        assert partial > 0
        _fresh_state(c)
        _run(c)
        c.compare(address)
        total = sum(len(m) for m in c.mailboxes[address].values())
        assert c.sim.stats().items_created == total  # what was there was not sent twice
        states, ids = _ledger(c)
        assert states == {"done": total} and len(set(ids)) == total


def test_namesakes_in_a_shared_target_folder_are_never_taken_for_each_other(tmp_path: Path) -> None:
    """ "Sent" and "Elementos enviados" both land in Sent Items and list the same keys for other
    messages. Only "Sent" had reached the target when the state was lost; "Elementos
    enviados" comes first in the next pass. An item tagged K in Sent Items may be either
    folder's message K, so none is adopted for a key two folders list unless both copies are
    there: adopting would lose a message, sending again leaves at most a duplicate (which
    `dedupe` removes)."""
    with build_campaign(tmp_path / "c", accounts=1, workers=1, chunk=10) as c:
        [address] = c.accounts
        maildir = c.maildir(address)
        shutil.rmtree(maildir)
        write_maildir(maildir, {("INBOX",): _messages("inbox", 1), ("Sent",): _messages("sent", 2)})
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        _run(c)
        write_maildir(maildir, {("Elementos enviados",): _messages("enviados", 2)})
        _fresh_state(c)
        _run(c)
        source = c.source_messages(address)
        want = Counter(raw for rows in source.values() for raw, _ in rows)
        got = Counter(item.mime for item in c.sim.items(address))
        assert not want - got, "a source message is missing in the target"
        assert sum((got - want).values()) <= 2  # at most the two ambiguous keys sent again
        states, ids = _ledger(c)
        assert states == {"done": 5} and len(set(ids)) == 5
        # the inbox message has no namesake: adopted, not sent again
        assert not [raw for raw in got - want if b"inbox" in raw]
        # `dedupe` removes what was sent twice, keeping each folder's own copy
        cleaned = c.cli("dedupe", "--plan", str(c.plan_path), "--apply")
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        c.compare(address)


def _exactly_once(c: ImapCampaign, address: str) -> None:
    """ImapCampaign.compare(), also for messages sent with the X-Migrator-Key header first."""
    got: Counter[tuple[str, bytes, frozenset[str], int]] = Counter()
    for (folder, raw, flags, when), n in c.target_copies(address).items():
        if raw.startswith(b"X-Migrator-Key:"):
            raw = raw.split(b"\r\n", 1)[1]
        got[(folder, raw, flags, when)] += n
    want = c.expected(address)
    assert got == want, (sum((want - got).values()), sum((got - want).values()))


@pytest.mark.parametrize("tag_header", [False, True], ids=["by-content", "by-tag-header"])
def test_a_new_state_database_adopts_what_dovecot_holds(
    dovecot: DovecotServer, tmp_path: Path, tag_header: bool
) -> None:
    """IMAP keeps no key on a message: the messages are recognised by content (or, with
    tag_header, by their X-Migrator-Key header), and identical copies (one message in both
    sent folders, which both land in Sent) stay two messages."""
    c = build_imap_campaign(
        tmp_path / "c",
        dovecot,
        accounts=2,
        messages_per_folder=3,
        chunk=4,
        twin_across_folders=True,
    )
    try:
        if tag_header:
            plan = c.plan_path.read_text()
            c.plan_path.write_text(
                plan.replace('kind = "imap"\n', 'kind = "imap"\ntag_header = true\n')
            )
            assert "tag_header = true" in c.plan_path.read_text()
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        _run(c)
        for address in c.accounts:
            _exactly_once(c, address)
        _fresh_state(c)
        summary = _run(c)
        for address in c.accounts:
            _exactly_once(c, address)  # nothing twice
        total = c.source_total()
        assert summary["messages"]["adopted"] == total
        states, ids = _ledger(c)
        assert states == {"done": total}
        checked = c.cli("verify", "--plan", str(c.plan_path))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        c.close()


def test_a_run_killed_mid_account_then_a_lost_state_sends_only_the_rest_to_dovecot(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    c = build_imap_campaign(
        tmp_path / "c",
        dovecot,
        accounts=1,
        messages_per_folder=4,
        workers=1,
        chunk=3,
        twin_across_folders=True,
    )
    try:
        [address] = c.accounts
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        killed = c.cli(
            "run", "--plan", str(c.plan_path), env={**c.env, "MIGRATOR_CRASH_AT": "upload:3"}
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert 0 < sum(c.target_copies(address).values()) < c.source_total()
        _fresh_state(c)
        _run(c)
        c.compare(address)
    finally:
        c.close()
