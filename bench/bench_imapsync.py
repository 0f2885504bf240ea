"""migrator's IMAP target against imapsync, on one Dovecot, same corpus (issue 8).

    .venv/bin/python -m bench.bench_imapsync [--mailboxes 40] [--messages 250] [--rounds 2]

imapsync is not part of the project and CI does not need it: the script looks for it in
$IMAPSYNC, /root/imapsync/imapsync and PATH, checks that Perl can run it (`--version`), and
otherwise prints why it skips and exits 0.

One private Dovecot serves both ends. The corpus (`mixed_mailbox` of bench/_engine_campaign.py:
mostly 2-20 KB, ~3 % of 200 KB-1 MB, flags and internal dates set, written by the sample
Maildir writer) sits in the Maildirs of the source users; target users start empty and are
emptied again after each variant. Every variant runs twice in a row (first pass, then a second
pass with nothing new), and the whole list of variants runs `--rounds` times, interleaved:
- Maildir -> Dovecot: `migrator run` with workers 1 and 8 (imapsync reads only IMAP);
- Dovecot -> Dovecot: `migrator run` (IMAP source, master user) with workers 1 and 8;
  imapsync one process per mailbox, one after the other, and 8 processes in parallel;
- a bare imaplib loop, 8 connections: APPEND of every Maildir file (flags, INTERNALDATE) into
  INBOX, no folder handling, no state: the rate the engine should reach.
Each client is a child process measured with wait4() (CPU seconds) and VmHWM (peak RSS);
Dovecot's CPU is what its master process reaped from its exited imap processes meanwhile.
Each first pass is checked: every target mailbox holds as many messages as its source.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench._engine_campaign import Measured, measured, mixed_mailbox
from migrator.samples.mail import write_maildir
from migrator.samples.plans import (
    SamplePlan,
    imap_source,
    imap_target,
    ldif_directory,
    maildir_source,
    sqlite_state,
)
from tests.fixtures.dovecot import (
    MASTER_PASSWORD,
    MASTER_USER,
    DovecotServer,
    running_dovecot,
)

REPO = Path(__file__).resolve().parents[1]
PASSWORD_ENV = "MIGRATOR_BENCH_IMAP_PASSWORD"
CANDIDATES = ("/root/imapsync/imapsync",)


def dovecot_plan(
    name: str, root: Path, source: str, server: DovecotServer, workers: int
) -> SamplePlan:
    """The plan of a Dovecot-to-Dovecot campaign: people from root/people.ldif, their mail in
    `server`'s Maildirs (source "maildir") or read from `server` over IMAP as each `uid`
    through the master user (source "imap"), migrated into `server`'s mailbox of their `mail`
    address's local part."""
    return SamplePlan(
        name,
        directory=ldif_directory(
            root / "people.ldif", base="ou=people,dc=bench,dc=test", filter="(mail=*)"
        ),
        source=(
            maildir_source(server.root / "mail", path="{root}/{uid}/Maildir")
            if source == "maildir"
            else imap_source(
                server.host, server.port, master_user=MASTER_USER, password_env=PASSWORD_ENV
            )
        ),
        target=imap_target(
            server.host,
            server.port,
            username=MASTER_USER,
            password_env=PASSWORD_ENV,
            proxy_login="{local}*{username}",
        ),
        run={"workers": workers},
        state=sqlite_state(root / "state.db"),
    )


