"""What Exchange makes of the MIME a client creates an item from, and the MIME it hands back.

Exchange does not keep MIME: it converts a message into an item (properties, a body,
attachments) and builds new MIME when a client asks for it ("RFC 2822 and MIME to Email
Object Conversion Algorithm", [MS-OXCMAIL]). For a simulator that means:

- The item's class follows the content ([MS-OXCMAIL] 2.1.3.2.1, the table of message classes
  and the MIME structures they come from): `multipart/signed` is IPM.Note.SMIME.MultipartSigned
  and `application/pkcs7-mime` IPM.Note.SMIME ([MS-OXOSMIME] 2.1); a `multipart/report` of
  delivery status is a REPORT.IPM.Note.* of the most severe Action ([MS-OXCMAIL] 2.2.3.7.1: DR
  for delivered, NDR for failed, ...), one of disposition notifications REPORT.IPM.Note.IPNRN
  when it says "displayed" and IPNNRN otherwise ([MS-OXCMAIL] 2.2.3.7.2); a text/calendar body
  with METHOD REQUEST, CANCEL or REPLY is a meeting request, cancellation or response whose
  class for a reply follows the attendee's PARTSTAT ([MS-OXCICAL] 2.1.3.1.1.1; the classes
  IPM.Schedule.Meeting.Resp.Pos/Neg/Tent: Microsoft's "Item Types and Message Classes").
- EWS answers each class with its own element: MeetingRequest, MeetingCancellation and
  MeetingResponse for the meeting classes, Message for every other mail class ("MessageType
  objects represent e-mail messages and all other items that are not strongly typed by the
  EWS schema", ItemType class reference, EWS for Exchange 2010).
- `Size` is the item's size in the store (PR_MESSAGE_SIZE), not the length of the MIME: encoded
  attachments count decoded, and every item carries its properties. The simulator's figure:
  header block + decoded parts + a fixed overhead (the real overhead is not documented).
- The MIME that GetItem returns is written anew: CRLF line ends, 8-bit header text as RFC 2047
  encoded words, 8-bit bodies re-encoded (quoted-printable for text, base64 otherwise) so the
  result is 7-bit, the X-MS-Has-Attach / X-MS-TNEF-Correlator headers Exchange writes on MIME
  it generates (empty ones as "X-MS-Has-Attach:"), and MIME-Version as the last header (both
  as in the MIME of a GetItem answer of Exchange 2013, otris/ews-cpp's test assets). Exchange does more (it rebuilds From/To from the recipient table, may turn
  a text body into HTML); what a client can count on is the content, never the bytes.
"""

from __future__ import annotations

import binascii
import email.errors
import email.policy
import io
import re
from dataclasses import dataclass
from email import encoders
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser

# Properties every item carries whatever its content (ids, times, flags, the recipient table):
# a round figure, as Exchange documents none.
ITEM_OVERHEAD = 1024
# Messages up to this size are parsed in full to classify and measure them; a larger one is
# nearly always a big attachment, measured from its header block and base64 body.
FULL_PARSE_BYTES = 4 * 1024 * 1024

NOTE = "IPM.Note"
MEETING_REQUEST = "IPM.Schedule.Meeting.Request"
MEETING_CANCELED = "IPM.Schedule.Meeting.Canceled"
MEETING_RESPONSE = "IPM.Schedule.Meeting.Resp."
_RESPONSE_BY_PARTSTAT = {"ACCEPTED": "Pos", "DECLINED": "Neg", "TENTATIVE": "Tent"}
# [MS-OXCMAIL] 2.2.3.7.1.1: the most severe Action of a delivery status notification decides
_ACTION_CLASSES = (  # most severe first
    ("failed", "REPORT.IPM.Note.NDR"),
    ("delayed", "REPORT.IPM.Note.Delayed"),
    ("delivered", "REPORT.IPM.Note.DR"),
    ("relayed", "REPORT.IPM.Note.Relayed"),
    ("expanded", "REPORT.IPM.Note.Expanded"),
)

