"""The IMAP target's APPENDs against IMAPClient.multiappend(), the library's own batch.

    .venv/bin/python bench/bench_imap_multiappend.py [MESSAGES]   (default 4000)

A baseline for the target's upload path (issue 18, part 4): the same corpus as
bench_imap_target.py (about 4 KB per message, flags and INTERNALDATE set), into fresh mailboxes
of a private Dovecot, one mailbox per connection, in chunks of 50 (the engine's default):
- IMAPClient.multiappend(): one MULTIAPPEND command per chunk, flags and date given; nothing
  else (no folder handling, no ids kept, no recovery of a broken chunk);
- ImapTarget, pipelined single APPEND (MULTIAPPEND hidden: what Exchange Online gets), with
  target ids from APPENDUID;
- ImapTarget with MULTIAPPEND (what Dovecot gets).
With 1 and 8 connections; the variants run interleaved (two rounds) so that they see the same
machine state. Dovecot shares the machine's cores with the client.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from imapclient import IMAPClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_imap_target import (
    CHUNK,
    corpus,
    dovecot_target,
    run,
    target_loop,
    without_multiappend,
)
from migrator.adapters.targets.imap import ImapTarget  # noqa: E402
from migrator.model.mail import Flags, UploadItem  # noqa: E402
from tests.fixtures.dovecot import (  # noqa: E402
    MASTER_PASSWORD,
    MASTER_USER,
    DovecotServer,
    running_dovecot,
)


def client_flags(flags: Flags) -> list[str]:
    named = ((flags.seen, "\\Seen"), (flags.answered, "\\Answered"), (flags.flagged, "\\Flagged"))
    return [name for on, name in named if on] + list(flags.keywords)


def multiappend_loop(server: DovecotServer, user: str, items: list[UploadItem]) -> None:
    client = IMAPClient(server.host, port=server.port, ssl=False, timeout=60)
    client.login(f"{user}*{MASTER_USER}", MASTER_PASSWORD)
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        client.multiappend(
            "INBOX",
            [
                {"msg": i.data, "flags": client_flags(i.flags), "date": i.internal_date}
                for i in chunk
            ],
        )
    client.logout()


def measured(
    label: str,
    connections: int,
    items: list[UploadItem],
    work: Callable[[str, list[UploadItem]], None],
    server: DovecotServer,
) -> None:
    """bench_imap_target's run(), and the client's CPU: wall times overstate on a loaded
    machine, CPU times do not."""
    cpu = time.process_time()
    run(label, connections, items, work, server)
    spent = time.process_time() - cpu
    print(f"{'':<34} client CPU {spent:.2f} s, {spent / len(items) * 1e3:.2f} ms/msg", flush=True)


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 4000
    items = corpus(count)
    with running_dovecot() as server:
        settings, secrets = dovecot_target(server)
        for rnd in (1, 2):
            print(f"-- round {rnd}", flush=True)
            for connections in (1, 8):
                measured(
                    "IMAPClient.multiappend()",
                    connections,
                    items,
                    partial(multiappend_loop, server),
                    server,
                )
                target = without_multiappend(
                    ImapTarget(settings, secrets=secrets, max_connections=connections)
                )
                measured(
                    "ImapTarget (pipelined APPEND)",
                    connections,
                    items,
                    partial(target_loop, target),
                    server,
                )
                target.close()
                target = ImapTarget(settings, secrets=secrets, max_connections=connections)
                measured(
                    "ImapTarget (MULTIAPPEND)",
                    connections,
                    items,
                    partial(target_loop, target),
                    server,
                )
                target.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
