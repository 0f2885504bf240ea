"""Chaos run: `migrator` killed at random instants against a throttling EWS simulator, while
users keep changing their Maildirs; at the end every source message must be in the target
exactly once, with its bytes, read/flag state, received date and folder, and `status` must
tell the truth.

    .venv/bin/python -m bench.bench_chaos --seed 7 --accounts 200 --kills 25 --state sqlite
    .venv/bin/python -m bench.bench_chaos --seed 8 --state postgresql   # 127.0.0.1:5432, trust

What it does:
1. builds a campaign under --dir (default /tmp/migrator-chaos/<state>-<seed>): an LDIF
   directory, a Maildir per account (INBOX, Sent and "Elementos enviados" -- two source
   folders that both land in Sent Items --, Projects/Informes for some), mostly 1-30 KB
   messages, a few of 2-10 MB (those over the plan's 8 MiB limit must end up skipped as
   too-large), and keys that repeat across the two sent folders;
2. starts the EWS simulator in this process with throttling faults (ErrorServerBusy with
   BackOffMilliseconds, HTTP 503 with Retry-After, connection resets, slow answers, a
   concurrency ceiling);
3. loops: starts `migrator run` (sometimes `discover`, `verify`, or -- on PostgreSQL -- two
   `run` processes at once), sends SIGKILL or SIGTERM after a random delay; between passes
   new mail arrives, flags change and messages are deleted in some Maildirs;
4. reruns until a run finishes, checks a further pass sends nothing, runs `verify`, and
   compares the target with the sources message by message, the ledger with the target,
   and `status --json` with both.

Every check that fails is printed; the exit code is 1 if any did. The seed is printed and
makes the campaign, the mutations, the kill instants and the simulator's faults repeatable
(process scheduling is not, so the kill lands on a different instruction each time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from migrator.adapters.sources.maildir import MaildirSource, message_key
from migrator.adapters.targets.ews.properties import (
    SOURCE_KEY_PROPERTY_NAME,
    SOURCE_KEY_PROPERTY_SET,
)
from migrator.model.mail import Flags, MessageRecord
from migrator.samples.directory import DEFAULT_BASE, generate_people, write_ldif
from migrator.samples.mail import SampleMessage, write_maildir
from migrator.samples.plans import SamplePlan, ews_target, ldif_directory, maildir_source
from migrator.simulator.ews import DEFAULT_USERS, EwsSimulator, Faults

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
PASSWORD_ENV = "MIGRATOR_CHAOS_EWS_PASSWORD"
MAX_MESSAGE = 8 * 1024 * 1024
KEY_PROP = f"name:{SOURCE_KEY_PROPERTY_SET}:{SOURCE_KEY_PROPERTY_NAME}"
PG = "postgresql://postgres@127.0.0.1:5432"
LEASE_SECONDS = 15


# where each source folder must land in the target
EXPECTED_PATH = {
    ("INBOX",): ("Inbox",),
    ("Sent",): ("Sent Items",),
    ("Elementos enviados",): ("Sent Items",),
    ("Projects", "Informes"): ("Projects", "Informes"),
}

_WORDS = [b"lorem", b"ipsum", b"dolor", b"migrate", b"exchange", b"postfix", b"mailbox", b"chaos"]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --------------------------------------------------------------------------- the campaign


def make_message(tag: str, size: int, rnd: random.Random, when: datetime) -> bytes:
    head = (
        f"From: Ana <ana@example.org>\r\nTo: luis@example.org\r\nSubject: {tag}\r\n"
        f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\nMessage-ID: <{tag}@chaos.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
    ).encode()
    if size < 100_000:
        body = bytearray()
        while len(body) + len(head) < size:
            body += b" ".join(rnd.choice(_WORDS) for _ in range(10)) + b"\r\n"
        return head + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + bytes(body)
    import base64

    payload = base64.encodebytes(rnd.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        head
        + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
        b"see attached\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="scan.bin"\r\n\r\n' + payload + b"--b1--\r\n"
    )


def mailbox(
    index: int, rnd: random.Random, big: bool, small: bool = False
) -> dict[tuple[str, ...], list[SampleMessage]]:
    """small: about four messages, as the demo's mailboxes (the two sent folders still collide)."""
    folders: list[tuple[tuple[str, ...], int]] = [
        (("INBOX",), rnd.randint(1, 3) if small else rnd.randint(4, 16)),
        (("Sent",), 1 if small else rnd.randint(1, 5)),
        (("Elementos enviados",), 1 if small else rnd.randint(1, 4)),
    ]
    if index % 3 == 0:
        folders.append((("Projects", "Informes"), 1 if small else rnd.randint(1, 4)))
    box: dict[tuple[str, ...], list[SampleMessage]] = {}
    base = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=index)
    for folder, count in folders:
        msgs = []
        for i in range(count):
            # the i-th message of both sent folders has the same time, so the same Maildir
            # key: two legitimate different messages whose keys meet in one target folder
            when = (
                base + timedelta(hours=i)
                if folder[0] in ("Sent", "Elementos enviados")
                else base + timedelta(minutes=rnd.randrange(10**6))
            )
            size = rnd.randint(1, 30) * 1024
            if big and i == 0 and folder == ("INBOX",):
                size = rnd.randint(2, 10) * 1024 * 1024
            tag = f"chaos {index} {'/'.join(folder)} {i}"
            raw = make_message(tag, size, rnd, when)
            flags = Flags(
                seen=rnd.random() < 0.6, flagged=rnd.random() < 0.15, answered=rnd.random() < 0.1
            )
            msgs.append(SampleMessage(tag, raw, flags, when))
        box[folder] = msgs
    return box


