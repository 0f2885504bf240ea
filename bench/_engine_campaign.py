"""Helpers of bench_engine.py: a campaign on disk (LDIF, Maildirs, plan, state), the EWS
simulator in a process of its own, and `migrator` CLI runs measured with wait4().

wait4() gives the rusage of exactly one child (CPU seconds, peak RSS), so the simulator's
CPU never mixes with the migrator's even though both are children of the benchmark.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from migrator.model.mail import Flags
from migrator.samples.directory import DEFAULT_BASE, generate_people, write_ldif
from migrator.samples.mail import SampleMessage, write_maildir
from migrator.samples.plans import (
    SamplePlan,
    ews_target,
    ldif_directory,
    maildir_source,
    sqlite_state,
)
from migrator.simulator.ews import DEFAULT_USERS, EWS_PATH

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
PASSWORD_ENV = "MIGRATOR_BENCH_EWS_PASSWORD"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Measured:
    """One finished child process: exit code, wall seconds, CPU seconds, peak RSS, output."""

    code: int
    wall: float
    cpu: float
    maxrss_mb: float
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        text = self.stdout
        start = text.find("\n{") + 1 if not text.startswith("{") else 0  # past py-spy's banner
        try:
            return dict(json.loads(text[start : text.rfind("}") + 1]))
        except ValueError as exc:
            raise RuntimeError(
                f"not JSON (exit {self.code}): {self.stdout[-2000:]}\n{self.stderr[-2000:]}"
            ) from exc


def measured(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Measured:
    """Run a child to completion; its own rusage comes from wait4()."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        peak = _HighWater(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        peak.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            proc.returncode,
            wall,
            usage.ru_utime + usage.ru_stime,
            peak.kb / 1024,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


class _HighWater:
    """The peak RSS (VmHWM) of a process and its exec'd image, polled every 10 ms.

    Not ru_maxrss: Linux folds the RSS high-water mark of the mm replaced by exec() into it,
    and subprocess uses vfork(), so a child's ru_maxrss carries the benchmark's own peak.
    VmHWM only grows, so the last reading before exit misses at most a final 10 ms spike."""

    def __init__(self, pid: int) -> None:
        self.kb = 0
        self._path = f"/proc/{pid}/status"
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            try:
                with open(self._path) as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            self.kb = max(self.kb, int(line.split()[1]))
                            break
            except (OSError, ValueError):
                pass
            self._done.wait(0.01)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


class Simulator:
    """`python -m migrator ews-simulator` in its own process, on a free port; with `delay`,
    every answer comes that many seconds late, like a server across a network."""

    def __init__(self, data_dir: Path, mailboxes: list[str], delay: float = 0.0) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        listing = data_dir / "mailboxes.txt"
        listing.write_text("".join(m + "\n" for m in mailboxes))
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "migrator",
                "ews-simulator",
                "--port",
                str(self.port),
                "--data",
                str(data_dir / "store"),
                "--mailboxes-from",
                str(listing),
                *(["--delay", str(delay)] if delay else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        (data_dir / "store").mkdir(exist_ok=True)
        # it sets up every mailbox before it listens: about a minute per 100,000 on a quiet
        # machine, several on a loaded one
        deadline = time.monotonic() + 60 + len(mailboxes) / 200
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.process.kill()  # not left behind, still setting up its mailboxes
                    self.process.wait()
                    raise RuntimeError("the EWS simulator did not start") from None
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}{EWS_PATH}"
        self.cpu = 0.0

    def stop(self) -> None:
        self.process.terminate()
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Campaign:
    root: Path
    plan: Path
    state: Path
    addresses: list[str]
    vmail: Path

    def maildir(self, address: str) -> Path:
        local, _, domain = address.partition("@")
        return self.vmail / domain / local / "Maildir"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, PASSWORD_ENV: PASSWORD}

    def cli(self, *args: str, prefix: list[str] | None = None) -> Measured:
        return measured(
            [*(prefix or []), sys.executable, "-m", "migrator", *args], env=self.env, cwd=REPO
        )

    def discover(self) -> None:
        result = self.cli("discover", "--plan", str(self.plan), "--json")
        if result.code != 0:
            raise RuntimeError(f"discover failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")


