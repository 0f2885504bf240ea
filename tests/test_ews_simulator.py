"""The EWS simulator answers exchangelib as Exchange 2016 would: folders, items, routing, storage."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from exchangelib import DELEGATE, EWSDateTime, ExtendedProperty, Message
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorFolderExists,
    ErrorImpersonateUserDenied,
    ErrorNonExistentMailbox,
    UnauthorizedError,
)
from exchangelib.folders import DEEP, Folder, SingleFolderQuerySet
from exchangelib.properties import ItemId

from migrator.simulator.ews import EwsSimulator
from tests.fixtures.ews import (
    EXCHANGE_2016,
    SIM_MAILBOX,
    SIM_PASSWORD,
    SIM_USER,
    forget_protocols,
    make_account,
    mime_content,
    running_simulator,
)

SOURCE_KEY_SET = "6c1f4b8e-2f0a-4e8e-9a57-6d3d1a0c9b11"


class SourceKey(ExtendedProperty):
    property_set_id = SOURCE_KEY_SET
    property_name = "MigratorSourceKey"
    property_type = "String"


class MessageFlags(ExtendedProperty):
    property_tag = 0x0E07
    property_type = "Integer"


class DeliveryTime(ExtendedProperty):
    property_tag = 0x0E06
    property_type = "SystemTime"


class SubmitTime(ExtendedProperty):
    property_tag = 0x0039
    property_type = "SystemTime"


class PublicKeyword(ExtendedProperty):
    distinguished_property_set_id = "PublicStrings"
    property_name = "SimTestKeyword"
    property_type = "String"


_REGISTERED = {
    "sim_source_key": SourceKey,
    "sim_message_flags": MessageFlags,
    "sim_delivery_time": DeliveryTime,
    "sim_submit_time": SubmitTime,
    "sim_keyword": PublicKeyword,
}


@pytest.fixture(autouse=True, scope="module")
def _extended_properties() -> object:
    for name, cls in _REGISTERED.items():
        Message.register(name, cls)
    yield
    for name in _REGISTERED:
        Message.deregister(name)


def mime(subject: str, body: str = "hello", extra: bytes = b"") -> bytes:
    return (
        b"From: Sender <sender@example.org>\r\nTo: alice@example.com\r\n"
        + f"Subject: {subject}\r\nDate: Tue, 02 Jan 2024 09:30:00 +0100\r\n".encode()
        + b"Message-ID: <"
        + subject.replace(" ", "-").encode()
        + b"@example.org>\r\n"
        + extra
        + b"\r\n"
        + body.encode()
        + b"\r\n"
    )


def test_probe_answers_401_with_basic_challenge_and_version_is_guessed(
    ews_sim: EwsSimulator,
) -> None:
    probe = requests.post(
        ews_sim.url, data=b"<x/>", headers={"Content-Type": "text/xml"}, timeout=5
    )
    assert probe.status_code == 401
    assert probe.headers["WWW-Authenticate"].startswith("Basic realm=")

    account = make_account(ews_sim, auth_type=None, version=None)  # probe + ConvertId guess
    assert account.version.build.major_version == 15
    assert account.version.build.minor_version == 1
    assert account.version.api_version == "Exchange2016"
    assert account.protocol.auth_type == "basic"
    assert ews_sim.stats().requests["ConvertId"] >= 1


def test_wrong_password_is_unauthorized(ews_sim: EwsSimulator) -> None:
    with pytest.raises(UnauthorizedError):
        make_account(ews_sim, password="wrong", version=None).root  # noqa: B018


def test_folder_tree_walk_shows_exchange_layout(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    tois = account.root / "Top of Information Store"
    assert (tois / "Inbox").id == account.inbox.id
    assert account.sent.name == "Sent Items"
    assert account.trash.name == "Deleted Items"
    assert account.junk.name == "Junk Email"
    assert account.drafts.name == "Drafts"
    names = {f.name for f in tois.children}
    assert {"Inbox", "Sent Items", "Drafts", "Deleted Items", "Junk Email", "Outbox"} <= names
    assert account.inbox.folder_class == "IPF.Note"
    assert account.inbox.total_count == 0 and account.inbox.child_folder_count == 0


def test_create_folder_and_duplicate_name_is_refused(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    projects = Folder(parent=account.inbox, name="Projects", folder_class="IPF.Note")
    projects.save()
    child = Folder(parent=projects, name="2024 Q1")
    child.save()

    with pytest.raises(ErrorFolderExists):
        Folder(parent=account.inbox, name="projects", folder_class="IPF.Note").save()

    account.root.refresh()
    assert (
        account.root / "Top of Information Store" / "Inbox" / "Projects" / "2024 Q1"
    ).id == child.id
    stored = {f.path: f for f in ews_sim.folders(SIM_MAILBOX)}
    assert stored[("Inbox", "Projects")].folder_class == "IPF.Note"
    assert stored[("Inbox", "Projects", "2024 Q1")].parent_id == projects.id
    assert stored[("Inbox",)].distinguished == "inbox"
    assert account.inbox.refresh().child_folder_count == 1


def test_bulk_create_round_trips_mime_flags_and_properties(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    raw_8bit = mime("Caf\u00e9 8-bit", extra="X-Note: d\u00e9j\u00e0 vu\r\n".encode("latin-1"))
    delivered = EWSDateTime(2024, 1, 2, 8, 31, 5, tzinfo=account.default_timezone)
    submitted = EWSDateTime(2024, 1, 2, 8, 30, 0, tzinfo=account.default_timezone)
    items = [
        Message(  # an imported, read, non-draft message with original dates
            account=account,
            folder=account.inbox,
            mime_content=mime("first"),
            is_read=True,
            categories=["Work", "$Label1"],
            sim_source_key="src-1",
            sim_message_flags=0x1,
            sim_delivery_time=delivered,
            sim_submit_time=submitted,
            sim_keyword="kw",
        ),
        Message(  # unread and not a draft: flags 0
            account=account,
            folder=account.inbox,
            mime_content=raw_8bit,
            sim_source_key="src-2",
            sim_message_flags=0,
        ),
        Message(  # no PR_MESSAGE_FLAGS: Exchange makes it a draft
            account=account,
            folder=account.inbox,
            mime_content=mime("third"),
            sim_source_key="src-3",
        ),
    ]
    results = account.bulk_create(folder=account.inbox, items=items)
    assert all(isinstance(r.id, str) and r.changekey for r in results)

    fetched = list(account.fetch(ids=[ItemId(r.id, r.changekey) for r in results]))
    # Exchange writes the MIME anew (CRLF, 7-bit, its own headers): the content is the same,
    # the bytes are not
    assert [mime_content(m.mime_content) for m in fetched] == [
        mime_content(items[0].mime_content),
        mime_content(raw_8bit),
        mime_content(items[2].mime_content),
    ]
    assert all(
        m.mime_content.isascii() and b"\r\nX-MS-Has-Attach:\r\n" in m.mime_content for m in fetched
    )
    first, second, third = fetched
    assert (first.is_read, first.is_draft) == (True, False)
    assert first.categories == ["Work", "$Label1"]
    assert first.subject == "first"
    assert first.sim_source_key == "src-1" and first.sim_keyword == "kw"
    assert first.datetime_received == delivered and first.datetime_sent == submitted
    assert first.sim_message_flags == 0x1
    assert (second.is_read, second.is_draft, second.subject) == (False, False, "Caf\u00e9 8-bit")
    assert (third.is_read, third.is_draft) == (False, True)
    # Without PR_CLIENT_SUBMIT_TIME the Date header gives DateTimeSent.
    assert third.datetime_sent == EWSDateTime(2024, 1, 2, 8, 30, 0, tzinfo=account.default_timezone)

    stored = {
        i.extended["name:" + SOURCE_KEY_SET + ":MigratorSourceKey"]: i
        for i in ews_sim.items(SIM_MAILBOX)
    }
    assert stored["src-1"].mime == items[0].mime_content
    assert stored["src-1"].received == datetime(2024, 1, 2, 8, 31, 5, tzinfo=UTC)
    assert stored["src-2"].extended["tag:0x0E07"] == "0"
    assert stored["src-3"].is_draft and not stored["src-2"].is_draft
    assert (
        stored["src-1"].extended["name:00020329-0000-0000-c000-000000000046:SimTestKeyword"] == "kw"
    )
    inbox = account.inbox.refresh()
    assert (inbox.total_count, inbox.unread_count) == (3, 2)


def test_find_item_filters_on_named_and_tagged_properties(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    inbox = account.inbox
    account.bulk_create(
        folder=inbox,
        items=[
            Message(
                account=account,
                folder=inbox,
                mime_content=mime(f"m{i}"),
                sim_source_key=f"key-{i}",
                sim_message_flags=i % 2,
            )
            for i in range(6)
        ],
    )
    found = list(inbox.filter(sim_source_key="key-4").only("subject", "sim_source_key", "is_read"))
    assert [(m.subject, m.sim_source_key, m.is_read) for m in found] == [("m4", "key-4", False)]
    several = inbox.filter(sim_source_key__in=["key-1", "key-3", "missing"]).only("sim_source_key")
    assert sorted(m.sim_source_key for m in several) == ["key-1", "key-3"]
    assert inbox.filter(sim_message_flags=1).count() == 3
    assert inbox.filter(sim_source_key="nothing").count() == 0


def test_paging_over_more_than_100_items_and_folders(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    inbox = account.inbox
    body = mime("paged")
    account.bulk_create(
        folder=inbox,
        items=[
            Message(
                account=account,
                folder=inbox,
                mime_content=body,
                sim_source_key=f"p{i}",
                sim_message_flags=1,
            )
            for i in range(230)
        ],
        chunk_size=100,
    )
    keys = [m.sim_source_key for m in inbox.all().only("sim_source_key")]
    assert sorted(keys) == sorted(f"p{i}" for i in range(230))
    parent = Folder(parent=account.inbox, name="Many", folder_class="IPF.Note")
    parent.save()
    for i in range(105):
        Folder(parent=parent, name=f"f{i:03d}", folder_class="IPF.Note").save()
    # A fresh Account has no cached tree: it walks the hierarchy with paged FindFolder calls.
    before = ews_sim.stats().requests.get("FindFolder", 0)
    fresh = make_account(ews_sim, version=EXCHANGE_2016)
    names = [f.name for f in (fresh.root / "Top of Information Store" / "Inbox" / "Many").children]
    assert sorted(names) == [f"f{i:03d}" for i in range(105)]
    assert len([f for f in fresh.root.walk() if f.name.startswith("f")]) == 105
    assert ews_sim.stats().requests["FindFolder"] - before >= 2  # > 100 folders: two pages
    assert ews_sim.stats().requests["FindItem"] >= 3  # 230 items: three pages of 100


def test_delete_item_removes_it(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    inbox = account.inbox
    created = account.bulk_create(
        folder=inbox,
        items=[
            Message(account=account, folder=inbox, mime_content=mime(f"d{i}")) for i in range(3)
        ],
    )
    account.bulk_delete(ids=[created[0]])
    assert len(ews_sim.items(SIM_MAILBOX)) == 2
    account.bulk_delete(ids=[created[1]], delete_type="MoveToDeletedItems")
    assert account.trash.refresh().total_count == 1
    assert inbox.refresh().total_count == 1


def test_unknown_mailbox_and_denied_impersonation(ews_sim: EwsSimulator) -> None:
    ews_sim.add_mailbox("bob@example.com", allow={"another-service"})
    with pytest.raises(ErrorNonExistentMailbox):
        make_account(ews_sim, "nobody@example.com", version=EXCHANGE_2016).inbox  # noqa: B018
    with pytest.raises(ErrorImpersonateUserDenied):
        make_account(ews_sim, "bob@example.com", version=EXCHANGE_2016).inbox  # noqa: B018
    with pytest.raises(ErrorAccessDenied):
        make_account(ews_sim, "bob@example.com", version=EXCHANGE_2016, access_type=DELEGATE).inbox  # noqa: B018
    with pytest.raises(ErrorNonExistentMailbox):
        nobody = make_account(
            ews_sim, "nobody@example.com", version=EXCHANGE_2016, access_type=DELEGATE
        )
        nobody.inbox  # noqa: B018
    # Delegate access where it is allowed works like impersonation.
    assert (
        make_account(ews_sim, SIM_MAILBOX, version=EXCHANGE_2016, access_type=DELEGATE).inbox.name
        == "Inbox"
    )


def test_mailboxes_are_separate(ews_sim: EwsSimulator) -> None:
    ews_sim.add_mailbox("carol@example.com")
    alice = make_account(ews_sim, version=EXCHANGE_2016)
    carol = make_account(ews_sim, "carol@example.com", version=EXCHANGE_2016)
    alice.bulk_create(folder=alice.inbox, items=[Message(account=alice, mime_content=mime("a"))])
    assert carol.inbox.total_count == 0 and alice.inbox.refresh().total_count == 1
    assert alice.inbox.id != carol.inbox.id
    assert ews_sim.items("carol@example.com") == []


def test_store_survives_restart(tmp_path: Path) -> None:
    data = tmp_path / "ews"
    with running_simulator(data) as first:
        first.add_mailbox(SIM_MAILBOX)
        account = make_account(first, version=EXCHANGE_2016)
        folder = Folder(parent=account.inbox, name="Kept", folder_class="IPF.Note")
        folder.save()
        created = account.bulk_create(
            folder=folder, items=[Message(account=account, mime_content=mime("kept"), is_read=True)]
        )
    with running_simulator(data) as second:
        account = make_account(second, version=EXCHANGE_2016)
        kept = account.root / "Top of Information Store" / "Inbox" / "Kept"
        assert kept.id == folder.id
        (item,) = account.fetch(ids=[ItemId(created[0].id, created[0].changekey)])
        assert mime_content(item.mime_content) == mime_content(mime("kept")) and item.is_read
        assert (data / "ews-simulator.sqlite3").exists()


def test_raw_soap_answer_has_server_version_header(ews_sim: EwsSimulator) -> None:
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        '<s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header><s:Body>'
        '<m:ConvertId DestinationFormat="EntryId"><m:SourceIds>'
        '<t:AlternateId Format="EwsId" Id="DUMMY" Mailbox="DUMMY"/></m:SourceIds></m:ConvertId>'
        "</s:Body></s:Envelope>"
    )
    auth = base64.b64encode(b"svc-migrator:Sim-Passw0rd!").decode()
    answer = requests.post(
        ews_sim.url,
        data=envelope.encode(),
        timeout=5,
        headers={"Content-Type": "text/xml; charset=utf-8", "Authorization": f"Basic {auth}"},
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/xml; charset=utf-8"
    # attributes, then the types namespace as h and as default, as Exchange 2013 writes it
    assert (
        b'<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6" '
        b'Version="V2017_07_11" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" '
        b'xmlns="http://schemas.microsoft.com/exchange/services/2006/types"' in answer.content
    )
    assert b"<m:ResponseCode>ErrorInvalidIdMalformed</m:ResponseCode>" in answer.content


def test_find_folder_restriction_on_display_name(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    for name in ("Alpha", "Beta", "alphabet"):
        Folder(parent=account.inbox, name=name, folder_class="IPF.Note").save()
    children = SingleFolderQuerySet(account=account, folder=account.inbox)
    assert [f.name for f in children.filter(name="alpha")] == ["Alpha"]
    assert sorted(f.name for f in children.filter(name__contains="alpha")) == ["Alpha", "alphabet"]
    tree = SingleFolderQuerySet(account=account, folder=account.root).depth(DEEP)
    assert [f.name for f in tree.filter(name="Beta")] == ["Beta"]


def test_serve_runs_until_sigterm(tmp_path: Path) -> None:
    code = (
        "from migrator.simulator.ews import Faults, serve; "
        f"serve(0, {str(tmp_path)!r}, users={{'svc': 'pw'}}, faults=Faults(backoff_ms=5), "
        "mailboxes=['dave@example.com'])"
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/EWS/Exchange.asmx")
        account = make_account(
            url, "dave@example.com", user="svc", password="pw", version=EXCHANGE_2016
        )
        assert account.inbox.name == "Inbox"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        forget_protocols(url)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reopened = EwsSimulator(tmp_path)
    assert [f.name for f in reopened.folders("dave@example.com") if f.distinguished == "inbox"] == [
        "Inbox"
    ]


def test_parallel_uploads_into_several_mailboxes(ews_sim: EwsSimulator) -> None:
    addresses = ["p1@example.com", "p2@example.com"]
    for address in addresses:
        ews_sim.add_mailbox(address)
    accounts = [
        make_account(ews_sim, a, version=EXCHANGE_2016, max_connections=4) for a in addresses
    ]
    inboxes = [a.inbox for a in accounts]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def upload(worker: int) -> None:
        account, inbox = accounts[worker % 2], inboxes[worker % 2]
        barrier.wait()
        try:
            for batch in range(5):
                items = [
                    Message(
                        account=account, mime_content=mime(f"w{worker}-{batch}-{i}"), is_read=True
                    )
                    for i in range(10)
                ]
                results = account.bulk_create(folder=inbox, items=items)
                errors.extend(r for r in results if isinstance(r, BaseException))
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    for address in addresses:
        subjects = [i.subject for i in ews_sim.items(address)]
        assert len(subjects) == 100 and len(set(subjects)) == 100
    assert ews_sim.stats().max_concurrency >= 2


def test_x_anchor_mailbox_routes_requests_without_impersonation(ews_sim: EwsSimulator) -> None:
    ews_sim.add_mailbox("erin@example.com")
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body><m:GetFolder>'
        "<m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape>"
        '<m:FolderIds><t:DistinguishedFolderId Id="sentitems"/></m:FolderIds></m:GetFolder>'
        "</s:Body></s:Envelope>"
    )
    auth = base64.b64encode(b"svc-migrator:Sim-Passw0rd!").decode()
    headers = {"Content-Type": "text/xml; charset=utf-8", "Authorization": f"Basic {auth}"}
    routed = requests.post(
        ews_sim.url,
        data=envelope.encode(),
        timeout=5,
        headers={**headers, "X-AnchorMailbox": "erin@example.com"},
    )
    assert routed.status_code == 200
    erin_sent = next(
        f for f in ews_sim.folders("erin@example.com") if f.distinguished == "sentitems"
    )
    assert f'Id="{erin_sent.id}"'.encode() in routed.content
    assert b"<t:DisplayName>Sent Items</t:DisplayName>" in routed.content
    # Without an anchor the caller's own mailbox is meant, and the service account has none.
    unrouted = requests.post(ews_sim.url, data=envelope.encode(), timeout=5, headers=headers)
    assert b"<m:ResponseCode>ErrorNonExistentMailbox</m:ResponseCode>" in unrouted.content


def test_the_simulator_command_throttles_with_retry_after(tmp_path: Path) -> None:
    # operators rehearse throttling with the command itself: every request gets HTTP 503
    # with the Retry-After they asked for
    import base64
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "migrator", "ews-simulator", "--port", str(port), "--data", str(tmp_path / "ews"),
         "--mailbox", SIM_MAILBOX, "--http503-rate", "1", "--retry-after", "7"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    "the simulator did not start"
                )
                time.sleep(0.05)  # waiting for another process to listen
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/EWS/Exchange.asmx", data=b"<x/>", method="POST",
            headers={"Content-Type": "text/xml", "Authorization": "Basic " + base64.b64encode(
                f"{SIM_USER}:{SIM_PASSWORD}".encode()).decode()},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10)
        assert answer.value.code == 503 and answer.value.headers["Retry-After"] == "7"
    finally:
        server.terminate()
        server.wait(timeout=30)
