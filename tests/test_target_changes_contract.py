"""The contract of targets that carry users' changes (adapters/targets/base.py CarriesChanges
and ShowsFlags), run against each target kind on a real server: only the difference of a flag
change is carried, a move gives a new id in the destination and leaves nothing behind, a move
whose answer was lost is found again, a deletion removes exactly the items named."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from migrator.adapters.targets import Target, TargetFolder
from migrator.adapters.targets.base import CarriesChanges, FlagChange, ShowsFlags
from migrator.model.mail import Flags, FolderRole, UploadItem
from tests.fixtures.targets import *  # noqa: F403
from tests.fixtures.targets import TargetHarness
from tests.test_target_contract import message


@pytest.fixture
def target(target_harness: TargetHarness) -> Iterator[Target]:
    yield target_harness.open()


def _upload(target: Target, mailbox: str, folder: TargetFolder, flags: list[Flags]) -> list[str]:
    items = [
        UploadItem(f"k{n}", message(n), f, datetime(2024, 3, 1, 9, n, tzinfo=UTC))
        for n, f in enumerate(flags)
    ]
    results = target.upload(mailbox, folder, items)
    assert all(r.ok and r.target_id for r in results), results
    return [r.target_id or "" for r in results]


def test_targets_declare_the_capabilities(target: Target) -> None:
    assert isinstance(target, CarriesChanges) and isinstance(target, ShowsFlags)


def test_a_flag_change_carries_only_the_difference(
    target: Target, target_harness: TargetHarness
) -> None:
    assert isinstance(target, CarriesChanges) and isinstance(target, ShowsFlags)
    mailbox = target_harness.new_mailbox()
    inbox = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    first, second = _upload(target, mailbox, inbox, [Flags(), Flags(seen=True, keywords=("Work",))])
    # the user flagged the first one in the target meanwhile: the source then reads it
    assert target.update_flags(
        mailbox, inbox, [FlagChange(first, Flags(), Flags(flagged=True))]
    ) == [None]
    answers = target.update_flags(
        mailbox,
        inbox,
        [
            FlagChange(first, Flags(), Flags(seen=True)),
            FlagChange(
                second,
                Flags(seen=True, keywords=("Work",)),
                Flags(answered=True, keywords=("Home",)),
            ),
        ],
    )
    assert answers == [None, None]
    shown = target.flags_of(mailbox, inbox, [first, second])
    assert shown[first] == target.shown(Flags(seen=True, flagged=True))  # the user's flag stayed
    assert shown[second] == target.shown(Flags(answered=True, keywords=("Home",)))


def test_a_move_gives_new_ids_and_leaves_nothing_behind(
    target: Target, target_harness: TargetHarness
) -> None:
    assert isinstance(target, CarriesChanges)
    mailbox = target_harness.new_mailbox()
    inbox = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    archive = target.ensure_folder(mailbox, ("Clientes",), FolderRole.NONE)
    ids = _upload(target, mailbox, inbox, [Flags(seen=True), Flags(), Flags()])
    target.prepare_move(mailbox, inbox, archive, ids[:2])
    moved = target.move(mailbox, inbox, archive, ids[:2])
    assert set(moved) == set(ids[:2]) and all(
        isinstance(v, str) and v not in ids for v in moved.values()
    )
    assert target.count(mailbox, inbox) == 1 and target.count(mailbox, archive) == 2
    # moving what is no longer there moves nothing and says so
    assert target.move(mailbox, inbox, archive, ids[:1]) == {ids[0]: None}
    assert target.count(mailbox, archive) == 2


def test_a_move_whose_answer_was_lost_is_found_in_its_destination(
    target: Target, target_harness: TargetHarness
) -> None:
    assert isinstance(target, CarriesChanges)
    mailbox = target_harness.new_mailbox()
    inbox = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    archive = target.ensure_folder(mailbox, ("Clientes",), FolderRole.NONE)
    # a twin of the moving message already sits in the destination: it is not the one
    [twin] = _upload(target, mailbox, archive, [Flags()])
    ids = _upload(target, mailbox, inbox, [Flags(), Flags()])
    facts = target.prepare_move(mailbox, inbox, archive, ids)
    moved = target.move(mailbox, inbox, archive, ids[:1])  # the answer "lost": only one moved
    found = target.locate_moved(
        mailbox, inbox, archive, {ids[0]: "k0", ids[1]: "k1"}, facts, taken={twin}
    )
    assert found == {ids[0]: moved[ids[0]], ids[1]: None}


def test_a_deletion_removes_exactly_the_items_named(
    target: Target, target_harness: TargetHarness
) -> None:
    assert isinstance(target, CarriesChanges)
    mailbox = target_harness.new_mailbox()
    inbox = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
    ids = _upload(target, mailbox, inbox, [Flags(), Flags(), Flags()])
    target.delete(mailbox, inbox, ids[1:2])
    target.delete(mailbox, inbox, ids[1:2])  # again: already gone is fine
    assert target.count(mailbox, inbox) == 2
    assert set(target.flags_of(mailbox, inbox, ids)) == {ids[0], ids[2]}
