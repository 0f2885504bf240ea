"""Delta passes carry what users do between passes, end to end: the source Maildirs
are served by a real Dovecot, users change them through IMAP, one `migrator run` follows, and
every target folder must then equal its source folder (bytes, flags, dates; \\Deleted aside),
on the EWS simulator and on Dovecot as target, with the state on SQLite and on PostgreSQL. A
run after that sends nothing. A change made in the target survives later passes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from migrator.adapters.targets.ews.properties import register_properties
from tests.fixtures.delta import DeltaCampaign, Person, build_delta_campaign
from tests.fixtures.dovecot import MASTER_PASSWORD, MASTER_USER, DovecotServer
from tests.fixtures.ews import make_account
from tests.fixtures.imap_proxy import ImapProxy
from tests.fixtures.store import postgres_database


@pytest.fixture(params=["ews-sqlite", "ews-postgresql", "imap-sqlite", "imap-postgresql"])
def delta(
    request: pytest.FixtureRequest, dovecot: DovecotServer, tmp_path: Path
) -> Iterator[DeltaCampaign]:
    kind, backend = request.param.split("-")
    if backend == "sqlite":
        c = build_delta_campaign(
            tmp_path, dovecot, kind=kind, state_url=f"sqlite:///{tmp_path / 'state.db'}"
        )
        yield c
    else:
        with postgres_database("delta_e2e") as url:
            c = build_delta_campaign(tmp_path, dovecot, kind=kind, state_url=url)
            yield c
    if c.sim is not None:
        c.sim.stop()


def _uids_by_subject(client: IMAPClient, folder: str) -> dict[str, int]:
    client.select_folder(folder)
    uids = client.search(["ALL"])
    found = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]) if uids else {}
    out: dict[str, int] = {}
    for uid, data in found.items():
        raw = next(v for k, v in data.items() if k.startswith(b"BODY"))
        subject = raw.decode("utf-8", "replace").partition(":")[2].strip()
        out.setdefault(subject, uid)
    return out


def users_change_flags(c: DeltaCampaign, person: Person) -> None:
    """Read, unread, flag, unflag, answer, forward and label, through the user's own session."""
    with c.user(person) as client:
        inbox = _uids_by_subject(client, "INBOX")
        by_flags = client.fetch(list(inbox.values()), ["FLAGS"])
        unread = [uid for uid, d in by_flags.items() if b"\\Seen" not in d[b"FLAGS"]]
        read = [uid for uid, d in by_flags.items() if b"\\Seen" in d[b"FLAGS"]]
        flagged = [uid for uid, d in by_flags.items() if b"\\Flagged" in d[b"FLAGS"]]
        client.add_flags(unread[:2], [b"\\Seen"])
        client.remove_flags(read[:1], [b"\\Seen"])
        client.add_flags(read[1:3], [b"\\Flagged"])
        client.remove_flags(flagged[:1], [b"\\Flagged"])
        client.add_flags(read[3:4], [b"\\Answered"])
        client.add_flags(read[4:5], [b"$Forwarded"])
        client.add_flags(read[5:6], [b"Proyecto"])
        client.select_folder("Archivo")
        client.add_flags(client.search(["ALL"])[:1], [b"\\Seen", b"\\Flagged"])


NEW_MAIL = (
    b"From: cliente@example.org\r\nTo: user@ife.org.mx\r\nSubject: pedido nuevo\r\n"
    b"Message-ID: <pedido.1@example.org>\r\nDate: Tue, 2 Dec 2025 10:00:00 +0000\r\n\r\nhola\r\n"
)