def find_imapsync() -> tuple[str | None, str]:
    """The imapsync script and why not, if it cannot run here."""
    found = [os.environ.get("IMAPSYNC", ""), *CANDIDATES, shutil.which("imapsync") or ""]
    path = next((p for p in found if p and os.path.isfile(p)), None)
    if path is None:
        return None, (
            "imapsync not found (set IMAPSYNC, or put it at /root/imapsync/imapsync or on PATH)"
        )
    try:
        check = subprocess.run(
            ["perl", path, "--version"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"imapsync at {path} does not start: {exc}"
    version = check.stdout.strip()
    if check.returncode != 0 or not version[:1].isdigit():
        missing = check.stderr.strip().splitlines()[:1]
        return None, f"imapsync at {path} does not start (Perl modules missing?): {missing}"
    return path, version


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------- measuring


@dataclass
class Figure:
    """One measured pass of one variant."""

    wall: float
    cpu: float  # client CPU seconds (all its processes)
    peak_mb: float  # largest peak RSS of one client process
    server_cpu: float  # Dovecot's CPU seconds meanwhile (exited imap processes)

    def line(self, label: str, messages: int, nbytes: int) -> str:
        return (
            f"{label:<44} {messages / self.wall:8.1f} msg/s {nbytes / 1e6 / self.wall:6.2f} MB/s "
            f"{self.wall:7.2f} s wall  cpu {self.cpu:6.2f} s  dovecot {self.server_cpu:6.2f} s  "
            f"peak {self.peak_mb:5.0f} MB"
        )


class ServerCpu:
    """CPU seconds Dovecot spent in processes that have exited (its master reaps them)."""

    def __init__(self, server: DovecotServer) -> None:
        assert server._process is not None
        self.path = f"/proc/{server._process.pid}/stat"

    def now(self) -> float:
        fields = Path(self.path).read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")


def imapsync_argv(
    imapsync: str, server: DovecotServer, passfile: Path, src: str, dst: str, cwd: Path, *extra: str
) -> list[str]:
    """One imapsync process copying mailbox `src` to `dst` on the same Dovecot, both logged in
    through the master user, plain IMAP, no log file (its pid file in `cwd`)."""
    return [
        "perl", imapsync,
        "--host1", server.host, "--port1", str(server.port),
        "--user1", f"{src}*{MASTER_USER}", "--passfile1", str(passfile),
        "--host2", server.host, "--port2", str(server.port),
        "--user2", f"{dst}*{MASTER_USER}", "--passfile2", str(passfile),
        "--nossl1", "--nossl2", "--notls1", "--notls2", "--nolog", "--noreleasecheck",
        *extra,
        "--pidfile", str(cwd / f"{src}.pid"),
    ]  # fmt: skip


def measure_all(
    runs: list[list[str]], parallel: int, env: dict[str, str], cwd: Path, server_cpu: ServerCpu
) -> Figure:
    """Run the commands, `parallel` at a time; wall time of the whole, CPU of all."""
    todo: queue.Queue[list[str]] = queue.Queue()
    for argv in runs:
        todo.put(argv)
    results: list[Measured] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                argv = todo.get_nowait()
            except queue.Empty:
                return
            result = measured(argv, env=env, cwd=cwd)
            with lock:
                results.append(result)

    before = server_cpu.now()
    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    time.sleep(0.3)  # let Dovecot reap its imap processes before reading its children's CPU
    failed = [r for r in results if r.code != 0]
    if failed:
        raise RuntimeError(
            f"{len(failed)} runs failed, e.g. exit {failed[0].code}: "
            f"{failed[0].stdout[-1500:]}{failed[0].stderr[-1500:]}"
        )
    return Figure(
        wall,
        sum(r.cpu for r in results),
        max(r.maxrss_mb for r in results),
        server_cpu.now() - before,
    )


# --------------------------------------------------------------------------- the setup


@dataclass
class Bench:
    server: DovecotServer
    work: Path
    sources: list[str]  # Dovecot logins holding the corpus
    targets: list[str]  # Dovecot logins written into (emptied after each variant)
    counts: dict[str, int]  # source login -> messages
    nbytes: int
    imapsync: str | None
    server_cpu: ServerCpu
    results: dict[str, list[tuple[Figure, Figure]]] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, PASSWORD_ENV: MASTER_PASSWORD}

    def plan(self, name: str, source: str, workers: int) -> Path:
        """A plan directory: LDIF (uid = source login, mail = target login), plan, discover."""
        root = self.work / name
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        entries = ["dn: ou=people,dc=bench,dc=test\nobjectClass: organizationalUnit\nou: people\n"]
        for src, dst in zip(self.sources, self.targets, strict=True):
            entries.append(
                f"dn: uid={src},ou=people,dc=bench,dc=test\nobjectClass: inetOrgPerson\n"
                f"uid: {src}\ncn: {src}\nsn: {src}\nmail: {dst}@bench.test\n"
            )
        (root / "people.ldif").write_text("\n".join(entries))
        plan = dovecot_plan("bench-imapsync", root, source, self.server, workers).write(
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

    def check_targets(self, label: str) -> None:
        """Every target mailbox holds exactly as many messages as its source."""
        for src, dst in zip(self.sources, self.targets, strict=True):
            imap = imaplib.IMAP4(self.server.host, self.server.port)
            imap.login(f"{dst}*{MASTER_USER}", MASTER_PASSWORD)
            total = 0
            for line in imap.list()[1]:
                name = line.decode().rsplit(' "." ', 1)[1]  # type: ignore[union-attr]
                status = imap.status(name, "(MESSAGES)")[1][0].decode()  # type: ignore[union-attr]
                total += int(status.rsplit("MESSAGES ", 1)[1].rstrip(")"))
            imap.logout()
            if total != self.counts[src]:
                raise RuntimeError(
                    f"{label}: {dst} holds {total} messages, source {src} {self.counts[src]}"
                )

    def empty_targets(self) -> None:
        for user in self.targets:
            self.server.doveadm("kick", user)
            home = self.server.root / "mail" / user
            shutil.rmtree(home, ignore_errors=True)
            self.server.maildir(user).mkdir(parents=True)
            self.server.chown_tree(user)

    def record(self, label: str, first: Figure, second: Figure, check: bool = True) -> None:
        if check:
            self.check_targets(label)
        self.results.setdefault(label, []).append((first, second))
        print(first.line(label, self.messages, self.nbytes), flush=True)
        print(second.line(label + " (second pass)", self.messages, self.nbytes), flush=True)

    # -- variants --------------------------------------------------------------------------------
    def migrator(self, source: str, workers: int) -> None:
        label = f"migrator {'Maildir' if source == 'maildir' else 'Dovecot'}->Dovecot, workers {workers}"
        plan = self.plan(f"{source}-w{workers}", source, workers)
        argv = [sys.executable, "-m", "migrator", "run", "--plan", str(plan), "--json"]
        first = measure_all([argv], 1, self.env, REPO, self.server_cpu)
        second = measure_all([argv], 1, self.env, REPO, self.server_cpu)
        self.record(label, first, second)
        self.empty_targets()

    def imapsync_runs(self, parallel: int) -> None:
        assert self.imapsync is not None
        label = "imapsync Dovecot->Dovecot, " + (
            "1 process per mailbox, sequential" if parallel == 1 else f"{parallel} in parallel"
        )
        cwd = self.work / f"imapsync-{parallel}"
        cwd.mkdir(exist_ok=True)
        assert self.imapsync is not None
        runs = [
            imapsync_argv(self.imapsync, self.server, self.work / "password", src, dst, cwd)
            for src, dst in zip(self.sources, self.targets, strict=True)
        ]
        first = measure_all(runs, parallel, self.env, cwd, self.server_cpu)
        second = measure_all(runs, parallel, self.env, cwd, self.server_cpu)
        self.record(label, first, second)
        self.empty_targets()

    def bare_loop(self, connections: int) -> None:
        label = f"bare imaplib APPEND loop, {connections} connections"
        argv = [
            sys.executable,
            "-m",
            "bench.bench_imapsync",
            "--bare-loop",
            str(connections),
            self.server.host,
            str(self.server.port),
            str(self.server.root / "mail"),
            ",".join(f"{s}:{t}" for s, t in zip(self.sources, self.targets, strict=True)),
        ]
        first = measure_all([argv], 1, self.env, REPO, self.server_cpu)
        self.check_targets(label)
        self.results.setdefault(label, []).append((first, first))
        print(first.line(label, self.messages, self.nbytes), flush=True)
        self.empty_targets()


# --------------------------------------------------------------------------- bare loop (child)


def _maildir_files(maildir: Path) -> list[tuple[Path, str]]:
    """(file, info) of every message of every folder (INBOX and the '.'-folders)."""
    out = []
    for folder in [maildir, *sorted(p for p in maildir.glob(".*") if p.is_dir())]:
        for sub in ("cur", "new"):
            directory = folder / sub
            if directory.is_dir():
                for entry in os.scandir(directory):
                    info = entry.name.split(":2,", 1)[1] if ":2," in entry.name else ""
                    out.append((Path(entry.path), info))
    return out


def _flags(info: str) -> str:
    names = [
        n
        for letter, n in (
            ("S", "\\Seen"),
            ("R", "\\Answered"),
            ("F", "\\Flagged"),
            ("D", "\\Draft"),
        )
        if letter in info
    ]
    return "(" + " ".join(names) + ")"


def bare_loop_main(argv: list[str]) -> int:
    """APPEND every file of each source Maildir into its target's INBOX, `connections` threads,
    one login per mailbox: the floor any migration tool has to pay."""
    connections, host, port, mail_root, pairs = (
        int(argv[0]),
        argv[1],
        int(argv[2]),
        Path(argv[3]),
        argv[4],
    )
    todo: queue.Queue[tuple[str, str]] = queue.Queue()
    for pair in pairs.split(","):
        src, dst = pair.split(":")
        todo.put((src, dst))

    def work() -> None:
        while True:
            try:
                src, dst = todo.get_nowait()
            except queue.Empty:
                return
            imap = imaplib.IMAP4(host, port)
            imap.login(f"{dst}*{MASTER_USER}", MASTER_PASSWORD)
            for path, info in _maildir_files(mail_root / src / "Maildir"):
                data = path.read_bytes()
                when = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                typ, _ = imap.append("INBOX", _flags(info), imaplib.Time2Internaldate(when), data)
                if typ != "OK":
                    raise RuntimeError(f"APPEND refused for {path}")
            imap.logout()

    threads = [threading.Thread(target=work) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


# --------------------------------------------------------------------------- main


def summary(bench: Bench) -> None:
    print("\n== medians over rounds", flush=True)
    for label, figures in bench.results.items():
        first = Figure(
            *(
                statistics.median(getattr(f, name) for f, _ in figures)
                for name in ("wall", "cpu", "peak_mb", "server_cpu")
            )
        )
        second = Figure(
            *(
                statistics.median(getattr(s, name) for _, s in figures)
                for name in ("wall", "cpu", "peak_mb", "server_cpu")
            )
        )
        print(first.line(label, bench.messages, bench.nbytes))
        if "bare" not in label:
            print(second.line(label + " (second pass)", bench.messages, bench.nbytes))


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--bare-loop":
        return bare_loop_main(argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--mailboxes", type=int, default=40)
    parser.add_argument("--messages", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated: maildir,imap,imapsync,bare")
    args = parser.parse_args(argv[1:])
    imapsync, why = find_imapsync()
    if imapsync is None:
        print(f"skipped: {why}; the comparison with imapsync needs it, nothing else does")
        return 0
    print(f"imapsync {why} at {imapsync}")
    only = set(args.only.split(",")) if args.only else {"maildir", "imap", "imapsync", "bare"}
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-imapsync-"))
    try:
        with running_dovecot() as server:
            sources = [server.new_user()[0] for _ in range(args.mailboxes)]
            targets = [server.new_user()[0] for _ in range(args.mailboxes)]
            counts, nbytes = {}, 0
            for index, user in enumerate(sources):
                box = mixed_mailbox(seed=index, count=args.messages)
                write_maildir(server.maildir(user), box)
                server.chown_tree(user)
                counts[user] = sum(len(m) for m in box.values())
                nbytes += sum(len(m.raw) for msgs in box.values() for m in msgs)
            (work / "password").write_text(MASTER_PASSWORD + "\n")
            bench = Bench(
                server, work, sources, targets, counts, nbytes, imapsync, ServerCpu(server)
            )
            print(
                f"corpus: {args.mailboxes} mailboxes, {bench.messages} messages, "
                f"{nbytes / 1e6:.1f} MB; load: {uptime()}",
                flush=True,
            )
            variants: list[tuple[str, Callable[[], None]]] = [
                ("maildir", lambda: bench.migrator("maildir", 8)),
                ("imap", lambda: bench.migrator("imap", 8)),
                ("imapsync", lambda: bench.imapsync_runs(8)),
                ("bare", lambda: bench.bare_loop(8)),
                ("maildir", lambda: bench.migrator("maildir", 1)),
                ("imap", lambda: bench.migrator("imap", 1)),
                ("imapsync", lambda: bench.imapsync_runs(1)),
            ]
            for rnd in range(1, args.rounds + 1):
                print(f"-- round {rnd}; load: {uptime()}", flush=True)
                ordered = variants if rnd % 2 else variants[::-1]
                for kind, run in ordered:
                    if kind in only:
                        run()
            summary(bench)
            print(f"load at the end: {uptime()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
