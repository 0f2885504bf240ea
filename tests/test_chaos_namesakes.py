"""Found by bench/bench_chaos.py: two source folders that land in one target folder ("Sent" and
"Elementos enviados" both go to Sent Items) may hold the same Maildir key, since keys are
unique per folder only. When a CreateItem broke off (connection reset) the EWS adapter looked
the chunk's keys up in Sent Items, found the *other* folder's copy by its tag, and the ledger
recorded "Sent" messages as done with the other message's item id: they were never sent,
`run` exited 0 and the messages were lost. The engine now refuses an answer naming an item
that already stands for another message, confirms again excluding it, and sends again.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from migrator.model.mail import Flags
from migrator.samples.mail import SampleMessage, write_maildir
from migrator.simulator.ews import Faults
from tests.fixtures.campaign import build_campaign


def _messages(folder: str, count: int) -> list[SampleMessage]:
    """`count` messages with the same internal dates in every folder, so `write_maildir` gives
    them the same file names (keys) in both sent folders; the content differs."""
    out = []
    for i in range(count):
        when = datetime(2024, 5, 1, 9, 0, tzinfo=UTC) + timedelta(hours=i)
        raw = (
            f"From: ana@example.org\r\nTo: luis@example.org\r\nSubject: {folder} {i}\r\n"
            f"Date: {when:%a, %d %b %Y %H:%M:%S} +0000\r\nMessage-ID: <{folder.replace(' ', '.')}.{i}@example.org>\r\n"
            f"\r\nbody of {folder} {i}\r\n"
        ).encode()
        out.append(SampleMessage(f"{folder}{i}", raw, Flags(seen=True), when))
    return out


def test_a_lookup_after_a_reset_never_takes_a_namesake_from_another_folder(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=1, workers=1, chunk=10) as c:
        [address] = c.accounts
        maildir = c.maildir(address)
        shutil.rmtree(maildir)
        write_maildir(
            maildir,
            {("INBOX",): _messages("inbox", 1), ("Elementos enviados",): _messages("enviados", 2)},
        )
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        first = c.cli("run", "--plan", str(c.plan_path))
        assert first.returncode == 0, first.stderr
        # the user's other client files mail in "Sent": same keys, other messages
        write_maildir(maildir, {("Sent",): _messages("sent", 2)})
        sent_keys = sorted(p.name.split(",")[0] for p in (maildir / ".Sent" / "cur").iterdir())
        other_keys = sorted(
            p.name.split(",")[0] for p in (maildir / ".Elementos enviados" / "cur").iterdir()
        )
        assert sent_keys == other_keys  # the namesakes this test is about
        # exactly the first CreateItem of the pass (the "Sent" chunk) is cut off before the
        # server stores anything: the adapter then looks the keys up in Sent Items
        c.sim.set_faults(Faults(reset_rate=1.0, operations=frozenset({"CreateItem"}), max_faults=1))
        second = c.cli("run", "--plan", str(c.plan_path))
        assert second.returncode == 0, second.stderr
        assert c.sim.stats().faults.get("reset") == 1
        c.compare(address)  # each of the five messages exactly once, byte for byte
        with sqlite3.connect(c.state_path) as db:
            ids = [r[0] for r in db.execute("SELECT target_id FROM messages WHERE state = 'done'")]
        assert len(ids) == 5 and len(set(ids)) == 5  # no target item stands for two messages
        # and verify does not take the two copies that share a key in Sent Items for duplicates
        checked = c.cli("verify", "--plan", str(c.plan_path))
        assert checked.returncode == 0, checked.stdout + checked.stderr
