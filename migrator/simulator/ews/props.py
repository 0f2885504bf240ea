"""Extended (MAPI) properties: how EWS names them, and their canonical stored form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from .soap import T_NS, EwsError, attr, esc

PR_MESSAGE_FLAGS = 0x0E07
PR_MESSAGE_DELIVERY_TIME = 0x0E06
PR_CLIENT_SUBMIT_TIME = 0x0039
MSGFLAG_READ = 0x1
MSGFLAG_UNSENT = 0x8

# Property sets EWS names by a word instead of a GUID (MS-OXPROPS).
DISTINGUISHED_SETS = {
    "Address": "00062004-0000-0000-c000-000000000046",
    "AirSync": "71035549-0739-4dcb-9163-00f0580dbbdf",
    "Appointment": "00062002-0000-0000-c000-000000000046",
    "CalendarAssistant": "11000e07-b51b-40d6-af21-caa85edab1d0",
    "Common": "00062008-0000-0000-c000-000000000046",
    "InternetHeaders": "00020386-0000-0000-c000-000000000046",
    "Log": "0006200a-0000-0000-c000-000000000046",
    "Mapi": "00020328-0000-0000-c000-000000000046",
    "Meeting": "6ed8da90-450b-101b-98da-00aa003f1305",
    "Messaging": "41f28f13-83f4-4114-a584-eedb5a6b0bff",
    "Note": "0006200e-0000-0000-c000-000000000046",
    "PostRss": "00062041-0000-0000-c000-000000000046",
    "PublicStrings": "00020329-0000-0000-c000-000000000046",
    "Remote": "00062014-0000-0000-c000-000000000046",
    "Report": "00062013-0000-0000-c000-000000000046",
    "Sharing": "00062040-0000-0000-c000-000000000046",
    "Task": "00062003-0000-0000-c000-000000000046",
    "UnifiedMessaging": "4442858e-a9e3-4e80-b900-317a210cc15b",
}
_INTEGER_TYPES = {"Integer", "Long", "Short"}
_URI_TAG = f"{{{T_NS}}}ExtendedFieldURI"


@dataclass(frozen=True)
class PropRef:
    """One ExtendedFieldURI: its storage key, type, and the attributes to echo back."""

    key: str
    type: str
    attrs: tuple[tuple[str, str], ...]
    tag: int | None = None

    def uri_xml(self) -> str:
        rendered = " ".join(f"{k}={attr(v)}" for k, v in self.attrs)
        return f"<t:ExtendedFieldURI {rendered}/>"

    @property
    def is_array(self) -> bool:
        return self.type.endswith("Array")

    @property
    def is_integer(self) -> bool:
        return self.type in _INTEGER_TYPES


def tag_key(tag: int) -> str:
    return f"tag:0x{tag:04X}"


def parse_ref(uri: etree._Element) -> PropRef:
    """PropRef from a t:ExtendedFieldURI element; raises ErrorSchemaValidation on nonsense."""
    ptype = uri.get("PropertyType")
    if not ptype:
        raise EwsError("ErrorSchemaValidation", "ExtendedFieldURI without PropertyType", fault=True)
    tag_text = uri.get("PropertyTag")
    if tag_text is not None:
        try:
            tag = int(tag_text, 16) if tag_text.lower().startswith("0x") else int(tag_text)
        except ValueError as e:
            raise EwsError(
                "ErrorSchemaValidation", f"Bad PropertyTag {tag_text!r}", fault=True
            ) from e
        # Exchange answers with the tag in lower-case hex without padding, e.g. 0xe07.
        attrs = (("PropertyTag", hex(tag)), ("PropertyType", ptype))
        return PropRef(key=tag_key(tag), type=ptype, attrs=attrs, tag=tag)
    set_name = uri.get("DistinguishedPropertySetId")
    set_id = uri.get("PropertySetId")
    if set_name is not None:
        guid = DISTINGUISHED_SETS.get(set_name)
        if guid is None:
            raise EwsError(
                "ErrorSchemaValidation", f"Unknown property set {set_name!r}", fault=True
            )
        set_attr = ("DistinguishedPropertySetId", set_name)
    elif set_id is not None:
        guid = set_id.strip("{}").lower()
        set_attr = ("PropertySetId", guid)
    else:
        raise EwsError("ErrorSchemaValidation", "ExtendedFieldURI names no property", fault=True)
    name = uri.get("PropertyName")
    if name is not None:
        return PropRef(
            key=f"name:{guid}:{name}",
            type=ptype,
            attrs=(set_attr, ("PropertyName", name), ("PropertyType", ptype)),
        )
    prop_id = uri.get("PropertyId")
    if prop_id is None:
        raise EwsError("ErrorSchemaValidation", "ExtendedFieldURI names no property", fault=True)
    number = int(prop_id, 16) if prop_id.lower().startswith("0x") else int(prop_id)
    return PropRef(
        key=f"id:{guid}:0x{number:04X}",
        type=ptype,
        attrs=(set_attr, ("PropertyId", str(number)), ("PropertyType", ptype)),
    )


def canonical_time(text: str) -> str:
    """ISO 8601 UTC with second precision, as Exchange returns SystemTime values."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_scalar(ref: PropRef, text: str) -> str:
    try:
        if ref.is_integer or ref.type.startswith(("Integer", "Long", "Short")):
            return str(int(text.strip()))
        if ref.type.startswith("SystemTime"):
            return canonical_time(text)
        if ref.type.startswith("Boolean"):
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return "true" if lowered in ("true", "1") else "false"
    except ValueError as e:
        raise EwsError(
            "ErrorInvalidExtendedPropertyValue",
            f"Value {text!r} is not valid for a property of type {ref.type}",
        ) from e
    return text


def parse_value(ref: PropRef, prop: etree._Element) -> str:
    """Canonical text of a t:ExtendedProperty's t:Value (or JSON list of t:Values)."""
    if ref.is_array:
        values = prop.find(f"{{{T_NS}}}Values")
        texts = [] if values is None else [v.text or "" for v in values]
        return json.dumps([canonical_scalar(ref, t) for t in texts])
    value = prop.find(f"{{{T_NS}}}Value")
    return canonical_scalar(ref, "" if value is None or value.text is None else value.text)


def value_xml(ref: PropRef, value: str) -> str:
    if ref.is_array:
        inner = "".join(f"<t:Value>{esc(v)}</t:Value>" for v in json.loads(value))
        body = f"<t:Values>{inner}</t:Values>"
    else:
        body = f"<t:Value>{esc(value)}</t:Value>"
    return f"<t:ExtendedProperty>{ref.uri_xml()}{body}</t:ExtendedProperty>"


def find_uri(elem: etree._Element) -> etree._Element | None:
    return elem.find(_URI_TAG)
