"""Messages moved away during a run and moved back: they were skipped as `vanished` (listed,
then gone when they were read; the operator saw it with a whole folder renamed away and back —
the Maildir source now reads a folder through the descriptor it listed it with, so a renamed
folder is read to the end, but a message moved out of it is still gone). That skip said "the next pass lists the folder
again", but the ledger kept it for good: the next run sent nothing and `verify` called the
account verified while the source held messages the target did not.

Now a vanished skip is forgotten when its folder is listed again, so a message that is back is
sent (once), and `verify` counts such a message as missing until then."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from migrator.model.mail import Flags
from migrator.samples.mail import SampleMessage, write_maildir
from tests.fixtures.campaign import build_campaign
from tests.test_engine_frozen_worker import _poll, _state


def _messages(folder: str, count: int) -> list[SampleMessage]:
    out = []
    for i in range(count):
        when = datetime(2019, 3, 1, 9, 0, tzinfo=UTC) + timedelta(hours=i)
        raw = (
            f"From: ana@example.org\r\nTo: luis@example.org\r\nSubject: {folder} {i}\r\n"
            f"Date: {when:%a, %d %b %Y %H:%M:%S} +0000\r\nMessage-ID: <{folder}.{i}@example.org>\r\n"
            f"\r\nbody of {folder} {i}\r\n"
        ).encode()
        out.append(SampleMessage(f"{folder}{i}", raw, Flags(seen=True), when))
    return out


def test_messages_moved_away_mid_run_are_sent_once_they_are_back(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=1, workers=1, chunk=3) as c:
        [address] = c.accounts
        maildir = c.maildir(address)
        shutil.rmtree(maildir)  # a mailbox of two folders
        write_maildir(
            maildir, {("INBOX",): _messages("inbox", 2), ("Archivo 2019",): _messages("archivo", 8)}
        )
        archive = maildir / ".Archivo 2019"
        assert archive.is_dir()
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0

        # the worker freezes when the first chunk of the archive is announced (INBOX is the
        # first chunk); meanwhile the user's mail client moves the archive's messages away
        run = c.start(
            "run",
            "--plan",
            str(c.plan_path),
            "--json",
            env={**c.env, "MIGRATOR_CRASH_AT": "begin_chunk:2:stop"},
        )
        _poll("the worker to freeze", lambda: run.poll() is None and _state(run.pid) == "T")
        hold = tmp_path / "elsewhere"
        moved = [
            (f, hold / f.relative_to(archive))
            for sub in ("cur", "new")
            for f in (archive / sub).iterdir()
        ]
        assert len(moved) == 8
        for path, away in moved:
            away.parent.mkdir(parents=True, exist_ok=True)
            path.rename(away)
        os.kill(run.pid, signal.SIGCONT)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 1, err  # messages were skipped
        summary = json.loads(out)
        vanished = summary["messages"]["skipped_by_reason"].get("vanished", 0)
        assert vanished >= 3, summary
        for path, away in moved:  # ... and back
            away.rename(path)

        # the source holds messages the target does not: not verified
        checked = c.cli("verify", "--plan", str(c.plan_path), "--json")
        assert checked.returncode == 1, checked.stdout + checked.stderr
        report = json.loads(checked.stdout)
        [account] = report["accounts"]
        assert account["status"] != "verified" and not account["ok"]
        folder = next(f for f in account["folders"] if f["folder"] == "Archivo 2019")
        assert not folder["ok"] and "vanished" in folder["note"], folder
        with sqlite3.connect(c.state_path) as db:
            [(status,)] = db.execute(
                "SELECT status FROM accounts WHERE address = ?", (address,)
            ).fetchall()
        assert status != "verified"

        # the next pass sends them, once
        again = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads(again.stdout)["messages"]["done"] == vanished
        c.compare(address)
        with sqlite3.connect(c.state_path) as db:
            states = dict(
                db.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall()
            )
            [(skipped,)] = db.execute(
                "SELECT messages_skipped FROM accounts WHERE address = ?", (address,)
            ).fetchall()
        assert states == {"done": 10} and skipped == 0
        final = c.cli("verify", "--plan", str(c.plan_path))
        assert final.returncode == 0, final.stdout + final.stderr