def people(root: Path, count: int, seed: int) -> tuple[Path, list[str]]:
    """An LDIF with `count` selected people; their addresses, sorted."""
    everyone = generate_people(
        count + count // 4, in_scope=count, offices=2, seed=seed, hostile=False
    )
    ldif = root / "directory.ldif"
    write_ldif(ldif, DEFAULT_BASE, everyone)
    return ldif, sorted((p.primary_mail or "").lower() for p in everyone if p.selected)


def write_plan(
    root: Path,
    ldif: Path,
    url: str,
    *,
    workers: int = 8,
    max_size: int = 35 * 1024 * 1024,
    vmail: Path | None = None,
) -> Campaign:
    """The plan of a campaign under `root` (its own state DB; Maildirs under `vmail`)."""
    vmail = vmail or root / "vmail"
    state = root / "state.db"
    plan = SamplePlan(
        "bench",
        directory=ldif_directory(ldif),
        source=maildir_source(vmail),
        target=ews_target(url, username=USER, password_env=PASSWORD_ENV, max_message_size=max_size),
        run={"workers": workers},
        state=sqlite_state(state),
    ).write(root / "plan.toml")
    return Campaign(root, plan, state, [], vmail)


# --------------------------------------------------------------------------- messages

_WORDS = [
    b"lorem",
    b"ipsum",
    b"dolor",
    b"sit",
    b"amet",
    b"migrate",
    b"exchange",
    b"postfix",
    b"mailbox",
]


