"""Delta passes over an mbox source: a mail reader rewrites the spool when a flag changes
(Status, X-Status), moves a message by writing it into another folder file and removing it
from the spool, and deletes by rewriting. Keys survive all of that (they hash the From_ line
and the headers that are not flags), so the next pass carries a flag change, a move (as a move
in the target: no upload) and a deletion."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from migrator.model.mail import Flags
from migrator.samples.mail import Mailbox, SampleMessage, write_mbox
from tests.fixtures.campaign import build_campaign
from tests.test_engine_mbox_source import MBOX_SOURCE


def _message(n: int, flags: Flags) -> SampleMessage:
    when = datetime(2025, 5, 1, tzinfo=UTC) + timedelta(hours=n)
    raw = (
        f"From: sender{n}@example.org\nTo: ana@ife.org.mx\nSubject: asunto {n}\n"
        f"Message-ID: <m{n}@example.org>\nDate: {when:%a, %d %b %Y %H:%M:%S} +0000\n\ncuerpo {n}\n"
    ).encode()
    return SampleMessage(f"m{n}", raw, flags, when)


def test_mbox_flag_change_move_and_deletion_reach_the_target(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=1) as c:
        [address] = c.accounts
        local, _, domain = address.partition("@")
        spool = c.root / "mbox"
        inbox, folders = spool / domain / local / "inbox", spool / domain / local / "mail"
        box: Mailbox = {
            ("INBOX",): [_message(n, Flags(seen=n == 0)) for n in range(4)],
            ("Archivo",): [_message(10 + n, Flags(seen=True)) for n in range(3)],
        }
        write_mbox(inbox, box, "mboxrd", folders_dir=folders)
        text = c.plan_path.read_text()
        c.plan_path.write_text(
            text[: text.index("[source]")]
            + MBOX_SOURCE.format(root=spool)
            + text[text.index("[target]") :]
        )
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.cli("run", "--plan", str(c.plan_path)).returncode == 0
        assert len(c.sim.items(address)) == 7

        # the reader marks message 1 read and flagged, files message 2 into Archivo, and the
        # user deletes message 11; every file is rewritten
        moved = box[("INBOX",)][2]
        box[("INBOX",)] = [
            box[("INBOX",)][0],
            replace(box[("INBOX",)][1], flags=Flags(seen=True, flagged=True)),
            box[("INBOX",)][3],
        ]
        box[("Archivo",)] = [box[("Archivo",)][0], box[("Archivo",)][2], moved]
        write_mbox(inbox, box, "mboxrd", folders_dir=folders)
        c.sim.reset_stats()
        ran = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        summary = json.loads(ran.stdout)["messages"]
        assert summary["done"] == 0 and summary["changes"] == {
            "read": 1,
            "flagged": 1,
            "moved": 1,
            "deleted": 1,
        }
        requests = c.sim.stats().requests
        assert "CreateItem" not in requests and requests["MoveItem"] == 1, requests

        folders_by_id = {f.id: f.path for f in c.sim.folders(address)}
        by_subject = {
            item.subject: (folders_by_id[item.folder_id], item) for item in c.sim.items(address)
        }
        assert sorted(by_subject) == [
            "asunto 0",
            "asunto 1",
            "asunto 10",
            "asunto 12",
            "asunto 2",
            "asunto 3",
        ]
        path, first = by_subject["asunto 1"]
        assert path == ("Inbox",) and first.is_read and first.extended.get("tag:0x1090") == "2"
        assert by_subject["asunto 2"][0] == ("Archive",)  # moved, the same item
