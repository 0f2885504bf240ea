"""Per-account overhead (issue 19): `migrator run` over N accounts of 5 small messages each
into the EWS simulator (a process of its own), and the migrator's own CPU per account beyond
its messages.

Three runs, each a real CLI process measured with wait4() (its CPU only; the simulator's never
mixes in) and its VmHWM polled (peak RSS):
  F  one account of 5 messages: the process's fixed cost (imports, plan, start-up, summary);
  M  MANY_ACCOUNTS accounts of MANY_MESSAGES messages: mostly messages;
  A  N accounts of 5 messages: mostly per-account cost.
With a = CPU per account beyond its messages and m = CPU per message (chunk costs of the
big mailboxes included), cpu(M) - F = MANY_ACCOUNTS*a + MANY_ACCOUNTS*MANY_MESSAGES*m and
cpu(A) - F = N*a + 5N*m: two equations, solved for a and m.

`--profile` runs A once more under py-spy (--gil: samples only while a thread holds the GIL,
which is the process's Python CPU) and prints where it goes.

    nice -n 5 .venv/bin/python -m bench.bench_overhead [--accounts 10000] [--workers 8] [--profile]
Figures go to stdout and bench/results/overhead-<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._engine_campaign import (
    REPO,
    Campaign,
    Measured,
    Simulator,
    _HighWater,
    people,
    write_plan,
)
from bench.bench_engine import profile_summary

PER_ACCOUNT = 5
MANY_ACCOUNTS, MANY_MESSAGES = 10, 500
PY_SPY = REPO / ".venv" / "bin" / "py-spy"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def small_message(account: int, i: int) -> bytes:
    return (
        f"From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: note {i}\n"
        f"Date: Mon, 01 Jan 2024 10:{i:02d}:00 +0000\nMessage-ID: <a{account}.{i}@example.org>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
        + "a short line of text\n"
        * 12
    ).encode()


def write_small_maildirs(campaign: Campaign, per_mailbox: int) -> int:
    """An INBOX of `per_mailbox` read messages (~400 bytes) per account; messages written."""
    n = 0
    for a, address in enumerate(campaign.addresses):
        root = campaign.maildir(address)
        for sub in ("cur", "new", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        base = str(root / "cur")
        for i in range(per_mailbox):
            with open(
                os.path.join(base, f"{1_700_000_000 + i}.M{i}P{a}.bench,S=400:2,S"), "wb"
            ) as fh:
                fh.write(small_message(a, i))
            n += 1
    return n


def campaign(
    work: Path, name: str, accounts: int, per_mailbox: int, workers: int
) -> tuple[Campaign, list[str]]:
    root = work / name
    root.mkdir(exist_ok=True)
    started = time.perf_counter()
    ldif, addresses = people(root, accounts, seed=19)
    c = write_plan(root, ldif, "http://unused", workers=workers)
    c.addresses = addresses
    # a kept work directory (--keep) reuses the Maildirs written before: 100,000 accounts
    # are half a million files
    ready = root / f"maildirs-ready-{accounts}x{per_mailbox}"
    if ready.exists():
        print(f"  [{name}] {accounts} accounts: Maildirs of {ready.parent} reused", flush=True)
        return c, addresses
    n = write_small_maildirs(c, per_mailbox)
    ready.touch()
    print(
        f"  [{name}] {accounts} accounts, {n} messages written in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return c, addresses


def run(
    c: Campaign, addresses: list[str], workers: int, profile: Path | None = None
) -> dict[str, Any]:
    """Discover, then `migrator run` into a fresh simulator; the run's figures."""
    server_dir = c.root / ("ews-profile" if profile else "ews")
    shutil.rmtree(server_dir, ignore_errors=True)  # an empty target, also in a kept work dir
    sim = Simulator(server_dir, addresses)
    try:
        plan = c.plan.read_text()
        marker = 'url = "http://'
        start = plan.index(marker, plan.index("[target]"))
        end = plan.index('"', start + len(marker))
        c.plan.write_text(plan[:start] + f'url = "{sim.url}' + plan[end:])
        for path in (c.state, *(c.state.with_name(c.state.name + x) for x in ("-wal", "-shm"))):
            path.unlink(missing_ok=True)
        c.discover()
        prefix = (
            [str(PY_SPY), "record", "--gil", "-f", "raw", "-r", "200", "-o", str(profile), "--"]
            if profile
            else []
        )
        result, user, system, timeline = measured_split(
            [
                *prefix,
                sys.executable,
                "-m",
                "migrator",
                "run",
                "--plan",
                str(c.plan),
                "--workers",
                str(workers),
                "--quiet",
                "--json",
            ],
            env=c.env,
            # the run's own process (under py-spy, py-spy's is another)
            timeline=None if profile else (c.state, max(10.0, len(addresses) / 2000)),
        )
    finally:
        sim.stop()
    summary = result.json()
    done = summary["messages"]["done"]
    if (
        result.code != 0
        or summary["accounts"]["synced"] != len(addresses)
        or done != len(addresses) * _per(c)
    ):
        raise RuntimeError(
            f"run failed (exit {result.code}): {json.dumps(summary)[:2000]}\n{result.stderr[-2000:]}"
        )
    return {
        "accounts": len(addresses),
        "messages": done,
        "wall_s": round(result.wall, 2),
        "cpu_s": round(result.cpu, 2),
        "user_s": round(user, 2),
        "sys_s": round(system, 2),
        "maxrss_mb": round(result.maxrss_mb, 1),
        "server_cpu_s": round(sim.cpu, 2),
        "timeline": timeline,
    }


