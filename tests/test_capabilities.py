"""The optional adapter capabilities, one contract per capability.

Each target and source kind declares what it can do besides its contract by implementing the
runtime-checkable Protocols of adapters/targets/base.py and adapters/sources/base.py; the engine
asks `isinstance` and nothing else. Checked here, for every adapter class: that it declares
exactly the capabilities listed below (docs/architecture.md, "Adapter capabilities"), with the
Protocol's signatures, that the engine's guarded target declares the same as the target it
guards, and that each capability does what it promises against the real servers (Dovecot, the
EWS simulator) or files, for every kind that declares it. CarriesChanges and ShowsFlags have
their own suite (test_target_changes_contract.py); Withdraws and ListsByKey are also part of
test_target_contract.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from migrator.adapters.sources.base import Listing, Renumbers, Source
from migrator.adapters.sources.imap import ImapSource
from migrator.adapters.sources.maildir import MaildirSource
from migrator.adapters.sources.mbox import MboxSource
from migrator.adapters.targets.base import (
    CarriesChanges,
    ChecksPresence,
    FindsByContent,
    GroupsIdentical,
    Inventories,
    ListsByKey,
    Probes,
    ShowsFlags,
    Target,
    Withdraws,
)
from migrator.adapters.targets.ews import EwsTarget
from migrator.adapters.targets.imap import ImapTarget
from migrator.engine.breaker import Breaker, guard
from migrator.model.mail import (
    Flags,
    FolderRole,
    KnownMessage,
    MessageRecord,
    SkippedMessage,
    UploadItem,
)
from tests.fixtures.sources import *  # noqa: F403 - the source_case fixture
from tests.fixtures.sources import SourceCase
from tests.fixtures.targets import *  # noqa: F403 - the target_harness fixture
from tests.fixtures.targets import TargetHarness

TARGET_CAPABILITIES: tuple[type, ...] = (
    Probes,
    ListsByKey,
    FindsByContent,
    GroupsIdentical,
    Withdraws,
    Inventories,
    ChecksPresence,
    CarriesChanges,
    ShowsFlags,
)
SOURCE_CAPABILITIES: tuple[type, ...] = (Renumbers,)

# what each adapter declares: the table docs/architecture.md shows
TARGETS: dict[str, tuple[type, set[type]]] = {
    "ews": (EwsTarget, {Probes, ListsByKey, Withdraws, Inventories, CarriesChanges, ShowsFlags}),
    "imap": (
        ImapTarget,
        {
            Probes,
            ListsByKey,
            FindsByContent,
            GroupsIdentical,
            Withdraws,
            ChecksPresence,
            CarriesChanges,
            ShowsFlags,
        },
    ),
}
SOURCES: dict[str, tuple[type, set[type]]] = {
    "maildir": (MaildirSource, set()),
    "mbox": (MboxSource, set()),
    "imap": (ImapSource, {Renumbers}),
}


def _kinds(table: dict[str, tuple[type, set[type]]], capability: type) -> list[str]:
    return [kind for kind, (_, declared) in table.items() if capability in declared]


def _methods(protocol: type) -> list[str]:
    return [
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and callable(value)
    ]


def _shape(function: Callable[..., Any]) -> list[tuple[str, Any, bool]]:
    """Parameter names, kinds and whether each has a default, without self."""
    params = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, p.default is not p.empty) for p in params]


# --- declarations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(TARGETS))
def test_each_target_declares_exactly_its_capabilities(kind: str) -> None:
    cls, declared = TARGETS[kind]
    assert {c for c in TARGET_CAPABILITIES if issubclass(cls, c)} == declared
    for capability in declared:
        for name in _methods(capability):
            assert _shape(getattr(cls, name)) == _shape(getattr(capability, name)), (
                f"{cls.__name__}.{name}"
            )


@pytest.mark.parametrize("kind", list(SOURCES))
def test_each_source_declares_exactly_its_capabilities(kind: str) -> None:
    cls, declared = SOURCES[kind]
    assert {c for c in SOURCE_CAPABILITIES if issubclass(cls, c)} == declared
    for capability in declared:
        for name in _methods(capability):
            assert _shape(getattr(cls, name)) == _shape(getattr(capability, name)), (
                f"{cls.__name__}.{name}"
            )
    # every source takes `known` and `since`, and gives a Listing
    shape = _shape(cls.messages)
    assert shape[:3] == _shape(Source.messages), cls.__name__
    assert inspect.signature(cls.messages).return_annotation in (Listing, "Listing")


def test_the_guarded_target_declares_what_it_guards(target_harness: TargetHarness) -> None:
    """The engine talks to the target through the breaker's guard: a capability the target has
    must not get lost there, nor one it lacks be made up."""
    target = target_harness.open()
    guarded = guard(target, Breaker(lambda error: None))
    declared = TARGETS[target_harness.kind][1]
    assert {c for c in TARGET_CAPABILITIES if isinstance(guarded, c)} == declared - {
        Probes
    }  # the breaker's own
    assert isinstance(guarded, Target)
    for capability in declared - {Probes}:
        for name in _methods(capability):
            assert _shape(getattr(type(guarded), name)) == _shape(getattr(capability, name)), name


# --- targets, per capability ----------------------------------------------------------------------


def _message(n: int, body: bytes = b"hello\r\n") -> bytes:
    return (
        b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: capability "
        + str(n).encode()
        + b"\r\nDate: Fri, 01 Mar 2024 08:00:00 +0000\r\nMessage-ID: <cap"
        + str(n).encode()
        + b"@example.org>\r\n\r\n"
        + body
    )


def _item(key: str, n: int) -> UploadItem:
    return UploadItem(
        key=key,
        data=_message(n),
        flags=Flags(seen=True),
        internal_date=datetime(2024, 3, 1, 9, 0, tzinfo=UTC),
    )


@pytest.mark.parametrize("target_harness", _kinds(TARGETS, Probes), indirect=True)
def test_probes_answer_when_the_server_is_there(target_harness: TargetHarness) -> None:
    target = target_harness.open()
    assert isinstance(target, Probes)
    target.probe()  # returns: the server answers


@pytest.mark.parametrize("target_harness", _kinds(TARGETS, FindsByContent), indirect=True)
def test_finds_by_content_recognises_uploads_a_new_object_never_saw(
    target_harness: TargetHarness,
) -> None:
    mailbox = target_harness.new_mailbox()
    sender = target_harness.open()
    folder = sender.ensure_folder(mailbox, ("Content",), FolderRole.NONE)
    stored = sender.upload(mailbox, folder, [_item("c1", 1), _item("c2", 2)])
    assert all(r.ok for r in stored), stored
    target = target_harness.open()  # after a restart: nothing remembered of the uploads
    assert isinstance(target, FindsByContent)
    asked = [_item("c1", 1), _item("c2", 2), _item("c3", 3)]
    assert target.find_uploads(mailbox, folder, asked) == {r.key: r.target_id for r in stored}
    # an id that stands for another message already is never the answer
    assert target.find_uploads(mailbox, folder, asked, known_ids=[stored[0].target_id or ""]) == {
        "c2": stored[1].target_id
    }


@pytest.mark.parametrize("target_harness", _kinds(TARGETS, GroupsIdentical), indirect=True)
def test_groups_identical_finds_the_copies_of_one_message(target_harness: TargetHarness) -> None:
    mailbox = target_harness.new_mailbox()
    target = target_harness.open()
    assert isinstance(target, GroupsIdentical)
    folder = target.ensure_folder(mailbox, ("Copies",), FolderRole.NONE)
    stored = target.upload(mailbox, folder, [_item("a", 1), _item("b", 2), _item("a-again", 1)])
    assert all(r.ok for r in stored), stored
    groups = target.identical_items(mailbox, folder)
    assert [sorted(g) for g in groups] == [
        sorted([stored[0].target_id or "", stored[2].target_id or ""])
    ]


@pytest.mark.parametrize("target_harness", _kinds(TARGETS, Inventories), indirect=True)
def test_inventories_count_each_key_and_every_item(target_harness: TargetHarness) -> None:
    mailbox = target_harness.new_mailbox()
    target = target_harness.open()
    assert isinstance(target, Inventories)
    one = target.ensure_folder(mailbox, ("One",), FolderRole.NONE)
    two = target.ensure_folder(mailbox, ("Two",), FolderRole.NONE)
    assert all(
        r.ok for r in target.upload(mailbox, one, [_item("k1", 1), _item("k1", 1), _item("k2", 2)])
    )
    assert all(r.ok for r in target.upload(mailbox, two, [_item("k3", 3)]))
    listed = target.inventory(mailbox, {one.id: ["k1", "k2", "absent"], two.id: ["k3"]})
    counts, total = listed[one.id]
    assert (dict(counts), total) == ({"k1": 2, "k2": 1}, 3)
    counts, total = listed[two.id]
    assert (dict(counts), total) == ({"k3": 1}, 1)


@pytest.mark.parametrize("target_harness", _kinds(TARGETS, ChecksPresence), indirect=True)
def test_checks_presence_of_the_ids_the_ledger_holds(target_harness: TargetHarness) -> None:
    mailbox = target_harness.new_mailbox()
    target = target_harness.open()
    assert isinstance(target, ChecksPresence) and isinstance(target, Withdraws)
    folder = target.ensure_folder(mailbox, ("Present",), FolderRole.NONE)
    stored = target.upload(mailbox, folder, [_item(f"p{n}", n) for n in range(3)])
    ids = [r.target_id or "" for r in stored]
    target.withdraw(mailbox, folder, ids[1:2])
    assert target.present(mailbox, folder, [*ids, "999999:1"]) == ({ids[0], ids[2]}, 2)


@pytest.mark.parametrize("target_harness", _kinds(TARGETS, ListsByKey), indirect=True)
def test_lists_by_key_sees_what_another_object_stored(target_harness: TargetHarness) -> None:
    mailbox = target_harness.new_mailbox()
    sender = target_harness.open(tag_header=True)
    folder = sender.ensure_folder(mailbox, ("ByKey",), FolderRole.NONE)
    stored = sender.upload(mailbox, folder, [_item("x", 1), _item("y", 2)])
    target = target_harness.open(tag_header=True)
    assert isinstance(target, ListsByKey)
    keyed = target.items_by_key(mailbox, folder)
    assert keyed is not None
    assert (keyed.ids("x"), keyed.ids("y"), keyed.total) == (
        [stored[0].target_id],
        [stored[1].target_id],
        2,
    )


# --- sources: the listing, and per capability -------------------------------------------------------


def test_a_listing_keeps_what_it_learned(source_case: SourceCase) -> None:
    """Every source takes the keys the caller knows: each comes as a KnownMessage (flags only)
    or, where the format reads them anyway (mbox), as a record; the listing counts the known
    ones it gave, and has a byte total only when every message came with its size."""
    with source_case.open() as source:
        inbox = next(f for f in source.folders() if f.path == ("INBOX",))
        first = source.messages(inbox)
        records = [r for r in first if isinstance(r, MessageRecord)]
        assert records and not first.partial and first.known_seen == 0
        assert first.bytes == sum(r.size for r in records)
        known = {r.key for r in records[::2]}
        again = source.messages(inbox, known=known)
        entries = list(again)
    assert {e.key for e in entries} >= {r.key for r in records}
    given = [e for e in entries if isinstance(e, KnownMessage)]
    assert again.known_seen == len(given)
    assert {e.key for e in given} <= known
    if given:
        assert {e.key for e in given} == known and again.bytes is None
    else:
        assert again.bytes == sum(e.size for e in entries if isinstance(e, MessageRecord))
    assert not again.partial


def test_a_maildir_listing_that_missed_a_directory_says_so(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "cur" / "1700000001.M1P1.mx:2,S").write_bytes(b"Subject: one\n\nbody\n")
    (tmp_path / "elsewhere").mkdir()
    (box / "new").rmdir()
    (box / "new").symlink_to(tmp_path / "elsewhere")  # not followed: new/ is not read
    with MaildirSource(str(box)) as source:
        [inbox] = source.folders()
        listing = source.messages(inbox, known={"1700000001.M1P1.mx"})
        entries = list(listing)
    assert [e.key for e in entries if isinstance(e, SkippedMessage)] == ["new/"]
    assert listing.partial and listing.known_seen == 1


def test_an_mbox_listing_that_could_not_read_its_file_says_so(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.write_bytes(b"From a@example.org Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n\n")
    with MboxSource(str(spool)) as source:
        [inbox] = source.folders()
        (tmp_path / "other").write_bytes(spool.read_bytes())
        spool.unlink()
        spool.symlink_to(tmp_path / "other")  # swapped for a link after listing: not followed
        listing = source.messages(inbox)
        entries = list(listing)
    assert [e.key for e in entries] == ["folder/"]
    assert listing.partial


@pytest.mark.parametrize("source_case", _kinds(SOURCES, Renumbers), indirect=True)
def test_renumbers_states_the_numbering_its_keys_carry(source_case: SourceCase) -> None:
    """What the engine relies on to carry a renumbered folder over: the numbering now, the
    same one each record names, and a content fingerprint on every record."""
    with source_case.open() as source:
        assert isinstance(source, Renumbers)
        for folder in source.folders():
            validity = source.uidvalidity(folder)
            for record in source.messages(folder):
                if isinstance(record, MessageRecord):
                    assert record.key.startswith(f"{validity}:")
                    assert record.extra["uidvalidity"] == str(validity)
                    assert record.extra["fingerprint"]