_ELEMENTS = {MEETING_REQUEST: "MeetingRequest", MEETING_CANCELED: "MeetingCancellation"}

_POLICY = email.policy.compat32
_OUT_POLICY = email.policy.compat32.clone(linesep="\r\n")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_EMPTY_HEADER = re.compile(rb"^(X-MS-Has-Attach|X-MS-TNEF-Correlator): \r\n", re.MULTILINE)
_ICAL_LINE = re.compile(rb"^(METHOD|ATTENDEE[^:\r\n]*?PARTSTAT=([A-Za-z-]+)[^:\r\n]*):?([^\r\n]*)",
                        re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class Converted:
    """What Exchange keeps of a MIME message that matters to EWS clients."""

    item_class: str
    size: int
    has_attachments: bool


def element_for(item_class: str) -> str:
    """The EWS element an item of this class is answered as (t:Message for every mail class
    the schema has no type of its own for)."""
    if item_class.startswith(MEETING_RESPONSE):
        return "MeetingResponse"
    return _ELEMENTS.get(item_class, "Message")


def convert(mime: bytes) -> Converted:
    """The class, size and attachment flag Exchange would give the item made from `mime`."""
    if len(mime) > FULL_PARSE_BYTES:
        return _convert_big(mime)
    try:
        message = BytesParser(policy=_POLICY).parsebytes(mime)
    except (email.errors.MessageError, ValueError, LookupError):  # pragma: no cover - lenient parser
        return Converted(NOTE, len(mime) + ITEM_OVERHEAD, False)
    return Converted(_item_class(message), _size(mime, message), _has_attachments(message))


def _header_block(mime: bytes) -> int:
    found = _HEADER_END.search(mime)
    return found.end() if found else len(mime)


def _convert_big(mime: bytes) -> Converted:
    head = _header_block(mime)
    message = BytesHeaderParser(policy=_POLICY).parsebytes(mime[:head])
    content = message.get_content_type()
    item_class = NOTE
    if content == "multipart/signed":
        item_class = "IPM.Note.SMIME.MultipartSigned"
    elif content in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        item_class = "IPM.Note.SMIME"
    body = len(mime) - head
    return Converted(item_class, head + body * 3 // 4 + ITEM_OVERHEAD, content.startswith("multipart/"))


def _item_class(message: Message) -> str:
    content = message.get_content_type()
    if content == "multipart/signed":
        return "IPM.Note.SMIME.MultipartSigned"
    if content in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return "IPM.Note.SMIME"
    if content == "multipart/report":
        report = (message.get_param("report-type") or "")
        report = report.lower() if isinstance(report, str) else ""
        if report == "delivery-status":
            return _delivery_status_class(message)
        if report == "disposition-notification":
            return _disposition_class(message)
        return NOTE
    calendar = _calendar_body(message)
    if calendar is not None:
        return _meeting_class(calendar)
    return NOTE


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        # message/* parts parse into sub-messages: their text is their headers
        inner = part.get_payload()
        if isinstance(inner, list):
            return "\n".join(str(p) for p in inner)
        return str(inner or "")
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _delivery_status_class(message: Message) -> str:
    actions: set[str] = set()
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            text = _part_text(part)
            actions.update(m.group(1).lower() for m in re.finditer(
                r"^Action:\s*([A-Za-z]+)", text, re.MULTILINE | re.IGNORECASE))
    for action, item_class in _ACTION_CLASSES:
        if action in actions:
            return item_class
    return "REPORT.IPM.Note.DR"


def _disposition_class(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "message/disposition-notification":
            found = re.search(r"^Disposition:[^;\n]*;\s*([A-Za-z-]+)", _part_text(part),
                              re.MULTILINE | re.IGNORECASE)
            if found and found.group(1).lower() == "displayed":
                return "REPORT.IPM.Note.IPNRN"
            return "REPORT.IPM.Note.IPNNRN"
    return "REPORT.IPM.Note.IPNNRN"


def _calendar_body(message: Message) -> tuple[str | None, bytes] | None:
    """The METHOD parameter and content of the text/calendar part that is the message's body
    (the message itself, or an alternative/related/mixed part that is not an attachment)."""
    for part in message.walk():
        if part.get_content_type() != "text/calendar":
            continue
        if (part.get("Content-Disposition") or "").lower().startswith("attachment"):
            continue
        method = part.get_param("method")
        payload = part.get_payload(decode=True)
        return (method if isinstance(method, str) else None,
                payload if isinstance(payload, bytes) else b"")
    return None


def _meeting_class(calendar: tuple[str | None, bytes]) -> str:
    method, content = calendar
    partstat = None
    for found in _ICAL_LINE.finditer(content):
        if found.group(2):
            partstat = partstat or found.group(2).decode("ascii", "replace").upper()
        elif method is None and found.group(1).upper() == b"METHOD":
            method = found.group(3).decode("ascii", "replace").strip()
    method = (method or "").upper()
    if method == "REQUEST":
        return MEETING_REQUEST
    if method == "CANCEL":
        return MEETING_CANCELED
    if method == "REPLY":
        return MEETING_RESPONSE + _RESPONSE_BY_PARTSTAT.get(partstat or "", "Tent")
    # PUBLISH and the rest: an ordinary message carrying a calendar
    return NOTE


def _has_attachments(message: Message) -> bool:
    for part in message.walk():
        if part.is_multipart():
            continue
        disposition = (part.get("Content-Disposition") or "").lower()
        if disposition.startswith("attachment") or (
            part.get_filename() is not None and not disposition.startswith("inline")
        ):
            return True
    return False


def _size(mime: bytes, message: Message) -> int:
    decoded = 0
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        decoded += len(payload) if isinstance(payload, bytes) else len(str(part.get_payload()))
    return _header_block(mime) + decoded + ITEM_OVERHEAD


# ---------------------------------------------------------------------------- MIME written anew


def regenerate(mime: bytes) -> bytes:
    """The MIME Exchange would hand back for an item made from `mime` (see the module doc)."""
    try:
        message = BytesParser(policy=_POLICY).parsebytes(mime)
        _seven_bit_headers(message)
        attachments = _has_attachments(message)
        for part in message.walk():
            if not part.is_multipart():
                _seven_bit_body(part)
            if part is not message:
                _seven_bit_headers(part)
        del message["X-MS-Has-Attach"]
        del message["X-MS-TNEF-Correlator"]
        version = message["MIME-Version"]
        del message["MIME-Version"]
        message["X-MS-Has-Attach"] = "yes" if attachments else ""
        message["X-MS-TNEF-Correlator"] = ""
        if version is not None or message.is_multipart() or message["Content-Type"] is not None:
            message["MIME-Version"] = str(version or "1.0")  # Exchange writes it last
        out = io.BytesIO()
        BytesGenerator(out, mangle_from_=False, policy=_OUT_POLICY).flatten(message)
        # an empty header is written "Name:" with nothing after the colon
        return _EMPTY_HEADER.sub(rb"\1:\r\n", out.getvalue(), count=4)
    except (email.errors.MessageError, ValueError, LookupError, TypeError, UnicodeError):
        # content the converter cannot take apart is handed back as it came, line ends aside
        return re.sub(rb"\r?\n", b"\r\n", mime)


def _seven_bit_headers(part: Message) -> None:
    for name, value in list(part.raw_items()):
        if not isinstance(value, str) or value.isascii():
            continue
        raw = value.encode("ascii", "surrogateescape")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", "replace")
        part.replace_header(name, Header(text, "utf-8").encode())


def _seven_bit_body(part: Message) -> None:
    encoding = (part.get("Content-Transfer-Encoding") or "").strip().lower()
    if encoding in ("base64", "quoted-printable"):
        return
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or payload.isascii():
        return
    del part["Content-Transfer-Encoding"]
    if part.get_content_maintype() == "text":
        part.set_payload(binascii.b2a_qp(payload, quotetabs=False, istext=True).decode("ascii"))
        part["Content-Transfer-Encoding"] = "quoted-printable"
    else:
        part.set_payload(payload)
        encoders.encode_base64(part)
