"""Many workers, one campaign, on a real PostgreSQL: several `migrator run` processes share a
plan and its state database, one is killed, one is frozen past its lease, the database server
is restarted under them; every message still reaches the target exactly once.

The "hosts" are separate processes with their own identities (a unique id each, labelled
host:pid): no network namespaces, which need privileges CI may not have. A worker that loses its connection for
longer than the lease is simulated by SIGSTOP (the process, its heartbeat and its database
session all freeze), which is what a partitioned host looks like from the others.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import psycopg
from sqlalchemy import text

from migrator.engine.limiter import AdaptiveLimiter
from migrator.model.account import DiscoveredAccount, Scope
from migrator.simulator.ews import Faults
from migrator.store import open_store
from migrator.store.claims import claim_next, release_orphans
from migrator.store.fleet import (
    ensure_ceiling,
    fair_shares,
    forget_workers,
    register_worker,
    set_ceiling,
    stop_worker,
    take_share,
)
from migrator.store.owners import identify, pid_namespace
from tests.fixtures.pg_campaign import PgCampaign, pg_campaign, private_postgres
from tests.fixtures.store import *  # noqa: F403

HOST = socket.gethostname()
ENGINE_EVENTS = ("claimed", "taken-over", "released", "interrupted")


def _start(
    pg: PgCampaign, log: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`migrator run --plan P ARGS` with its output in a file (a pipe nobody reads while the
    test polls the database would fill up and stall the worker)."""
    c = pg.campaign
    out: IO[str] = log.open("w", encoding="utf-8")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "migrator", "run", "--plan", str(c.plan_path), *args],
            cwd=c.root, env=env or pg.env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    finally:
        out.close()


def _wait(proc: subprocess.Popen[str], log: Path, timeout: float = 120) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"worker {proc.pid} did not finish in {timeout} s:\n{log.read_text()[-3000:]}"
        ) from None


