"""Exactly once for what a delta pass carries besides new mail: `migrator run` is killed
(SIGKILL) at the narrow windows of a mirror pass, then run again until it ends cleanly, and
every target folder must equal its source folder: a move interrupted after the target carried
it out is completed (found in its destination), never done twice nor uploaded again; a
deletion interrupted is completed on exactly the item announced. On the EWS simulator and on
Dovecot as target (where a move is found again by Message-ID, size and INTERNALDATE)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.delta import DeltaCampaign, Person, build_delta_campaign
from tests.fixtures.dovecot import DovecotServer
from tests.test_delta_end_to_end import (
    delta_sqlite,  # noqa: F401 - the fixture: one account, so a named crash point is reached by its work alone
    users_change_flags,
    users_move_delete_and_receive,
)

# announce_move: the move is announced (committed), nothing sent; move: the target moved the
# messages, the ledger does not know; announce_delete / delete: the same for a deletion
CRASH_POINTS = ["move:1", "announce_move:2", "delete:1", "move:3", "announce_delete:1", "upload:1"]


@pytest.fixture(params=["ews", "imap"])
def campaign(
    request: pytest.FixtureRequest, dovecot: DovecotServer, tmp_path: Path
) -> Iterator[DeltaCampaign]:
    c = build_delta_campaign(
        tmp_path, dovecot, kind=request.param, state_url=f"sqlite:///{tmp_path / 'state.db'}"
    )
    yield c
    c.close()


def users_keep_going(c: DeltaCampaign, person: Person) -> None:
    """One more round of a user's work: file a message away, take another out again, read one,
    delete one."""
    with c.user(person) as client:
        client.select_folder("INBOX")
        inbox = client.search(["ALL"])
        client.move(inbox[:1], "Clientes")
        client.add_flags(inbox[1:2], [b"\\Seen", b"\\Flagged"])
        client.delete_messages(inbox[2:3])
        client.uid_expunge(inbox[2:3])
        client.select_folder("Clientes")
        client.move(client.search(["ALL"])[:1], "Archivo")


def _pending(c: DeltaCampaign) -> int:
    import sqlite3

    with sqlite3.connect(c.state_url.removeprefix("sqlite:///")) as db:
        return int(
            db.execute("select count(*) from messages where pending is not null").fetchone()[0]
        )


def test_kills_during_a_mirror_pass_end_exact(campaign: DeltaCampaign) -> None:
    c = campaign
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    assert c.run().returncode == 0
    for person in c.people:
        users_change_flags(c, person)
        users_move_delete_and_receive(c, person)
    kills = left_pending = 0
    for point in CRASH_POINTS:
        for person in c.people:
            users_keep_going(c, person)
        result = c.cli(
            "run", "--plan", str(c.plan_path), "--quiet", env={**c.env, "MIGRATOR_CRASH_AT": point}
        )
        assert result.returncode in (-signal.SIGKILL, 0), result.stderr[-2000:]
        if result.returncode == -signal.SIGKILL:
            kills += 1
            # a kill after the announcement leaves it for the next run to settle
            left_pending += point.startswith(("move", "announce", "delete")) and _pending(c) > 0
    assert kills >= 5 and left_pending >= 4, (kills, left_pending)
    final = c.run()
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    assert _pending(c) == 0
    for person in c.people:
        c.compare(person)
    quiet = json.loads(c.run().stdout)["messages"]
    assert quiet["done"] == 0 and quiet["changes"] == {}, quiet


def test_a_rename_interrupted_after_the_target_did_it_is_recorded_by_the_next_run(
    campaign: DeltaCampaign,
) -> None:
    c = campaign
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    assert c.run().returncode == 0
    for person in c.people:
        with c.user(person) as client:
            client.rename_folder("Projects.Entwürfe", "Proyectos")
    killed = c.cli(
        "run", "--plan", str(c.plan_path), "--quiet", env={**c.env, "MIGRATOR_CRASH_AT": "rename:1"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    final = c.run()
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    summary = json.loads(final.stdout)["messages"]
    assert summary["done"] == 0 and "moved" not in summary["changes"], (
        summary
    )  # nothing sent or moved one by one
    for person in c.people:
        c.compare(person)


NEW_ORDER = (
    b"From: cliente@example.org\r\nTo: user@ife.org.mx\r\nSubject: pedido urgente\r\n"
    b"Message-ID: <pedido.9@example.org>\r\nDate: Wed, 3 Dec 2025 10:00:00 +0000\r\n\r\nya\r\n"
)


def _interrupted_upload_then(c: DeltaCampaign, then: str) -> None:
    """The run is killed after the target stored a new message and before the ledger recorded
    it (the message is in flight); then the user files it into another folder, or deletes it.
    The next run must find the stored copy although its source folder no longer lists it."""
    [person] = c.people
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    assert c.run().returncode == 0
    with c.user(person) as client:
        client.create_folder("Clientes")
        client.append("Clientes", NEW_ORDER, flags=[b"\\Seen"])
    killed = c.cli(
        "run", "--plan", str(c.plan_path), "--quiet", env={**c.env, "MIGRATOR_CRASH_AT": "upload:1"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    with c.user(person) as client:
        client.select_folder("Clientes")
        uids = client.search(["ALL"])
        assert len(uids) == 1
        if then == "moved":
            client.move(uids, "Archivo")
        else:
            client.delete_messages(uids)
            client.uid_expunge(uids)
    final = c.run()
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    summary = json.loads(final.stdout)["messages"]
    assert summary["done"] == 0, summary  # found in the target, never sent again
    assert _pending(c) == 0
    c.compare(person)
    quiet = json.loads(c.run().stdout)["messages"]
    assert quiet["done"] == 0 and quiet["changes"] == {}, quiet


def test_an_upload_interrupted_then_filed_away_in_the_source_is_moved_with_it(
    delta_sqlite: DeltaCampaign,
) -> None:
    """The copy the interrupted run stored is moved into the message's new folder: not sent
    again, and not left behind in the old one (on IMAP it is recognised by the bytes of the
    message where it went, since the folder it was sent from no longer lists it)."""
    _interrupted_upload_then(delta_sqlite, "moved")


# An IMAP target keeps no source key (without tag_header): an upload is recognised by the
# bytes the source gives, and a message the source deleted gives none (docs/engine.md)
@pytest.mark.parametrize("delta_sqlite", ["ews"], indirect=True)
def test_an_upload_interrupted_then_deleted_in_the_source_is_deleted(
    delta_sqlite: DeltaCampaign,
) -> None:
    _interrupted_upload_then(delta_sqlite, "deleted")
