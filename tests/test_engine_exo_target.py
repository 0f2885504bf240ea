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
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient

from migrator.adapters.targets import open_target
from migrator.model.mail import Flags, UploadItem
from migrator.plan import load_plan
from migrator.samples.mail import SAMPLE_ROLES, SampleMessage
from tests.fixtures.exo_campaign import build_exo_campaign, compare_served
from tests.fixtures.exo_front import (
    CLIENT_SECRET,
    ExoDovecot,
    ExoStack,
    exo_store,  # noqa: F401 - the fixture
)
from tests.fixtures.imap_campaign import ImapCampaign
from tests.fixtures.imap_proxy import Rule, exchange_throttled
from tests.test_engine_adopt import _fresh_state, _ledger, _run
from tests.test_engine_crash import _random_kill

SEED = int(os.environ.get("MIGRATOR_CRASH_SEED", "2026"))
TOKEN_LIFETIME = 4  # seconds: tokens run out again and again during a run
SIZE_LIMIT = 256 * 1024  # the mailboxes' MaxReceiveSize, small so a test message exceeds it
THROTTLE_MS = 1200  # longer than the engine's own first backoff: waiting it must be the hint
HANG_UP_MS = 900
CRASH_POINTS = ["begin_chunk:2", "upload:1", "upload:4", "finish_chunk:3", "upload:9"]
RANDOM_KILLS = 6

TOO_LARGE = SampleMessage(
    "scan",
    b"From: escaner@ife.org.mx\r\nTo: archivo@ife.org.mx\r\nSubject: Escaneo completo\r\n"
    b"Date: Mon, 02 Sep 2019 10:00:00 -0500\r\nMessage-ID: <scan.1@ife.org.mx>\r\n\r\n"
    + b"%078d\r\n"
    * 4000
    % tuple(range(4000)),
    Flags(seen=True),
    datetime(2019, 9, 2, 15, 0, tzinfo=UTC),
)


def _settle(c: ImapCampaign, runs: int = 6) -> dict[str, object]:
    """Run until a run ends with no account failed; its JSON summary."""
    for _ in range(runs):
        final = c.cli("run", "--plan", str(c.plan_path), "--json")
        if final.returncode in (0, 1) and final.stdout:
            summary = dict(json.loads(final.stdout))
            if summary["accounts"]["failed"] == 0:  # type: ignore[index]
                return summary
    raise AssertionError(
        f"no clean run after {runs} attempts: {final.stdout[-2000:]}{final.stderr[-2000:]}"
    )


def _assert_exact(c: ImapCampaign, stack: ExoStack) -> None:
    """Every source message once in its target mailbox (flags, date, folder): as it was sent
    (the bytes the store behind the front keeps) and as Exchange Online serves it (the
    documented conversion of those bytes); the one over the size limit skipped as too-large;
    the ledger agrees; `verify` finds every folder complete."""
    big = next(a for a in c.accounts if TOO_LARGE in c.mailboxes[a][("INBOX",)])
    c.mailboxes[big][("INBOX",)].remove(TOO_LARGE)  # Exchange Online refused it
    try:
        for address in c.accounts:
            c.compare(address)
            compare_served(stack, c, address)
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
        statuses = {
            r[0] for r in db.execute("select status from accounts where scope = 'in_scope'")
        }
        assert statuses == {"synced"}, statuses
    checked = c.cli("verify", "--plan", str(c.plan_path), "--json")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]


def _holding(stack: ExoStack, mailbox: str, connections: int) -> list[IMAPClient]:
    """The user's own mail clients, logged in to `mailbox` and staying connected."""
    context = ssl.create_default_context(cafile=str(stack.store.ca_file))
    clients = []
    for _ in range(connections):
        client = IMAPClient(
            stack.front.host, port=stack.front.port, ssl=True, ssl_context=context, timeout=20
        )
        client.oauth2_login(mailbox, stack.platform.token())
        clients.append(client)
    return clients