class _Timeline:
    """While a run goes, every `every` seconds: its CPU so far (/proc/PID/stat), its RSS and
    peak RSS, and the accounts it has finished (the state database, opened read-only).
    Printed as it goes, so that a run stopped before its end still says how its cost grew."""

    def __init__(self, pid: int, state: Path, every: float) -> None:
        self.rows: list[dict[str, float]] = []
        self._pid, self._state, self._every = pid, state, every
        self._done = threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[str, float]:
        with open(f"/proc/{self._pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        memory = {}
        with open(f"/proc/{self._pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    memory[line.split(":")[0]] = int(line.split()[1]) / 1024
        db = sqlite3.connect(f"file:{self._state}?mode=ro", uri=True, timeout=30)
        try:
            (done,) = db.execute(
                "SELECT count(*) FROM accounts WHERE status IN ('synced', 'verified')"
            ).fetchone()
        finally:
            db.close()
        return {
            "wall_s": round(time.perf_counter() - self._started, 1),
            "cpu_s": round(cpu, 2),
            "accounts_done": int(done),
            "rss_mb": round(memory.get("VmRSS", 0.0), 1),
            "peak_rss_mb": round(memory.get("VmHWM", 0.0), 1),
        }

    def _poll(self) -> None:
        while not self._done.wait(self._every):
            try:
                row = self._sample()
            except (OSError, ValueError, IndexError, sqlite3.Error):
                continue
            before = self.rows[-1] if self.rows else {"cpu_s": 0.0, "accounts_done": 0}
            accounts = row["accounts_done"] - before["accounts_done"]
            slice_ms = (row["cpu_s"] - before["cpu_s"]) / accounts * 1000 if accounts else 0.0
            self.rows.append(row)
            print(
                f"    {row['wall_s']:7.0f} s: {row['accounts_done']:6d} accounts done, CPU "
                f"{row['cpu_s']:7.1f} s ({slice_ms:5.1f} ms per account since the last line), "
                f"RSS {row['rss_mb']:.0f} MB, peak {row['peak_rss_mb']:.0f} MB",
                flush=True,
            )

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def measured_split(
    argv: list[str], *, env: dict[str, str], timeline: tuple[Path, float] | None = None
) -> tuple[Measured, float, float, list[dict[str, float]]]:
    """As _engine_campaign.measured, with the child's CPU split into user and system time;
    with `timeline` (the state database, seconds), its _Timeline too."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=REPO)
        peak = _HighWater(proc.pid)
        line = _Timeline(proc.pid, *timeline) if timeline else None
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        peak.stop()
        if line is not None:
            line.stop()
        out.seek(0)
        err.seek(0)
        result = Measured(
            os.waitstatus_to_exitcode(status),
            wall,
            usage.ru_utime + usage.ru_stime,
            peak.kb / 1024,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
        return result, usage.ru_utime, usage.ru_stime, line.rows if line else []


def _shown(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "timeline"}


def _per(c: Campaign) -> int:
    first = c.maildir(c.addresses[0]) / "cur"
    return len(os.listdir(first))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--profile", action="store_true", help="also profile run A under py-spy")
    ap.add_argument(
        "--only-a", action="store_true", help="run A only (no F, M: no per-account split)"
    )
    ap.add_argument(
        "--keep", help="work directory to keep, its Maildirs reused next time (default: temporary)"
    )
    ap.add_argument(
        "--prepare", action="store_true", help="only write the Maildirs (with --keep), run nothing"
    )
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {
        "accounts": args.accounts,
        "workers": args.workers,
        "load_before": load(),
    }
    print(
        f"per-account overhead: {args.accounts} accounts x {PER_ACCOUNT} messages, {args.workers} workers; "
        f"load {load()}",
        flush=True,
    )
    try:
        a_c, a_addr = campaign(work, "A", args.accounts, PER_ACCOUNT, args.workers)
        if args.prepare:
            return 0
        if not args.only_a:
            f_c, f_addr = campaign(work, "F", 1, PER_ACCOUNT, args.workers)
            m_c, m_addr = campaign(work, "M", MANY_ACCOUNTS, MANY_MESSAGES, args.workers)
            figures["F"] = run(f_c, f_addr, args.workers)
            print(f"  F: {_shown(figures['F'])}", flush=True)
            figures["M"] = run(m_c, m_addr, args.workers)
            print(f"  M: {_shown(figures['M'])}", flush=True)
        figures["A"] = run(a_c, a_addr, args.workers)
        print(f"  A: {_shown(figures['A'])}", flush=True)
        A = figures["A"]
        if not args.only_a:
            fixed, M = figures["F"]["cpu_s"], figures["M"]
            # cpu(M)-F = Ma*a + Mm*m ; cpu(A)-F = Na*a + Nm*m
            ma, mm = MANY_ACCOUNTS, M["messages"]
            na, nm = A["accounts"], A["messages"]
            ym, ya = M["cpu_s"] - fixed, A["cpu_s"] - fixed
            det = ma * nm - mm * na
            per_account = (ym * nm - mm * ya) / det
            per_message = (ma * ya - na * ym) / det
            figures["cpu_ms_per_account_beyond_messages"] = round(per_account * 1000, 2)
            figures["cpu_ms_per_message"] = round(per_message * 1000, 3)
            print(
                f"migrator CPU per account beyond its messages: {per_account * 1000:.2f} ms; "
                f"per message: {per_message * 1000:.3f} ms; fixed {fixed:.2f} s",
                flush=True,
            )
        print(
            f"run A: {A['wall_s']:.1f} s wall ({A['wall_s'] / A['accounts'] * 1000:.1f} ms per account), "
            f"{A['cpu_s']:.1f} s CPU ({A['cpu_s'] / A['accounts'] * 1000:.1f} ms per account, all in), "
            f"peak RSS {A['maxrss_mb']:.0f} MB; simulator CPU {A['server_cpu_s']:.1f} s",
            flush=True,
        )
        if args.profile:
            raw = work / "A.pyspy.txt"
            prof = run(a_c, a_addr, args.workers, profile=raw)
            summary = profile_summary(raw, top=25)
            keep = REPO / "bench" / "results" / f"overhead-{args.accounts}.pyspy.txt"
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(raw, keep)
            figures["profile"] = {"wall_under_py_spy_s": prof["wall_s"], **summary}
            print(
                f"profile ({summary['samples']} samples with the GIL held; {keep.relative_to(REPO)}): self:"
            )
            for k, v in summary["self_pct"].items():
                print(f"  {v:5.1f} %  {k}")
            print("inclusive:")
            for k, v in summary["inclusive_pct"].items():
                print(f"  {v:5.1f} %  {k}")
        figures["load_after"] = load()
        out = REPO / "bench" / "results" / f"overhead-{args.accounts}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
