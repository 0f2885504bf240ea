"""A worker frozen after confirming its lease, just before its upload leaves (SIGSTOP, a VM
pause), wakes up after another worker took the account over and stored the same messages. Its
late upload must not leave duplicates: the ledger refuses its writes (the fence), and the items
it created are deleted again because the new owner recorded its own copies."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fixtures.campaign import build_campaign

LEASE = 10


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _poll(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling an outside process's state, not standing in for a sync


def test_a_worker_thawed_after_a_takeover_removes_its_duplicates(tmp_path: Path) -> None:
    with build_campaign(
        tmp_path / "c", accounts=1, messages_per_folder=4, workers=1, chunk=2, lease=LEASE
    ) as c:
        [address] = c.accounts
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        # the zombie freezes itself right before its second upload request leaves
        zombie = c.start(
            "run",
            "--plan",
            str(c.plan_path),
            env={**c.env, "MIGRATOR_CRASH_AT": "before_upload:2:stop"},
        )
        try:
            _poll(
                "the worker to freeze before an upload",
                lambda: zombie.poll() is None and _state(zombie.pid) == "T",
            )

            def expired() -> bool:
                with sqlite3.connect(c.state_path) as db:
                    [(gone,)] = db.execute(
                        "SELECT lease_expires_at < strftime('%Y-%m-%d %H:%M:%f', 'now') FROM accounts WHERE address = ?",
                        (address,),
                    ).fetchall()
                return bool(gone)

            # its lease runs out while it is frozen: the time is made to pass by moving the
            # lease's end into the past (as the clock would LEASE seconds later; a frozen
            # process renews nothing either way), not waited for. Expiry in real time is
            # test_multihost's frozen worker.
            with sqlite3.connect(c.state_path) as db:
                db.execute(
                    "UPDATE accounts SET lease_expires_at = ? WHERE address = ?",
                    (f"{datetime.now(UTC) - timedelta(seconds=1):%Y-%m-%d %H:%M:%S.%f}", address),
                )
            assert expired()
            # another worker takes the account over: the chunk the zombie holds is in flight,
            # not in the target, so it sends those messages itself
            other = c.cli("run", "--plan", str(c.plan_path))
            assert other.returncode == 0, other.stderr
            c.compare(address)
        finally:
            before = c.sim.stats().items_created
            os.kill(zombie.pid, signal.SIGCONT)
        out, err = zombie.communicate(timeout=120)
        late = c.sim.stats().items_created - before
        c.compare(address)  # each source message exactly once, as before the zombie woke up
        # The crash point stops the very thread that is about to send (crashpoints.py), so
        # its request leaves only now, after the takeover: it creates the chunk's two
        # messages again, the ledger refuses to record them, and they are removed.
        assert late == 2, (late, (out + err)[-3000:])
        assert "removed 2 duplicate(s)" in out + err, (out + err)[-3000:]
