"""Throughput of the EWS target into the local EWS simulator, against bare exchangelib.

The simulator runs in a process of its own, so it does not compete with the client for the GIL.
Same messages, same simulator, same run: our adapter's `upload()` (chunks as the engine sends
them) versus a plain `account.bulk_create()` loop that sets the same properties, and versus a
minimal loop (MIME and read state only). Rounds alternate so drift hits both alike; the median
round is reported. Target: adapter overhead under 10 % over the same-properties loop.

    .venv/bin/python -m bench.bench_ews_target [--messages 1500] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

from exchangelib import IMPERSONATION, Account, Configuration, Credentials, EWSDateTime, Message
from exchangelib.folders import Folder

from migrator.adapters.targets import open_target
from migrator.adapters.targets.ews.properties import MSGFLAG_READ, register_properties
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.model.plan import TargetSettings
from migrator.simulator.ews import DEFAULT_USERS, EWS_PATH

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
CHUNK = 100


def make_messages(n: int, seed: int = 7) -> list[UploadItem]:
    """A realistic mix: mostly 4-40 KB, some 200 KB-1 MB attachments."""
    rnd = random.Random(seed)
    base = datetime(2023, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        size = (
            rnd.choice([4, 8, 16, 24, 40]) * 1024
            if rnd.random() < 0.95
            else rnd.randint(200, 1024) * 1024
        )
        when = base + timedelta(minutes=i)
        raw = (
            b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
            b"Subject: bench " + str(i).encode() + b"\r\n"
            b"Date: " + when.strftime("%a, %d %b %Y %H:%M:%S +0000").encode() + b"\r\n"
            b"Message-ID: <b"
            + str(i).encode()
            + b"@example.org>\r\n\r\n"
            + rnd.randbytes(size // 2).hex().encode()[:size]
            + b"\r\n"
        )
        out.append(
            UploadItem(
                key=f"bench-{i}",
                data=raw,
                flags=Flags(
                    seen=i % 3 != 0, flagged=i % 7 == 0, keywords=("Work",) if i % 5 == 0 else ()
                ),
                internal_date=when + timedelta(seconds=30),
            )
        )
    return out


def chunks(items: Sequence[UploadItem]) -> list[Sequence[UploadItem]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


CPU: dict[str, float] = {}  # client CPU seconds of the last run_threads call


def run_threads(work: Callable[[int], None], threads: int) -> float:
    """Wall seconds of running work(0..threads-1) in threads; client CPU goes to CPU["last"]."""
    cpu = time.process_time()
    start = time.perf_counter()
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    CPU["last"] = time.process_time() - cpu
    return time.perf_counter() - start


class Simulator:
    """The simulator in a child process (the `migrator ews-simulator` entry point, `serve`)."""

    def __init__(self, data_dir: str, mailboxes: list[str]) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        listing = Path(data_dir) / "mailboxes.json"
        listing.write_text(json.dumps(mailboxes))
        code = (
            "import json, sys; from migrator.simulator.ews import serve; "
            "serve(int(sys.argv[1]), sys.argv[2], mailboxes=json.load(open(sys.argv[3])))"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(self.port), str(Path(data_dir) / "sim"), str(listing)],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the EWS simulator did not start") from None
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}{EWS_PATH}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mailbox_names(kind: str, tag: str, threads: int) -> list[str]:
    return [f"{kind}-{tag}-{t}@bench.example" for t in range(threads)]


def adapter_round(sim: Simulator, items: list[UploadItem], threads: int, tag: str) -> float:
    settings = TargetSettings(kind="ews", url=sim.url, auth="basic", username=USER, timeout=300)
    target = open_target(settings, secrets={"password": PASSWORD}, max_connections=threads)
    mailboxes = mailbox_names("adapter", tag, threads)
    folders = []
    for mailbox in mailboxes:
        folders.append(target.ensure_folder(mailbox, ("Bench",), FolderRole.NONE))
    share = [items[t::threads] for t in range(threads)]

    def work(t: int) -> None:
        for chunk in chunks(share[t]):
            results = target.upload(mailboxes[t], folders[t], chunk)
            assert all(r.ok for r in results), [r.error for r in results if not r.ok][:1]

    elapsed = run_threads(work, threads)
    target.close()
    return elapsed


def bare_round(
    sim: Simulator, items: list[UploadItem], threads: int, tag: str, same_properties: bool
) -> float:
    register_properties()
    config = Configuration(
        service_endpoint=sim.url,
        credentials=Credentials(USER, PASSWORD),
        auth_type="basic",
        max_connections=threads,
    )
    accounts, folders = [], []
    for address in mailbox_names("bare", tag, threads):
        account = Account(address, config=config, autodiscover=False, access_type=IMPERSONATION)
        folder = Folder(parent=account.msg_folder_root, name="Bench", folder_class="IPF.Note")
        folder.save()
        accounts.append(account)
        folders.append(folder)
    share = [items[t::threads] for t in range(threads)]

    def message(account: Account, item: UploadItem) -> Message:
        if not same_properties:
            return Message(account=account, mime_content=item.data, is_read=item.flags.seen)
        when = EWSDateTime.from_datetime(item.internal_date)
        extra = {"migrator_flag_status": 2} if item.flags.flagged else {}
        return Message(
            account=account,
            mime_content=item.data,
            is_read=item.flags.seen,
            migrator_message_flags=MSGFLAG_READ if item.flags.seen else 0,
            migrator_delivery_time=when,
            migrator_submit_time=when,
            migrator_source_key=item.key,
            categories=list(item.flags.keywords) or None,
            **extra,
        )

    def work(t: int) -> None:
        for chunk in chunks(share[t]):
            created = accounts[t].bulk_create(
                folder=folders[t],
                items=[message(accounts[t], i) for i in chunk],
                message_disposition="SaveOnly",
            )
            assert not any(isinstance(c, Exception) for c in created)

    return run_threads(work, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    items = make_messages(args.messages)
    total_mb = sum(len(i.data) for i in items) / 1e6
    print(
        f"{len(items)} messages, {total_mb:.1f} MB, chunks of {CHUNK}, {args.threads} thread(s), "
        f"{args.rounds} rounds (median)"
    )
    names = ["adapter", "bare, same properties", "bare, MIME only"]
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    tags = {name: [f"{r}-{n}" for r in range(args.rounds)] for n, name in enumerate(names)}
    mailboxes = mailbox_names("adapter", "warm", 1)
    for name in names:
        kind = "adapter" if name == "adapter" else "bare"
        for tag in tags[name]:
            mailboxes += mailbox_names(kind, tag, args.threads)
    with tempfile.TemporaryDirectory() as data, Simulator(data, mailboxes) as sim:
        adapter_round(sim, items[:100], 1, "warm")  # auth, version guess, SQLite caches
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else list(reversed(names)):
                if name == "adapter":
                    elapsed = adapter_round(sim, items, args.threads, tags[name][r])
                else:
                    elapsed = bare_round(
                        sim, items, args.threads, tags[name][r], same_properties="same" in name
                    )
                times[name].append(elapsed)
                cpu[name].append(CPU["last"])
    median = {k: statistics.median(v) for k, v in times.items()}
    median_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    for name, seconds in median.items():
        print(
            f"{name:24s} {len(items) / seconds:8.1f} msg/s {total_mb / seconds:7.1f} MB/s "
            f"wall {seconds:6.2f} s (rounds {', '.join(f'{t:.2f}' for t in times[name])}); "
            f"client CPU {median_cpu[name]:.2f} s"
        )
    same = "bare, same properties"
    wall = (median["adapter"] / median[same] - 1) * 100
    client = (median_cpu["adapter"] / median_cpu[same] - 1) * 100
    print(
        f"adapter overhead over bare exchangelib with the same properties: "
        f"wall {wall:+.1f} %, client CPU {client:+.1f} %"
    )
    print(
        "(the simulator runs in its own process: client CPU is the adapter's own cost; wall time "
        "also carries the server's and the machine's noise)"
    )


if __name__ == "__main__":
    main()
