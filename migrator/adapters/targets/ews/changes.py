"""UpdateItem requests that carry a flag change made in the source, and nothing more.

Each change is written as the properties that differ between the flags the item was last given
and the source's flags now: IsRead, the follow-up flag (PR_FLAG_STATUS), the reply/forward verb
Outlook shows (PR_LAST_VERB_EXECUTED) and the categories added or removed. A property the source
did not change is never sent, so what the user did in Exchange meanwhile stays as it is.

- IsRead, the flag and the verb are set without a ChangeKey and with AlwaysOverwrite: the
  request names the only properties it changes, so there is nothing to conflict with (and
  AutoResolve would need a ChangeKey: ErrorChangeKeyRequired). SuppressReadReceipts keeps
  Exchange from sending the read receipt a sender asked for when a message becomes read.
- Categories are one list: adding "Work" means reading the list and writing it back with "Work".
  The list is read with its ChangeKey (GetItem) and written back with NeverOverwrite, so a user
  who changed the item in between makes Exchange answer ErrorIrresolvableConflict instead of
  losing their change; the item is then read again and the change merged anew.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exchangelib.errors import (
    ErrorChangeKeyRequired,
    ErrorIncorrectUpdatePropertyCount,
    ErrorInvalidPropertyDelete,
    ErrorInvalidPropertySet,
    ErrorIrresolvableConflict,
)
from exchangelib.services import UpdateItem
from exchangelib.util import TNS, create_element, safe_xml_value
from exchangelib.version import EXCHANGE_2013_SP1
from lxml import etree

from migrator.model.mail import Flags

from .properties import (
    FLAG_STATUS_FLAGGED,
    LAST_VERB_FORWARD,
    LAST_VERB_REPLY_TO_SENDER,
    FlagStatus,
    LastVerbExecuted,
)

_T = f"{{{TNS}}}"
_NSMAP = {"t": TNS}


def verb_of(flags: Flags) -> int | None:
    """What Outlook shows as the last thing done with a message: replied wins over forwarded
    (a source keeps no order between the two)."""
    if flags.answered:
        return LAST_VERB_REPLY_TO_SENDER
    if flags.forwarded:
        return LAST_VERB_FORWARD
    return None


def _uri(cls: type) -> dict[str, str]:
    return {"PropertyTag": hex(cls.property_tag), "PropertyType": cls.property_type}  # type: ignore[attr-defined]


def _set_extended(cls: type, value: int) -> etree._Element:
    field = etree.Element(_T + "SetItemField", nsmap=_NSMAP)
    etree.SubElement(field, _T + "ExtendedFieldURI", _uri(cls))
    message = etree.SubElement(field, _T + "Message")
    prop = etree.SubElement(message, _T + "ExtendedProperty")
    etree.SubElement(prop, _T + "ExtendedFieldURI", _uri(cls))
    etree.SubElement(prop, _T + "Value").text = str(value)
    return field


def _delete_extended(cls: type) -> etree._Element:
    field = etree.Element(_T + "DeleteItemField", nsmap=_NSMAP)
    etree.SubElement(field, _T + "ExtendedFieldURI", _uri(cls))
    return field


def flag_updates(before: Flags, after: Flags) -> list[etree._Element]:
    """SetItemField/DeleteItemField elements for what changed between `before` and `after`
    among the read state, the follow-up flag and the verb (categories: see categories_update)."""
    updates: list[etree._Element] = []
    if before.seen != after.seen:
        field = etree.Element(_T + "SetItemField", nsmap=_NSMAP)
        etree.SubElement(field, _T + "FieldURI", {"FieldURI": "message:IsRead"})
        message = etree.SubElement(field, _T + "Message")
        etree.SubElement(message, _T + "IsRead").text = "true" if after.seen else "false"
        updates.append(field)
    if before.flagged != after.flagged:
        updates.append(
            _set_extended(FlagStatus, FLAG_STATUS_FLAGGED)
            if after.flagged
            else _delete_extended(FlagStatus)
        )
    was, now = verb_of(before), verb_of(after)
    if was != now:
        updates.append(
            _delete_extended(LastVerbExecuted)
            if now is None
            else _set_extended(LastVerbExecuted, now)
        )
    return updates


def categories_update(categories: Sequence[str]) -> etree._Element:
    if not categories:
        field = etree.Element(_T + "DeleteItemField", nsmap=_NSMAP)
        etree.SubElement(field, _T + "FieldURI", {"FieldURI": "item:Categories"})
        return field
    field = etree.Element(_T + "SetItemField", nsmap=_NSMAP)
    etree.SubElement(field, _T + "FieldURI", {"FieldURI": "item:Categories"})
    message = etree.SubElement(field, _T + "Message")
    container = etree.SubElement(message, _T + "Categories")
    for name in categories:
        etree.SubElement(container, _T + "String").text = safe_xml_value(name)
    return field


def merged_categories(
    current: Sequence[str], added: Sequence[str], removed: Sequence[str]
) -> list[str]:
    """The item's categories with the source's additions and removals (compared without regard
    to case, as Outlook does); the rest, and their order, as the user left them."""
    gone = {name.casefold() for name in removed}
    out = [name for name in current if name.casefold() not in gone]
    have = {name.casefold() for name in out}
    for name in added:
        if name.casefold() not in have:
            out.append(name)
            have.add(name.casefold())
    return out


def item_change(
    item_id: str, change_key: str | None, updates: Sequence[etree._Element]
) -> etree._Element:
    change = etree.Element(_T + "ItemChange", nsmap=_NSMAP)
    attributes = {"Id": item_id} if change_key is None else {"Id": item_id, "ChangeKey": change_key}
    etree.SubElement(change, _T + "ItemId", attributes)
    container = etree.SubElement(change, _T + "Updates")
    container.extend(updates)
    return change


class PreparedUpdateItem(UpdateItem):  # type: ignore[misc]
    """exchangelib's UpdateItem for changes that are already `t:ItemChange` elements. An
    answer about one item (a conflict, a property Exchange will not change) comes back in
    that item's place, as ErrorItemNotFound does, rather than failing the whole request."""

    ERRORS_TO_CATCH_IN_RESPONSE = (
        *UpdateItem.ERRORS_TO_CATCH_IN_RESPONSE,
        ErrorIrresolvableConflict,
        ErrorChangeKeyRequired,
        ErrorIncorrectUpdatePropertyCount,
        ErrorInvalidPropertySet,
        ErrorInvalidPropertyDelete,
    )

    def get_payload(
        self,
        items: Sequence[etree._Element],
        conflict_resolution: str,
        message_disposition: str,
        send_meeting_invitations_or_cancellations: str,
        suppress_read_receipts: bool,
    ) -> Any:
        attrs: dict[str, Any] = {
            "ConflictResolution": conflict_resolution,
            "MessageDisposition": message_disposition,
            "SendMeetingInvitationsOrCancellations": send_meeting_invitations_or_cancellations,
        }
        if self.account.version.build >= EXCHANGE_2013_SP1:  # as exchangelib's own UpdateItem
            attrs["SuppressReadReceipts"] = suppress_read_receipts
        payload = create_element(f"m:{self.SERVICE_NAME}", attrs=attrs)
        container = create_element("m:ItemChanges")
        container.extend(items)
        payload.append(container)
        return payload