def users_move_delete_and_receive(c: DeltaCampaign, person: Person) -> None:
    """File mail into a new folder and back, between two folders that share a target folder,
    copy one, delete and expunge, mark one \\Deleted without expunging, receive new mail."""
    with c.user(person) as client:
        client.create_folder("Clientes")
        inbox = sorted(_uids_by_subject(client, "INBOX").values())
        client.select_folder("INBOX")
        client.move(inbox[-2:], "Clientes")
        client.copy(inbox[-3:-2], "Archivo")
        client.add_flags(
            inbox[-4:-3], [b"\\Deleted"]
        )  # not expunged: still a message of the folder
        client.select_folder("Archivo")
        client.move(client.search(["ALL"])[:1], "INBOX")
        client.select_folder("Sent")
        client.move(client.search(["ALL"])[:1], "Elementos enviados")
        client.select_folder("Junk")
        doomed = client.search(["ALL"])[:1]
        client.delete_messages(doomed)
        client.uid_expunge(doomed)
        client.append("INBOX", NEW_MAIL)
        client.append("Clientes", NEW_MAIL.replace(b"pedido.1", b"pedido.2"), flags=[b"\\Seen"])


def test_flag_changes_reach_the_target_and_nothing_else_moves(delta: DeltaCampaign) -> None:
    c = delta
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    first = c.run()
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    for person in c.people:
        c.compare(person)

    for person in c.people:
        users_change_flags(c, person)
    second = c.run()
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    summary = json.loads(second.stdout)["messages"]
    assert summary["done"] == 0  # nothing uploaded again
    changes = summary["changes"]
    assert changes["read"] >= 2 * len(c.people) and changes["flagged"] >= 3 * len(c.people), changes
    for kind in ("unread", "unflagged", "answered", "forwarded", "labelled"):
        assert changes.get(kind, 0) >= len(c.people), (kind, changes)
    for person in c.people:
        c.compare(person)

    requests_before = dict(c.sim.stats().requests) if c.sim is not None else {}
    third = c.run()
    assert third.returncode == 0, third.stderr[-2000:]
    quiet = json.loads(third.stdout)["messages"]
    assert quiet["done"] == 0 and quiet["changes"] == {}, quiet
    if c.sim is not None:
        assert dict(c.sim.stats().requests) == requests_before  # not a single request


def test_moves_deletions_and_new_mail_end_exact_in_one_run(delta: DeltaCampaign) -> None:
    c = delta
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    first = c.run()
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]

    for person in c.people:
        users_change_flags(c, person)
        users_move_delete_and_receive(c, person)
    second = c.run()
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    summary = json.loads(second.stdout)["messages"]
    # new mail (two) and the copy are uploaded; moved mail is moved, never uploaded again
    assert summary["done"] == 3 * len(c.people), summary
    changes = summary["changes"]
    assert changes["moved"] == 4 * len(c.people), changes
    assert changes["deleted"] == len(c.people), changes
    for person in c.people:
        c.compare(person)
    # show tells what the pass carried for one account, in words
    person = c.people[0]
    shown = json.loads(c.cli("show", person.address, "--plan", str(c.plan_path), "--json").stdout)
    assert (
        shown["state"]["last_pass_changes"]["moved"] == 4
        and shown["state"]["last_pass_changes"]["deleted"] == 1
    )
    text = c.cli("show", person.address, "--plan", str(c.plan_path), "--no-source").stdout
    assert "the last pass carried: " in text and "4 moved, 1 deleted" in text, text

    requests_before = dict(c.sim.stats().requests) if c.sim is not None else {}
    third = c.run()
    assert third.returncode == 0, third.stderr[-2000:]
    quiet = json.loads(third.stdout)["messages"]
    assert quiet["done"] == 0 and quiet["changes"] == {}, quiet
    if c.sim is not None:
        assert dict(c.sim.stats().requests) == requests_before  # not a single request
    for person in c.people:
        c.compare(person)


@pytest.fixture(params=["ews", "imap"])
def delta_sqlite(
    request: pytest.FixtureRequest, dovecot: DovecotServer, tmp_path: Path
) -> Iterator[DeltaCampaign]:
    c = build_delta_campaign(
        tmp_path,
        dovecot,
        kind=request.param,
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        accounts=1,
    )
    yield c
    c.close()