@dataclass
class Campaign:
    root: Path
    plan: Path
    addresses: list[str]
    state_url: str
    sim: EwsSimulator
    pg_name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 600.0  # longest a finishing command may take

    def maildir(self, address: str) -> Path:
        local, _, domain = address.partition("@")
        return self.root / "vmail" / domain / local / "Maildir"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "migrator", *args]

    def start(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        out = self.root / "logs" / name
        out.parent.mkdir(exist_ok=True)
        with open(f"{out}.out", "wb") as so, open(f"{out}.err", "wb") as se:
            proc = subprocess.Popen(
                self.argv(*args, "--plan", str(self.plan)),
                stdout=so,
                stderr=se,
                env=self.env,
                cwd=self.root,
            )
        return proc, out

    def cli(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args, "--plan", str(self.plan)),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.root,
            timeout=timeout or self.timeout,
        )

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.pg_name:
            import psycopg

            with psycopg.connect(f"{PG}/{self.pg_name}", autocommit=True) as conn:
                return list(conn.execute(query.replace("?", "%s"), params or None).fetchall())
        db = sqlite3.connect(f"file:{self.root / 'state.db'}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute(query, params).fetchall()
        finally:
            db.close()


def build(
    root: Path,
    accounts: int,
    seed: int,
    state: str,
    faults: Faults,
    workers: int,
    small: bool = False,
) -> Campaign:
    root.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    people = generate_people(
        accounts + accounts // 4, in_scope=accounts, offices=4, seed=seed, hostile=False
    )
    ldif = root / "directory.ldif"
    write_ldif(ldif, DEFAULT_BASE, people)
    addresses = sorted((p.primary_mail or "").lower() for p in people if p.selected)
    sim = EwsSimulator(root / "ews", port=0, faults=faults)
    for address in addresses:
        sim.add_mailbox(address)
    sim.start()
    big_every = max(1, accounts // 12)  # about a dozen messages of 2-10 MB
    n = nbytes = 0
    for index, address in enumerate(addresses):
        local, _, domain = address.partition("@")
        box = mailbox(index, rnd, big=index % big_every == 1, small=small)
        write_maildir(root / "vmail" / domain / local / "Maildir", box)
        n += sum(len(v) for v in box.values())
        nbytes += sum(len(m.raw) for v in box.values() for m in v)
    pg_name = None
    if state == "postgresql":
        import psycopg

        pg_name = f"chaos_{seed}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        url = f"{PG}/{pg_name}"
        state_section: dict[str, str] = {}  # MIGRATOR_STATE: a plan's URL carries no user
    else:
        url = f"sqlite:///{root / 'state.db'}"
        state_section = {"url": url}
    plan = SamplePlan(
        "chaos",
        directory=ldif_directory(ldif),
        source=maildir_source(root / "vmail"),
        target=ews_target(
            sim.url, username=USER, password_env=PASSWORD_ENV, max_message_size=MAX_MESSAGE
        ),
        run={
            "workers": workers,
            "target_concurrency": 8,
            "chunk_messages": 12,
            "lease_seconds": LEASE_SECONDS,
            "max_account_attempts": 50,
        },
        state=state_section,
    ).write(root / "plan.toml")
    env = {**os.environ, PASSWORD_ENV: PASSWORD, "PYTHONPATH": str(REPO)}
    if pg_name:
        env["MIGRATOR_STATE"] = url
    log(f"campaign: {len(addresses)} accounts, {n:,} messages, {nbytes / 2**20:.0f} MB in {root}")
    return Campaign(root, plan, addresses, url, sim, pg_name, env)


# --------------------------------------------------------------------------- users at work


@dataclass
class History:
    deleted: dict[tuple[str, tuple[str, ...], str], bytes] = field(default_factory=dict)
    # (address, folder, key) -> flags the target may show (None: decided by the final flags)
    flag_changes: dict[tuple[str, tuple[str, ...], str], list[tuple[str, Flags]]] = field(
        default_factory=dict
    )
    arrived: int = 0


def folder_dir(maildir: Path, folder: tuple[str, ...]) -> Path:
    return maildir if folder == ("INBOX",) else maildir / ("." + ".".join(folder))


def files_of(maildir: Path, folder: tuple[str, ...]) -> list[Path]:
    fdir = folder_dir(maildir, folder)
    return sorted(
        p for sub in ("cur", "new") if (fdir / sub).is_dir() for p in (fdir / sub).iterdir()
    )


def flags_of(name: str) -> Flags:
    _, sep, info = name.partition(":2,")
    return Flags(seen="S" in info, flagged="F" in info, answered="R" in info) if sep else Flags()


def ledger_state(c: Campaign, address: str, native_hint: tuple[str, ...], key: str) -> str | None:
    display = "/".join(native_hint)
    rows = c.sql(
        "SELECT m.state FROM messages m JOIN folders f ON f.id = m.folder_id JOIN accounts a"
        " ON a.id = m.account_id WHERE a.address = ? AND f.display = ? AND m.source_key = ?",
        address,
        display,
        key,
    )
    return rows[0][0] if rows else None


def users_at_work(c: Campaign, rnd: random.Random, history: History) -> str:
    """New mail, a flag changed, a message deleted, in a few mailboxes."""
    done = []
    for address in rnd.sample(c.addresses, k=min(len(c.addresses), rnd.randint(1, 6))):
        maildir = c.maildir(address)
        action = rnd.choice(["arrive", "arrive", "burst", "flag", "delete"])
        folder = rnd.choice([("INBOX",), ("INBOX",), ("Sent",), ("Elementos enviados",)])
        if action in ("arrive", "burst"):
            # a burst (a mailing list, a restored archive) keeps the next passes busy, so
            # that kills land in uploads and not only in passes with nothing to send
            count = rnd.randint(10, 40) if action == "burst" else 1
            fdir = folder_dir(maildir, folder)
            for _ in range(count):
                history.arrived += 1
                when = datetime.now(UTC).replace(microsecond=0)
                size = (
                    rnd.choice([2_000, 20_000, 3 * 1024 * 1024])
                    if rnd.random() < 0.05
                    else rnd.randint(1, 30) * 1024
                )
                raw = make_message(f"arrived {history.arrived} {address}", size, rnd, when)
                name = f"{int(when.timestamp())}.M{history.arrived}P9999.chaoshost,S={len(raw)}"
                (fdir / "tmp" / name).write_bytes(raw)
                os.rename(fdir / "tmp" / name, fdir / "new" / name)  # how an MDA delivers
            done.append(f"{count} new {address}/{'/'.join(folder)}")
            continue
        files = files_of(maildir, folder)
        if not files:
            continue
        path = rnd.choice(files)
        key = message_key(path.name)
        if action == "flag":
            old = flags_of(path.name)
            new = Flags(
                seen=not old.seen if rnd.random() < 0.7 else old.seen,
                flagged=not old.flagged if rnd.random() < 0.5 else old.flagged,
                answered=old.answered,
            )
            info = "".join(
                c for c, on in (("F", new.flagged), ("R", new.answered), ("S", new.seen)) if on
            )
            state = ledger_state(c, address, folder, key)
            history.flag_changes.setdefault((address, folder, key), []).append((state or "", old))
            os.rename(path, path.parent.parent / "cur" / f"{path.name.split(':', 1)[0]}:2,{info}")
            done.append(f"flags {address}/{'/'.join(folder)} {key} (ledger: {state})")
        else:
            history.deleted[(address, folder, key)] = path.read_bytes()
            path.unlink()
            done.append(f"deleted {address}/{'/'.join(folder)} {key}")
    return "; ".join(done)


# --------------------------------------------------------------------------- kills


@dataclass
class Chaos:
    kills: int = 0
    terms: int = 0
    finished: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stderr_lines: Counter[str] = field(default_factory=Counter)

    def finding(self, text: str) -> None:
        log(f"FINDING: {text}")
        self.findings.append(text)


def stop(proc: subprocess.Popen[bytes], how: signal.Signals, chaos: Chaos, what: str) -> int:
    if proc.poll() is not None:
        chaos.finished[what] += 1
        return proc.returncode
    proc.send_signal(how)
    if how == signal.SIGKILL:
        chaos.kills += 1
        return proc.wait()
    chaos.terms += 1
    try:
        code = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        chaos.finding(f"{what} did not exit within 90 s of SIGTERM")
        proc.kill()
        return proc.wait()
    if code == -signal.SIGTERM:
        # the signal came before migrator's handler was installed or after it was removed
        # (start-up, or the summary already printed): a shell shows 143 all the same
        chaos.notes.append(f"{what} ended by SIGTERM itself (no handler at that instant)")
        return 143
    if code not in (143, 0, 1):
        chaos.finding(f"{what} answered SIGTERM with exit code {code}, expected 143")
    return code


def collect_stderr(out: Path, chaos: Chaos) -> None:
    text = Path(f"{out}.err").read_text(errors="replace")
    if "Traceback" in text:
        chaos.finding(f"traceback on stderr of {out.name}: {text[text.find('Traceback') :][:1500]}")
    for line in text.splitlines():
        line = re.sub(r"\d+", "N", line.strip())
        if line:
            chaos.stderr_lines[line[:200]] += 1


def after_kill_checks(c: Campaign, chaos: Chaos, label: str, termed: list[int]) -> None:
    """What an operator would see right after the processes died. A process that exited on
    SIGTERM must have given its accounts back; one killed leaves them "running" until the
    next run notices its death (reported as a note)."""
    for pid in termed:
        held = c.sql(
            "SELECT address FROM accounts WHERE status = 'running' AND lease_owner LIKE ?",
            f"%:{pid}",
        )
        if held:
            chaos.finding(
                f"after {label}: the process stopped by SIGTERM left {len(held)} account(s) "
                f"running: {[h[0] for h in held][:5]}"
            )
    status = c.cli("status", "--json")
    if status.returncode != 0:
        chaos.finding(f"status failed after {label}: {status.stderr[-500:]}")
        return
    data = json.loads(status.stdout)
    running = data["accounts"]["running"]
    if running:
        chaos.notes.append(
            f"after {label}: status shows {running} account(s) running with no migrator alive"
        )


def chaos_loop(
    c: Campaign,
    rnd: random.Random,
    kills: int,
    state: str,
    history: History,
    chaos: Chaos,
    max_delay: float,
) -> None:
    n = 0
    natural: list[float] = []  # how long runs took that ended before their kill
    while chaos.kills + chaos.terms < kills:
        n += 1
        roll = rnd.random()
        how = signal.SIGTERM if rnd.random() < 0.3 else signal.SIGKILL
        # aim inside a run: once passes get short (deltas), so do the delays
        longest = (
            min(max_delay, 1.5 * sorted(natural)[len(natural) // 2])
            if len(natural) >= 3
            else max_delay
        )
        delay = rnd.uniform(0.3, max(0.6, longest))
        began = time.monotonic()
        if roll < 0.08:
            kind = "discover"
        elif roll < 0.16:
            kind = "verify"
        elif roll < 0.36 and state == "postgresql" or roll < 0.22:
            kind = "double"
        elif roll < 0.42 and state == "postgresql":
            kind = "pause"
        else:
            kind = "run"
        if kind == "pause":
            # a worker frozen (SIGSTOP: a VM pause, a swap storm) past its lease while another
            # run takes its accounts over; thawed, it must not write or upload for them
            p1, o1 = c.start(f"{n:03d}-run-frozen", "run", "--quiet")
            time.sleep(delay)
            if p1.poll() is None:
                p1.send_signal(signal.SIGSTOP)
            # the other run starts once the frozen one's leases ran out, takes its accounts
            # over at once, and is busy with them when the frozen one wakes up
            time.sleep(LEASE_SECONDS + 1)
            p2, o2 = c.start(f"{n:03d}-run-takeover", "run", "--quiet")
            time.sleep(rnd.uniform(1.5, 4))
            if p1.poll() is None:
                p1.send_signal(signal.SIGCONT)
            time.sleep(rnd.uniform(1, 4))
            codes = [stop(p1, how, chaos, "run"), stop(p2, how, chaos, "run")]
            outs = [o1, o2]
            procs = [p1, p2]
        elif kind == "double":
            p1, o1 = c.start(f"{n:03d}-run-a", "run", "--quiet")
            time.sleep(rnd.uniform(0, 2))  # picks when the second joins, no synchronisation
            p2, o2 = c.start(f"{n:03d}-run-b", "run", "--quiet")
            time.sleep(delay)
            codes = [
                stop(p1, how, chaos, "run"),
                stop(p2, rnd.choice([how, signal.SIGKILL]), chaos, "run"),
            ]
            outs = [o1, o2]
            procs = [p1, p2]
        else:
            args = {
                "discover": ["discover"],
                "verify": ["verify", "--quiet"] if False else ["verify"],
                "run": ["run", "--quiet"],
            }[kind]
            p, o = c.start(f"{n:03d}-{kind}", *args)
            try:
                p.wait(timeout=delay)  # the kill instant, or the run's natural end
                if kind == "run":
                    natural.append(time.monotonic() - began)
                    natural[:] = natural[-8:]
            except subprocess.TimeoutExpired:
                pass
            codes = [stop(p, how, chaos, kind)]
            outs = [o]
            procs = [p]
        for o in outs:
            collect_stderr(o, chaos)
        for code, o in zip(codes, outs, strict=True):
            if code not in (-9, 143, 0, 1):
                err = Path(f"{o}.err").read_text(errors="replace")[-800:]
                chaos.finding(f"{o.name}: exit code {code}: {err}")
        log(f"pass {n}: {kind} {how.name} after {delay:.1f}s -> {codes}")
        termed = [p.pid for p, code in zip(procs, codes, strict=True) if code == 143]
        after_kill_checks(c, chaos, f"pass {n} ({kind} {how.name})", termed)
        if rnd.random() < 0.6:
            what = users_at_work(c, rnd, history)
            if what:
                log(f"  users: {what}")


# --------------------------------------------------------------------------- the verdict


def source_now(
    c: Campaign, address: str
) -> dict[tuple[str, ...], list[tuple[bytes, MessageRecord]]]:
    out: dict[tuple[str, ...], list[tuple[bytes, MessageRecord]]] = {}
    with MaildirSource(str(c.maildir(address))) as source:
        for folder in source.folders():
            rows = out.setdefault(folder.path, [])
            for record in source.messages(folder):
                if isinstance(record, MessageRecord):
                    with record.open() as stream:
                        rows.append((stream.read(), record))
    return out


def compare(c: Campaign, history: History, chaos: Chaos) -> dict[str, int]:
    """Every source message exactly once, in the right folder, with its bytes, flags and date."""
    figures: Counter[str] = Counter()
    ledger_done = dict(
        c.sql(
            "SELECT a.address, count(*) FROM messages m JOIN accounts a ON a.id = m.account_id"
            " WHERE m.state = 'done' GROUP BY a.address"
        )
    )
    counters = {
        a: (d, s)
        for a, d, s in c.sql(
            "SELECT address, messages_done, messages_skipped FROM accounts WHERE scope = 'in_scope'"
        )
    }
    ledger_skipped = dict(
        c.sql(
            "SELECT a.address, count(*) FROM messages m JOIN accounts a ON a.id = m.account_id"
            " WHERE m.state = 'skipped' GROUP BY a.address"
        )
    )
    for address in c.addresses:
        paths = {f.id: f.path for f in c.sim.folders(address)}
        items = c.sim.items(address)
        figures["target items"] += len(items)
        # (target path, key) -> items
        by_key: dict[tuple[tuple[str, ...], str], list[Any]] = defaultdict(list)
        for item in items:
            key = item.extended.get(KEY_PROP)
            if key is None:
                chaos.finding(f"{address}: target item {item.subject!r} carries no source key")
                continue
            by_key[(paths[item.folder_id], key)].append(item)
        claimed: set[str] = set()
        for folder, rows in source_now(c, address).items():
            want_path = EXPECTED_PATH.get(folder)
            if want_path is None:
                chaos.finding(f"{address}: unexpected source folder {folder}")
                continue
            for raw, rec in rows:
                figures["source messages"] += 1
                matches = [i for i in by_key.get((want_path, rec.key), []) if i.mime == raw]
                where = f"{address} {'/'.join(folder)} {rec.key}"
                if len(raw) > MAX_MESSAGE:
                    figures["too large (expected skipped)"] += 1
                    if matches:
                        chaos.finding(
                            f"{where}: {len(raw):,} bytes is over the limit but is in the target"
                        )
                    continue
                if not matches:
                    elsewhere = [paths[i.folder_id] for i in items if i.mime == raw]
                    chaos.finding(
                        f"{where}: missing from the target"
                        + (f" (found in {elsewhere})" if elsewhere else "")
                    )
                    figures["missing"] += 1
                    continue
                if len(matches) > 1:
                    chaos.finding(f"{where}: {len(matches)} copies in the target")
                    figures["duplicates"] += len(matches) - 1
                item = matches[0]
                claimed.update(i.id for i in matches)
                allowed = allowed_flags(history, (address, folder, rec.key), rec.flags)
                shown = (item.is_read, item.extended.get("tag:0x1090") == "2")
                if shown not in {(f.seen, f.flagged) for f in allowed}:
                    chaos.finding(
                        f"{where}: target shows read={shown[0]} flagged={shown[1]}, source "
                        f"{[(f.seen, f.flagged) for f in allowed]}"
                    )
                    figures["wrong flags"] += 1
                received = item.extended.get("tag:0x0E06")
                want_received = rec.internal_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if received != want_received:
                    chaos.finding(f"{where}: received {received}, source {want_received}")
                    figures["wrong date"] += 1
                if item.is_draft:
                    chaos.finding(f"{where}: shows as a draft")
                figures["present exactly once"] += 1
        for (addr, folder, key), raw in history.deleted.items():
            if addr != address:
                continue
            copies = [i for i in by_key.get((EXPECTED_PATH[folder], key), []) if i.mime == raw]
            claimed.update(i.id for i in copies)
            figures[
                "deleted in source, migrated before"
                if copies
                else "deleted in source before migration"
            ] += 1
            if len(copies) > 1:
                chaos.finding(
                    f"{address} {'/'.join(folder)} {key} (deleted in source): {len(copies)} copies"
                )
        for item in items:
            if item.id not in claimed:
                chaos.finding(
                    f"{address}: target item {item.subject!r} in {paths[item.folder_id]} matches no source message"
                )
                figures["unexpected"] += 1
        # the ledger and the counters against the target
        done = ledger_done.get(address, 0)
        if done != len(items):
            chaos.finding(f"{address}: ledger has {done} done, target holds {len(items)}")
        counted_done, counted_skipped = counters.get(address, (None, None))
        if counted_done != done:
            chaos.finding(
                f"{address}: accounts.messages_done = {counted_done}, ledger done = {done}"
            )
            figures["counter mismatches"] += 1
        if counted_skipped != ledger_skipped.get(address, 0):
            chaos.finding(
                f"{address}: accounts.messages_skipped = {counted_skipped}, ledger "
                f"skipped = {ledger_skipped.get(address, 0)}"
            )
            figures["counter mismatches"] += 1
    return dict(figures)


def allowed_flags(
    history: History, where: tuple[str, tuple[str, ...], str], now: Flags
) -> list[Flags]:
    """The flags the target may show: those the message had when it was uploaded. A change
    made while the ledger had it done cannot reach the target (passes only add messages)."""
    allowed: list[Flags] = []
    for state, old in history.flag_changes.get(where, []):
        if state == "done":
            return [*allowed, old]
        if state == "inflight":
            allowed.append(old)
    return [*allowed, now]


def final_checks(c: Campaign, history: History, chaos: Chaos) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    result = None
    for attempt in range(1, 7):
        result = c.cli("run", "--json")
        log(f"final run {attempt}: exit {result.returncode}")
        (c.root / "logs" / f"final-{attempt}.err").write_text(result.stderr)
        if result.returncode in (0, 1):
            summary = json.loads(result.stdout)
            if summary["accounts"]["failed"] == 0:
                break
            log(f"  {summary['accounts']['failed']} account(s) failed: {summary['failures'][:3]}")
    assert result is not None
    if result.returncode not in (0, 1):
        chaos.finding(f"no clean run after 6 attempts: {result.stderr[-1500:]}")
    summary = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    if summary.get("accounts", {}).get("failed"):
        chaos.finding(f"last run still has failed accounts: {summary['failures'][:5]}")
    # a pass with nothing new must send nothing
    before = c.sim.stats().items_created
    again = c.cli("run", "--json")
    if c.sim.stats().items_created != before:
        chaos.finding(
            f"a pass with nothing new created {c.sim.stats().items_created - before} item(s)"
        )
    if again.returncode not in (0, 1):
        chaos.finding(f"the extra pass exited {again.returncode}: {again.stderr[-800:]}")
    c.sim.set_faults(Faults())  # verify reads the target; throttling was exercised above
    verify = c.cli("verify", "--json")
    figures["verify exit"] = verify.returncode
    figures.update(compare(c, history, chaos))
    notes: Counter[str] = Counter()
    try:
        report = json.loads(verify.stdout)
    except ValueError:
        chaos.finding(f"verify exit {verify.returncode}, no JSON: {verify.stderr[-800:]}")
        report = {"accounts": []}
    for account in report.get("accounts", []):
        if account.get("error"):
            notes[f"account error: {account['error']}"] += 1
        for folder in account.get("folders", []):
            if not folder["ok"]:
                notes[re.sub(r"^\d+", "N", folder["note"] or "(no note)")] += 1
    figures["verify: folders not ok, by note"] = dict(notes)
    for note, n in notes.items():
        if "more than once" in note and not figures.get("duplicates"):
            chaos.finding(
                f"verify reports '{note}' in {n} folder(s), but the target holds no duplicate"
            )
        elif "deleted in the source" in note:
            chaos.notes.append(
                f"verify fails {n} folder(s) only because users deleted mail after it was migrated"
            )
        else:
            chaos.finding(f"verify: {n} folder(s) not ok: {note}")
    inflight = c.sql("SELECT count(*) FROM messages WHERE state = 'inflight'")[0][0]
    if inflight:
        chaos.finding(f"{inflight} ledger row(s) still in flight")
    status = json.loads(c.cli("status", "--json").stdout)
    total_items = figures.get("target items", 0)
    ledger = dict(c.sql("SELECT state, count(*) FROM messages GROUP BY state"))
    figures["ledger"] = ledger
    figures["status messages"] = status["messages"]
    figures["status accounts"] = status["accounts"]
    if status["messages"]["done"] != total_items:
        chaos.finding(
            f"status says {status['messages']['done']} messages done, the target holds {total_items}"
        )
    if status["messages"]["skipped"] != ledger.get("skipped", 0):
        chaos.finding(
            f"status says {status['messages']['skipped']} skipped, the ledger {ledger.get('skipped', 0)}"
        )
    too_large = figures.get("too large (expected skipped)", 0)
    if status.get("skipped_by_reason", {}).get("too-large", 0) < too_large:
        chaos.finding(
            f"status lists {status.get('skipped_by_reason')} skipped, {too_large} messages are too large"
        )
    accounts = status["accounts"]
    if (
        accounts["running"]
        or accounts["failed"]
        or accounts["pending"]
        or accounts["migrated"] != len(c.addresses)
    ):
        chaos.finding(f"status accounts after the final run: {accounts}")
    folder_sum = c.sql(
        "SELECT coalesce(sum(done_count), 0), coalesce(sum(skipped_count), 0) FROM folders"
    )[0]
    if int(folder_sum[0]) != ledger.get("done", 0) or int(folder_sum[1]) != ledger.get(
        "skipped", 0
    ):
        chaos.finding(f"folders.done/skipped_count sum {tuple(folder_sum)} vs ledger {ledger}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(10**6))
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument(
        "--kills", type=int, default=25, help="SIGKILL/SIGTERM that must land on a live process"
    )
    parser.add_argument("--state", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument(
        "--max-delay", type=float, default=12.0, help="longest wait before a kill (s)"
    )
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument(
        "--small", action="store_true", help="about four messages per mailbox, as the demo's"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="longest a finishing command may take (s); default "
        "600 s or half a second per account, whichever is more",
    )
    args = parser.parse_args(argv)
    log(f"chaos seed {args.seed}, {args.accounts} accounts, {args.kills} kills, state {args.state}")
    rnd = random.Random(args.seed)
    root = args.dir or Path("/tmp/migrator-chaos") / f"{args.state}-{args.seed}"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    faults = Faults(
        server_busy_rate=0.04,
        backoff_ms=300,
        http503_rate=0.02,
        retry_after_s=1,
        reset_rate=0.02,
        lost_answer_rate=0.01,
        delay_s=0.01,
        max_concurrency=5,
        seed=args.seed,
    )
    c = build(root, args.accounts, args.seed, args.state, faults, args.workers, small=args.small)
    c.timeout = args.timeout or max(600.0, args.accounts * 0.5)
    history = History()
    chaos = Chaos()
    started = time.monotonic()
    try:
        first = c.cli("discover")
        if first.returncode != 0:
            chaos.finding(f"discover failed: {first.stderr[-800:]}")
            return 1
        chaos_loop(c, rnd, args.kills, args.state, history, chaos, args.max_delay)
        log(f"{chaos.kills} SIGKILL, {chaos.terms} SIGTERM landed; finishing")
        figures = final_checks(c, history, chaos)
        stats = c.sim.stats()
    finally:
        c.sim.stop()
        if c.pg_name and not args.keep:
            import psycopg

            with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{c.pg_name}" WITH (FORCE)')
    print()
    print(
        f"seed {args.seed}  state {args.state}  accounts {len(c.addresses)}  "
        f"{time.monotonic() - started:.0f} s"
    )
    print(
        f"kills: {chaos.kills} SIGKILL, {chaos.terms} SIGTERM; finished before the kill: {dict(chaos.finished)}"
    )
    print(
        f"users: {history.arrived} new messages, {len(history.flag_changes)} flag changes, "
        f"{len(history.deleted)} deletions"
    )
    print(f"simulator: faults {dict(stats.faults)}, items created {stats.items_created}")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    print("stderr lines seen (digits as N), most frequent:")
    for line, n in chaos.stderr_lines.most_common(25):
        print(f"  {n:5d}  {line}")
    for note in chaos.notes:
        print(f"note: {note}")
    if chaos.findings:
        print(f"\n{len(chaos.findings)} DISCREPANCIES:")
        for text in chaos.findings[:60]:
            print(f"  - {text}")
        return 1
    print("\nOK: every message exactly once, nothing lost, status truthful")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