def _poll(what: str, condition: Any, timeout: float = 60, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _assert_all_exactly_once(pg: PgCampaign) -> None:
    c = pg.campaign
    states = dict(
        pg.sql("SELECT status, count(*) FROM accounts WHERE scope = 'in_scope' GROUP BY status")
    )
    assert states == {"synced": len(c.accounts)}, states
    assert pg.scalar("SELECT count(*) FROM messages WHERE state = 'inflight'") == 0
    for address in c.accounts:
        c.compare(address)


def _engine_events(pg: PgCampaign) -> dict[int, list[tuple[str, str, dict[str, Any]]]]:
    rows = pg.sql(
        "SELECT account_id, kind, worker, detail FROM events WHERE kind = ANY(%s) ORDER BY id",
        list(ENGINE_EVENTS),
    )
    by_account: dict[int, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for account_id, kind, worker, detail in rows:
        by_account[account_id].append((kind, worker, detail or {}))
    return by_account


def _assert_one_holder_at_a_time(pg: PgCampaign, *, dead: set[str]) -> int:
    """Replay each account's claims and releases: a claim only of a free account, a takeover
    only from a holder that is dead (or frozen past its lease), a release only by the holder,
    epochs rising. Returns the number of takeovers."""
    takeovers = 0
    for account_id, events in _engine_events(pg).items():
        holder: str | None = None
        epoch = 0
        for kind, worker, detail in events:
            if kind in ("claimed", "taken-over"):
                assert detail["epoch"] > epoch, f"account {account_id}: epoch went back ({events})"
                epoch = detail["epoch"]
            if kind == "claimed":
                assert holder is None, (
                    f"account {account_id}: claimed by {worker} while {holder} held it"
                )
                holder = worker
            elif kind == "taken-over":
                takeovers += 1
                assert holder is not None and detail["previous_owner"] == holder, (
                    account_id,
                    events,
                )
                assert holder in dead, f"account {account_id}: taken from {holder}, which was alive"
                holder = worker
            else:
                assert worker == holder, (
                    f"account {account_id}: {worker} released it while {holder} held it"
                )
                holder = None
        assert holder is None, f"account {account_id} still held by {holder}"
    return takeovers


def _change(pg: PgCampaign, statement: str, *params: Any) -> None:
    with psycopg.connect(pg.url, connect_timeout=5, autocommit=True) as conn:
        conn.execute(statement, params or None)


def _worker_id(pg: PgCampaign, pid: int) -> str:
    """The unique id the `migrator run` process `pid` works under (it has registered)."""
    found: str = _poll(
        f"process {pid} to register",
        lambda: pg.scalar("SELECT name FROM workers WHERE pid = %s", pid),
    )
    return found


def _workers(pg: PgCampaign) -> dict[str, Any]:
    c = pg.campaign
    out = pg.cli("workers", "--plan", str(c.plan_path), "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_four_workers_one_killed_mid_chunk_every_message_once(tmp_path: Path) -> None:
    with pg_campaign(
        tmp_path / "c", "multihost_four", small=True, accounts=200, workers=2, chunk=5, lease=10
    ) as pg:
        c = pg.campaign
        # the first worker SIGKILLs itself after its 4th upload, before the ledger records it
        crash = {**pg.env, "MIGRATOR_CRASH_AT": "upload:4"}
        logs = [tmp_path / f"worker{n}.log" for n in range(4)]
        procs = [_start(pg, logs[n], "--quiet", env=crash if n == 0 else None) for n in range(4)]
        codes = [_wait(p, log) for p, log in zip(procs, logs, strict=True)]
        assert codes[0] == -signal.SIGKILL, logs[0].read_text()
        assert codes[1:] == [0, 0, 0], [log.read_text()[-2000:] for log in logs[1:]]
        killed = _worker_id(pg, procs[0].pid)
        survivors = {_worker_id(pg, p.pid) for p in procs[1:]}
        assert killed.startswith(f"{HOST}:{procs[0].pid}#")

        # the killed worker left an account in flight; a survivor took it over from the ledger
        assert _assert_one_holder_at_a_time(pg, dead={killed}) >= 1
        rerun = pg.cli("run", "--plan", str(c.plan_path), "--quiet", "--no-delta")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        _assert_all_exactly_once(pg)
        # every survivor did a share of the work
        per_worker = dict(
            pg.sql("SELECT worker, count(*) FROM events WHERE kind = 'released' GROUP BY worker")
        )
        assert set(per_worker) >= survivors and all(per_worker[w] > 0 for w in survivors), (
            per_worker
        )

        # (d) the fleet as `migrator workers` shows it
        fleet = _workers(pg)
        by_name = {w["id"]: w for w in fleet["workers"]}
        assert set(by_name) >= survivors | {killed}
        # its process is gone (seen from this PID namespace): it holds nothing
        assert by_name[killed]["state"] == "gone" and by_name[killed]["accounts"] == []
        assert (
            fleet["totals"]["gone"] == 1
            and fleet["totals"]["stale"] == 0
            and fleet["totals"]["running"] == 0
        )
        released = defaultdict(int)
        for worker, detail in pg.sql("SELECT worker, detail FROM events WHERE kind = 'released'"):
            released[worker] += int(detail.get("messages_done", 0))
        for name in survivors:
            w = by_name[name]
            assert (
                w["state"] == "stopped"
                and w["host"] == HOST
                and name.startswith(f"{HOST}:{w['pid']}#")
            )
            assert w["name"] == f"{HOST}:{w['pid']}"
            assert w["messages_done"] == released[name] > 0, (name, w, released[name])
            assert w["accounts"] == [] and w["share"] is None
        text = pg.cli("workers", "--plan", str(c.plan_path))
        assert text.returncode == 0 and "gone" in text.stdout and killed in text.stdout, text.stdout
        assert "0 stale, 1 gone, 4 stopped" in text.stdout  # and the rerun


def test_postgresql_restarted_during_a_run_completes_exactly(tmp_path: Path) -> None:
    # a server of its own: the shared one serves every other test, some running meanwhile
    with private_postgres() as server, pg_campaign(
        tmp_path / "c", "multihost_restart", server=server, accounts=24, messages_per_folder=0, workers=2,
        chunk=3, lease=30, faults=Faults(delay_s=0.01),
    ) as pg:  # fmt: skip
        log = tmp_path / "run.log"
        proc = _start(pg, log, "--log-format", "json")
        total = 24 * 19
        _poll(
            "a quarter of the messages",
            lambda: pg.scalar("SELECT count(*) FROM messages WHERE state = 'done'") >= total // 4,
        )
        server.restart()
        code = _wait(proc, log)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert code == 0, log.read_text()[-3000:]
        notes = " ".join(str(r.get("message", "")) for r in lines if r["event"] == "note")
        assert "state database" in notes, notes  # the restart did reach the run
        finished = lines[-1]
        assert finished["event"] == "run_finished" and finished["accounts"]["failed"] == 0, finished
        assert finished["accounts"]["synced"] == 24
        _assert_all_exactly_once(pg)
        assert _assert_one_holder_at_a_time(pg, dead=set()) == 0


def _stop_between_transactions(pg: PgCampaign, pid: int) -> None:
    """SIGSTOP `pid` at an instant when none of its connections is inside a transaction.
    Frozen in one (between its heartbeat's UPDATE of the account and the COMMIT, say), it holds
    the account's row lock, and the others' claims (FOR UPDATE SKIP LOCKED) pass the account by
    instead of taking it over: such a host delays its account until it wakes (or the server
    drops its connection), it does not lose it, and this test is about losing it."""
    busy = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state <> 'idle'"
    )
    for _ in range(500):
        os.kill(pid, signal.SIGSTOP)
        if pg.scalar(busy) == 0:
            return
        os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"process {pid} was inside a transaction at each of 500 tries")


def test_a_worker_frozen_past_its_lease_is_fenced_off(tmp_path: Path) -> None:
    with pg_campaign(
        tmp_path / "c", "multihost_zombie", accounts=4, messages_per_folder=0, workers=1, chunk=2, lease=10,
        faults=Faults(delay_s=0.15),
    ) as pg:  # fmt: skip
        zombie_log = tmp_path / "zombie.log"
        zombie = _start(pg, zombie_log, "--json")
        name = _worker_id(pg, zombie.pid)
        try:
            # freeze it in the middle of an account: some of its messages done, more to come
            account_id = _poll(
                "the worker to be half-way through an account",
                lambda: pg.scalar(
                    "SELECT a.id FROM accounts a WHERE a.lease_owner = %s AND "
                    "(SELECT count(*) FROM messages m WHERE m.account_id = a.id AND m.state = 'done') >= 4",
                    name,
                ),
            )
            _stop_between_transactions(pg, zombie.pid)
            epoch = pg.scalar("SELECT lease_epoch FROM accounts WHERE id = %s", account_id)
            # to the others it is a host that went silent: after the lease it is stale
            _poll(
                "the lease to expire",
                lambda: pg.scalar(
                    "SELECT lease_expires_at < now() FROM accounts WHERE id = %s", account_id
                ),
                timeout=30,
                every=0.2,
            )
            # silent for longer than the lease: gone (its process exists, frozen, but nobody
            # judges a worker by its process but from its own PID namespace, and then only
            # whether it exists)
            fleet = {w["id"]: w for w in _workers(pg)["workers"]}
            assert fleet[name]["state"] == "gone" and fleet[name]["accounts"] == [], fleet[name]

            other_log = tmp_path / "other.log"
            other = _start(pg, other_log, "--quiet", "--workers", "2")
            assert _wait(other, other_log) == 0, other_log.read_text()
            other_name = _worker_id(pg, other.pid)
        finally:
            os.kill(zombie.pid, signal.SIGCONT)
        code = _wait(zombie, zombie_log)
        assert code == 0, zombie_log.read_text()[-3000:]
        summary = json.loads(zombie_log.read_text())
        assert summary["accounts"]["lost"] == 1, summary

        events = _engine_events(pg)[account_id]
        assert [(k, w) for k, w, _ in events] == [
            ("claimed", name),
            ("taken-over", other_name),
            ("released", other_name),
        ]
        assert events[1][2]["previous_owner"] == name and events[1][2]["epoch"] == epoch + 1
        # nothing the zombie wrote after it woke up: every ledger row of the account is final,
        # and the ones the new owner settled carry its epoch
        rows = dict(
            pg.sql(
                "SELECT lease_epoch, count(*) FROM messages WHERE account_id = %s GROUP BY lease_epoch",
                account_id,
            )
        )
        assert set(rows) <= {epoch, epoch + 1} and rows.get(epoch + 1, 0) > 0, rows
        _assert_all_exactly_once(pg)
        assert _assert_one_holder_at_a_time(pg, dead={name}) == 1


def test_the_target_ceiling_is_split_among_live_workers(store_url: str) -> None:
    store = open_store(store_url)
    try:
        plan_id = store.ensure_plan(f"ceiling-{uuid.uuid4().hex[:6]}", "maildir", "ews")
        target = f"https://mail-{uuid.uuid4().hex[:6]}.example.org/EWS/Exchange.asmx"
        lease = 30

        def share(worker: int, **kwargs: Any) -> int:
            return take_share(
                store, target, worker, default=16, lease_seconds=lease, **kwargs
            ).share

        assert ensure_ceiling(store, target, 10) == 10
        assert ensure_ceiling(store, target, 99) == 10  # the stored value wins over another plan's

        def join() -> int:
            return register_worker(
                store, identify(), plan_id=plan_id, run_id=None, target=target, threads=16
            )

        first = join()
        assert share(first) == 10  # alone
        second = join()
        # a newcomer takes only what the others do not hold: nothing, until the first has
        # given back its part at its next beat (the fleet never goes above the ceiling)
        assert share(second, waiting=True) == 0
        assert share(second) == 1  # one it may take anyway once it has waited two beats
        assert share(first, in_flight=7) == 5  # its due; 7 stay recorded while in flight
        assert share(second, waiting=True) == 3
        assert share(first) == 5 and share(second) == 5
        third = join()
        assert share(third, waiting=True) == 0
        assert [share(w) for w in (first, second, third)] == [4, 3, 3]
        # a stopped worker and one silent for longer than the lease no longer count
        stop_worker(store, first, stats={})
        with store.engine.begin() as conn:
            conn.execute(
                text("UPDATE workers SET heartbeat_at = :t WHERE id = :i"),
                {"t": datetime.now(UTC) - timedelta(seconds=2 * lease), "i": second},
            )
        assert share(third) == 10
        set_ceiling(store, target, 1)
        assert share(third) == 1
        # a worker is never due more than its threads can send; what it cannot use goes to the others
        set_ceiling(store, target, 16)
        small = register_worker(
            store, identify(), plan_id=plan_id, run_id=None, target=target, threads=2
        )
        assert share(third) == 14 and share(small) == 2
        # a worker killed in this PID namespace holds nothing: a restart does not wait for it
        killed = subprocess.Popen(["true"])
        killed.wait()
        other_target = f"{target}/other"
        ensure_ceiling(store, other_target, 16)
        dead = register_worker(store, replace(identify(), process=f"{pid_namespace()}/{killed.pid}/1"),
                               plan_id=plan_id, run_id=None, target=other_target, threads=16)  # fmt: skip
        assert take_share(store, other_target, dead, default=16, lease_seconds=lease).share == 16
        restarted = register_worker(
            store, identify(), plan_id=plan_id, run_id=None, target=other_target, threads=16
        )
        assert (
            take_share(
                store, other_target, restarted, default=16, lease_seconds=lease, waiting=True
            ).share
            == 16
        )
        # rows of workers silent for long can go (for `migrator prune`); live ones stay
        assert (
            forget_workers(
                store, plan_id, silent_since=datetime.now(UTC) - timedelta(seconds=lease)
            )
            == 1
        )  # second
        assert (
            forget_workers(store, plan_id, silent_since=datetime.now(UTC) - timedelta(hours=1)) == 0
        )
        assert fair_shares(4, {1: 2, 2: 2, 3: 2}) == {1: 2, 2: 1, 3: 1}
        assert fair_shares(2, {1: 2, 2: 2, 3: 2}) == {
            1: 1,
            2: 1,
            3: 1,
        }  # more workers than the ceiling
        # the limiter of a process takes its share as its hard ceiling
        limiter = AdaptiveLimiter(16)
        limiter.set_ceiling(3)
        assert (limiter.ceiling, limiter.limit) == (3, 3)
        limiter.set_ceiling(8)
        assert (limiter.ceiling, limiter.limit) == (8, 3)  # grows back on successes, not at once
        for _ in range(limiter.recover_after):
            limiter.succeeded()
        assert limiter.limit == 4
    finally:
        store.close()


def test_a_claim_whose_commit_was_cut_off_is_given_back(store_url: str) -> None:
    """The connection died during a claim's COMMIT: the worker cannot tell whether it holds the
    account. On its next attempt it gives back what is leased to it but not in hand."""
    store = open_store(store_url)
    try:
        plan_id = store.ensure_plan(f"orphan-{uuid.uuid4().hex[:6]}", "maildir", "ews")
        store.record_discovery(plan_id, None, [
            DiscoveredAccount(key=f"u{n}@example.org", dn=f"uid=u{n},dc=example,dc=org", scope=Scope.IN_SCOPE,
                              address=f"u{n}@example.org")
            for n in range(3)
        ])  # fmt: skip
        started = datetime.now(UTC)
        kept = claim_next(store, plan_id, worker="w:1", lease_seconds=60, run_started=started)
        lost = claim_next(store, plan_id, worker="w:1", lease_seconds=60, run_started=started)
        assert kept is not None and lost is not None
        assert release_orphans(store, plan_id, "w:1", [kept.account_id], run_id=None) == 1
        rows = {r.key: r for r in store.list_accounts(plan_id)}
        assert rows[lost.key].status == "pending" and rows[lost.key].lease_owner is None
        assert rows[kept.key].status == "running" and rows[kept.key].lease_owner == "w:1"
        kinds = [
            e["kind"] for e in reversed(store.list_events(plan_id, account_id=lost.account_id))
        ]
        assert kinds == ["claimed", "interrupted"]
        # the next claim takes it as an ordinary free account, with a new epoch
        again = claim_next(store, plan_id, worker="w:2", lease_seconds=60, run_started=started)
        assert (
            again is not None
            and again.account_id == lost.account_id
            and again.epoch == lost.epoch + 1
        )
        # two containers' PID 1 on hosts of one name: one giving back its orphans never gives
        # back the other's accounts (they used to share the owner name box:1)
        one, other = identify(), identify()
        assert one.label == other.label and one.id != other.id
        theirs = claim_next(store, plan_id, worker=other.id, lease_seconds=60, run_started=started)
        assert theirs is not None
        assert release_orphans(store, plan_id, one.id, [], run_id=None) == 0
        assert {r.key: r.lease_owner for r in store.list_accounts(plan_id)}[theirs.key] == other.id
    finally:
        store.close()


# --- containers ---------------------------------------------------------------------------------


def _container(pg: PgCampaign, log: Path, *args: str, pid_1: bool = True) -> subprocess.Popen[str]:
    """`migrator run --plan P ARGS` the way a container runs it: in a PID namespace of its own
    (its process is PID 1, or about 100 when a hundred processes ran before it: above the
    thread ids of a migrator process, which share the numbers) and a UTS namespace whose host
    name is `box`, as every container started with `--hostname box` (or host networking on a
    host named box) shows it. The network is the host's, as with host networking."""
    c = pg.campaign
    command = shlex.join(
        [sys.executable, "-m", "migrator", "run", "--plan", str(c.plan_path), *args]
    )
    before = "exec " if pid_1 else "i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i + 1)); done; "
    inner = f"hostname box && {before}{command}"
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    out: IO[str] = log.open("w", encoding="utf-8")
    try:
        return subprocess.Popen(
            ["unshare", *user, "--pid", "--fork", "--kill-child", "--mount-proc", "--uts", "sh", "-c", inner],
            cwd=c.root, env=pg.env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    finally:
        out.close()


def _freeze(proc: subprocess.Popen[str], frozen: bool) -> None:
    """Stop or continue a container's whole process group (unshare, its shell and migrator)."""
    os.killpg(proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)


def test_containers_named_box_as_pid_1_are_workers_of_their_own(tmp_path: Path) -> None:
    """Three containers with one host name, two of them PID 1: each is a worker of its own. Were
    they told apart by host and pid, they would share a `workers` row and a lease owner (each
    taking the whole ceiling; one finishing would mark the row stopped under the others), and the
    one with another pid would free the PID-1 ones' live leases, pid 1 of its own namespace not
    being theirs."""
    with pg_campaign(
        tmp_path / "c", "multihost_boxes", small=True, accounts=120, workers=2, chunk=1, lease=60,
        faults=Faults(delay_s=0.01),
    ) as pg:  # fmt: skip
        c = pg.campaign
        assert pg.cli("workers", "--plan", str(c.plan_path), "--ceiling", "4").returncode == 0
        logs = {n: tmp_path / f"{n}.log" for n in ("one", "two", "three")}
        # two containers at work, then a third PID 1 that stops after five accounts
        procs = {
            "two": _container(pg, logs["two"], "--quiet", "--json"),
            "three": _container(pg, logs["three"], "--quiet", "--json", pid_1=False),
        }
        try:
            _poll(
                "two containers to register",
                lambda: pg.scalar("SELECT count(*) FROM workers WHERE host = 'box'") == 2,
            )
            # the two are held still (their leases and rows live on, lease 60 s) while the third
            # does its five accounts, so they still have work when it has finished, however slow
            # the machine; the third's look for dead holders must leave their accounts alone
            for name in ("two", "three"):
                _freeze(procs[name], True)
            procs["one"] = _container(pg, logs["one"], "--quiet", "--json", "--limit", "5")
            assert _wait(procs["one"], logs["one"]) == 0, logs["one"].read_text()[-3000:]
            for name in ("two", "three"):
                _freeze(procs[name], False)
            # when one container has finished, the others are still at work, and say so
            assert [n for n in ("two", "three") if procs[n].poll() is None] == ["two", "three"]
            one_name = pg.scalar("SELECT name FROM workers ORDER BY id DESC LIMIT 1")

            def settled() -> dict[str, Any] | None:
                # the two thawed ones may look stale until their next beat
                f = _workers(pg)
                states = {w["id"]: w["state"] for w in f["workers"]}
                wanted = (
                    sorted(states.values()) == ["running", "running", "stopped"]
                    and states.get(one_name) == "stopped"
                )
                return f if wanted else None

            fleet = _poll("the fleet to show the third stopped and the two others running", settled)
            codes = {n: _wait(procs[n], logs[n]) for n in ("two", "three")}
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert codes == {"two": 0, "three": 0}, {n: logs[n].read_text()[-2000:] for n in codes}

        rows = pg.sql("SELECT name, host, pid, label FROM workers ORDER BY id")
        assert len(rows) == 3 and len({name for name, *_ in rows}) == 3, rows
        assert sorted(pid for _, _, pid, _ in rows)[:2] == [1, 1] and {
            h for _, h, _, _ in rows
        } == {"box"}
        assert max(pid for _, _, pid, _ in rows) > 100
        assert all(
            name.startswith(f"{label}#") and label == f"box:{pid}" for name, _, pid, label in rows
        )
        one = rows[2][0]
        states = {w["id"]: w["state"] for w in fleet["workers"]}
        assert states == {one: "stopped", rows[0][0]: "running", rows[1][0]: "running"}, fleet[
            "workers"
        ]

        # nobody took a live worker's account, nobody lost one, and the target never saw more
        # requests at once than the fleet's ceiling
        assert _assert_one_holder_at_a_time(pg, dead=set()) == 0
        summaries = {
            n: json.loads(text[text.index("{\n") :])
            for n, text in ((n, logs[n].read_text()) for n in logs)
        }
        assert {n: s["accounts"]["lost"] for n, s in summaries.items()} == {
            "one": 0,
            "two": 0,
            "three": 0,
        }
        assert summaries["one"]["accounts"]["processed"] == 5
        assert c.sim.stats().max_concurrency <= 4, c.sim.stats().max_concurrency
        _assert_all_exactly_once(pg)


def test_a_host_that_died_goes_stale_then_gone_and_its_run_is_interrupted_by_another(
    tmp_path: Path,
) -> None:
    """A container (another host, as far as pids go) is killed in the middle of its accounts.
    Nobody may judge it by its pid: its row goes stale after three beats, gone after the lease
    (then it holds nothing and lists nothing), and the `run` still at work elsewhere marks its
    `runs` row interrupted and takes its accounts over. The time that passes for the dead host
    is made to pass by ageing its rows (as a clock would, without waiting for it)."""
    with pg_campaign(
        tmp_path / "c", "multihost_dead_box", small=True, accounts=60, workers=2, chunk=1, lease=30,
        faults=Faults(delay_s=0.02),
    ) as pg:  # fmt: skip
        box_log, here_log = tmp_path / "box.log", tmp_path / "here.log"
        box = _container(pg, box_log, "--quiet")
        here: subprocess.Popen[str] | None = None
        try:
            dead = _poll("the container to hold accounts", lambda: pg.scalar(
                "SELECT lease_owner FROM accounts WHERE lease_owner LIKE 'box:1#%%' LIMIT 1"))  # fmt: skip
            # slow the target now: the container must still be at work when this host has joined
            # (at 0.02 s an answer it does its 60 accounts in 13 s, less than a start on a busy machine)
            pg.campaign.sim.set_faults(Faults(delay_s=0.3))
            here = _start(pg, here_log, "--quiet")
            _poll("this host's worker to be at work", lambda: pg.scalar(
                "SELECT count(*) FROM accounts WHERE lease_owner LIKE %s", f"{HOST}:{here.pid}#%"))  # fmt: skip
            box.kill()  # the host is gone: SIGKILL to its whole PID namespace
            box.wait()
            pg.campaign.sim.set_faults(
                Faults(delay_s=0.3)
            )  # this host's run keeps at work meanwhile
            [(run_id, run_status)] = pg.sql("SELECT id, status FROM runs WHERE worker = %s", dead)
            assert run_status == "running"
            held = pg.scalar(
                "SELECT count(*) FROM accounts WHERE lease_owner = %s AND status = 'running'", dead
            )
            assert held >= 1

            def worker(name: str) -> dict[str, Any]:
                found: dict[str, Any] = next(w for w in _workers(pg)["workers"] if w["id"] == name)
                return found

            # silent for three beats (15 s): stale, its leases still hold
            _change(
                pg,
                "UPDATE workers SET heartbeat_at = now() - interval '16 seconds' WHERE name = %s",
                dead,
            )
            stale = worker(dead)
            assert stale["state"] == "stale" and len(stale["accounts"]) == held, json.dumps(stale)
            # silent for longer than the lease (30 s): gone, its leases have run out as well
            _change(
                pg,
                "UPDATE workers SET heartbeat_at = now() - interval '35 seconds' WHERE name = %s",
                dead,
            )
            _change(
                pg,
                "UPDATE runs SET alive_until = now() - interval '5 seconds' WHERE id = %s",
                run_id,
            )
            _change(
                pg,
                "UPDATE accounts SET lease_expires_at = now() - interval '5 seconds' WHERE lease_owner = %s",
                dead,
            )
            gone = worker(dead)
            assert gone["state"] == "gone" and gone["accounts"] == [] and gone["share"] is None, (
                gone
            )
            # the run at work on this host notices within a beat (5 s)
            _poll("the dead host's run to be marked interrupted", lambda: pg.scalar(
                "SELECT status = 'interrupted' AND finished_at IS NOT NULL FROM runs WHERE id = %s", run_id),
                timeout=30)  # fmt: skip
            assert here.poll() is None, (
                "this host's run had ended: the dead host's run was noticed by nobody"
            )
            pg.campaign.sim.set_faults(Faults())
            assert _wait(here, here_log) == 0, here_log.read_text()[-3000:]
        finally:
            for proc in (box, here):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        taken = pg.sql("SELECT detail FROM events WHERE kind = 'taken-over'")
        assert taken and {d["previous_owner"] for (d,) in taken} == {dead}
        _assert_all_exactly_once(pg)
