"""IMAP source figures against a private Dovecot: listing keys of a large folder (first pass,
when Dovecot builds its index, and a delta pass), read throughput, and peak memory while
streaming a 40 MB message.

    .venv/bin/python -m bench.bench_source_imap [MESSAGES]   (default 100000)

Dovecot serves a Maildir written here (about 500 MB at the default size, under /tmp, removed
at the end). Runs as root like the test fixture it reuses.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from collections.abc import Callable

from migrator.adapters.sources.imap import ImapSource
from migrator.adapters.sources.imap_connection import ImapAccess
from migrator.model.mail import MessageRecord
from migrator.samples.mail import hard_case_messages
from tests.fixtures.dovecot import DovecotServer, running_dovecot

MB = 1024 * 1024
BODY = b"".join(
    b"line %04d of a fairly ordinary message body, nothing special here\r\n" % i for i in range(60)
)  # about 4 KB, CRLF: served as stored


def write_folder(server: DovecotServer, user: str, count: int) -> None:
    cur = server.maildir(user) / "cur"
    for sub in ("cur", "new", "tmp"):
        (server.maildir(user) / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        raw = (
            b"From: a@example.org\r\nTo: b@example.org\r\nSubject: bench %d\r\n"
            b"Message-ID: <%d@bench>\r\n\r\n" % (i, i)
        ) + BODY
        stamp = 1704067200 + i * 37
        path = cur / f"{stamp}.M{i}P1.bench,S={len(raw)},W={len(raw)}:2,{'S' if i % 3 else ''}"
        path.write_bytes(raw)
        os.utime(path, (stamp, stamp))
    server.chown_tree(user)


def timed(what: str, fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - started
    print(f"{what}: {elapsed:.2f} s", flush=True)
    return elapsed, result


def listing(source: ImapSource) -> list[MessageRecord]:
    inbox = source.folders()[0]
    return [r for r in source.messages(inbox) if isinstance(r, MessageRecord)]


def read_all(records: list[MessageRecord]) -> int:
    total = 0
    for record in records:
        with record.open() as stream:
            while chunk := stream.read(MB):
                total += len(chunk)
    return total


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 100_000
    with running_dovecot() as server:
        user, password = server.new_user()
        access = ImapAccess(
            host=server.host, port=server.port, user=user, password=password, tls="none"
        )
        timed(f"write Maildir folder ({count} files)", lambda: write_folder(server, user, count))
        with ImapSource(access) as source:
            secs, records = timed(
                f"IMAP: first listing of {count} keys (Dovecot builds its index)",
                lambda: listing(source),
            )
            assert isinstance(records, list) and len(records) == count
            secs, records = timed(f"IMAP: delta listing of {count} keys", lambda: listing(source))
            print(f"IMAP listing rate: {count / secs:.0f} keys/s")
        with ImapSource(access, message_ids=False) as source:
            secs, _ = timed(
                f"IMAP: delta listing of {count} keys without Message-ID", lambda: listing(source)
            )
            print(f"IMAP listing rate without Message-ID: {count / secs:.0f} keys/s")
        with ImapSource(access) as source:
            records = listing(source)
            sample = records[: min(len(records), 5000)]
            secs, nbytes = timed(f"IMAP: read {len(sample)} messages", lambda: read_all(sample))
            assert isinstance(nbytes, int)
            print(
                f"IMAP read throughput (small messages): {nbytes / MB / secs:.1f} MB/s, {len(sample) / secs:.0f} messages/s"
            )

        big_user, big_password = server.new_user()
        big = next(m for m in hard_case_messages(big_mb=40) if m.name == "big-attachment")
        server.deliver(big_user, ("INBOX",), big.raw, flags="S")
        server.chown_tree(big_user)
        del big
        big_access = ImapAccess(
            host=server.host, port=server.port, user=big_user, password=big_password, tls="none"
        )
        with ImapSource(big_access) as source:
            (record,) = listing(source)
            tracemalloc.start()
            started = time.perf_counter()
            total = 0
            with record.open() as stream:
                while chunk := stream.read(256 * 1024):
                    total += len(chunk)
            secs = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(
                f"IMAP: streaming a {total / MB:.1f} MB message: {total / MB / secs:.1f} MB/s, peak Python memory {peak / MB:.2f} MB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
