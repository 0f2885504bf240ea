"""A delta pass that carries users' changes, against the nothing-changed pass and against
imapsync's second pass (issue 14).

    .venv/bin/python -m bench.bench_delta [--mailboxes 100] [--messages 10000] [--workers 8]

One private Dovecot serves the source Maildirs and the targets. Each source mailbox holds
`--messages` small messages (1-3 KB; four fifths in INBOX, the rest in "Projects"; about 60 %
read), written by the sample Maildir writer. Three copies of the data are kept in step:
- migrator reading the Maildirs (kind = "maildir") into Dovecot users,
- migrator reading through Dovecot (kind = "imap", CONDSTORE) into other Dovecot users,
- imapsync (found as bench_imapsync.py finds it; skipped without it) into a third set, one
  process per mailbox, `--workers` of them at once, with `--delete2` so that it mirrors
  deletions and moves too.
Each does its first pass and a pass with nothing changed. Then users change their mailboxes
through IMAP (their own sessions on the source Dovecot): 5 % of the messages change flags
(read or flagged), 1 % are moved from INBOX into a new folder, 1 % are deleted and expunged.
Each copy then does one more pass, timed, and every target mailbox is checked against its
source: per folder, each message (by Message-ID) with its flags.

At the issue's full size (100 x 10,000, a million messages) imapsync's first pass alone takes
hours on two cores. `--kinds` picks migrator's variants, `--imapsync-mailboxes N` runs imapsync
on the first N mailboxes only (its figures then cover N/M of the data), and
`--imapsync-from-copy` gives imapsync's targets a copy of what migrator's Maildir variant
wrote (the same messages, flags and folders) instead of imapsync's own first pass, so that its
unchanged and changes passes are timed on exactly the data migrator's are.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imapclient import IMAPClient

from bench.bench_imapsync import (
    PASSWORD_ENV,
    Figure,
    ServerCpu,
    dovecot_plan,
    find_imapsync,
    imapsync_argv,
    measure_all,
    uptime,
)
from migrator.model.mail import Flags
from migrator.samples.mail import SampleMessage, write_maildir
from tests.fixtures import dovecot as dovecot_fixture
from tests.fixtures.dovecot import MASTER_PASSWORD, MASTER_USER, DovecotServer, running_dovecot

REPO = Path(__file__).resolve().parents[1]


def mailbox(seed: int, count: int) -> dict[tuple[str, ...], list[SampleMessage]]:
    rnd = random.Random(seed)
    msgs = []
    for i in range(count):
        when = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=7 * i)
        body = "".join(
            f"linea {j} del mensaje {i} de la cuenta {seed}\n" for j in range(rnd.randint(20, 70))
        )
        raw = (
            f"From: remitente{i % 50}@example.org\nTo: usuario{seed}@ife.org.mx\nSubject: asunto {seed}/{i}\n"
            f"Date: {when:%a, %d %b %Y %H:%M:%S} +0000\nMessage-ID: <b{seed}.{i}@example.org>\n\n{body}"
        ).encode()
        msgs.append(SampleMessage(f"b{seed}.{i}", raw, Flags(seen=rnd.random() < 0.6), when))
    split = count * 4 // 5
    return {("INBOX",): msgs[:split], ("Projects",): msgs[split:]}


def state_of(server: DovecotServer, login: str) -> dict[str, Counter[tuple[str, frozenset[str]]]]:
    """Folder -> (Message-ID, flags) of every message, read through the master user."""
    client = IMAPClient(server.host, port=server.port, ssl=False, timeout=120)
    client.login(f"{login}*{MASTER_USER}", MASTER_PASSWORD)
    out: dict[str, Counter[tuple[str, frozenset[str]]]] = {}
    try:
        for flags, _, name in client.list_folders():
            if any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
                continue
            client.select_folder(name, readonly=True)
            uids = client.search(["ALL"])
            found: Counter[tuple[str, frozenset[str]]] = Counter()
            for start in range(0, len(uids), 2000):
                part = client.fetch(
                    uids[start : start + 2000], ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
                )
                for data in part.values():
                    header = next(v for k, v in data.items() if k.startswith(b"BODY"))
                    keep = frozenset(f.decode() for f in data[b"FLAGS"]) - {"\\Recent"}
                    found[(header.decode().partition(":")[2].strip(), keep)] += 1
            if found:
                out[str(name)] = found
    finally:
        client.logout()
    return out


def change(server: DovecotServer, login: str, password: str, rnd: random.Random) -> Counter[str]:
    """What users do between passes: 5 % flag changes, 1 % moved, 1 % deleted and expunged."""
    client = IMAPClient(server.host, port=server.port, ssl=False, timeout=120)
    client.login(login, password)
    done: Counter[str] = Counter()
    try:
        client.create_folder("Clientes")
        client.select_folder("INBOX")
        uids = client.search(["ALL"])
        total = len(uids) * 5 // 4  # INBOX holds four fifths
        picks = rnd.sample(uids, min(len(uids), total * 7 // 100))
        flagged, moved, deleted = (
            picks[: total * 5 // 100],
            picks[total * 5 // 100 : total * 6 // 100],
            picks[total * 6 // 100 :],
        )
        seen = {
            uid
            for uid, data in client.fetch(flagged, ["FLAGS"]).items()
            if b"\\Seen" in data[b"FLAGS"]
        }
        client.add_flags([u for u in flagged if u not in seen], [b"\\Seen"])
        client.add_flags([u for u in flagged if u in seen], [b"\\Flagged"])
        if moved:
            client.move(moved, "Clientes")
        if deleted:  # small mailboxes may have none to delete
            client.delete_messages(deleted)
            client.uid_expunge(deleted)
        done.update(flags=len(flagged), moved=len(moved), deleted=len(deleted))
    finally:
        client.logout()
    return done


class DeltaBench:
    def __init__(
        self,
        server: DovecotServer,
        work: Path,
        mailboxes: int,
        messages: int,
        workers: int,
        kinds: list[str],
        synced: int,
    ) -> None:
        self.server, self.work, self.workers = server, work, workers
        self.server_cpu = ServerCpu(server)
        self.sources = [server.new_user() for _ in range(mailboxes)]
        # the fixture's user pool is finite: only the variants that run get target users
        self.targets = {kind: [server.new_user()[0] for _ in range(mailboxes)] for kind in kinds}
        self.targets["imapsync"] = [server.new_user()[0] for _ in range(synced)]
        for index, (login, _) in enumerate(self.sources):
            write_maildir(server.maildir(login), mailbox(index, messages))
            server.chown_tree(login)
        self.messages = mailboxes * messages
        (work / "password").write_text(MASTER_PASSWORD)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, PASSWORD_ENV: MASTER_PASSWORD}

    def plan(self, kind: str) -> Path:
        root = self.work / kind
        root.mkdir(parents=True, exist_ok=True)
        entries = ["dn: ou=people,dc=bench,dc=test\nobjectClass: organizationalUnit\nou: people\n"]
        for (src, _), dst in zip(self.sources, self.targets[kind], strict=True):
            entries.append(
                f"dn: uid={src},ou=people,dc=bench,dc=test\nobjectClass: inetOrgPerson\n"
                f"uid: {src}\ncn: {src}\nsn: {src}\nmail: {dst}@bench.test\n"
            )
        (root / "people.ldif").write_text("\n".join(entries))
        plan = dovecot_plan(f"bench-delta-{kind}", root, kind, self.server, self.workers).write(
            root / "plan.toml"
        )
        found = subprocess.run(
            [sys.executable, "-m", "migrator", "discover", "--plan", str(plan)],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if found.returncode != 0:
            raise RuntimeError(f"discover failed: {found.stdout[-1000:]}{found.stderr[-1000:]}")
        return plan

    def migrator_pass(self, plan: Path) -> Figure:
        argv = [sys.executable, "-m", "migrator", "run", "--plan", str(plan), "--json", "--quiet"]
        return measure_all([argv], 1, self.env, REPO, self.server_cpu)

    def copy_targets(self, source_kind: str, count: int) -> None:
        """imapsync's first `count` targets become copies of `source_kind`'s (a first pass done
        by copying the Dovecot Maildirs, with their UID lists)."""
        for src, dst in list(
            zip(self.targets[source_kind], self.targets["imapsync"], strict=False)
        )[:count]:
            shutil.rmtree(self.server.maildir(dst), ignore_errors=True)
            shutil.copytree(self.server.maildir(src), self.server.maildir(dst), symlinks=True)
            self.server.chown_tree(dst)

    def imapsync_pass(self, imapsync: str, count: int) -> Figure:
        cwd = self.work / "imapsync"
        cwd.mkdir(exist_ok=True)
        runs = [
            imapsync_argv(imapsync, self.server, self.work / "password", src, dst, cwd, "--delete2")
            for (src, _), dst in list(zip(self.sources, self.targets["imapsync"], strict=False))[
                :count
            ]
        ]
        return measure_all(runs, self.workers, self.env, cwd, self.server_cpu)

    def check(self, kind: str, count: int | None = None) -> None:
        """Every target mailbox of `kind` (its first `count`) equals its source: per folder,
        Message-IDs and flags."""
        roles = {"INBOX": "INBOX"}
        for (src, _), dst in list(zip(self.sources, self.targets[kind], strict=False))[:count]:
            want = {roles.get(k, k): v for k, v in state_of(self.server, src).items()}
            got = state_of(self.server, dst)
            if want != got:
                diff = {
                    f: (
                        sum((want.get(f, Counter()) - got.get(f, Counter())).values()),
                        sum((got.get(f, Counter()) - want.get(f, Counter())).values()),
                    )
                    for f in set(want) | set(got)
                    if want.get(f) != got.get(f)
                }
                raise RuntimeError(
                    f"{kind}: {dst} differs from {src} (folder: missing, extra): {diff}"
                )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--mailboxes", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--kinds", default="maildir,imap", help="migrator's variants: maildir, imap or both"
    )
    parser.add_argument(
        "--imapsync-mailboxes", type=int, help="imapsync on the first N mailboxes only"
    )
    parser.add_argument(
        "--imapsync-from-copy",
        action="store_true",
        help="imapsync's targets start as a copy of the maildir variant's (no first pass)",
    )
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    synced = args.imapsync_mailboxes or args.mailboxes
    if args.imapsync_from_copy and "maildir" not in kinds:
        parser.error(
            "--imapsync-from-copy copies the maildir variant's targets: keep maildir in --kinds"
        )
    imapsync, why = find_imapsync()
    print(
        f"{args.mailboxes} mailboxes x {args.messages} messages; imapsync: {why if imapsync is None else why}",
        flush=True,
    )
    # one login per source mailbox and per target copy
    needed = args.mailboxes * (1 + len(kinds)) + (synced if imapsync is not None else 0)
    dovecot_fixture.USER_POOL = max(dovecot_fixture.USER_POOL, needed)
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-delta-"))
    try:
        with running_dovecot() as server:
            bench = DeltaBench(
                server, work, args.mailboxes, args.messages, args.workers, kinds, synced
            )
            plans = {kind: bench.plan(kind) for kind in kinds}
            rows: list[tuple[str, Figure, Figure, Figure]] = []
            figures: dict[str, list[Figure]] = {}
            for kind, plan in plans.items():
                figures[kind] = [bench.migrator_pass(plan), bench.migrator_pass(plan)]
            if imapsync is not None:
                if args.imapsync_from_copy:
                    bench.copy_targets("maildir", synced)
                    first = Figure(
                        wall=float("nan"),
                        cpu=float("nan"),
                        peak_mb=float("nan"),
                        server_cpu=float("nan"),
                    )
                else:
                    first = bench.imapsync_pass(imapsync, synced)
                figures["imapsync"] = [first, bench.imapsync_pass(imapsync, synced)]
            for kind in figures:
                bench.check(kind, synced if kind == "imapsync" else None)
            print(f"load before the changes: {uptime()}", flush=True)
            rnd = random.Random(14)
            changed: Counter[str] = Counter()
            for login, password in bench.sources:
                changed.update(change(server, login, password, rnd))
            print(f"users changed: {dict(changed)}", flush=True)
            for kind, plan in plans.items():
                figures[kind].append(bench.migrator_pass(plan))
            if imapsync is not None:
                figures["imapsync"].append(bench.imapsync_pass(imapsync, synced))
            for kind in figures:
                bench.check(kind, synced if kind == "imapsync" else None)
            print(f"load after: {uptime()}", flush=True)
            labels = {
                "maildir": "migrator, Maildir -> Dovecot",
                "imap": "migrator, Dovecot -> Dovecot (CONDSTORE)",
                "imapsync": f"imapsync --delete2, {args.workers} in parallel"
                + (f", {synced} of {args.mailboxes} mailboxes" if synced < args.mailboxes else ""),
            }
            for kind, (first, unchanged, delta) in figures.items():
                rows.append((labels[kind], first, unchanged, delta))
            print(
                f"\n{'variant':<44} {'first pass':>11} {'unchanged':>10} {'changes':>9}  (wall s; client CPU s)"
            )
            for label, first, unchanged, delta in rows:
                print(
                    f"{label:<44} {first.wall:11.1f} {unchanged.wall:10.2f} {delta.wall:9.2f}  "
                    f"({first.cpu:.1f}; {unchanged.cpu:.1f}; {delta.cpu:.1f}) dovecot {delta.server_cpu:.1f} s"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
