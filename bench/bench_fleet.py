"""Many workers on one PostgreSQL state database (issue 7).

1. claims per second: N processes (16, and 1 for comparison) claim and release the accounts
   of one plan as fast as they can (`claim_next` with FOR UPDATE SKIP LOCKED, then `release`,
   two fenced transactions per account, no mail moved);
2. end to end: `migrator run` in 1, 2 and 4 processes at once (4 threads each) on one plan of
   32 mailboxes x 100 messages (mostly 2-20 KB), into the EWS simulator running in a process
   of its own; messages/s of the whole fleet, from the first start to the last exit.
   `--delays 0,0.1` repeats it with the simulator answering 100 ms late, like a server across
   a network.

Each measurement gets a fresh PostgreSQL database (127.0.0.1:5432, user postgres) and, for 2,
a fresh simulator. The machine load is printed with the figures: on a shared 2-core machine it
says more about them than anything else.

    .venv/bin/python bench/bench_fleet.py [--claims 5000] [--claimers 1,16] [--delays 0,0.1]
                                          [--mailboxes 32] [--messages 100] [--only 12]
Figures go to stdout and bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench._engine_campaign import (  # noqa: E402
    REPO,
    Simulator,
    measured,
    mixed_mailbox,
    people,
    write_mailboxes,
    write_plan,
)

RESULTS = REPO / "bench" / "results" / "fleet.json"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
FIGURES: dict[str, Any] = {}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def say(key: str, text: str, value: Any) -> None:
    FIGURES[key] = value
    print(f"{text}   [load {load()}]", flush=True)


@contextmanager
def database(label: str) -> Iterator[str]:
    name = f"mig_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- 1: claims


def _claimer(url: str, plan_id: int, barrier: Any, counts: Any, index: int) -> None:
    from migrator.store import open_store
    from migrator.store.claims import ClaimFilter, claim_next, release

    store = open_store(url)
    started = datetime.now(UTC)
    worker = f"bench-{os.getpid()}:{os.getpid()}"
    barrier.wait()  # every process started and connected
    n = 0
    while True:
        claim = claim_next(
            store,
            plan_id,
            worker=worker,
            lease_seconds=120,
            run_started=started,
            filters=ClaimFilter(include_synced=False),
        )
        if claim is None:
            break
        release(store, claim, status="synced", run_id=None, completed_pass=True)
        n += 1
    counts[index] = n
    store.close()


def claims_per_second(accounts: int, processes: int) -> tuple[float, list[int]]:
    from migrator.model.account import DiscoveredAccount, Scope
    from migrator.store import open_store

    with database("claims") as url:
        store = open_store(url)
        plan_id = store.ensure_plan("bench", "maildir", "ews")
        store.record_discovery(plan_id, None, (
            DiscoveredAccount(key=f"u{i:06d}@example.org", dn=f"uid=u{i},ou=b{i % 20},dc=example,dc=org",
                              scope=Scope.IN_SCOPE, address=f"u{i:06d}@example.org", batch=f"b{i % 20}")
            for i in range(accounts)
        ))  # fmt: skip
        store.close()
        ctx = multiprocessing.get_context("spawn")
        counts = ctx.Array("i", processes)
        barrier = ctx.Barrier(processes + 1)
        procs = [
            ctx.Process(target=_claimer, args=(url, plan_id, barrier, counts, i))
            for i in range(processes)
        ]
        for p in procs:
            p.start()
        barrier.wait()
        started = time.perf_counter()
        for p in procs:
            p.join()
        wall = time.perf_counter() - started
        done = list(counts)
        with psycopg.connect(url) as conn:
            synced = conn.execute(
                "SELECT count(*) FROM accounts WHERE status = 'synced'"
            ).fetchone()
            twice = conn.execute(
                "SELECT count(*) FROM (SELECT account_id FROM events WHERE kind = 'claimed' "
                "GROUP BY account_id HAVING count(*) > 1) t"
            ).fetchone()
        assert synced is not None and synced[0] == accounts == sum(done), (synced, sum(done))
        assert twice is not None and twice[0] == 0, "an account was claimed twice"
        return accounts / wall, done


# --------------------------------------------------------------------------- 2: end to end


def fleet_run(
    root: Path,
    ldif: Path,
    addresses: list[str],
    vmail: Path,
    processes: int,
    threads: int,
    delay: float = 0.0,
) -> dict[str, Any]:
    sim_dir = root / f"sim{processes}"
    shutil.rmtree(sim_dir, ignore_errors=True)
    sim = Simulator(sim_dir, addresses, delay)
    figures: dict[str, Any] = {}
    try:
        with database(f"e2e{processes}") as url:
            (root / f"p{processes}").mkdir(exist_ok=True)
            campaign = write_plan(
                root / f"p{processes}", ldif, sim.url, workers=threads, vmail=vmail
            )
            env = {**campaign.env, "MIGRATOR_STATE": url}
            found = measured(
                [sys.executable, "-m", "migrator", "discover", "--plan", str(campaign.plan)],
                env=env,
                cwd=REPO,
            )
            assert found.code == 0, found.stderr[-2000:]
            argv = [
                sys.executable,
                "-m",
                "migrator",
                "run",
                "--plan",
                str(campaign.plan),
                "--quiet",
                "--json",
            ]
            before = load()
            started = time.perf_counter()
            pool = ThreadPool(processes)
            try:
                results = pool.map(lambda _: measured(argv, env=env, cwd=REPO), range(processes))
            finally:
                pool.close()
            wall = time.perf_counter() - started
            summaries = [r.json() for r in results]
            for r, s in zip(results, summaries, strict=True):
                assert r.code == 0 and not s["accounts"]["failed"], (r.code, s, r.stderr[-2000:])
            messages = sum(s["messages"]["done"] for s in summaries)
            nbytes = sum(s["bytes_done"] for s in summaries)
            figures = {
                "processes": processes, "threads_each": threads, "wall": round(wall, 2),
                "messages": messages, "msg_per_s": round(messages / wall, 1),
                "mb_per_s": round(nbytes / wall / 1e6, 2), "cpu_migrator": round(sum(r.cpu for r in results), 1),
                "accounts_each": [s["accounts"]["synced"] for s in summaries], "load_before": before, "load_after": load(),
            }  # fmt: skip
    finally:
        sim.stop()
    # the simulator is one Python process: one core at most, whatever the number of clients
    figures["cpu_simulator"] = round(sim.cpu, 1)
    figures["simulator_busy"] = round(sim.cpu / figures["wall"], 2) if figures.get("wall") else None
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=5000, help="accounts claimed in part 1")
    parser.add_argument("--mailboxes", type=int, default=32)
    parser.add_argument("--messages", type=int, default=100, help="per mailbox, part 2")
    parser.add_argument("--only", default="12")
    parser.add_argument("--claimers", default="1,16", help="process counts for part 1")
    parser.add_argument("--delays", default="0", help="simulator answer delays (s) for part 2")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; load {load()}", flush=True)
    if "1" in args.only:
        for n in (int(x) for x in args.claimers.split(",")):
            rate, split = claims_per_second(args.claims, n)
            say(
                f"claims_{n}",
                f"claims/s, {n:2d} process(es), {args.claims:,} accounts (claim + release): "
                f"{rate:,.0f}/s; per process {min(split)}-{max(split)}",
                {"rate": round(rate), "split": split},
            )
    if "2" in args.only:
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            root = Path(tmp)
            ldif, addresses = people(root, args.mailboxes, seed=11)
            vmail = root / "vmail"
            (root / "probe").mkdir()
            probe = write_plan(root / "probe", ldif, "http://unused", vmail=vmail)
            probe.addresses = addresses
            n, nbytes = write_mailboxes(
                probe, {a: mixed_mailbox(i, args.messages) for i, a in enumerate(addresses)}
            )
            print(
                f"campaign: {args.mailboxes} mailboxes, {n:,} messages, {nbytes / 1e6:.1f} MB",
                flush=True,
            )
            for delay in (float(x) for x in args.delays.split(",")):
                base = None
                for processes in (1, 2, 4):
                    figures = fleet_run(
                        root, ldif, addresses, vmail, processes, threads=4, delay=delay
                    )
                    base = base or figures["msg_per_s"]
                    figures["speedup"] = round(figures["msg_per_s"] / base, 2)
                    figures["delay"] = delay
                    say(
                        f"e2e_{processes}_delay{delay}",
                        f"end to end, answers +{delay * 1000:.0f} ms, {processes} process(es) x 4 threads: "
                        f"{figures['msg_per_s']:,.1f} msg/s, "
                        f"{figures['mb_per_s']} MB/s, {figures['wall']} s, x{figures['speedup']}; CPU s: migrators "
                        f"{figures['cpu_migrator']}, simulator {figures['cpu_simulator']} ({figures['simulator_busy']} of a core); "
                        f"accounts per process {figures['accounts_each']}",
                        figures,
                    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(FIGURES, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