def _subjects(c: DeltaCampaign, person: Person) -> tuple[str, str]:
    """Two INBOX messages unread in the source: their subjects."""
    with c.user(person) as client:
        inbox = _uids_by_subject(client, "INBOX")
        flags = client.fetch(list(inbox.values()), ["FLAGS"])
        unread = sorted(
            s
            for s, uid in inbox.items()
            if b"\\Seen" not in flags[uid][b"FLAGS"]
            and b"\\Flagged" not in flags[uid][b"FLAGS"]
            and s.isascii()
            and "=?" not in s
        )
    return unread[0], unread[1]


def _target_state(c: DeltaCampaign, person: Person, subject: str) -> tuple[bool, bool]:
    """(read, flagged) of the target copy of the INBOX message with this subject."""
    if c.sim is not None:
        register_properties()  # PR_FLAG_STATUS as migrator_flag_status on exchangelib's Message
        account = make_account(c.sim, person.target)
        [item] = list(account.inbox.filter(subject=subject).only("is_read", "migrator_flag_status"))
        return bool(item.is_read), item.migrator_flag_status == 2
    client = IMAPClient(c.dovecot.host, port=c.dovecot.port, ssl=False)
    client.login(f"{person.target}*{MASTER_USER}", MASTER_PASSWORD)
    try:
        client.select_folder("INBOX", readonly=True)
        [uid] = client.search(["SUBJECT", subject])
        flags = client.fetch([uid], ["FLAGS"])[uid][b"FLAGS"]
        return b"\\Seen" in flags, b"\\Flagged" in flags
    finally:
        client.logout()


def _user_changes_target(c: DeltaCampaign, person: Person, read: str, flag: str) -> None:
    """The user, already working in the target, reads one message and flags another."""
    if c.sim is not None:
        account = make_account(c.sim, person.target)
        [first] = list(account.inbox.filter(subject=read))
        first.is_read = True
        first.save(update_fields=["is_read"])  # UpdateItem with the item's ChangeKey (AutoResolve)
        [second] = list(account.inbox.filter(subject=flag))
        register_properties()
        second.migrator_flag_status = 2  # PR_FLAG_STATUS: flagged, as Outlook sets it
        second.save(update_fields=["migrator_flag_status"])
        return
    client = IMAPClient(c.dovecot.host, port=c.dovecot.port, ssl=False)
    client.login(f"{person.target}*{MASTER_USER}", MASTER_PASSWORD)
    try:
        client.select_folder("INBOX")
        client.add_flags(client.search(["SUBJECT", read]), [b"\\Seen"])
        client.add_flags(client.search(["SUBJECT", flag]), [b"\\Flagged"])
    finally:
        client.logout()


def test_a_change_made_in_the_target_survives_later_passes(delta_sqlite: DeltaCampaign) -> None:
    """Changes, not states: a message read in the target stays read while the source, which
    did not change, still has it unread; a flag set in the target stays when the source then
    marks the same message read (only that is carried)."""
    c = delta_sqlite
    [person] = c.people
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    assert c.run().returncode == 0
    read_there, flagged_there = _subjects(c, person)
    _user_changes_target(c, person, read_there, flagged_there)
    with c.user(person) as client:
        client.select_folder("INBOX")
        client.add_flags(client.search(["SUBJECT", flagged_there]), [b"\\Seen"])
    for _ in range(2):
        ran = c.run()
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        assert _target_state(c, person, read_there) == (True, False)  # the source still says unread
        assert _target_state(c, person, flagged_there) == (True, True)  # read carried, flag kept
    checked = c.cli("verify", "--plan", str(c.plan_path), "--json")
    assert checked.returncode == 0, checked.stdout[-3000:]
    [inbox] = [
        f for f in json.loads(checked.stdout)["accounts"][0]["folders"] if f["folder"] == "INBOX"
    ]
    assert inbox["flags_changed_in_target"] == 2 and inbox["flags_pending"] == 0, inbox
    assert "changed in the target" in inbox["note"]


