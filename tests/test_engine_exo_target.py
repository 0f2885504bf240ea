"""A campaign into Exchange Online over IMAP (the front of tests/fixtures/exo_front.py).

`migrator run` as an operator starts it for Exchange Online: implicit TLS, app-only XOAUTH2
tokens from an identity platform, here one whose tokens live a few seconds, so that sessions
are renewed many times during a run. The front answers as Exchange Online does: its
CAPABILITY set (no MULTIAPPEND, no SPECIAL-USE), its message size limit and wording, tokens
that run out in the middle of a chunk (`* BYE Session invalidated - AccessTokenExpired`),
throttling with "Suggested Backoff Time" (as NO, and as BAD followed by a hang-up), and its
limit of connections per mailbox ("User is authenticated but not connected"). Another run is
killed at the chunk protocol's crash points and at random instants. Both must end with every
source message exactly once in the mailbox, compared with FETCH BODY.PEEK[], FLAGS and
INTERNALDATE (read from the Dovecot behind the front), and a message over the size limit
reported as skipped. Seeded (MIGRATOR_CRASH_SEED).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import ssl
from datetime import UTC, datetime
from pathlib import Path

from imapclient import IMAPClient

from migrator.model.mail import Flags
from migrator.samples.mail import SampleMessage
from tests.fixtures.exo_campaign import build_exo_campaign
from tests.fixtures.exo_front import (
    ExoDovecot,
    ExoStack,
    exo_store,  # noqa: F401 - the fixture
)
from tests.fixtures.imap_campaign import ImapCampaign
from tests.fixtures.imap_proxy import Rule, exchange_throttled
from tests.test_engine_crash import _kill_when

SEED = int(os.environ.get("MIGRATOR_CRASH_SEED", "2026"))
TOKEN_LIFETIME = 4  # seconds: tokens run out again and again during a run
SIZE_LIMIT = 256 * 1024  # the mailboxes' MaxReceiveSize, small so a test message exceeds it
THROTTLE_MS = 1200  # longer than the engine's own first backoff: waiting it must be the hint
HANG_UP_MS = 900
CRASH_POINTS = ["begin_chunk:2", "upload:1", "upload:4", "finish_chunk:3", "upload:9"]
RANDOM_KILLS = 6

TOO_LARGE = SampleMessage(
    "scan", b"From: escaner@ife.org.mx\r\nTo: archivo@ife.org.mx\r\nSubject: Escaneo completo\r\n"
    b"Date: Mon, 02 Sep 2019 10:00:00 -0500\r\nMessage-ID: <scan.1@ife.org.mx>\r\n\r\n"
    + b"%078d\r\n" * 4000 % tuple(range(4000)), Flags(seen=True),
    datetime(2019, 9, 2, 15, 0, tzinfo=UTC))


def _settle(c: ImapCampaign, runs: int = 6) -> dict[str, object]:
    """Run until a run ends with no account failed; its JSON summary."""
    for _ in range(runs):
        final = c.cli("run", "--plan", str(c.plan_path), "--json")
        if final.returncode in (0, 1) and final.stdout:
            summary = dict(json.loads(final.stdout))
            if summary["accounts"]["failed"] == 0:  # type: ignore[index]
                return summary
    raise AssertionError(f"no clean run after {runs} attempts: {final.stdout[-2000:]}{final.stderr[-2000:]}")


def _assert_exact(c: ImapCampaign) -> None:
    """Every source message once in its target mailbox (bytes, flags, date, folder); the
    one over the size limit skipped as too-large; the ledger agrees."""
    big = next(a for a in c.accounts if TOO_LARGE in c.mailboxes[a][("INBOX",)])
    c.mailboxes[big][("INBOX",)].remove(TOO_LARGE)  # Exchange Online refused it
    try:
        for address in c.accounts:
            c.compare(address)
    finally:
        c.mailboxes[big][("INBOX",)].append(TOO_LARGE)
    total = c.source_total()
    with sqlite3.connect(c.state_path) as db:
        states = dict(db.execute("select state, count(*) from messages group by state").fetchall())
        assert states == {"done": total - 1, "skipped": 1}, states
        reason = db.execute("select reason from messages where state = 'skipped'").fetchone()[0]
        assert reason == "too-large", reason
        pairs = list(db.execute("select folder_id, target_id from messages where state = 'done'"))
        assert len(set(pairs)) == total - 1 and all(t and ":" in t for _, t in pairs), pairs[:5]
        statuses = {r[0] for r in db.execute("select status from accounts where scope = 'in_scope'")}
        assert statuses == {"synced"}, statuses


def _holding(stack: ExoStack, mailbox: str, connections: int) -> list[IMAPClient]:
    """The user's own mail clients, logged in to `mailbox` and staying connected."""
    context = ssl.create_default_context(cafile=str(stack.store.ca_file))
    clients = []
    for _ in range(connections):
        client = IMAPClient(stack.front.host, port=stack.front.port, ssl=True,
                            ssl_context=context, timeout=20)
        client.oauth2_login(mailbox, stack.platform.token())
        clients.append(client)
    return clients


