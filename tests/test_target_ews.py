"""The EWS target against the simulator over real HTTP: fidelity of what is stored (read back
through the simulator's own store AND through exchangelib's GetItem), request sizing, the
well-known folders, and concurrent use from several threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from exchangelib import Account, Configuration, Credentials

from migrator.adapters.targets import Target
from migrator.adapters.targets.ews.create import PreparedCreateItem
from migrator.adapters.targets.ews.properties import FLAG_STATUS_FLAGGED, MSGFLAG_UNSENT
from migrator.model.errors import PermanentError
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.samples.mail import SampleMessage, hard_case_messages
from migrator.simulator.ews import EwsSimulator, Faults
from tests.fixtures.ews import mime_content
from tests.fixtures.targets import *  # noqa: F403
from tests.fixtures.targets import SERVICE_PASSWORD, SERVICE_USER, TargetHarness, ews_harness

MB = 1024 * 1024
SOURCE_KEY_EXT = "name:8f0c5b1e-3d2a-4f6b-9a7e-6d4c2b1a0e93:MigratorSourceKey"


@pytest.fixture
def harness(ews_simulator: EwsSimulator) -> Iterator[TargetHarness]:
    ews_simulator.set_faults(Faults())
    h = ews_harness(ews_simulator)
    try:
        yield h
    finally:
        h.close_all()
        ews_simulator.set_faults(Faults())


def upload_item(sample: SampleMessage) -> UploadItem:
    return UploadItem(
        key=f"src:{sample.name}",
        data=sample.raw,
        flags=sample.flags,
        internal_date=sample.internal_date,
    )


def plain(n: int, size: int = 0) -> bytes:
    return (
        b"From: a@example.org\r\nSubject: m" + str(n).encode() + b"\r\n"
        b"Date: Fri, 01 Mar 2024 08:00:00 +0000\r\n\r\n" + b"z" * size + b"\r\n"
    )


def reader(sim: EwsSimulator, mailbox: str) -> Account:
    """A plain exchangelib account, independent of the adapter, to read items back."""
    config = Configuration(
        service_endpoint=sim.url,
        credentials=Credentials(SERVICE_USER, SERVICE_PASSWORD),
        auth_type="basic",
    )
    return Account(mailbox, config=config, autodiscover=False, access_type="impersonation")


# --- fidelity -----------------------------------------------------------------------------------


def test_hard_cases_are_stored_faithfully(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target = harness.open()
    mailbox = harness.new_mailbox()
    folder = target.ensure_folder(mailbox, ("Fidelity",), FolderRole.NONE)
    samples = hard_case_messages()
    assert any("8bit-headers" in s.traits for s in samples)
    results = target.upload(mailbox, folder, [upload_item(s) for s in samples])
    assert [r.key for r in results] == [f"src:{s.name}" for s in samples]
    failed = {r.key: r.error for r in results if not r.ok}
    assert failed == {}, failed

    stored = {item.extended[SOURCE_KEY_EXT]: item for item in sim.items(mailbox, folder.id)}
    assert len(stored) == len(samples)
    for sample, result in zip(samples, results, strict=True):
        item = stored[f"src:{sample.name}"]
        assert item.id == result.target_id
        assert item.mime == sample.raw, sample.name  # byte for byte, 8-bit headers included
        assert item.is_read == sample.flags.seen, sample.name
        assert not item.is_draft and not item.message_flags & MSGFLAG_UNSENT, sample.name
        assert item.received == sample.internal_date, sample.name
        expected_flag = str(FLAG_STATUS_FLAGGED) if sample.flags.flagged else None
        assert item.extended.get("tag:0x1090") == expected_flag, sample.name

    # the Date header, where the message has one, is the sent time; else the internal date
    assert stored["src:crlf"].sent == datetime(2024, 3, 1, 9, 31, 30, tzinfo=UTC)
    assert stored["src:one-byte"].sent == stored["src:one-byte"].received
    assert stored["src:utf8-subject"].categories == ["Important"]  # Thunderbird's $Label1
    assert stored["src:crlf"].categories == ["Work"]
    assert stored["src:no-message-id"].categories == []


def test_items_read_back_with_exchangelib_getitem(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target = harness.open()
    mailbox = harness.new_mailbox()
    folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    samples = [
        s
        for s in hard_case_messages()
        if s.name in {"latin1-subject", "utf8-subject", "from-lines", "dup-msgid-b", "crlf"}
    ]
    results = target.upload(mailbox, folder, [upload_item(s) for s in samples])
    assert all(r.ok for r in results)

    account = reader(sim, mailbox)
    ids = [(r.target_id, None) for r in results]
    fetched = list(
        account.fetch(
            ids=ids,
            only_fields=[
                "mime_content",
                "is_read",
                "categories",
                "datetime_received",
                "datetime_sent",
                "migrator_message_flags",
                "migrator_flag_status",
                "migrator_source_key",
                "migrator_delivery_time",
                "migrator_submit_time",
                "migrator_last_verb",
            ],
        )
    )
    for sample, got in zip(samples, fetched, strict=True):
        assert not isinstance(got, Exception), got
        # Exchange writes the MIME anew from the item: the same content, not the same bytes
        assert mime_content(got.mime_content) == mime_content(sample.raw), sample.name
        assert got.is_read is sample.flags.seen
        assert got.migrator_source_key == f"src:{sample.name}"
        assert got.migrator_message_flags & MSGFLAG_UNSENT == 0
        assert got.migrator_flag_status == (FLAG_STATUS_FLAGGED if sample.flags.flagged else None)
        assert got.migrator_last_verb == (102 if sample.flags.answered else None)
        assert got.migrator_delivery_time == sample.internal_date
        assert got.datetime_received == sample.internal_date
        assert got.datetime_sent == got.migrator_submit_time
    by_name = {s.name: got for s, got in zip(samples, fetched, strict=True)}
    assert by_name["utf8-subject"].categories == ["Important"]
    assert by_name["latin1-subject"].categories is None


def test_dates_in_the_senders_zone_keep_their_instant(harness: TargetHarness) -> None:
    """Most real mail is dated in its sender's zone ("-0600"): the sent time shown in Exchange
    is that instant, and the received time is the source's internal date."""
    from datetime import timedelta

    from migrator.samples.mail import ZONES_MINUTES, date_header

    sim: EwsSimulator = harness.server
    target = harness.open()
    mailbox = harness.new_mailbox()
    folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    sent = datetime(2013, 3, 5, 15, 14, 9, tzinfo=UTC)
    samples = [
        SampleMessage(
            f"zone{minutes}",
            b"From: a@example.org\nSubject: zone\nDate: "
            + date_header(sent, minutes)
            + b"\n\nbody\n",
            Flags(seen=True),
            sent + timedelta(minutes=3),
        )
        for minutes in ZONES_MINUTES
    ]
    assert b"-0600" in samples[1].raw
    results = target.upload(mailbox, folder, [upload_item(s) for s in samples])
    assert all(r.ok for r in results), [r.error for r in results]
    fetched = list(
        reader(sim, mailbox).fetch(
            ids=[(r.target_id, None) for r in results],
            only_fields=["datetime_sent", "datetime_received"],
        )
    )
    for sample, got in zip(samples, fetched, strict=True):
        assert got.datetime_sent == sent, sample.name
        assert got.datetime_received == sample.internal_date