def test_verify_tells_flag_changes_not_carried_yet(delta_sqlite: DeltaCampaign) -> None:
    c = delta_sqlite
    [person] = c.people
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    assert c.run().returncode == 0
    assert c.cli("verify", "--plan", str(c.plan_path)).returncode == 0
    users_change_flags(c, person)
    checked = c.cli("verify", "--plan", str(c.plan_path), "--json")
    assert checked.returncode == 1, checked.stdout[-3000:]
    [inbox] = [
        f for f in json.loads(checked.stdout)["accounts"][0]["folders"] if f["folder"] == "INBOX"
    ]
    assert inbox["ok"] is False and inbox["flags_pending"] >= 7, inbox
    assert inbox["note"].endswith("flags changed in the source since the last pass; run again")
    assert c.run().returncode == 0
    again = c.cli("verify", "--plan", str(c.plan_path), "--json")
    assert again.returncode == 0, again.stdout[-3000:]


@pytest.mark.parametrize("kind", ["ews", "imap"])
def test_an_imap_source_recognises_moved_mail_by_content_and_lists_only_what_changed(
    kind: str, dovecot: DovecotServer, tmp_path: Path
) -> None:
    """Read through Dovecot, a moved message has a new UID: it is recognised by its content
    fingerprint and moved in the target. With CONDSTORE, a pass over folders nobody touched
    opens none of them (their HIGHESTMODSEQ says so), and one after a flag change fetches the
    flags changed since the last pass only."""
    proxy = ImapProxy(dovecot.host, dovecot.port)
    c = build_delta_campaign(
        tmp_path,
        dovecot,
        kind=kind,
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        source="imap",
        source_port=proxy.port,
    )
    try:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.run().returncode == 0
        for person in c.people:
            users_change_flags(c, person)
            users_move_delete_and_receive(c, person)
        second = c.run()
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        summary = json.loads(second.stdout)["messages"]
        assert summary["done"] == 3 * len(c.people), summary  # the new mail and the copy only
        assert summary["changes"]["moved"] == 4 * len(c.people), summary
        for person in c.people:
            c.compare(person)
        proxy.reset()
        quiet = c.run()
        assert json.loads(quiet.stdout)["messages"]["changes"] == {}
        asked = [e.name for e in proxy.timeline]
        assert "STATUS" in asked and "SELECT" not in asked and "EXAMINE" not in asked, asked
    finally:
        proxy.close()
        c.close()


def test_a_folder_renamed_in_the_source_is_renamed_in_the_target(
    delta_sqlite: DeltaCampaign,
) -> None:
    """The user renames a folder (and moves it below another) and files one more message into
    it: its target folder is renamed with it, no message is moved or sent one by one."""
    c = delta_sqlite
    [person] = c.people
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    assert c.run().returncode == 0
    with c.user(person) as client:
        client.create_folder("Proyectos")
        client.rename_folder("Projects.Entwürfe", "Proyectos.Entwürfe")
        client.select_folder("INBOX")
        client.move(client.search(["ALL"])[:1], "Proyectos.Entwürfe")
    requests_before = dict(c.sim.stats().requests) if c.sim is not None else {}
    ran = c.run()
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    summary = json.loads(ran.stdout)["messages"]
    assert summary["done"] == 0 and summary["changes"] == {"folders renamed": 1, "moved": 1}, (
        summary
    )
    c.compare(person)
    if c.sim is not None:
        requests = dict(c.sim.stats().requests)
        assert (
            requests.get("MoveItem", 0) - requests_before.get("MoveItem", 0) == 1
        )  # the message filed in
        assert (
            requests.get("MoveFolder", 0) == 1 and requests.get("UpdateFolder", 0) == 0
        )  # same name, new parent
    again = json.loads(c.run().stdout)["messages"]
    assert again["done"] == 0 and again["changes"] == {}, again
