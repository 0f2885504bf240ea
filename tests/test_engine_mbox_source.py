"""The engine with an mbox source (a spool file for INBOX, a directory of mbox folders), killed
with SIGKILL at the narrow points of the chunk protocol and at random instants: every message
ends in the target exactly once, byte for byte as the mbox source reads it, read state kept."""

from __future__ import annotations

import random
import signal
import sqlite3
from collections import Counter
from pathlib import Path

from migrator.adapters.sources import open_source
from migrator.model.mail import MessageRecord
from migrator.model.plan import SourceSettings
from migrator.samples.mail import write_mbox
from tests.fixtures.campaign import Campaign, build_campaign
from tests.test_engine_crash import CRASH_POINTS, _random_kill

MBOX_SOURCE = """[source]
kind = "mbox"
root = "{root}"
path = "{{root}}/{{domain}}/{{local}}/inbox"
folders_path = "{{root}}/{{domain}}/{{local}}/mail"
variant = "mboxrd"
"""


def _as_mbox(c: Campaign) -> Path:
    """Write each account's sample mailbox as mbox files and point the plan at them."""
    spool = c.root / "mbox"
    for address, box in c.mailboxes.items():
        local, _, domain = address.partition("@")
        write_mbox(
            spool / domain / local / "inbox",
            box,
            "mboxrd",
            folders_dir=spool / domain / local / "mail",
        )
    text = c.plan_path.read_text()
    start = text.index("[source]")
    end = text.index("[target]")
    c.plan_path.write_text(text[:start] + MBOX_SOURCE.format(root=spool) + text[end:])
    return spool


def _source(spool: Path, address: str) -> list[tuple[bytes, bool]]:
    local, _, domain = address.partition("@")
    settings = SourceSettings(kind="mbox", mbox_variant="mboxrd")
    out = []
    with open_source(
        settings,
        mailbox_path=str(spool / domain / local / "inbox"),
        folders_path=str(spool / domain / local / "mail"),
    ) as source:
        for folder in source.folders():
            for record in source.messages(folder):
                assert isinstance(record, MessageRecord), record
                with record.open() as stream:
                    out.append((stream.read(), record.flags.seen))
    return out


def test_mbox_source_killed_at_random_ends_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(5)
    with build_campaign(
        tmp_path / "c", accounts=3, messages_per_folder=3, workers=2, chunk=4, lease=10
    ) as c:
        spool = _as_mbox(c)
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        source = {a: _source(spool, a) for a in c.accounts}
        total = sum(len(v) for v in source.values())
        kills = 0
        for point in CRASH_POINTS:
            result = c.cli(
                "run",
                "--plan",
                str(c.plan_path),
                "--quiet",
                env={**c.env, "MIGRATOR_CRASH_AT": point},
            )
            kills += result.returncode == -signal.SIGKILL
        for _ in range(6):
            kills += _random_kill(c, rng, total) is None
        assert kills >= 8, f"only {kills} kills landed"
        final = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
        for address in c.accounts:
            want = Counter(raw for raw, _ in source[address])
            items = c.sim.items(address)
            got = Counter(item.mime for item in items)
            assert want == got, (
                f"{address}: {sum((want - got).values())} missing, {sum((got - want).values())} extra"
            )
            seen = {raw: flag for raw, flag in source[address]}
            for item in items:
                assert not item.is_draft
                assert item.is_read == seen[item.mime], item.subject
        with sqlite3.connect(c.state_path) as db:
            states = dict(
                db.execute("select state, count(*) from messages group by state").fetchall()
            )
        assert states == {"done": total}, states
