"""Source figures: listing keys of a 100,000-message folder, read throughput, peak memory while
streaming a 40 MB message.

    .venv/bin/python -m bench.bench_sources [MESSAGES]   (default 100000)

Prints wall-clock and CPU seconds per step. Works in a scratch directory under /tmp (about 1 GB at the default size), removed at the end.
The Maildir listing figure is a cold process but a warm page cache (the files were just
written), which is what a delta pass over a busy server mostly sees.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from migrator.adapters.sources.maildir import MaildirSource
from migrator.adapters.sources.mbox import MboxSource
from migrator.model.mail import Flags, MessageRecord
from migrator.samples.mail import SampleMessage, hard_case_messages, mbox_bytes

MB = 1024 * 1024
BODY = b"".join(
    b"line %04d of a fairly ordinary message body, nothing special here\n" % i for i in range(60)
)  # about 4 KB


def _message(i: int) -> SampleMessage:
    when = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i * 37)
    raw = (
        b"From: a@example.org\nTo: b@example.org\nSubject: bench %d\n"
        b"Message-ID: <%d@bench>\n\n" % (i, i)
    ) + BODY
    flags = Flags(seen=i % 3 != 0, flagged=i % 17 == 0)
    return SampleMessage(f"m{i}", raw, flags, when)


def _large_message(i: int) -> SampleMessage:
    m = _message(i)
    return SampleMessage(m.name, m.raw + BODY * 50, m.flags, m.internal_date)


def write_maildir_folder(root: Path, count: int) -> int:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(count):
        m = _message(i)
        info = "S" if m.flags.seen else ""
        name = f"{1704067200 + i * 37}.M{i}P1.bench,S={len(m.raw)}:2,{info}"
        path = root / "cur" / name
        path.write_bytes(m.raw)
        ts = m.internal_date.timestamp()
        os.utime(path, (ts, ts))
        total += len(m.raw)
    return total


def write_mbox_file(path: Path, count: int) -> None:
    with path.open("wb") as fh:
        for start in range(0, count, 1000):
            fh.write(
                mbox_bytes([_message(i) for i in range(start, min(count, start + 1000))], "mboxrd")
            )


def timed(what: str, fn: Callable[[], object]) -> tuple[float, object]:
    started, cpu = time.perf_counter(), time.process_time()
    result = fn()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    # CPU time too: on a shared, loaded machine the wall clock says more about the neighbours
    print(f"{what}: {elapsed:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    return elapsed, result


def read_all(records: list[MessageRecord]) -> int:
    total = 0
    for r in records:
        with r.open() as fh:
            while chunk := fh.read(MB):
                total += len(chunk)
    return total


def stream_peak(record: MessageRecord) -> tuple[int, int]:
    tracemalloc.start()
    try:
        total = 0
        with record.open() as fh:
            while chunk := fh.read(256 * 1024):
                total += len(chunk)
        return total, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 100_000
    scratch = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    try:
        print(f"messages per folder: {count}")
        md = scratch / "Maildir"
        timed(f"write Maildir folder ({count} files)", lambda: write_maildir_folder(md, count))
        src = MaildirSource(str(md))
        inbox = src.folders()[0]  # counts and byte totals: one listing too
        secs, records = timed(
            f"Maildir: list {count} keys (target < 2 s)", lambda: list(src.messages(inbox))
        )
        assert isinstance(records, list) and len(records) == count
        secs, nbytes = timed("Maildir: read every message", lambda: read_all(records))
        assert isinstance(nbytes, int)
        print(
            f"Maildir read throughput: {nbytes / MB / secs:.1f} MB/s "
            f"({count / secs:.0f} messages/s, small files)"
        )

        spool = scratch / "spool"
        timed(f"write mbox ({count} messages)", lambda: write_mbox_file(spool, count))
        size_mb = spool.stat().st_size / MB
        msrc = MboxSource(str(spool))
        secs, mrecords = timed(
            f"mbox: index and list {count} keys ({size_mb:.0f} MB)",
            lambda: list(msrc.messages(msrc.folders()[0])),
        )
        print(f"mbox index throughput: {size_mb / secs:.1f} MB/s")
        assert isinstance(mrecords, list)
        secs, nbytes = timed("mbox: read every message", lambda: read_all(mrecords))
        assert isinstance(nbytes, int)
        print(f"mbox read throughput: {nbytes / MB / secs:.1f} MB/s")

        # the same bytes in 2,000 messages of about 200 KB: closer to a mailbox with attachments
        large = scratch / "spool-large"
        with large.open("wb") as fh:
            for start in range(0, 2000, 100):
                fh.write(
                    mbox_bytes([_large_message(i) for i in range(start, start + 100)], "mboxrd")
                )
        size_mb = large.stat().st_size / MB
        lsrc = MboxSource(str(large))
        secs, lrecords = timed(
            f"mbox: index and list 2000 large messages ({size_mb:.0f} MB)",
            lambda: list(lsrc.messages(lsrc.folders()[0])),
        )
        print(f"mbox index throughput, large messages: {size_mb / secs:.1f} MB/s")
        assert isinstance(lrecords, list)
        secs, nbytes = timed("mbox: read every large message", lambda: read_all(lrecords))
        assert isinstance(nbytes, int)
        print(f"mbox read throughput, large messages: {nbytes / MB / secs:.1f} MB/s")

        big = next(m for m in hard_case_messages(big_mb=40) if m.name == "big-attachment")
        bigdir = scratch / "BigMaildir"
        for sub in ("cur", "new", "tmp"):
            (bigdir / sub).mkdir(parents=True)
        (bigdir / "cur" / "1704067200.M1P1.bench:2,S").write_bytes(big.raw)
        (scratch / "bigspool").write_bytes(mbox_bytes([big], "mboxrd"))
        del big
        for label, source in (
            ("Maildir", MaildirSource(str(bigdir))),
            ("mbox", MboxSource(str(scratch / "bigspool"))),
        ):
            folder = source.folders()[0]
            [record] = [r for r in source.messages(folder) if isinstance(r, MessageRecord)]
            total, peak = stream_peak(record)
            print(
                f"{label}: streaming a {total / MB:.1f} MB message: peak Python memory "
                f"{peak / MB:.2f} MB"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