def message(i: int, size: int, rnd: random.Random, tag: str) -> SampleMessage:
    """A plausible message of about `size` bytes: a text part, and a base64 attachment when big."""
    when = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=17 * i + rnd.randrange(60))
    head = (
        f"From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: {tag} message {i}\n"
        f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}\nMessage-ID: <{tag}.{i}@example.org>\n"
        "MIME-Version: 1.0\n"
    ).encode()
    if size < 100_000:
        lines = []
        total = len(head) + 40
        while total < size:
            line = b" ".join(rnd.choice(_WORDS) for _ in range(11)) + b"\n"
            lines.append(line)
            total += len(line)
        raw = head + b"Content-Type: text/plain; charset=us-ascii\n\n" + b"".join(lines)
    else:
        payload = base64.encodebytes(rnd.randbytes(size * 3 // 4))
        raw = (
            head
            + b'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\n'
            b"see attached\n--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
            b'Content-Disposition: attachment; filename="data.bin"\n\n' + payload + b"--b1--\n"
        )
    seen = rnd.random() < 0.7
    return SampleMessage(f"{tag}#{i}", raw, Flags(seen=seen, flagged=rnd.random() < 0.05), when)


def mixed_mailbox(seed: int, count: int) -> dict[tuple[str, ...], list[SampleMessage]]:
    """Mostly 2-20 KB, about 3 % of 200 KB-1 MB; four fifths in INBOX, the rest in a folder."""
    rnd = random.Random(seed)
    msgs = []
    for i in range(count):
        size = rnd.randint(200, 1024) * 1024 if rnd.random() < 0.03 else rnd.randint(2, 20) * 1024
        msgs.append(message(i, size, rnd, f"m{seed}"))
    split = count * 4 // 5
    return {("INBOX",): msgs[:split], ("Projects",): msgs[split:]}


def write_mailboxes(
    campaign: Campaign, boxes: dict[str, dict[tuple[str, ...], list[SampleMessage]]]
) -> tuple[int, int]:
    """Write each mailbox as a Maildir through the sample writer; (messages, bytes) written."""
    n = nbytes = 0
    for address, box in boxes.items():
        write_maildir(campaign.maildir(address), box)
        for msgs in box.values():
            n += len(msgs)
            nbytes += sum(len(m.raw) for m in msgs)
    return n, nbytes


# --------------------------------------------------------------------------- delta pass data

FOLDER_SPLIT = (("", 7), (".Sent", 2), (".Archivo", 1))  # (Maildir++ dir, tenths of the messages)


def write_link_maildirs(campaign: Campaign, per_mailbox: int, distinct: int = 100) -> list[str]:
    """Maildirs of `per_mailbox` small messages each, cheaply: each mailbox has `distinct`
    real files and every message name is a hard link to one of them (creating a million
    distinct files takes minutes; the delta pass only lists and stats them). Returns the
    file names of one mailbox (every mailbox has the same names)."""
    names: list[str] = []
    for sub, tenths in FOLDER_SPLIT:
        for i in range(per_mailbox * tenths // 10):
            names.append(f"{sub}/cur/{1_700_000_000 + i}.M{i}P4242.benchhost,S=300:2,S")
    for address in campaign.addresses:
        root = campaign.maildir(address)
        for sub, _ in FOLDER_SPLIT:
            for d in ("cur", "new", "tmp"):
                (root / sub.lstrip("/") / d).mkdir(parents=True, exist_ok=True)
            if sub:
                (root / sub / "maildirfolder").touch()
        originals = []
        for k in range(distinct):
            path = root / f"tmp/seed{k}"
            path.write_bytes(
                b"From: a@example.org\nTo: b@example.org\nSubject: s"
                + str(k).encode()
                + b"\n\n"
                + b"x" * 240
                + b"\n"
            )
            originals.append(str(path))
        base = str(root)
        for j, name in enumerate(names):
            os.link(originals[j % distinct], os.path.join(base, name.lstrip("/")))
        for path in originals:
            os.unlink(path)  # the links keep the inodes; tmp/ stays empty as a Maildir expects
    return names


def _ts(when: datetime) -> str:
    """How SQLAlchemy stores a UTC instant in SQLite (naive UTC, microseconds)."""
    return when.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def seed_ledger(
    campaign: Campaign, names: list[str], folders: dict[str, tuple[str, str, str]]
) -> int:
    """After `discover`: every account synced once, every message of every folder done in the
    ledger with a fake target id, so the next `run` is a delta pass with nothing new.
    `folders` maps the Maildir++ dir to (native, display, role) as the source reports them."""
    from migrator.adapters.sources.maildir import message_key

    long_ago = datetime.now(UTC) - timedelta(hours=1)
    ts = _ts(long_ago)
    by_folder: dict[str, list[str]] = {}
    for name in names:
        sub, _, _ = name.rpartition("/cur/")
        by_folder.setdefault(sub, []).append(message_key(name.rpartition("/")[2]))
    db = sqlite3.connect(campaign.state)
    try:
        accounts = db.execute(
            "SELECT id FROM accounts WHERE scope = 'in_scope' ORDER BY id"
        ).fetchall()
        rows = 0
        for (account_id,) in accounts:
            for sub, keys in by_folder.items():
                native, display, role = folders[sub]
                cur = db.execute(
                    "INSERT INTO folders (account_id, native, display, role, target_folder_id, target_path,"
                    " source_count, source_bytes, done_count, skipped_count, failed_count, created_at,"
                    " last_synced_at) VALUES (?,?,?,?,?,?,?,?,?,0,0,?,?)",
                    (
                        account_id,
                        native,
                        display,
                        role,
                        f"fake-folder-{account_id}-{sub}",
                        display,
                        len(keys),
                        300 * len(keys),
                        len(keys),
                        ts,
                        ts,
                    ),
                )
                folder_id = cur.lastrowid
                db.executemany(
                    "INSERT INTO messages (folder_id, account_id, source_key, state, lease_epoch, size,"
                    " target_id, created_at, updated_at) VALUES (?,?,?,'done',1,300,?,?,?)",
                    (
                        (folder_id, account_id, key, f"fake-{account_id}-{n}", ts, ts)
                        for n, key in enumerate(keys)
                    ),
                )
                rows += len(keys)
            db.execute(
                "UPDATE accounts SET status='synced', passes=1, attempts=0, first_pass_at=?, last_pass_at=?,"
                " updated_at=?, messages_done=?, bytes_done=?, lease_epoch=1 WHERE id=?",
                (ts, ts, ts, len(names), 300 * len(names), account_id),
            )
        db.commit()
        return rows
    finally:
        db.close()
