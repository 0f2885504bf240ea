"""The engine with Dovecot as the target (IMAP APPEND): crash safety and faults.

Crash safety: `migrator run` is killed with SIGKILL at named points of the chunk protocol
(MIGRATOR_CRASH_AT) and at random progress points, then run again until it finishes. IMAP keeps
no source key on a message, so every in-flight chunk left behind is resolved by content
(`find_uploads`: Message-ID, size, INTERNALDATE, SHA-256). Faults: a proxy in front of Dovecot
drops connections before and after the server stored a chunk, delays commands and answers `NO`
(Exchange's throttling wording with a back-off hint, `[UNAVAILABLE]`). Either way the target
must end with every source message exactly once, compared by FETCH BODY.PEEK[], FLAGS and
INTERNALDATE. Seeded, so a failure can be replayed (MIGRATOR_CRASH_SEED).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
from pathlib import Path

from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.imap_campaign import ImapCampaign, build_imap_campaign
from tests.fixtures.imap_proxy import Rule, exchange_throttled
from tests.test_engine_crash import _random_kill

SEED = int(os.environ.get("MIGRATOR_CRASH_SEED", "2018"))
# begin_chunk: in-flight rows committed, nothing sent; upload: Dovecot stored the chunk, the
# ledger does not know; finish_chunk: both agree
CRASH_POINTS = [
    "begin_chunk:2",
    "upload:1",
    "upload:4",
    "finish_chunk:3",
    "upload:9",
    "begin_chunk:12",
]
RANDOM_KILLS = 8
THROTTLE_MS = 400


def _settle(c: ImapCampaign, runs: int = 5) -> dict[str, object]:
    """Run until a run ends cleanly; its JSON summary."""
    for _ in range(runs):
        final = c.cli("run", "--plan", str(c.plan_path), "--json")
        if final.returncode == 0:
            return dict(json.loads(final.stdout))
    raise AssertionError(
        f"no clean run after {runs} attempts: {final.stdout[-2000:]}{final.stderr[-2000:]}"
    )


def _count(c: ImapCampaign, state: str) -> int:
    with sqlite3.connect(c.state_path) as db:
        return int(
            db.execute("select count(*) from messages where state = ?", (state,)).fetchone()[0]
        )


def _assert_ledger_agrees(c: ImapCampaign) -> None:
    total = c.source_total()
    with sqlite3.connect(c.state_path) as db:
        states = dict(db.execute("select state, count(*) from messages group by state").fetchall())
        assert states == {"done": total}, states
        target_ids = [r[0] for r in db.execute("select target_id from messages")]
        # "{uidvalidity}:{uid}" per folder; every message has its own (none unknown)
        pairs = list(db.execute("select folder_id, target_id from messages"))
        assert len(set(pairs)) == total and all(t and ":" in t for t in target_ids), pairs[:5]
        statuses = {
            r[0] for r in db.execute("select status from accounts where scope = 'in_scope'")
        }
        assert statuses == {"synced"}, statuses


def test_kills_at_any_instant_end_with_every_message_once_in_dovecot(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    c = build_imap_campaign(
        tmp_path / "c",
        dovecot,
        accounts=3,
        messages_per_folder=3,
        chunk=4,
        lease=10,
        twin_across_folders=True,
    )
    try:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        total = c.source_total()
        kills = stored_unknown = 0
        for point in CRASH_POINTS:
            env = {**c.env, "MIGRATOR_CRASH_AT": point}
            result = c.cli("run", "--plan", str(c.plan_path), "--quiet", env=env)
            assert result.returncode in (-signal.SIGKILL, 0, 1), result.stderr
            kills += result.returncode == -signal.SIGKILL
            if point.startswith("upload") and result.returncode == -signal.SIGKILL:
                # the window that matters: Dovecot holds messages the ledger has in flight,
                # and nothing on them says which source message they are
                inflight = _count(c, "inflight")
                in_target = sum(sum(c.target_copies(a).values()) for a in c.accounts)
                assert inflight > 0 and in_target > _count(c, "done"), (inflight, in_target)
                stored_unknown += 1
        assert stored_unknown >= 2
        for _ in range(RANDOM_KILLS):
            # a kill anywhere in what the campaign still has to do, within the next chunk
            code = _random_kill(c, rng, total)  # type: ignore[arg-type]
            kills += code is None
        assert kills >= 10, f"only {kills} kills landed"
        summary = _settle(c)
        assert summary["accounts"]["failed"] == 0, summary  # type: ignore[index]
        for address in c.accounts:
            c.compare(address)
        _assert_ledger_agrees(c)
    finally:
        c.close()


def test_drops_delays_and_throttling_in_front_of_dovecot_still_end_exactly(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    c = build_imap_campaign(
        tmp_path / "c", dovecot, accounts=3, messages_per_folder=4, workers=3, chunk=6, proxied=True
    )
    proxy = c.proxy
    assert proxy is not None
    # Faults aimed at chunks by their content (each account has these messages), so every
    # kind hits during the first pass whatever order the workers take.
    throttled = exchange_throttled(THROTTLE_MS)
    faults = [
        # Dovecot stored the chunk, the answer is lost: the adapter must find it, not resend
        Rule("APPEND", "drop-after", contains=b"Subject: Message 1 in Sent", times=3),
        # half a command reached Dovecot: nothing stored, the chunk is sent again
        Rule("APPEND", "drop-before", contains=b"Subject: Message 2 in Trash", times=3),
        # Exchange's throttling answer: a transient error with a hint of 400 ms
        Rule("APPEND", "no", text=throttled, contains=b"Subject: Message 0 in Junk", times=6),
        Rule(
            "APPEND",
            "no",
            text=b"[UNAVAILABLE] Mailbox is locked, try again",
            contains=b"Subject: Message 3 in Archivo",
            times=3,
        ),
        Rule("APPEND", "delay", contains=b"Subject: Message 0 in Borradores", times=3, delay=0.3),
        # a connection that breaks while the engine looks for what an interrupted chunk stored
        Rule("EXAMINE", "drop-before", times=2),
        Rule("LOGIN", "no", text=b"[UNAVAILABLE] Internal error occurred, try again", times=2),
        Rule("CREATE", "drop-after", times=2),
    ]
    for rule in faults:
        proxy.add(rule)
    try:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        summary = _settle(c)
        assert summary["accounts"]["failed"] == 0, summary  # type: ignore[index]
        unfired = [(r.command, r.action, r.contains) for r in faults if r.times]
        assert not unfired, f"faults that never hit: {unfired}"
        for address in c.accounts:
            c.compare(address)
        _assert_ledger_agrees(c)
        # after a throttling answer, the same mailbox sent its next APPEND no sooner than the
        # hint asked (one worker per mailbox, so its commands are sequential)
        timeline = list(proxy.timeline)
        checked = 0
        for index, event in enumerate(timeline):
            if event.name != "APPEND" or event.text != throttled:
                continue
            following = next(
                (e for e in timeline[index + 1 :] if e.login == event.login and e.name == "APPEND"),
                None,
            )
            assert following is not None, f"{event.login}: nothing sent after being throttled"
            waited = following.at - event.at
            assert waited >= THROTTLE_MS / 1000, (event, following, waited)
            checked += 1
        assert checked == 6
        # a delta pass with nothing new sends nothing: not even a login
        proxy.reset()
        again = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert again.returncode == 0, again.stderr
        assert sum(proxy.seen.values()) == 0, dict(proxy.seen)
    finally:
        c.close()


def _chunk_number_of_second_twin(c: ImapCampaign, address: str, raw: bytes) -> int:
    """With one message per chunk, the number of the chunk that sends the second of two
    byte-identical copies (folders and messages in the order the engine takes them)."""
    from migrator.adapters.sources.maildir import MaildirSource
    from migrator.model.mail import MessageRecord

    local, _, domain = address.partition("@")
    chunks = 0
    copies = 0
    with MaildirSource(str(c.root / "vmail" / domain / local / "Maildir")) as source:
        for folder in source.folders():
            for record in source.messages(folder):
                if not isinstance(record, MessageRecord):
                    continue
                chunks += 1
                with record.open() as stream:
                    copies += stream.read() == raw
                if copies == 2:
                    return chunks
    raise AssertionError("the twin copies are not both in the source")


def test_a_copy_in_two_folders_of_one_target_folder_survives_a_crash_before_its_upload(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """ "Sent" and "Elementos enviados" both go to the target's Sent and both hold the same
    message. A crash after the second copy's in-flight rows are committed, before it is sent:
    the next run's content search must not take the first copy (already in the ledger for the
    other folder) for it; the target ends with both copies."""
    c = build_imap_campaign(
        tmp_path / "c",
        dovecot,
        accounts=1,
        messages_per_folder=2,
        chunk=1,
        workers=1,
        twin_across_folders=True,
    )
    try:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        address = c.accounts[0]
        twin = c.mailboxes[address][("Sent",)][0].raw
        point = f"begin_chunk:{_chunk_number_of_second_twin(c, address, twin)}"
        killed = c.cli(
            "run", "--plan", str(c.plan_path), "--quiet", env={**c.env, "MIGRATOR_CRASH_AT": point}
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert _count(c, "inflight") == 1
        _settle(c)
        c.compare(address)
        _assert_ledger_agrees(c)
        # verify checks each upload by its UIDVALIDITY:UID (IMAP keeps no source key)
        verified = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
        assert json.loads(verified.stdout)["ok"] is True
        _expunge_one_from_inbox(c, address)
        checked = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert checked.returncode == 1
        [account] = json.loads(checked.stdout)["accounts"]
        inbox = next(f for f in account["folders"] if f["folder"] == "INBOX")
        assert inbox["target_found"] == inbox["ledger_done"] - 1 and "missing" in inbox["note"]
    finally:
        c.close()


def _expunge_one_from_inbox(c: ImapCampaign, address: str) -> None:
    from imapclient import IMAPClient

    from tests.fixtures.imap_campaign import MASTER_PASSWORD, MASTER_USER

    client = IMAPClient(c.server.host, port=c.server.port, ssl=False, timeout=30)
    try:
        client.login(f"{c.users[address]}*{MASTER_USER}", MASTER_PASSWORD)
        client.select_folder("INBOX")
        first = client.search(["ALL"])[0]
        client.delete_messages([first])
        client.expunge()
    finally:
        client.logout()


def test_a_limit_the_server_announces_skips_a_larger_message_unsent_on_a_delta_pass(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """A delta pass connects to the target only once it has something to send, so its listing
    knows the plan's limit only; the engine asks the limit again of the bytes it read, after
    connecting told the target APPENDLIMIT: the message is skipped as too-large, never sent."""
    c = build_imap_campaign(
        tmp_path / "c", dovecot, accounts=1, messages_per_folder=2, proxied=True
    )
    proxy = c.proxy
    assert proxy is not None
    try:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        first = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert first.returncode == 0, first.stderr[-2000:]
        address = c.accounts[0]
        local, _, domain = address.partition("@")
        inbox = c.root / "vmail" / domain / local / "Maildir" / "new"
        (inbox / "1800000000.M1P1.host").write_bytes(
            b"From: a@b.mx\r\nSubject: big\r\n\r\n" + b"x" * 20_000 + b"\r\n"
        )
        (inbox / "1800000001.M1P1.host").write_bytes(
            b"From: a@b.mx\r\nSubject: small\r\n\r\nfits\r\n"
        )
        proxy.add_capabilities = [b"APPENDLIMIT=10000"]
        big_sent = Rule("APPEND", "delay", contains=b"Subject: big")
        proxy.add(big_sent)
        second = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert second.returncode == 1, second.stderr[-2000:]  # finished, one message skipped
        summary = json.loads(second.stdout)
        assert summary["messages"]["done"] == 1, summary
        [skipped] = summary["skipped"]
        assert skipped["reason"] == "too-large", skipped
        assert skipped["key"] == "1800000000.M1P1.host", skipped
        assert big_sent.times == 1, "the message over the server's limit was sent"
        assert _count(c, "skipped") == 1 and _count(c, "inflight") == 0
    finally:
        c.close()
