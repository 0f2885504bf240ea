"""CreateItem requests built straight from the upload items.

exchangelib turns a Message object into XML by walking every field the class knows, checking
each against the server version and converting it; for a message that carries only MIME
content, the read flag, categories and six extended properties that walk costs about 2 ms of
client CPU, more than everything else migrator does for a message. `message_element` builds
the same `t:Message` element directly (tests/test_target_ews_create.py checks it is
byte-identical to exchangelib's for every combination of flags), and `PreparedCreateItem`
sends such elements through exchangelib's own CreateItem service, so authentication,
retries on the wire, error parsing and answers stay exchangelib's.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from exchangelib import EWSDateTime
from exchangelib.services import CreateItem
from exchangelib.services.common import folder_ids_element
from exchangelib.util import TNS, create_element, safe_xml_value
from lxml import etree

from .properties import (
    PROPERTIES,
    DeliveryTime,
    FlagStatus,
    LastVerbExecuted,
    MessageFlags,
    SourceKey,
    SubmitTime,
)

_T = f"{{{TNS}}}"
_NSMAP = {"t": TNS}


def _uri_attributes(cls: type) -> dict[str, str]:
    """The ExtendedFieldURI attributes of a property class, as exchangelib writes them."""
    if getattr(cls, "property_tag", None) is not None:
        return {"PropertyTag": hex(cls.property_tag), "PropertyType": cls.property_type}  # type: ignore[attr-defined]
    return {
        "PropertySetId": cls.property_set_id,  # type: ignore[attr-defined]
        "PropertyName": cls.property_name,  # type: ignore[attr-defined]
        "PropertyType": cls.property_type,  # type: ignore[attr-defined]
    }


# exchangelib writes the registered extended properties in reverse order of registration;
# the same order here keeps the XML identical (Exchange itself does not care about it).
_ORDER = list(reversed(PROPERTIES.values()))
_URIS = {cls: _uri_attributes(cls) for cls in _ORDER}


def _system_time(when: datetime) -> str:
    # in UTC: a Date header's fixed offset ("-0600") is no time zone exchangelib can name
    return str(EWSDateTime.from_datetime(when.astimezone(UTC)).ewsformat())


def message_element(
    *,
    mime: bytes,
    is_read: bool,
    message_flags: int,
    source_key: str,
    submit_time: datetime | None = None,
    delivery_time: datetime | None = None,
    flag_status: int | None = None,
    last_verb: int | None = None,
    categories: Sequence[str] = (),
) -> etree._Element:
    """The `t:Message` of a CreateItem for one message created from MIME."""
    # text XML cannot carry (control characters in a hostile file name or keyword) becomes
    # "?", as exchangelib does, so searches built by exchangelib find what was written here
    values: dict[type, str] = {
        MessageFlags: str(message_flags),
        SourceKey: safe_xml_value(source_key),
    }
    if submit_time is not None:
        values[SubmitTime] = _system_time(submit_time)
    if delivery_time is not None:
        values[DeliveryTime] = _system_time(delivery_time)
    if flag_status is not None:
        values[FlagStatus] = str(flag_status)
    if last_verb is not None:
        values[LastVerbExecuted] = str(last_verb)
    message = etree.Element(_T + "Message", nsmap=_NSMAP)
    # lxml takes the ASCII bytes as they are: no str copy of a base64 text that is 4/3 of a
    # message which may be 40 MB
    etree.SubElement(message, _T + "MimeContent").text = base64.b64encode(mime)  # type: ignore[assignment]
    if categories:
        container = etree.SubElement(message, _T + "Categories")
        for name in categories:
            etree.SubElement(container, _T + "String").text = safe_xml_value(name)
    for cls in _ORDER:
        value = values.get(cls)
        if value is None:
            continue
        prop = etree.SubElement(message, _T + "ExtendedProperty")
        etree.SubElement(prop, _T + "ExtendedFieldURI", _URIS[cls])
        etree.SubElement(prop, _T + "Value").text = value
    etree.SubElement(message, _T + "IsRead").text = "1" if is_read else "0"
    return message


class PreparedCreateItem(CreateItem):  # type: ignore[misc]
    """exchangelib's CreateItem for items that are already `t:Message` elements."""

    def get_payload(
        self,
        items: Sequence[etree._Element],
        folder: Any,
        message_disposition: str,
        send_meeting_invitations: str,
    ) -> etree._Element:
        payload = create_element(
            f"m:{self.SERVICE_NAME}",
            attrs={
                "MessageDisposition": message_disposition,
                "SendMeetingInvitations": send_meeting_invitations,
            },
        )
        payload.append(
            folder_ids_element(
                folders=[folder], version=self.account.version, tag="m:SavedItemFolderId"
            )
        )
        container = create_element("m:Items")
        # appending moves each element into this payload; a request that is sent again after
        # an error gets its elements built anew by the target, so nothing is lost by moving
        container.extend(items)
        payload.append(container)
        return payload
