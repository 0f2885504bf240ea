"""Crash safety: `migrator run` killed with SIGKILL at many instants, then rerun until done,
ends with every source message in the target exactly once, and ledger and target agreeing.

Kills come two ways: at named points of the chunk protocol (MIGRATOR_CRASH_AT, the narrow
windows: after the in-flight rows are committed, after the upload but before the ledger
knows, after the ledger commit) and from outside at random progress points, polled from the
ledger. Seeded, so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

from tests.fixtures.campaign import Campaign, build_campaign

SEED = int(os.environ.get("MIGRATOR_CRASH_SEED", "2012"))
CRASH_POINTS = [
    "begin_chunk:2",
    "upload:1",
    "upload:3",
    "finish_chunk:2",
    "upload:7",
    "begin_chunk:9",
]
RANDOM_KILLS = 16


def _done_rows(c: Campaign) -> int:
    if not c.state_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{c.state_path}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("select count(*) from messages").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # schema not created yet


def _kill_when(c: Campaign, rows: int, extra: float, deadline_s: float = 60) -> int | None:
    """Start a run; SIGKILL it once it has added `rows` rows to the ledger (plus a small random
    delay that lands the kill anywhere inside the next chunk). Returns the exit code if it
    ended first."""
    start = _done_rows(c)
    proc = c.start("run", "--plan", str(c.plan_path), "--quiet")
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.communicate()
            return proc.returncode
        if _done_rows(c) - start >= rows:
            if extra:
                time.sleep(extra)  # not synchronisation: it picks the instant of the kill
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return None
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    raise AssertionError(f"run did not add {rows} ledger rows within {deadline_s} s")


def _random_kill(c: Campaign, rng: random.Random, total: int) -> int | None:
    """A kill at a random instant of the next run's own work: once it has added a random
    number of the ledger rows still missing, then within the next chunk. (Drawn from the
    whole campaign's count instead, nearly every kill after the named ones fell into the
    start-up, before the run touched the ledger or the target: the ledger already held as
    many rows as drawn.) With nothing missing (a delta pass), at a random instant of the
    pass's first second and a half. Returns the exit code if the run ended first."""
    missing = total - _done_rows(c)
    if missing > 0:
        return _kill_when(c, rng.randint(0, missing - 1), rng.uniform(0, 0.05))
    return _kill_when(c, 0, rng.uniform(0, 1.5))


def test_random_kills_end_with_every_message_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    with build_campaign(
        tmp_path / "c", accounts=4, messages_per_folder=4, workers=2, chunk=4, lease=10
    ) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        total = sum(len(rows) for a in c.accounts for rows in c.source_messages(a).values())
        kills = 0
        for point in CRASH_POINTS:
            env = {**c.env, "MIGRATOR_CRASH_AT": point}
            result = c.cli("run", "--plan", str(c.plan_path), "--quiet", env=env)
            if result.returncode == -signal.SIGKILL:
                kills += 1
        finished_early = 0
        for _ in range(RANDOM_KILLS):
            code = _random_kill(c, rng, total)
            if code is None:
                kills += 1
            else:
                finished_early += 1
                # the whole campaign is done: start again from an empty target is not the
                # point; keep killing delta passes, which must not duplicate either
        assert kills >= 20, f"only {kills} kills landed"
        # rerun until a run completes cleanly
        for _ in range(5):
            final = c.cli("run", "--plan", str(c.plan_path), "--json")
            if final.returncode == 0:
                break
        assert final.returncode == 0, final.stderr
        for address in c.accounts:
            c.compare(address)
        with sqlite3.connect(c.state_path) as db:
            states = dict(
                db.execute("select state, count(*) from messages group by state").fetchall()
            )
            assert states == {"done": total}, states
            target_ids = [r[0] for r in db.execute("select target_id from messages")]
            assert len(set(target_ids)) == total and None not in target_ids
            statuses = {
                r[0] for r in db.execute("select status from accounts where scope = 'in_scope'")
            }
            assert statuses == {"synced"}
        items = sum(len(c.sim.items(a)) for a in c.accounts)
        assert items == total
        assert json.loads(final.stdout)["accounts"]["failed"] == 0


def test_ctrl_c_stops_cleanly_with_130_and_the_next_run_finishes_exactly(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=4, messages_per_folder=4, workers=2, chunk=3) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        proc = c.start("run", "--plan", str(c.plan_path))
        deadline = time.monotonic() + 60
        while _done_rows(c) < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "stopping" in err and "run again to resume" in out + err
        with sqlite3.connect(c.state_path) as db:
            running = db.execute(
                "select count(*) from accounts where status = 'running'"
            ).fetchone()[0]
            assert running == 0  # every claim was given back
        final = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert final.returncode == 0, final.stderr
        for address in c.accounts:
            c.compare(address)
