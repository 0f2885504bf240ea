"""IMAP target throughput into a private Dovecot, next to a bare imaplib APPEND loop.

    .venv/bin/python -m bench.bench_imap_target [MESSAGES]   (default 4000)

Every variant stores the same corpus (about 4 KB per message, flags and INTERNALDATE set) into
fresh mailboxes of the same Dovecot, one mailbox per connection, and the variants run
interleaved (two rounds) so both see the same machine state:
- bare imaplib: `IMAP4.append` in a loop (no folder handling, no ids kept);
- ImapTarget: `upload()` in chunks of 50 (the engine's default), target ids from APPENDUID;
- ImapTarget without MULTIAPPEND: pipelined single APPENDs with LITERAL+ only.
With 1 and 8 connections. Dovecot shares the machine's cores with the client.
"""

from __future__ import annotations

import imaplib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from migrator.adapters.targets.imap import ImapTarget
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.model.plan import TargetSettings
from tests.fixtures.dovecot import (
    MASTER_PASSWORD,
    MASTER_USER,
    DovecotServer,
    running_dovecot,
)

CHUNK = 50
BODY = b"".join(
    b"line %04d of a fairly ordinary message body, nothing special here\r\n" % i for i in range(60)
)
FLAG_CYCLE = (
    Flags(seen=True),
    Flags(),
    Flags(seen=True, answered=True),
    Flags(seen=True, flagged=True, keywords=("$label1",)),
)


def corpus(count: int) -> list[UploadItem]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    for i in range(count):
        raw = (
            b"From: a@example.org\r\nTo: b@example.org\r\nSubject: bench %d\r\n"
            b"Message-ID: <%d@bench>\r\n\r\n" % (i, i)
        ) + BODY
        out.append(
            UploadItem(f"k{i}", raw, FLAG_CYCLE[i % len(FLAG_CYCLE)], start + timedelta(minutes=i))
        )
    return out


def imaplib_flags(flags: Flags) -> str:
    names = [
        n
        for on, n in (
            (flags.seen, "\\Seen"),
            (flags.answered, "\\Answered"),
            (flags.flagged, "\\Flagged"),
        )
        if on
    ]
    return "(" + " ".join([*names, *flags.keywords]) + ")"


def bare_loop(server: DovecotServer, user: str, items: list[UploadItem]) -> None:
    imap = imaplib.IMAP4(server.host, server.port)
    imap.login(f"{user}*{MASTER_USER}", MASTER_PASSWORD)
    for item in items:
        typ, _ = imap.append(
            "INBOX",
            imaplib_flags(item.flags),
            imaplib.Time2Internaldate(item.internal_date),
            item.data,
        )
        assert typ == "OK"
    imap.logout()


def target_loop(target: ImapTarget, user: str, items: list[UploadItem]) -> None:
    folder = target.ensure_folder(user, ("INBOX",), FolderRole.INBOX)
    for start in range(0, len(items), CHUNK):
        results = target.upload(user, folder, items[start : start + CHUNK])
        assert all(r.ok for r in results), results[0]


def run(
    label: str,
    connections: int,
    items: list[UploadItem],
    work: Callable[[str, list[UploadItem]], None],
    server: DovecotServer,
) -> float:
    users = [server.new_user()[0] for _ in range(connections)]
    shares = [items[n::connections] for n in range(connections)]
    threads = [
        threading.Thread(target=work, args=(u, s)) for u, s in zip(users, shares, strict=True)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    rate = len(items) / elapsed
    megabytes = sum(len(i.data) for i in items) / 1e6 / elapsed
    print(
        f"{label:<34} {connections} conn: {rate:7.0f} msg/s  {megabytes:5.1f} MB/s "
        f"({len(items)} in {elapsed:.2f} s)",
        flush=True,
    )
    return rate


def without_multiappend(target: ImapTarget) -> ImapTarget:
    opener = target.connector.open

    def open_plain(mailbox: str):  # type: ignore[no-untyped-def]
        session = opener(mailbox)
        return replace(session, capabilities=session.capabilities - {"MULTIAPPEND"})

    target.pool._open = open_plain
    return target


def dovecot_target(server: DovecotServer) -> tuple[TargetSettings, dict[str, str]]:
    """The IMAP target settings and secrets of the test Dovecot, logged in as its master user."""
    settings = TargetSettings(
        kind="imap",
        host=server.host,
        port=server.port,
        tls="none",
        auth="login",
        username=MASTER_USER,
        password_env="UNUSED",
    )
    return settings, {"password": MASTER_PASSWORD}


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 4000
    items = corpus(count)
    with running_dovecot() as server:
        settings, secrets = dovecot_target(server)
        for rnd in (1, 2):
            print(f"-- round {rnd}", flush=True)
            for connections in (1, 8):
                run(
                    "bare imaplib APPEND loop",
                    connections,
                    items,
                    lambda u, s: bare_loop(server, u, s),
                    server,
                )
                target = ImapTarget(settings, secrets=secrets, max_connections=connections)
                run(
                    "ImapTarget (MULTIAPPEND)",
                    connections,
                    items,
                    lambda u, s, t=target: target_loop(t, u, s),
                    server,
                )
                target.close()
                target = without_multiappend(
                    ImapTarget(settings, secrets=secrets, max_connections=connections)
                )
                run(
                    "ImapTarget (pipelined APPEND)",
                    connections,
                    items,
                    lambda u, s, t=target: target_loop(t, u, s),
                    server,
                )
                target.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
