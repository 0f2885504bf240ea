"""The contract every target keeps, run against each target kind on a real server.

Kinds and their servers come from tests/fixtures/targets.py (`target_harness`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migrator.adapters.targets import ExcludedFolderError, Target, TargetFolder
from migrator.adapters.targets.base import ListsByKey, Withdraws
from migrator.model.errors import PermanentError, TransientError
from migrator.model.mail import Flags, FolderRole, UploadItem
from tests.fixtures.targets import *  # noqa: F403
from tests.fixtures.targets import TargetHarness, unreachable_url


def message(n: int, body: bytes = b"hello\r\n") -> bytes:
    return (
        b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
        b"Subject: contract " + str(n).encode() + b"\r\n"
        b"Date: Fri, 01 Mar 2024 08:00:00 +0000\r\nMessage-ID: <c"
        + str(n).encode()
        + b"@example.org>\r\n\r\n"
        + body
    )


def item(key: str, n: int, *, data: bytes | None = None, seen: bool = False) -> UploadItem:
    return UploadItem(
        key=key,
        data=message(n) if data is None else data,
        flags=Flags(seen=seen),
        internal_date=datetime(2024, 3, 1, 9, 0, tzinfo=UTC),
    )


@pytest.fixture
def target(target_harness: TargetHarness) -> Target:
    return target_harness.open()


@pytest.fixture
def mailbox(target_harness: TargetHarness) -> str:
    return target_harness.new_mailbox()


# --- preflight ------------------------------------------------------------------------------


def test_preflight_accepts_a_writable_mailbox(target: Target, mailbox: str) -> None:
    target.preflight(mailbox)


def test_preflight_failures_are_distinct_and_name_the_mailbox(
    target_harness: TargetHarness,
) -> None:
    target = target_harness.open()
    messages: dict[str, str] = {}

    with pytest.raises(PermanentError) as missing:
        target.preflight(target_harness.missing_mailbox)
    assert missing.value.reason == "no-mailbox"
    messages["no-mailbox"] = str(missing.value)

    forbidden = target_harness.forbidden_mailbox()
    with pytest.raises(PermanentError) as denied:
        target.preflight(forbidden)
    assert denied.value.reason == "no-permission"
    messages["no-permission"] = str(denied.value)

    wrong = target_harness.open(secrets={"password": "not-the-password"})
    with pytest.raises(PermanentError) as auth:
        wrong.preflight(target_harness.new_mailbox())
    assert auth.value.reason == "auth"
    messages["auth"] = str(auth.value)

    closed = target_harness.open(url=unreachable_url())
    with pytest.raises(TransientError) as unreachable:
        closed.preflight(target_harness.new_mailbox())
    messages["cannot-connect"] = str(unreachable.value)

    assert target_harness.missing_mailbox in messages["no-mailbox"]
    assert forbidden in messages["no-permission"]
    assert "credentials" in messages["auth"]
    assert "connect" in messages["cannot-connect"]
    # four different wordings: an operator can tell the cases apart from the message alone
    assert len({m.split(": ", 1)[1].split(" (")[0] for m in messages.values()}) == 4
    for error in (auth.value, denied.value, missing.value):
        assert error.hint


# --- folders --------------------------------------------------------------------------------


def test_ensure_folder_is_idempotent_across_target_objects(
    target_harness: TargetHarness, target: Target, mailbox: str
) -> None:
    first = target.ensure_folder(mailbox, ("Projects", "Alpha"), FolderRole.NONE)
    again = target.ensure_folder(mailbox, ("Projects", "Alpha"), FolderRole.NONE)
    fresh = target_harness.open().ensure_folder(mailbox, ("Projects", "Alpha"), FolderRole.NONE)
    assert first == again == fresh
    assert first.path == ("Projects", "Alpha")


def test_ensure_folder_says_when_it_knows_the_folder_is_empty(
    target_harness: TargetHarness, target: Target, mailbox: str
) -> None:
    # a folder created just now is empty: a first pass has nothing to adopt there
    assert target.ensure_folder(mailbox, ("Fresh", "Deep"), FolderRole.NONE).empty
    assert not target.ensure_folder(mailbox, ("Fresh", "Deep"), FolderRole.NONE).empty
    again = target_harness.open().ensure_folder(mailbox, ("Fresh", "Deep"), FolderRole.NONE)
    # EWS lists a folder's children with their item counts: an existing folder that held nothing
    # is said empty too (once), as the Archive folder every Exchange mailbox has
    assert again.empty is (target_harness.kind == "ews")
    writer = target_harness.open()
    assert writer.upload(mailbox, again, [item("d1", 1)])[0].ok
    assert (
        not target_harness.open().ensure_folder(mailbox, ("Fresh", "Deep"), FolderRole.NONE).empty
    )
    other = target_harness.open()
    inbox = other.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    if target_harness.kind == "ews":  # a well-known folder's count comes with its lookup
        assert inbox.empty
    # said once: the folder holds what is sent there afterwards
    assert other.upload(mailbox, inbox, [item("e1", 1)])[0].ok
    assert not other.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX).empty
    assert not target_harness.open().ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX).empty


@pytest.mark.parametrize(
    "role",
    [FolderRole.INBOX, FolderRole.SENT, FolderRole.DRAFTS, FolderRole.TRASH, FolderRole.JUNK],
)
def test_roles_map_to_well_known_folders(target: Target, mailbox: str, role: FolderRole) -> None:
    folder = target.ensure_folder(mailbox, ("Whatever the source calls it",), role)
    assert folder.path == (role.value,)
    assert target.ensure_folder(mailbox, ("Another name",), role).id == folder.id


def test_subfolders_of_role_folders_live_below_them(target: Target, mailbox: str) -> None:
    inbox = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    below_inbox = target.ensure_folder(mailbox, ("INBOX", "Lists"), FolderRole.NONE)
    target.ensure_folder(mailbox, ("Gesendet",), FolderRole.SENT)
    below_sent = target.ensure_folder(mailbox, ("Gesendet", "2019"), FolderRole.NONE)
    assert below_inbox.path == ("inbox", "Lists") and below_inbox.id != inbox.id
    assert below_sent.path == ("sent", "2019")


def test_archive_goes_to_the_planned_folder(target_harness: TargetHarness, mailbox: str) -> None:
    target = target_harness.open(archive_folder="Old Mail/Archive")
    folder = target.ensure_folder(mailbox, ("Archivo",), FolderRole.ARCHIVE)
    assert folder.path == ("Old Mail", "Archive")


def test_nested_folders_are_created_level_by_level(target: Target, mailbox: str) -> None:
    deep = target.ensure_folder(mailbox, ("A", "B", "C", "D"), FolderRole.NONE)
    middle = target.ensure_folder(mailbox, ("A", "B"), FolderRole.NONE)
    assert deep.path == ("A", "B", "C", "D")
    assert middle.path == ("A", "B") and middle.id != deep.id


def test_names_the_target_refuses_are_mapped(target: Target, mailbox: str) -> None:
    odd = target.ensure_folder(mailbox, ("Bell\x07Folder", "  spaced  ", ".."), FolderRole.NONE)
    assert odd.path == ("Bell_Folder", "spaced", "_..")
    # non-ASCII names are kept as they are
    assert target.ensure_folder(mailbox, ("Entwürfe", "日本"), FolderRole.NONE).path == (
        "Entwürfe",
        "日本",
    )


def test_folder_map_and_exclusions_from_the_plan(
    target_harness: TargetHarness, mailbox: str
) -> None:
    target = target_harness.open(
        folder_map={"Old/Stuff": "Imported/Stuff", "INBOX": "Former inbox"},
        exclude_folders=("Trash", "Lists/*"),
    )
    assert target.ensure_folder(mailbox, ("Old", "Stuff", "x"), FolderRole.NONE).path == (
        "Imported",
        "Stuff",
        "x",
    )
    assert target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX).path == ("Former inbox",)
    assert target.is_excluded(("Trash",)) and target.is_excluded(("Lists", "debian"))
    assert not target.is_excluded(("Lists",))
    with pytest.raises(ExcludedFolderError) as excluded:
        target.ensure_folder(mailbox, ("Lists", "debian"), FolderRole.NONE)
    assert excluded.value.reason == "excluded"


# --- messages -------------------------------------------------------------------------------


def test_upload_then_find_and_count(target: Target, mailbox: str) -> None:
    folder = target.ensure_folder(mailbox, ("Upload",), FolderRole.NONE)
    items = [item(f"key-{n}", n, seen=n % 2 == 0) for n in range(5)]
    results = target.upload(mailbox, folder, items)
    assert [r.key for r in results] == [i.key for i in items]
    assert all(r.ok and r.target_id for r in results)
    assert len({r.target_id for r in results}) == 5
    assert target.count(mailbox, folder) == 5
    found = target.find(mailbox, folder, ["key-1", "key-3", "never-sent"])
    by_key = {r.key: r.target_id for r in results}
    assert found == {"key-1": by_key["key-1"], "key-3": by_key["key-3"]}
    assert target.find(mailbox, folder, []) == {}


def test_withdraw_deletes_exactly_the_given_items(target: Target, mailbox: str) -> None:
    # what a worker that lost its lease does with the copies it stored too late
    folder = target.ensure_folder(mailbox, ("Withdraw",), FolderRole.NONE)
    results = target.upload(mailbox, folder, [item(f"w{n}", n) for n in range(3)])
    assert all(r.ok and r.target_id for r in results), results
    assert isinstance(target, Withdraws)
    target.withdraw(mailbox, folder, [results[1].target_id or ""])
    assert target.count(mailbox, folder) == 2
    target.withdraw(mailbox, folder, [results[1].target_id or ""])  # gone: fine
    assert target.count(mailbox, folder) == 2


def test_items_by_key_lists_every_tagged_copy(target_harness: TargetHarness, mailbox: str) -> None:
    """What a first pass adopts and `dedupe` cleans: each key's items, copies included, from one
    listing. EWS always tags; IMAP only with tag_header (without it there is no key to list)."""
    target = target_harness.open(tag_header=True)
    folder = target.ensure_folder(mailbox, ("Keyed",), FolderRole.NONE)
    first = target.upload(mailbox, folder, [item("k1", 1), item("k2 ü/%", 2)])
    again = target.upload(mailbox, folder, [item("k1", 1)])  # the same message sent twice
    assert all(r.ok and r.target_id for r in first + again)
    assert isinstance(target, ListsByKey)
    listed = target.items_by_key(mailbox, folder)
    assert listed is not None and listed.total == 3
    assert sorted(listed.ids("k1")) == sorted([first[0].target_id or "", again[0].target_id or ""])
    assert listed.ids("k2 ü/%") == [first[1].target_id]
    assert listed.ids("absent") == []
    if target_harness.kind == "imap":
        untagged = target_harness.open(tag_header=False)
        assert isinstance(untagged, ListsByKey) and untagged.items_by_key(mailbox, folder) is None


def test_find_looks_only_in_the_given_folder(target: Target, mailbox: str) -> None:
    one = target.ensure_folder(mailbox, ("One",), FolderRole.NONE)
    two = target.ensure_folder(mailbox, ("Two",), FolderRole.NONE)
    target.upload(mailbox, one, [item("only-in-one", 1)])
    assert target.find(mailbox, two, ["only-in-one"]) == {}
    assert set(target.find(mailbox, one, ["only-in-one"])) == {"only-in-one"}


def test_find_handles_many_keys(target: Target, mailbox: str) -> None:
    folder = target.ensure_folder(mailbox, ("Many",), FolderRole.NONE)
    items = [item(f"many-{n:03d}", n, data=b"Subject: m\r\n\r\nx") for n in range(120)]
    assert all(r.ok for r in target.upload(mailbox, folder, items))
    asked = [i.key for i in items] + [f"absent-{n}" for n in range(30)]
    assert set(target.find(mailbox, folder, asked)) == {i.key for i in items}
    assert target.count(mailbox, folder) == 120


def test_the_target_declares_its_size_limit(target_harness: TargetHarness, mailbox: str) -> None:
    # the engine decides what is too large (engine/mailbox.py too_large, covered by
    # test_engine_run and test_engine_imap_target): the target declares the plan's limit
    target = target_harness.open(max_message_size=2000)
    assert target.max_message_size == 2000
    folder = target.ensure_folder(mailbox, ("Sizes",), FolderRole.NONE)
    assert target.upload(mailbox, folder, [item("small", 2)])[0].ok
    assert target.max_message_size == 2000  # neither server announces a lower one


def test_upload_of_nothing_is_nothing(target: Target, mailbox: str) -> None:
    folder: TargetFolder = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    assert target.upload(mailbox, folder, []) == []


def test_a_forgotten_mailbox_finds_its_folders_again(target: Target, mailbox: str) -> None:
    """A target that keeps something per mailbox (HoldsMailboxes) drops it when the run is done
    with the mailbox; asked about it again, it looks it up and finds what it made, never a
    second folder (issue 19)."""
    from migrator.adapters.targets.base import HoldsMailboxes

    if not isinstance(target, HoldsMailboxes):
        pytest.skip("this target keeps nothing per mailbox")
    target.preflight(mailbox)
    folder = target.ensure_folder(mailbox, ("Projects", "2024"), FolderRole.NONE)
    [stored] = target.upload(mailbox, folder, [item("forget-1", 1)])
    assert stored.ok
    target.forget_mailbox(mailbox.upper())  # addresses are case-insensitive
    target.preflight(mailbox)
    again = target.ensure_folder(mailbox, ("Projects", "2024"), FolderRole.NONE)
    assert again.id == folder.id
    assert target.find(mailbox, again, ["forget-1"]) == {"forget-1": stored.target_id}
    assert target.count(mailbox, again) == 1
