"""How long record_discovery takes for a large directory, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.bench_store_discovery [ACCOUNTS]   (default 100000)

PostgreSQL must run on 127.0.0.1:5432 (trust auth, user postgres); a scratch database is
created and dropped. Prints seconds per step (wall clock, and CPU of this process, which is
the fairer figure on a busy machine) and the peak resident memory of the process.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg

from migrator.model.account import DiscoveredAccount, Scope
from migrator.store import open_store


def directory(count: int) -> list[DiscoveredAccount]:
    accounts = []
    for n in range(count):
        address = f"user{n:06d}@example.org"
        scope = Scope.IN_SCOPE if n % 20 else Scope.EXCLUDED
        accounts.append(
            DiscoveredAccount(
                key=address,
                dn=f"uid=user{n:06d},ou=dept{n % 40},dc=example,dc=org",
                scope=scope,
                reason=None if scope is Scope.IN_SCOPE else "filtered-out",
                address=address,
                target_address=f"user{n:06d}@example.com",
                uid=f"user{n:06d}",
                name=f"User {n}",
                batch=f"dept{n % 40}",
                aliases=[f"u{n}@example.org"],
                source_path=f"/var/vmail/example.org/user{n:06d}",
                attributes={"title": "Clerk", "l": "Zürich"},
            )
        )
    return accounts


def timed(label: str, action):  # type: ignore[no-untyped-def]
    started, cpu = time.perf_counter(), time.process_time()
    result = action()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {label:<34} {wall:6.2f} s wall {cpu:6.2f} s CPU here, peak RSS {rss:4.0f} MiB")
    return result


def bench(url: str, count: int) -> None:
    store = open_store(url)
    try:
        plan_id = store.ensure_plan("bench", "maildir", "ews")
        accounts = timed(f"build {count} DiscoveredAccount objects", lambda: directory(count))
        timed(
            f"first discovery ({count} new)",
            lambda: store.record_discovery(plan_id, None, accounts),
        )
        timed(
            "re-discovery, nothing changed", lambda: store.record_discovery(plan_id, None, accounts)
        )
        changed = [
            replace(a, name="Renamed") if i % 100 == 0 else a for i, a in enumerate(accounts)
        ]
        del changed[1::500]
        timed("1% changed, 0.2% vanished", lambda: store.record_discovery(plan_id, None, changed))
        timed("discovery_counts", lambda: store.discovery_counts(plan_id))
        rows = timed("list_accounts (all)", lambda: store.list_accounts(plan_id))
        print(f"  listed {len(rows)} accounts")
    finally:
        store.close()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite")
        bench(f"sqlite:///{Path(tmp) / 'bench.db'}", count)
    name = f"mig_bench_{uuid.uuid4().hex[:8]}"
    admin = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        print("PostgreSQL")
        bench(f"postgresql://postgres@127.0.0.1:5432/{name}", count)
    finally:
        with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
