"""Reads at 100,000 accounts (issue 19): status, accounts --json, report --html in a browser,
events and show, at 10,000 and 100,000 accounts, and how each cost grows between them.

    .venv/bin/python -m bench.bench_reads_100k [ACCOUNTS ...] [sqlite-only]   (default 10000 100000)

The state database is written straight into the store's schema (open_store runs the real
migrations; the rows come from one recursive-CTE INSERT per table), so 100,000 accounts take
seconds, not a campaign. It looks like a campaign three quarters done: 400 batches of 250, 70 %
synced, 5 % verified, 3 % failed (four reasons, a long error each), 1 % running, 21 % pending;
names with accents; two folders, five ledger rows and a `claimed` + `released` event per
finished account.

Every command runs as a user runs it (`python -m migrator ...` in a subprocess), timed from
start to exit, with its own peak RSS (wait4). `accounts --json` also gives the time to its
first byte (it streams). The HTML report is opened in headless Chromium over the DevTools
protocol (tests/fixtures/browser.py): "open" is from navigation to the page's script having
drawn the charts and the first page of the table; then a search for one account on a late
page is typed into the box and timed until the table shows it.

Then the same state is copied into PostgreSQL (127.0.0.1:5432, trust, user postgres; the
database migrator_bench_reads is created and dropped) and the main reads run against it
(`sqlite-only` skips this).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from migrator.samples.plans import (
    SamplePlan,
    ews_target,
    ldif_directory,
    maildir_source,
    sqlite_state,
)
from migrator.store import open_store
from tests.fixtures.browser import Browser

REPO = Path(__file__).resolve().parents[1]

BATCH_SIZE = 250
PER_ACCOUNT = 5  # ledger rows of a finished account


def sample_plan(root: Path) -> SamplePlan:
    """A plan for the state under `root`; nothing it names is reached: only the state is read."""
    return SamplePlan(
        "bench",
        directory=ldif_directory(
            root / "none.ldif", base="ou=people,dc=uni,dc=example,dc=org", filter=None
        ),
        source=maildir_source(root / "vmail"),
        target=ews_target(
            "https://127.0.0.1:1/EWS/Exchange.asmx",
            username="svc",
            password_env="MIGRATOR_BENCH_UNUSED",
            auth=None,
        ),
        state=sqlite_state(root / "state.db"),
    )


GIVEN = ("'María José'", "'Iñaki'", "'Ximena'", "'José Guadalupe'", "'Rocío'", "'Francisco Javier'")
FAMILY = (
    "'Núñez'",
    "'Fernández-Villaseñor'",
    "'Peña'",
    "'Echeverría Olaizola'",
    "'Ibáñez'",
    "'Gutiérrez'",
)


def _pick(options: tuple[str, ...], expr: str) -> str:
    return (
        "CASE "
        + expr
        + " "
        + " ".join(f"WHEN {i} THEN {v}" for i, v in enumerate(options))
        + " END"
    )


# 70 % synced, 5 % verified, 3 % failed, 1 % running, 21 % pending (by account number)
STATUS = """CASE WHEN n % 100 < 70 THEN 'synced' WHEN n % 100 < 75 THEN 'verified'
  WHEN n % 100 < 78 THEN 'failed' WHEN n % 100 < 79 THEN 'running' ELSE 'pending' END"""
REASON = """CASE WHEN n % 100 BETWEEN 75 AND 77 THEN
  CASE n % 4 WHEN 0 THEN 'no-mailbox' WHEN 1 THEN 'auth' WHEN 2 THEN 'source-missing' ELSE 'network' END END"""
DONE = f"CASE WHEN n % 100 < 75 THEN {PER_ACCOUNT} ELSE 0 END"
# finished accounts passed over the last 20 days, in account order
AT = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ((({count} - n) * 1728000) / {count}) || ' seconds')"


def fill(root: Path, count: int) -> Path:
    """A state database of `count` accounts in scope; returns the plan file."""
    root.mkdir(parents=True, exist_ok=True)
    plan = sample_plan(root).write(root / "plan.toml")
    path = root / "state.db"
    store = open_store(f"sqlite:///{path}")
    try:
        store.ensure_plan("bench", "maildir", "ews")
    finally:
        store.close()
    at = AT.format(count=count)
    user = "'user' || printf('%06d', n)"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    series = f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {count}) "
    db.execute("BEGIN")
    db.execute(
        series
        + f"""INSERT INTO accounts (id, plan_id, key, dn, address, target_address, uid, name, batch,
          aliases, attributes, scope, fingerprint, discovered_at, last_seen_at, status, passes, attempts,
          last_error, last_error_reason, first_pass_at, last_pass_at, messages_done, messages_skipped,
          messages_failed, bytes_done, lease_epoch)
        SELECT n, 1, {user} || '@uni.example.org', 'uid=' || {user} || ',ou=people,dc=uni,dc=example,dc=org',
          {user} || '@uni.example.org', {user} || '@uni.example.org', {user},
          {_pick(GIVEN, "n % 6")} || ' ' || {_pick(FAMILY, "(n / 6) % 6")} || ' ' || {_pick(FAMILY, "(n / 36) % 6")},
          'Facultad ' || printf('%03d', (n - 1) / {BATCH_SIZE}), '[]', '{{}}', 'in_scope', 'fp',
          strftime('%Y-%m-%d %H:%M:%f', 'now', '-30 days'), strftime('%Y-%m-%d %H:%M:%f', 'now'),
          {STATUS}, CASE WHEN n % 100 < 75 THEN 1 ELSE 0 END, CASE WHEN n % 100 < 79 THEN 1 ELSE 0 END,
          CASE WHEN {REASON} IS NOT NULL THEN 'mailbox ' || {user} || '@uni.example.org: the target refused it ('
            || {REASON} || ') while creating folder ''Bandeja de entrada/Proveedores/2019/Licitación pública'''
          END, {REASON},
          CASE WHEN n % 100 < 75 THEN {at} END, CASE WHEN n % 100 < 75 THEN {at} END,
          {DONE}, 0, 0, {DONE} * 48000, 1
        FROM s"""
    )
    for k, (native, display, role) in enumerate(
        (("INBOX", "Inbox", "inbox"), (".Sent", "Sent", "sent"))
    ):
        db.execute(
            f"""INSERT INTO folders (id, account_id, native, display, role, source_count, done_count,
                  skipped_count, failed_count, created_at)
                SELECT id * 2 - {1 - k}, id, '{native}', '{display}', '{role}',
                  CASE WHEN messages_done > 0 THEN {PER_ACCOUNT - 2 if k == 0 else 2} END,
                  CASE WHEN messages_done > 0 THEN {PER_ACCOUNT - 2 if k == 0 else 2} ELSE 0 END, 0, 0, discovered_at
                FROM accounts"""
        )
    db.execute(
        f"""WITH RECURSIVE r(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM r WHERE k < {PER_ACCOUNT - 1})
        INSERT INTO messages (folder_id, account_id, source_key, state, lease_epoch, size, created_at, updated_at)
        SELECT a.id * 2 - CASE WHEN k < {PER_ACCOUNT - 2} THEN 1 ELSE 0 END, a.id,
          printf('%010d', a.id * 10 + k) || '.M1P1.host:2,S', 'done', 1, 48000, a.last_pass_at, a.last_pass_at
        FROM accounts a, r WHERE a.messages_done > 0"""
    )
    for kind, frm, to in (("claimed", "pending", "'running'"), ("released", "running", "status")):
        db.execute(
            f"""INSERT INTO events (plan_id, account_id, at, kind, from_state, to_state, worker, detail)
            SELECT 1, id, coalesce(last_pass_at, strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hours')), '{kind}',
              '{frm}', {to}, 'bench:1',
              json_object('messages_done', messages_done, 'bytes_done', bytes_done)
            FROM accounts WHERE status IN ('synced', 'verified', 'failed')
            ORDER BY coalesce(last_pass_at, '9')"""
        )
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return plan


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "migrator_bench_reads"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
COPIED = ("accounts", "folders", "messages", "events")


def copy_to_postgresql(root: Path) -> str:
    """The SQLite state of `root` copied into a fresh PostgreSQL database (the same schema by
    open_store, the rows by COPY); returns its URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {PG_DB}")
    store = open_store(PG_URL)
    try:
        store.ensure_plan("bench", "maildir", "ews")
    finally:
        store.close()
    lite = sqlite3.connect(root / "state.db")
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute("SET session_replication_role = replica")  # rows copied whole: no FK checks
        db.execute("SET timezone = 'UTC'")  # SQLite keeps the UTC wall clock as text
        for table in COPIED:
            names = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
            with db.cursor().copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
                for row in lite.execute(f"SELECT {', '.join(names)} FROM {table}"):
                    copy.write_row(row)
            db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        db.execute("VACUUM ANALYZE")
    lite.close()
    return PG_URL


def drop_postgresql() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def _env(root: Path) -> dict[str, str]:
    # bytecode cached as an installed migrator has it (this machine sets PYTHONDONTWRITEBYTECODE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(root.parent / "pycache")
    env["COLUMNS"] = "120"
    return env


# The command in this process, which writes its own peak RSS (VmHWM) on stderr as it exits:
# wait4's ru_maxrss would count the bench's own memory, which a forked child starts with.
PEAK = """import atexit, runpy, sys
def peak():
    hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
    sys.stderr.write("\\nPEAK-KB " + hwm + "\\n")
atexit.register(peak)
sys.argv[0] = "migrator"
runpy.run_module("migrator", run_name="__main__", alter_sys=True)
"""


def run(root: Path, *args: str, first_byte: bool = False) -> dict[str, Any]:
    """`python -m migrator ARGS`: seconds to exit, CPU seconds, peak RSS (MB), stdout; with first_byte, also
    the seconds until its first output (read while it is still running)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", PEAK, *args], cwd=REPO, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = None
    chunks = []
    while chunk := proc.stdout.read1(1 << 16):
        if first is None:
            first = time.perf_counter() - started
        chunks.append(chunk)
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"migrator {' '.join(args)}: exit {proc.returncode}: {err[-2000:]}")
    peak = int(err.rsplit("PEAK-KB ", 1)[1].split()[0])
    result: dict[str, Any] = {
        "s": seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": peak / 1024,
        "out": b"".join(chunks),
    }
    if first_byte:
        result["first"] = first
    return result


def best(root: Path, times: int, *args: str, **kw: Any) -> dict[str, Any]:
    """The fastest of `times` runs (after one that warms the file cache): the figure least
    disturbed by the other work on this shared machine."""
    run(root, *args, **kw)
    return min((run(root, *args, **kw) for _ in range(times)), key=lambda r: r["s"])


SEARCH = """(function (q) {
  var box = document.getElementById("search");
  box.value = q;
  box.dispatchEvent(new Event("input"));
})(%s)"""


def browser_figures(root: Path, page: Path, count: int) -> dict[str, float]:
    wanted = f"user{count - 3:06d}@uni.example.org"  # on the last page of the table
    started = time.perf_counter()
    with Browser(root / "browser", width=1280) as browser:
        launched = time.perf_counter()
        opens = []
        for _ in range(3):
            t0 = time.perf_counter()
            browser.open(page)
            opens.append(time.perf_counter() - t0)
        shown = browser.evaluate("document.querySelectorAll('#accounts tbody tr').length")
        t0 = time.perf_counter()
        browser.evaluate(SEARCH % json.dumps(wanted))
        deadline = time.monotonic() + 30
        script = (
            "Array.from(document.querySelectorAll('#accounts tbody tr')).map(function (r) {"
            " return r.querySelector('.addr').textContent; }).join(' ')"
        )
        while browser.evaluate(script) != wanted:
            if time.monotonic() > deadline:
                raise SystemExit(f"the search for {wanted} did not show it")
            time.sleep(0.01)
        searched = time.perf_counter() - t0
    return {
        "launch": launched - started,
        "open": min(opens),
        "open_max": max(opens),
        "search": searched,
        "rows_shown": float(shown),
    }


def measure(base: Path, count: int, *, postgresql: bool) -> dict[str, Any]:
    root = base / str(count)
    started = time.perf_counter()
    plan = fill(root, count)
    print(
        f"{count:,} accounts: state database written in {time.perf_counter() - started:.1f} s "
        f"({(root / 'state.db').stat().st_size / 1e6:.0f} MB)",
        flush=True,
    )
    p = ("--plan", str(plan))
    fig: dict[str, Any] = {}
    status = best(root, 3, "status", *p, "--json")
    fig["status --json"] = status
    fig["status"] = best(root, 3, "status", *p)
    accounts = best(root, 2, "accounts", *p, "--json", first_byte=True)
    listed = json.loads(accounts["out"])
    assert len(listed) == count, len(listed)
    fig["accounts --json"] = accounts
    failed = best(root, 2, "accounts", *p, "--status", "failed", "--json", first_byte=True)
    fig["accounts --status failed --json"] = failed
    fig["accounts (table)"] = best(root, 1, "accounts", *p, first_byte=True)
    html = root / "report.html"
    fig["report --format html"] = best(
        root, 1, "report", *p, "--format", "html", "--output", str(html)
    )
    fig["report --format html"]["size"] = html.stat().st_size / 1e6
    fig["report --format csv"] = best(
        root, 1, "report", *p, "--format", "csv", "--output", str(root / "r.csv")
    )
    someone = f"user{count // 2 + 76:06d}@uni.example.org"  # a failed account half-way
    fig["events --account"] = best(root, 3, "events", *p, "--account", someone, "--json")
    fig["events --limit 1000"] = best(root, 3, "events", *p, "--json")
    fig["show --no-source"] = best(root, 3, "show", someone, *p, "--no-source", "--json")
    fig["browser"] = browser_figures(root, html, count)
    if postgresql:
        started = time.perf_counter()
        url = copy_to_postgresql(root)
        print(f"  copied into PostgreSQL in {time.perf_counter() - started:.1f} s", flush=True)
        try:
            q = (*p, "--state", url)
            fig["status --json (PostgreSQL)"] = best(root, 3, "status", *q, "--json")
            fig["accounts --json (PostgreSQL)"] = best(
                root, 2, "accounts", *q, "--json", first_byte=True
            )
            assert fig["accounts --json (PostgreSQL)"]["out"] == accounts["out"]
            fig["report --format html (PostgreSQL)"] = best(
                root, 1, "report", *q, "--format", "html", "--output", str(root / "pg.html")
            )
            fig["events --account (PostgreSQL)"] = best(
                root, 3, "events", *q, "--account", someone, "--json"
            )
            fig["show --no-source (PostgreSQL)"] = best(
                root, 3, "show", someone, *q, "--no-source", "--json"
            )
        finally:
            drop_postgresql()
    for name, r in fig.items():
        if name == "browser":
            b = r
            print(
                f"  Chromium: launch {b['launch']:.2f} s; open (navigate to drawn) {b['open']:.2f} s "
                f"(max {b['open_max']:.2f}); search for an account on the last page {b['search']:.2f} s; "
                f"{b['rows_shown']:.0f} rows drawn",
                flush=True,
            )
            continue
        extra = f", first byte {r['first']:.2f} s" if r.get("first") is not None else ""
        extra += f", {r['size']:.1f} MB file" if "size" in r else ""
        print(
            f"  {name:<34} {r['s']:6.2f} s (CPU {r['cpu']:5.2f} s), peak RSS {r['rss']:5.0f} MB{extra}",
            flush=True,
        )
    return fig


def growth(small: int, large: int, a: dict[str, Any], b: dict[str, Any]) -> None:
    print(f"\nhow cost grows from {small:,} to {large:,} accounts (x{large / small:.0f}):")
    print(f"| read | {small:,} | {large:,} | growth |")
    print("| --- | --- | --- | --- |")
    for name in a:
        if name == "browser":
            for key, label in (
                ("open", "report opens in Chromium"),
                ("search", "search finds one account"),
            ):
                x, y = a[name][key], b[name][key]
                print(f"| {label} | {x:.2f} s | {y:.2f} s | x{y / x:.1f} |")
            continue
        x, y = a[name], b[name]
        print(
            f"| `{name}` | {x['s']:.2f} s (CPU {x['cpu']:.2f} s), {x['rss']:.0f} MB | "
            f"{y['s']:.2f} s (CPU {y['cpu']:.2f} s), {y['rss']:.0f} MB | "
            f"x{y['cpu'] / x['cpu']:.1f} CPU, x{y['rss'] / x['rss']:.1f} RSS |"
        )
        if "size" in x:
            print(
                f"| report file | {x['size']:.1f} MB | {y['size']:.1f} MB | x{y['size'] / x['size']:.1f} |"
            )


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv[1:] if a.isdigit()] or [10_000, 100_000]
    postgresql = "sqlite-only" not in argv
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        figures = {count: measure(Path(tmp), count, postgresql=postgresql) for count in sizes}
    if len(sizes) >= 2:
        growth(sizes[0], sizes[-1], figures[sizes[0]], figures[sizes[-1]])
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main(sys.argv)