def test_a_campaign_into_exchange_online_over_imap_ends_exactly(
    exo_store: ExoDovecot, tmp_path: Path
) -> None:  # noqa: F811
    stack = ExoStack(
        exo_store, lifetime=TOKEN_LIFETIME, max_message_size=SIZE_LIMIT, connections_per_mailbox=2
    )
    front = stack.front
    c = build_exo_campaign(
        tmp_path / "c",
        stack,
        accounts=4,
        messages_per_folder=3,
        workers=3,
        chunk=6,
        extra={0: [TOO_LARGE]},
    )
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
        _assert_exact(c, stack)

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
            trigger = max(
                (t for t in triggers if t.login == late.login and t.at <= late.at),
                key=lambda t: t.at,
            )
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
    exo_store: ExoDovecot, tmp_path: Path
) -> None:  # noqa: F811
    rng = random.Random(SEED)
    stack = ExoStack(exo_store, lifetime=TOKEN_LIFETIME, max_message_size=SIZE_LIMIT)
    c = build_exo_campaign(
        tmp_path / "c",
        stack,
        accounts=3,
        messages_per_folder=3,
        chunk=4,
        lease=10,
        extra={1: [TOO_LARGE]},
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
                # Exchange holds messages the ledger has in flight, and nothing on them says
                # which source message they are: the next run must recognise them
                with sqlite3.connect(c.state_path) as db:
                    inflight = db.execute(
                        "select count(*) from messages where state = 'inflight'"
                    ).fetchone()[0]
                assert inflight > 0
                stored_unknown += 1
        assert stored_unknown >= 2
        for _ in range(RANDOM_KILLS):
            code = _random_kill(c, rng, total)  # type: ignore[arg-type]
            kills += code is None
        assert kills >= 8, f"only {kills} kills landed"
        _settle(c)
        _assert_exact(c, stack)
    finally:
        c.close()
        stack.close()


# --- recognising what Exchange Online holds, without the ledger ------------------------------


def _exact(stack: ExoStack, c: ImapCampaign) -> None:
    for address in c.accounts:
        compare_served(stack, c, address)


@pytest.mark.parametrize("tag_header", [False, True], ids=["by-content", "by-tag-header"])
def test_a_new_state_database_adopts_what_exchange_online_holds(
    exo_store: ExoDovecot, tmp_path: Path, tag_header: bool
) -> None:  # noqa: F811
    """Exchange serves what it built, not what was sent: a lost state database adopts every
    message by what survives conversion (or its X-Migrator-Key header) and sends nothing
    twice; the message in both sent folders stays two messages."""
    stack = ExoStack(exo_store)
    c = build_exo_campaign(
        tmp_path / "c", stack, accounts=1, messages_per_folder=3, chunk=4, twin_across_folders=True
    )
    try:
        if tag_header:
            plan = c.plan_path.read_text()
            c.plan_path.write_text(
                plan.replace('kind = "imap"\n', 'kind = "imap"\ntag_header = true\n')
            )
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        _run(c)
        _exact(stack, c)
        _fresh_state(c)
        appended = stack.front.seen["APPEND"]
        summary = _run(c)
        _exact(stack, c)
        assert summary["messages"]["adopted"] == c.source_total()
        assert stack.front.seen["APPEND"] == appended  # nothing was sent again
        assert _ledger(c)[0] == {"done": c.source_total()}
        checked = c.cli("verify", "--plan", str(c.plan_path))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        c.close()
        stack.close()


def test_a_run_killed_mid_account_then_a_lost_state_sends_only_the_rest_to_exchange_online(
    exo_store: ExoDovecot, tmp_path: Path
) -> None:  # noqa: F811
    stack = ExoStack(exo_store)
    c = build_exo_campaign(
        tmp_path / "c",
        stack,
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
        compare_served(stack, c, address)
    finally:
        c.close()
        stack.close()


def _send_again(c: ImapCampaign, address: str, paths: list[tuple[str, ...]]) -> int:
    """These source folders uploaded once more by migrator's own IMAP target, as a run with a
    lost state database did before first passes adopted what the target held."""
    target = open_target(load_plan(c.plan_path).target, secrets={"client_secret": CLIENT_SECRET})
    sent = 0
    try:
        for path in paths:
            folder = target.ensure_folder(c.users[address], path, SAMPLE_ROLES[path])
            items = [
                UploadItem(f"again-{i}", m.raw, m.flags, m.internal_date)
                for i, m in enumerate(c.mailboxes[address][path])
            ]
            assert all(a.error is None for a in target.upload(c.users[address], folder, items))
            sent += len(items)
    finally:
        target.close()
    return sent


def _dedupe(c: ImapCampaign, *extra: str) -> tuple[int, dict[str, object]]:
    result = c.cli("dedupe", "--plan", str(c.plan_path), "--json", *extra)
    assert result.returncode in (0, 1), result.stdout + result.stderr[-5000:]
    return result.returncode, json.loads(result.stdout)


def test_dedupe_removes_what_was_sent_twice_to_exchange_online(
    exo_store: ExoDovecot, tmp_path: Path
) -> None:  # noqa: F811
    """Copies found by what Exchange keeps of a message (Message-ID, date, From, Subject, Date
    and content), one of them the ledger's; the identical message of both sent folders is two
    messages, and mail that is not migrator's is left alone."""
    stack = ExoStack(exo_store)
    c = build_exo_campaign(
        tmp_path / "c", stack, accounts=1, messages_per_folder=3, twin_across_folders=True
    )
    try:
        [address] = c.accounts
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        _run(c)
        copied = _send_again(c, address, [("INBOX",), ("Sent",), ("Elementos enviados",)])
        client = _holding(stack, c.users[address], 1)[0]
        try:
            foreign = b"From: x@example.org\r\nSubject: not ours\r\nMessage-ID: <x@example.org>\r\n\r\nhi\r\n"
            client.append("INBOX", foreign)
            client.append("INBOX", foreign)
        finally:
            client.logout()
        code, dry = _dedupe(c)
        assert code == 1 and dry["duplicates"] == copied and dry["deleted"] == 0
        code, applied = _dedupe(c, "--apply")
        assert code == 0 and applied["deleted"] == copied
        got = c.target_copies(address)
        assert sum(n for (_, raw, _, _), n in got.items() if b"not ours" in raw) == 2
        assert Counter({k: n for k, n in got.items() if b"not ours" not in k[1]}) == c.expected(
            address
        )
        assert _dedupe(c)[1]["duplicates"] == 0
        checked = c.cli("verify", "--plan", str(c.plan_path))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        c.close()
        stack.close()