def test_a_40_mb_message_round_trips(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    # the simulator refuses requests over 60 MB, like an Exchange with its default limit
    sim.set_faults(Faults(max_request_bytes=60 * MB))
    target = harness.open(max_message_size=64 * MB)
    mailbox = harness.new_mailbox()
    folder = target.ensure_folder(mailbox, ("Big",), FolderRole.NONE)
    big = hard_case_messages(big_mb=30)[-1]
    assert "big" in big.traits and len(big.raw) > 40 * MB
    small = [
        UploadItem(key=f"s{n}", data=plain(n), flags=Flags(), internal_date=None) for n in range(3)
    ]
    results = target.upload(mailbox, folder, [small[0], upload_item(big), *small[1:]])
    assert all(r.ok for r in results), [r.error for r in results]
    stored = {i.extended[SOURCE_KEY_EXT]: i for i in sim.items(mailbox, folder.id)}
    assert stored[f"src:{big.name}"].mime == big.raw
    assert sim.stats().faults.get("request_too_large", 0) == 0


def test_requests_are_split_by_bytes_under_the_server_limit(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    sim.set_faults(Faults(max_request_bytes=12 * MB))
    target = harness.open()
    target.request_bytes = 8 * MB  # type: ignore[attr-defined]
    mailbox = harness.new_mailbox()
    folder = target.ensure_folder(mailbox, ("Split",), FolderRole.NONE)
    items = [
        UploadItem(key=f"m{n}", data=plain(n, 2 * MB), flags=Flags(), internal_date=None)
        for n in range(7)
    ]
    sim.reset_stats()
    results = target.upload(mailbox, folder, items)
    assert all(r.ok for r in results), [r.error for r in results]
    # 2 MB is ~2.7 MB of base64: two per 8 MB request
    assert sim.stats().requests.get("CreateItem") == 4
    assert target.count(mailbox, folder) == 7


def test_per_item_refusals_do_not_fail_the_chunk(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    sim.set_faults(Faults(max_message_bytes=5000))  # the mailbox's MaxReceiveSize
    target = harness.open()
    mailbox = harness.new_mailbox()
    folder = target.ensure_folder(mailbox, ("Mixed",), FolderRole.NONE)
    items = [
        UploadItem(
            key=f"m{n}", data=plain(n, 9000 if n == 1 else 10), flags=Flags(), internal_date=None
        )
        for n in range(3)
    ]
    results = target.upload(mailbox, folder, items)
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, PermanentError) and results[1].error.reason == "too-large"
    assert "m1" in str(results[1].error)
    assert target.count(mailbox, folder) == 2


# --- folders --------------------------------------------------------------------------------


def test_folders_land_where_exchange_users_expect_them(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target = harness.open()
    mailbox = harness.new_mailbox()
    by_role = {
        role: target.ensure_folder(mailbox, ("x",), role)
        for role in (
            FolderRole.INBOX,
            FolderRole.SENT,
            FolderRole.DRAFTS,
            FolderRole.TRASH,
            FolderRole.JUNK,
        )
    }
    created = target.ensure_folder(mailbox, ("INBOX", "Lists", "debian"), FolderRole.NONE)
    archive = target.ensure_folder(mailbox, ("Archivo",), FolderRole.ARCHIVE)
    folders = {f.id: f for f in sim.folders(mailbox)}
    assert {role.value: folders[f.id].distinguished for role, f in by_role.items()} == {
        "inbox": "inbox",
        "sent": "sentitems",
        "drafts": "drafts",
        "trash": "deleteditems",
        "junk": "junkemail",
    }
    assert folders[created.id].path == ("Inbox", "Lists", "debian")
    assert folders[created.id].folder_class == "IPF.Note"
    assert folders[archive.id].path == ("Archive",)


def test_concurrent_folder_creation_yields_one_folder(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    mailbox = harness.new_mailbox()
    targets = [harness.open() for _ in range(4)]  # separate caches, as separate hosts would have
    ids: list[str] = []
    errors: list[BaseException] = []

    def ensure(target: Target) -> None:
        try:
            ids.append(target.ensure_folder(mailbox, ("Race", "Inner"), FolderRole.NONE).id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ensure, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(set(ids)) == 1
    assert [f.path for f in sim.folders(mailbox)].count(("Race", "Inner")) == 1


# --- one target, many mailboxes, many threads -------------------------------------------------


def test_one_target_serves_many_mailboxes_from_threads(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target = harness.open()
    mailboxes = [harness.new_mailbox() for _ in range(4)]
    failures: list[object] = []

    def migrate(mailbox: str) -> None:
        try:
            target.preflight(mailbox)
            folder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
            for chunk in range(3):
                items = [
                    UploadItem(
                        key=f"{mailbox}/{chunk}/{n}",
                        data=plain(n),
                        flags=Flags(),
                        internal_date=None,
                    )
                    for n in range(10)
                ]
                failures.extend(r.error for r in target.upload(mailbox, folder, items) if not r.ok)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=migrate, args=(m,)) for m in mailboxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    for mailbox in mailboxes:
        inbox = next(f for f in sim.folders(mailbox) if f.distinguished == "inbox")
        keys = {i.extended[SOURCE_KEY_EXT] for i in sim.items(mailbox, inbox.id)}
        assert keys == {f"{mailbox}/{c}/{n}" for c in range(3) for n in range(10)}


def test_delegate_access_writes_without_impersonation(harness: TargetHarness) -> None:
    target = harness.open(impersonation=False)
    mailbox = harness.new_mailbox()
    target.preflight(mailbox)
    folder = target.ensure_folder(mailbox, ("Delegated",), FolderRole.NONE)
    result = target.upload(
        mailbox, folder, [UploadItem(key="d1", data=plain(1), flags=Flags(), internal_date=None)]
    )
    assert result[0].ok
    with pytest.raises(PermanentError) as denied:
        target.preflight(harness.forbidden_mailbox())
    assert denied.value.reason == "no-permission"


def test_success_without_item_ids_is_resolved_by_key(
    harness: TargetHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some Exchange servers answer CreateItem with success but no ids (exchangelib #984); the
    simulator always sends ids, so the answer is trimmed the way exchangelib then reports it."""
    sim: EwsSimulator = harness.server
    target = harness.open()
    mailbox = harness.new_mailbox()
    folder = target.ensure_folder(mailbox, ("NoIds",), FolderRole.NONE)
    real_call = PreparedCreateItem.call

    def without_ids(self: PreparedCreateItem, *args: object, **kwargs: object) -> Iterator[object]:
        list(real_call(self, *args, **kwargs))
        yield True  # what exchangelib yields for an empty <m:Items/>

    monkeypatch.setattr(PreparedCreateItem, "call", without_ids)
    sim.reset_stats()
    results = target.upload(
        mailbox,
        folder,
        [
            UploadItem(key=f"n{n}", data=plain(n), flags=Flags(), internal_date=None)
            for n in range(3)
        ],
    )
    stored = {i.extended[SOURCE_KEY_EXT]: i.id for i in sim.items(mailbox, folder.id)}
    assert {r.key: r.target_id for r in results} == stored
    assert len(stored) == 3
    assert sim.stats().requests.get("FindItem") == 1  # one lookup for the whole request
