"""Every kind of item Exchange makes of a MIME message (meeting requests, cancellations and
responses, delivery and read reports, S/MIME) goes through a crash between the upload and the
ledger: the next run finds what the killed one stored, by its source key, and sends nothing
twice. Before the target read the key from whatever element EWS answers with, a meeting request
came back as a t:MeetingRequest whose key was not read, and was sent again."""

from __future__ import annotations

import shutil
import signal
import sqlite3
from collections import Counter
from pathlib import Path

from migrator.samples.kinds import kind_messages
from migrator.samples.mail import write_maildir
from tests.fixtures.campaign import build_campaign

KINDS = kind_messages()
CHUNK = 5


def test_each_kind_of_item_is_found_after_a_crash_and_stored_once(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=1, workers=1, chunk=CHUNK) as c:
        (address,) = c.accounts
        shutil.rmtree(c.maildir(address))
        write_maildir(c.maildir(address), {("INBOX",): [k.message for k in KINDS]})
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0

        # each run is killed right after its first chunk reached Exchange and before the ledger
        # knew; the next run finds that chunk by its keys, then sends one more and is killed
        env = {**c.env, "MIGRATOR_CRASH_AT": "upload:1"}
        for _ in range(-(-len(KINDS) // CHUNK)):
            killed = c.cli("run", "--plan", str(c.plan_path), "--quiet", env=env)
            assert killed.returncode == -signal.SIGKILL, killed.stderr
        items = c.sim.items(address)
        assert len(items) == len(KINDS)  # every kind was stored before a kill, none twice
        with sqlite3.connect(c.state_path) as db:
            states = dict(
                db.execute("select state, count(*) from messages group by state").fetchall()
            )
        assert states.get("inflight", 0) > 0  # the last kill left a chunk in flight

        c.sim.reset_stats()
        final = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert final.returncode == 0, final.stderr
        assert c.sim.stats().requests.get("CreateItem", 0) == 0  # found, not sent again
        c.compare(address)
        classes = Counter(item.item_class for item in c.sim.items(address))
        assert classes == Counter(k.item_class for k in KINDS)
        with sqlite3.connect(c.state_path) as db:
            states = dict(
                db.execute("select state, count(*) from messages group by state").fetchall()
            )
        assert states == {"done": len(KINDS)}

        verify = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        dedupe = c.cli("dedupe", "--plan", str(c.plan_path), "--json")
        assert dedupe.returncode == 0, dedupe.stdout + dedupe.stderr
