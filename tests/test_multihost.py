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
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text

from migrator.engine.limiter import AdaptiveLimiter
from migrator.model.account import DiscoveredAccount, Scope
from migrator.simulator.ews import Faults
from migrator.store import open_store
from migrator.store.fleet import (
    ensure_ceiling,
    register_worker,
    set_ceiling,
    stop_worker,
    take_share,
)
from migrator.store.owners import identify
from migrator.store.work import claim_next, release_orphans
from tests.fixtures.pg_campaign import PgCampaign, pg_campaign, pg_ctl, postgres_left_running
from tests.fixtures.store import *  # noqa: F403

HOST = socket.gethostname()
ENGINE_EVENTS = ("claimed", "taken-over", "released", "interrupted")


def _start(pg: PgCampaign, log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
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
        raise AssertionError(f"worker {proc.pid} did not finish in {timeout} s:\n{log.read_text()[-3000:]}") from None


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
    states = dict(pg.sql("SELECT status, count(*) FROM accounts WHERE scope = 'in_scope' GROUP BY status"))
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
                assert holder is None, f"account {account_id}: claimed by {worker} while {holder} held it"
                holder = worker
            elif kind == "taken-over":
                takeovers += 1
                assert holder is not None and detail["previous_owner"] == holder, (account_id, events)
                assert holder in dead, f"account {account_id}: taken from {holder}, which was alive"
                holder = worker
            else:
                assert worker == holder, f"account {account_id}: {worker} released it while {holder} held it"
                holder = None
        assert holder is None, f"account {account_id} still held by {holder}"
    return takeovers


def _worker_id(pg: PgCampaign, pid: int) -> str:
    """The unique id the `migrator run` process `pid` works under (it has registered)."""
    found: str = _poll(f"process {pid} to register", lambda: pg.scalar("SELECT name FROM workers WHERE pid = %s", pid))
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
        per_worker = dict(pg.sql("SELECT worker, count(*) FROM events WHERE kind = 'released' GROUP BY worker"))
        assert set(per_worker) >= survivors and all(per_worker[w] > 0 for w in survivors), per_worker

        # (d) the fleet as `migrator workers` shows it
        fleet = _workers(pg)
        by_name = {w["id"]: w for w in fleet["workers"]}
        assert set(by_name) >= survivors | {killed}
        # its process is gone (seen from this PID namespace): it holds nothing
        assert by_name[killed]["state"] == "gone" and by_name[killed]["accounts"] == []
        assert fleet["totals"]["gone"] == 1 and fleet["totals"]["stale"] == 0 and fleet["totals"]["running"] == 0
        released = defaultdict(int)
        for worker, detail in pg.sql("SELECT worker, detail FROM events WHERE kind = 'released'"):
            released[worker] += int(detail.get("messages_done", 0))
        for name in survivors:
            w = by_name[name]
            assert w["state"] == "stopped" and w["host"] == HOST and name.startswith(f"{HOST}:{w['pid']}#")
            assert w["name"] == f"{HOST}:{w['pid']}"
            assert w["messages_done"] == released[name] > 0, (name, w, released[name])
            assert w["accounts"] == [] and w["share"] is None
        text = pg.cli("workers", "--plan", str(c.plan_path))
        assert text.returncode == 0 and "gone" in text.stdout and killed in text.stdout, text.stdout
        assert "0 stale, 1 gone, 4 stopped" in text.stdout  # and the rerun


def test_postgresql_restarted_during_a_run_completes_exactly(tmp_path: Path) -> None:
    with postgres_left_running(), pg_campaign(
        tmp_path / "c", "multihost_restart", accounts=24, messages_per_folder=0, workers=2, chunk=3, lease=30,
        faults=Faults(delay_s=0.01),
    ) as pg:  # fmt: skip
        log = tmp_path / "run.log"
        proc = _start(pg, log, "--log-format", "json")
        total = 24 * 19
        _poll("a quarter of the messages", lambda: pg.scalar("SELECT count(*) FROM messages WHERE state = 'done'") >= total // 4)
        pg_ctl("restart")
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
            os.kill(zombie.pid, signal.SIGSTOP)
            epoch = pg.scalar("SELECT lease_epoch FROM accounts WHERE id = %s", account_id)
            # to the others it is a host that went silent: after the lease it is stale
            _poll("the lease to expire", lambda: pg.scalar(
                "SELECT lease_expires_at < now() FROM accounts WHERE id = %s", account_id), timeout=30, every=0.2)
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
        assert [(k, w) for k, w, _ in events] == [("claimed", name), ("taken-over", other_name), ("released", other_name)]
        assert events[1][2]["previous_owner"] == name and events[1][2]["epoch"] == epoch + 1
        # nothing the zombie wrote after it woke up: every ledger row of the account is final,
        # and the ones the new owner settled carry its epoch
        rows = dict(pg.sql("SELECT lease_epoch, count(*) FROM messages WHERE account_id = %s GROUP BY lease_epoch", account_id))
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
            return take_share(store, target, worker, default=16, lease_seconds=lease, **kwargs).share

        assert ensure_ceiling(store, target, 10) == 10
        assert ensure_ceiling(store, target, 99) == 10  # the stored value wins over another plan's
        def join() -> int:
            return register_worker(store, identify(), plan_id=plan_id, run_id=None, target=target)

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
            for n in range(2)
        ])  # fmt: skip
        started = datetime.now(UTC)
        kept = claim_next(store, plan_id, worker="w:1", lease_seconds=60, run_started=started)
        lost = claim_next(store, plan_id, worker="w:1", lease_seconds=60, run_started=started)
        assert kept is not None and lost is not None
        assert release_orphans(store, plan_id, "w:1", [kept.account_id], run_id=None) == 1
        rows = {r.key: r for r in store.list_accounts(plan_id)}
        assert rows[lost.key].status == "pending" and rows[lost.key].lease_owner is None
        assert rows[kept.key].status == "running" and rows[kept.key].lease_owner == "w:1"
        kinds = [e["kind"] for e in reversed(store.list_events(plan_id, account_id=lost.account_id))]
        assert kinds == ["claimed", "interrupted"]
        # the next claim takes it as an ordinary free account, with a new epoch
        again = claim_next(store, plan_id, worker="w:2", lease_seconds=60, run_started=started)
        assert again is not None and again.account_id == lost.account_id and again.epoch == lost.epoch + 1
    finally:
        store.close()
