"""The EWS simulator carries out UpdateItem, MoveItem and DeleteItem as Exchange documents them:
ChangeKeys and the three ConflictResolution modes (ErrorIrresolvableConflict,
ErrorChangeKeyRequired), one property per change, new ids for moved items, and DeleteItem's
three modes (SoftDelete into Recoverable Items). Every request and answer is checked against
Microsoft's schema (the simulator is started validating: stop() fails on an invalid answer)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from exchangelib import Account, Message
from exchangelib.errors import (
    ErrorChangeKeyRequired,
    ErrorIncorrectUpdatePropertyCount,
    ErrorIrresolvableConflict,
    ErrorItemNotFound,
)
from exchangelib.folders import Folder
from exchangelib.items import (
    ALWAYS_OVERWRITE,
    AUTO_RESOLVE,
    NEVER_OVERWRITE,
    SAVE_ONLY,
    SEND_TO_NONE,
)
from exchangelib.util import TNS
from lxml import etree

from migrator.adapters.targets.ews.changes import PreparedUpdateItem, item_change
from migrator.adapters.targets.ews.properties import register_properties
from migrator.simulator.ews import EwsSimulator
from tests.fixtures.ews import SIM_MAILBOX, forget_protocols, make_account, start_simulator

_T = f"{{{TNS}}}"
MIME = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hola\r\n\r\ncuerpo\r\n"


@pytest.fixture
def sim(tmp_path: object) -> Iterator[EwsSimulator]:
    simulator = start_simulator(tmp_path / "ews")  # type: ignore[operator]
    simulator.add_mailbox(SIM_MAILBOX)
    try:
        yield simulator
    finally:
        simulator.stop()  # raises if an answer did not match the schema
        forget_protocols(simulator.url)


def _message(account: Account) -> Message:
    register_properties()
    item = Message(
        account=account,
        folder=account.inbox,
        mime_content=MIME,
        migrator_message_flags=0,
        migrator_source_key="k1",
    )
    item.save()
    return item


def _is_read(read: bool) -> etree._Element:
    field = etree.Element(_T + "SetItemField")
    etree.SubElement(field, _T + "FieldURI", {"FieldURI": "message:IsRead"})
    etree.SubElement(etree.SubElement(field, _T + "Message"), _T + "IsRead").text = (
        "true" if read else "false"
    )
    return field


def _update(account: Account, change: etree._Element, mode: str) -> object:
    service = PreparedUpdateItem(account=account, chunk_size=1)
    [answer] = list(
        service.call(
            items=[change],
            conflict_resolution=mode,
            message_disposition=SAVE_ONLY,
            send_meeting_invitations_or_cancellations=SEND_TO_NONE,
            suppress_read_receipts=True,
        )
    )
    return answer


def test_a_change_key_names_a_version_and_never_overwrite_refuses_a_stale_one(
    sim: EwsSimulator,
) -> None:
    account = make_account(sim)
    item = _message(account)
    stale = item.changekey
    item.is_read = True
    item.save(update_fields=["is_read"])  # exchangelib's own UpdateItem (AutoResolve, with the key)
    assert item.changekey != stale
    item.is_read = False
    item.changekey = stale
    with pytest.raises(ErrorIrresolvableConflict):  # exchangelib raises what the server says
        item.save(update_fields=["is_read"], conflict_resolution=NEVER_OVERWRITE)
    item.is_read = True
    [stored] = sim.items(SIM_MAILBOX)
    assert stored.is_read and stored.message_flags & 0x1  # PR_MESSAGE_FLAGS' read bit follows
    refused = _update(account, item_change(item.id, stale, [_is_read(False)]), NEVER_OVERWRITE)
    assert isinstance(refused, ErrorIrresolvableConflict)
    assert sim.items(SIM_MAILBOX)[0].is_read  # nothing applied
    # AutoResolve and AlwaysOverwrite take the change even from a stale version
    assert not isinstance(
        _update(account, item_change(item.id, stale, [_is_read(False)]), AUTO_RESOLVE), Exception
    )
    assert not sim.items(SIM_MAILBOX)[0].is_read


def test_without_a_change_key_auto_resolve_is_refused_and_always_overwrite_applies(
    sim: EwsSimulator,
) -> None:
    account = make_account(sim)
    item = _message(account)
    refused = _update(account, item_change(item.id, None, [_is_read(True)]), AUTO_RESOLVE)
    assert isinstance(refused, ErrorChangeKeyRequired)
    done = _update(account, item_change(item.id, None, [_is_read(True)]), ALWAYS_OVERWRITE)
    assert isinstance(done, tuple) and done[1] != item.changekey  # the answer names the new version
    assert sim.items(SIM_MAILBOX)[0].is_read


def test_one_property_per_change(sim: EwsSimulator) -> None:
    account = make_account(sim)
    item = _message(account)
    field = _is_read(True)
    categories = etree.Element(_T + "Categories")  # before IsRead, in the schema's order
    etree.SubElement(categories, _T + "String").text = "Work"
    field[1].insert(0, categories)
    refused = _update(account, item_change(item.id, None, [field]), ALWAYS_OVERWRITE)
    assert isinstance(refused, ErrorIncorrectUpdatePropertyCount)


def test_a_moved_item_gets_a_new_id_and_keeps_what_it_carries(sim: EwsSimulator) -> None:
    account = make_account(sim)
    item = _message(account)
    folder = Folder(parent=account.msg_folder_root, name="Archivo", folder_class="IPF.Note")
    folder.save()
    [(new_id, _)] = list(account.bulk_move(ids=[(item.id, item.changekey)], to_folder=folder))
    assert new_id != item.id
    [gone] = list(account.fetch(ids=[(item.id, None)]))
    assert isinstance(gone, ErrorItemNotFound)
    [moved] = sim.items(SIM_MAILBOX)
    assert moved.id == new_id and moved.mime == MIME
    assert moved.extended["name:8f0c5b1e-3d2a-4f6b-9a7e-6d4c2b1a0e93:MigratorSourceKey"] == "k1"


@pytest.mark.parametrize("mode", ["HardDelete", "SoftDelete", "MoveToDeletedItems"])
def test_delete_item_modes(sim: EwsSimulator, mode: str) -> None:
    account = make_account(sim)
    item = _message(account)
    [answer] = list(account.bulk_delete(ids=[(item.id, None)], delete_type=mode))
    assert answer is True
    visible = {f.id: f.path for f in sim.folders(SIM_MAILBOX)}
    left = [visible[i.folder_id] for i in sim.items(SIM_MAILBOX)]
    assert left == ([("Deleted Items",)] if mode == "MoveToDeletedItems" else [])
    dumpster = account.recoverable_items_deletions if mode == "SoftDelete" else None
    if dumpster is not None:
        # where an administrator restores it from (Exchange's Recoverable Items\Deletions)
        [kept] = list(dumpster.all().only("subject"))
        assert kept.subject == "hola" and kept.id != item.id
    [again] = list(account.bulk_delete(ids=[(item.id, None)], delete_type=mode))
    assert isinstance(again, ErrorItemNotFound)