def test_a_campaign_into_exchange_online_over_imap_ends_exactly(
        exo_store: ExoDovecot, tmp_path: Path) -> None:  # noqa: F811
    stack = ExoStack(exo_store, lifetime=TOKEN_LIFETIME, max_message_size=SIZE_LIMIT,
                     connections_per_mailbox=2)
    front = stack.front
    c = build_exo_campaign(tmp_path / "c", stack, accounts=4, messages_per_folder=3, workers=3,
                           chunk=6, extra={0: [TOO_LARGE]})
    throttled, hung_up = exchange_throttled(THROTTLE_MS), exchange_throttled(HANG_UP_MS)
    faults = [
        # the session's token runs out as an APPEND arrives, and as a lookup selects a folder
        Rule("APPEND", "expire", contains=b"Subject: Message 1 in Sent", times=2),
        Rule("EXAMINE", "expire", times=1),
        # throttled, answered NO; and answered BAD, then the connection is closed
        Rule("APPEND", "no", text=throttled, contains=b"Subject: Message 0 in Junk", times=2),
        Rule("APPEND", "bad-bye", text=hung_up, contains=b"Subject: Message 2 in Trash", times=2),
        # stored, but the answer is lost with the connection
        Rule("APPEND", "drop-after", contains=b"Subject: Message 1 in Borradores", times=2),
    ]
    for rule in faults:
        front.add(rule)
    try:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        # one user's mail clients hold every connection Exchange Online allows the mailbox
        crowded = c.users[c.accounts[-1]]
        clients = _holding(stack, crowded, 2)
        run = c.start("run", "--plan", str(c.plan_path), "--quiet")
        try:
            assert front.over_limit.wait(60), "the mailbox's connection limit was never met"
        finally:
            for client in clients:  # the user closes the mail client
                client.shutdown()
        _, stderr = run.communicate(timeout=300)
        assert run.returncode in (0, 1), stderr[-3000:]
        summary = _settle(c)
        assert summary["accounts"]["failed"] == 0, summary  # type: ignore[index]
        unfired = [(r.command, r.action, r.contains) for r in faults if r.times]
        assert not unfired, f"faults that never hit: {unfired}"
        _assert_exact(c)

        assert stack.platform.fetches >= 2  # tokens were renewed during the run
        assert front.expired_sessions >= 3  # and sessions ended under us were taken up again
        assert max(front.peak.values()) <= 2
        # nothing Exchange Online lacks was asked for; only the big message was refused
        refused = [(e.name, e.text) for e in front.timeline if e.action == "refused"]
        assert refused == [("APPEND", b"NO Maximum size of appendable message has been exceeded.")]
        # after a throttling answer, that mailbox's next APPENDs came no sooner than the hint:
        # the front throttles any that come sooner, and only APPENDs already on their way when
        # the answer was sent (pipelined behind the throttled one) may be among them
        timeline = list(front.timeline)
        triggers = [e for e in timeline if e.name == "APPEND" and e.text in (throttled, hung_up)]
        assert len(triggers) == 4
        for late in (e for e in timeline if e.action == "throttled"):
            trigger = max((t for t in triggers if t.login == late.login and t.at <= late.at),
                          key=lambda t: t.at)
            assert late.at - trigger.at < HANG_UP_MS / 2000, (trigger, late)
        # a delta pass with nothing new sends nothing: not even a login
        front.reset()
        again = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        assert sum(front.seen.values()) == 0, dict(front.seen)
    finally:
        c.close()
        stack.close()


def test_kills_at_any_instant_end_with_every_message_once_in_exchange_online(
        exo_store: ExoDovecot, tmp_path: Path) -> None:  # noqa: F811
    rng = random.Random(SEED)
    stack = ExoStack(exo_store, lifetime=TOKEN_LIFETIME, max_message_size=SIZE_LIMIT)
    c = build_exo_campaign(tmp_path / "c", stack, accounts=3, messages_per_folder=3, chunk=4,
                           lease=10, extra={1: [TOO_LARGE]})
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
                # Exchange holds messages the ledger has in flight, and nothing on them says
                # which source message they are: the next run must recognise them
                with sqlite3.connect(c.state_path) as db:
                    inflight = db.execute(
                        "select count(*) from messages where state = 'inflight'").fetchone()[0]
                assert inflight > 0
                stored_unknown += 1
        assert stored_unknown >= 2
        for _ in range(RANDOM_KILLS):
            code = _kill_when(c, rng.randint(0, total), rng.uniform(0, 0.05))  # type: ignore[arg-type]
            kills += code is None
        assert kills >= 8, f"only {kills} kills landed"
        _settle(c)
        _assert_exact(c)
    finally:
        c.close()
        stack.close()
