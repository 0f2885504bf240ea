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
  header block + each part's body (base64 as the bytes it carries) + a fixed overhead (the
  real overhead is not documented).
- The MIME that GetItem returns is written anew: CRLF line ends, 8-bit header text as RFC 2047
  encoded words, 8-bit bodies re-encoded (quoted-printable for text, base64 otherwise) so the
  result is 7-bit, the X-MS-Has-Attach / X-MS-TNEF-Correlator headers Exchange writes on MIME
  it generates (empty ones as "X-MS-Has-Attach:"), and MIME-Version as the last header (both
  as in the MIME of a GetItem answer of Exchange 2013, otris/ews-cpp's test assets). Exchange does
  more (it rebuilds From/To from the recipient table, may turn
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
from email.parser import BytesParser

# Properties every item carries whatever its content (ids, times, flags, the recipient table):
# a round figure, as Exchange documents none.
ITEM_OVERHEAD = 1024

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
_LINE_END = re.compile(rb"\r\n|\r|\n")
_EMPTY_HEADER = re.compile(rb"^(X-MS-Has-Attach|X-MS-TNEF-Correlator): \r\n", re.MULTILINE)
_ICAL_LINE = re.compile(
    rb"^(METHOD|ATTENDEE[^:\r\n]*?PARTSTAT=([A-Za-z-]+)[^:\r\n]*):?([^\r\n]*)",
    re.MULTILINE | re.IGNORECASE,
)


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


@dataclass(frozen=True)
class _Leaf:
    """A part that is not multipart: its headers and where its body lies in the message."""

    headers: Message
    start: int
    end: int

    def body(self, mime: bytes) -> bytes:
        """The decoded body (only taken of the small parts that classify a message)."""
        raw = mime[self.start : self.end]
        encoding = (self.headers.get("Content-Transfer-Encoding") or "").strip().lower()
        try:
            if encoding == "base64":
                return binascii.a2b_base64(raw)
            if encoding == "quoted-printable":
                return binascii.a2b_qp(raw)
        except (binascii.Error, ValueError):
            return raw
        return raw

    def text(self, mime: bytes) -> str:
        charset = self.headers.get_content_charset() or "utf-8"
        try:
            return self.body(mime).decode(charset, "replace")
        except LookupError:
            return self.body(mime).decode("utf-8", "replace")

    @property
    def is_attachment(self) -> bool:
        disposition = (self.headers.get("Content-Disposition") or "").lower()
        return disposition.startswith("attachment") or (
            self.headers.get_filename() is not None and not disposition.startswith("inline")
        )

    def decoded_size(self) -> int:
        encoding = (self.headers.get("Content-Transfer-Encoding") or "").strip().lower()
        return (self.end - self.start) * 3 // 4 if encoding == "base64" else self.end - self.start


MAX_DEPTH = 20  # nested multiparts followed; deeper ones count as one part


def convert(mime: bytes) -> Converted:
    """The class, size and attachment flag Exchange would give the item made from `mime`.

    Only header blocks are parsed; bodies are found by their boundaries and measured, and read
    only when they decide the class (a calendar part, a report's status part): a CreateItem of
    a hundred messages costs the simulator little more than reading them."""
    try:
        head = _header_block(mime)
        top = _mime_headers(mime[:head])
        leaves: list[_Leaf] = []
        _walk(mime, top, head, len(mime), leaves, 0)
        item_class = _item_class(mime, top, leaves)
    except (email.errors.MessageError, ValueError, LookupError, TypeError):  # pragma: no cover
        return Converted(NOTE, len(mime) + ITEM_OVERHEAD, False)
    size = head + sum(leaf.decoded_size() for leaf in leaves) + ITEM_OVERHEAD
    return Converted(item_class, size, any(leaf.is_attachment for leaf in leaves))


def _header_block(mime: bytes, start: int = 0, end: int | None = None) -> int:
    """Where the body of the entity starting at `start` begins (after its blank line)."""
    end = len(mime) if end is None else end
    if mime[start : start + 1] == b"\n":
        return start + 1
    if mime[start : start + 2] == b"\r\n":
        return start + 2
    found = _HEADER_END.search(mime, start, end)
    return found.end() if found else end


_MIME_FIELDS = (b"content-type", b"content-transfer-encoding", b"content-disposition")


def _mime_headers(block: bytes) -> Message:
    """The header fields that shape a MIME entity (the first of each, unfolded): the email
    package's parser reads every field and costs far more on a CreateItem of a hundred."""
    message = Message()
    name: str | None = None
    value = b""
    for line in block.splitlines():
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value += b" " + line.strip()
            continue
        if name is not None:
            message[name] = value.decode("latin-1")
            name = None
        key, colon, rest = line.partition(b":")
        key = key.strip().lower()
        if colon and key in _MIME_FIELDS and key.decode("ascii") not in message:
            name, value = key.decode("ascii"), rest.strip()
    if name is not None:
        message[name] = value.decode("latin-1")
    return message


def _walk(
    mime: bytes, headers: Message, start: int, end: int, leaves: list[_Leaf], depth: int
) -> None:
    """The leaf parts of the entity with `headers` whose body is mime[start:end]."""
    boundary = (
        headers.get_param("boundary") if headers.get_content_maintype() == "multipart" else None
    )
    if not isinstance(boundary, str) or not boundary or depth >= MAX_DEPTH:
        leaves.append(_Leaf(headers, start, end))
        return
    delimiter = b"--" + boundary.encode("ascii", "replace")
    at = mime.find(delimiter, start, end)
    while at != -1:
        after = at + len(delimiter)
        if mime[after : after + 2] == b"--":
            return  # the closing delimiter
        line_end = mime.find(b"\n", after, end)
        if line_end == -1:
            return
        part_start = line_end + 1
        following = mime.find(delimiter, part_start, end)
        part_end = end if following == -1 else following
        body_start = _header_block(mime, part_start, part_end)
        part = _mime_headers(mime[part_start:body_start])
        _walk(mime, part, body_start, part_end, leaves, depth + 1)
        at = following


def _item_class(mime: bytes, top: Message, leaves: list[_Leaf]) -> str:
    content = top.get_content_type()
    if content == "multipart/signed":
        return "IPM.Note.SMIME.MultipartSigned"
    if content in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return "IPM.Note.SMIME"
    if content == "multipart/report":
        report = top.get_param("report-type")
        report = report.lower() if isinstance(report, str) else ""
        if report == "delivery-status":
            return _delivery_status_class(mime, leaves)
        if report == "disposition-notification":
            return _disposition_class(mime, leaves)
        return NOTE
    for leaf in leaves:
        if leaf.headers.get_content_type() == "text/calendar" and not leaf.is_attachment:
            method = leaf.headers.get_param("method")
            return _meeting_class(method if isinstance(method, str) else None, leaf.body(mime))
    return NOTE


def _delivery_status_class(mime: bytes, leaves: list[_Leaf]) -> str:
    actions: set[str] = set()
    for leaf in leaves:
        if leaf.headers.get_content_type() == "message/delivery-status":
            actions.update(
                m.group(1).lower()
                for m in re.finditer(
                    r"^Action:\s*([A-Za-z]+)", leaf.text(mime), re.MULTILINE | re.IGNORECASE
                )
            )
    for action, item_class in _ACTION_CLASSES:
        if action in actions:
            return item_class
    return "REPORT.IPM.Note.DR"


def _disposition_class(mime: bytes, leaves: list[_Leaf]) -> str:
    for leaf in leaves:
        if leaf.headers.get_content_type() == "message/disposition-notification":
            found = re.search(
                r"^Disposition:[^;\n]*;\s*([A-Za-z-]+)",
                leaf.text(mime),
                re.MULTILINE | re.IGNORECASE,
            )
            if found and found.group(1).lower() == "displayed":
                return "REPORT.IPM.Note.IPNRN"
            return "REPORT.IPM.Note.IPNNRN"
    return "REPORT.IPM.Note.IPNNRN"


def _meeting_class(method: str | None, content: bytes) -> str:
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
        # an empty header is written "Name:" with nothing after the colon; a body the parser
        # kept as it came (a multipart without boundary) gets CRLF line ends too
        written = _LINE_END.sub(b"\r\n", out.getvalue())
        return _EMPTY_HEADER.sub(rb"\1:\r\n", written, count=4)
    except (email.errors.MessageError, ValueError, LookupError, TypeError, UnicodeError):
        # content the converter cannot take apart is handed back as it came, line ends aside
        return _LINE_END.sub(b"\r\n", mime)


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
