"""Messages whose MIME makes Exchange store something other than an ordinary note.

Exchange converts a MIME message into an item, and the item's class follows the content: a
text/calendar body with METHOD REQUEST, CANCEL or REPLY becomes a meeting request, cancellation
or response; a multipart/report becomes a delivery or read report; S/MIME becomes an
IPM.Note.SMIME item ([MS-OXCMAIL] 2.1.3.2.1 and 2.2.3.7, [MS-OXCICAL] 2.1.3.1.1.1,
[MS-OXOSMIME] 2.1). A target must still find each of them by its source key after a crash.

`kind_messages()` gives one message of each kind, as mail clients and servers write them (the
structure of Thunderbird's and Outlook's invitations, Postfix's bounces, Thunderbird's read
receipts, an S/MIME signature), with the item class Exchange gives it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from migrator.model.mail import Flags

from .mail import SampleMessage, date_header

_BASE = datetime(2024, 5, 6, 15, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class KindSample:
    message: SampleMessage
    item_class: str  # what Exchange makes of it (PidTagMessageClass)
    element: str  # the EWS element it is answered as


def _head(subject: str, msgid: str, when: datetime, extra: str = "") -> str:
    return (
        "From: Ana Villasenor <ana@ife.org.mx>\n"
        + "To: Efrain Gomez <efrain@ife.org.mx>\n"
        + f"Subject: {subject}\n"
        + f"Date: {date_header(when, -360).decode()}\n"
        + f"Message-ID: <{msgid}@ife.org.mx>\n"
        + "MIME-Version: 1.0\n"
        + extra
    )


def _vcalendar(
    method: str, uid: str, when: datetime, partstat: str | None = None, status: str | None = None
) -> str:
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    start = (when + timedelta(days=2)).strftime("%Y%m%dT%H%M%SZ")
    end = (when + timedelta(days=2, hours=1)).strftime("%Y%m%dT%H%M%SZ")
    attendee = f"ATTENDEE;PARTSTAT={partstat}" if partstat else "ATTENDEE;RSVP=TRUE"
    lines = [
        "BEGIN:VCALENDAR",
        "PRODID:-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN",
        "VERSION:2.0",
        f"METHOD:{method}",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{stamp}",
        f"DTSTART:{start}",
        f"DTEND:{end}",
        "SUMMARY:Revisión del padrón",
        "ORGANIZER;CN=Ana Villasenor:mailto:ana@ife.org.mx",
        f"{attendee};CN=Efrain Gomez:mailto:efrain@ife.org.mx",
    ]
    if status:
        lines.append(f"STATUS:{status}")
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def _invitation(
    name: str,
    subject: str,
    method: str,
    offset: int,
    *,
    partstat: str | None = None,
    status: str | None = None,
    method_param: bool = True,
) -> SampleMessage:
    when = _BASE + timedelta(hours=offset)
    calendar = _vcalendar(method, f"{name}-4f1c@ife.org.mx", when, partstat, status)
    param = f"; method={method}" if method_param else ""
    raw = (
        _head(subject, name, when, 'Content-Type: multipart/alternative; boundary="alt-b"\n')
        + "\n--alt-b\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n"
        + f"{subject}\n"
        + f"\n--alt-b\nContent-Type: text/calendar; charset=UTF-8{param}\n"
        + "Content-Transfer-Encoding: 8bit\n\n"
        + calendar
        + "\n--alt-b--\n"
    )
    return SampleMessage(name, raw.encode("utf-8"), Flags(seen=True), when, frozenset({"kind"}))


def _report(name: str, subject: str, offset: int, report_type: str, fields: str) -> SampleMessage:
    when = _BASE + timedelta(hours=offset)
    content = (
        "message/delivery-status"
        if report_type == "delivery-status"
        else ("message/disposition-notification")
    )
    raw = (
        _head(
            subject,
            name,
            when,
            f'Content-Type: multipart/report; report-type={report_type}; boundary="rep-b"\n',
        )
        + "\n--rep-b\nContent-Type: text/plain; charset=us-ascii\n\n"
        + "This is an automatically generated report.\n"
        + f"\n--rep-b\nContent-Type: {content}\n\n"
        + fields
        + "\n--rep-b\nContent-Type: text/rfc822-headers\n\n"
        + "From: efrain@ife.org.mx\nTo: nobody@ife.org.mx\nSubject: Original\n"
        + "\n--rep-b--\n"
    )
    return SampleMessage(name, raw.encode("ascii"), Flags(seen=True), when, frozenset({"kind"}))


def _signed(offset: int) -> SampleMessage:
    when = _BASE + timedelta(hours=offset)
    signature = base64.encodebytes(bytes(range(256)) * 3).decode("ascii")
    raw = (
        _head(
            "Firmado",
            "smime-signed",
            when,
            'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
            'micalg=sha-256; boundary="sig-b"\n',
        )
        + "\nThis is a cryptographically signed message in MIME format.\n\n--sig-b\n"
        + "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n"
        + "Mensaje firmado con S/MIME.\n"
        + '\n--sig-b\nContent-Type: application/pkcs7-signature; name="smime.p7s"\n'
        + "Content-Transfer-Encoding: base64\n"
        + 'Content-Disposition: attachment; filename="smime.p7s"\n\n'
        + signature
        + "\n--sig-b--\n"
    )
    return SampleMessage(
        "smime-signed", raw.encode("ascii"), Flags(seen=True), when, frozenset({"kind"})
    )


def _opaque(offset: int) -> SampleMessage:
    when = _BASE + timedelta(hours=offset)
    envelope = base64.encodebytes(bytes(reversed(range(256))) * 4).decode("ascii")
    raw = (
        _head(
            "Cifrado",
            "smime-encrypted",
            when,
            'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\n'
            "Content-Transfer-Encoding: base64\n"
            'Content-Disposition: attachment; filename="smime.p7m"\n',
        )
        + "\n"
        + envelope
    )
    return SampleMessage("smime-encrypted", raw.encode("ascii"), Flags(), when, frozenset({"kind"}))


def kind_messages() -> list[KindSample]:
    """One message of each kind Exchange stores as other than IPM.Note, plus an ordinary one."""
    failed = (
        "Reporting-MTA: dns; mx1.ife.org.mx\n\nFinal-Recipient: rfc822; nobody@ife.org.mx\n"
        "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\n"
    )
    delivered = (
        "Reporting-MTA: dns; mx1.ife.org.mx\n\nFinal-Recipient: rfc822; efrain@ife.org.mx\n"
        "Action: delivered\nStatus: 2.0.0\n"
    )
    read = (
        "Reporting-UA: ife.org.mx; Thunderbird\nFinal-Recipient: rfc822;efrain@ife.org.mx\n"
        "Original-Message-ID: <original@ife.org.mx>\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\n"
    )
    deleted = (
        "Reporting-UA: ife.org.mx; Thunderbird\nFinal-Recipient: rfc822;efrain@ife.org.mx\n"
        "Disposition: manual-action/MDN-sent-manually; deleted\n"
    )
    plain = _head(
        "Nota ordinaria", "plain-note", _BASE, "Content-Type: text/plain; charset=us-ascii\n"
    )
    return [
        KindSample(
            SampleMessage(
                "plain-note",
                (plain + "\nNada especial.\n").encode("ascii"),
                Flags(),
                _BASE,
                frozenset({"kind"}),
            ),
            "IPM.Note",
            "Message",
        ),
        KindSample(
            _invitation("meeting-request", "Invitación: Revisión del padrón", "REQUEST", 1),
            "IPM.Schedule.Meeting.Request",
            "MeetingRequest",
        ),
        KindSample(
            _invitation(
                "meeting-request-no-param",
                "Invitación sin parámetro",
                "REQUEST",
                2,
                method_param=False,
            ),
            "IPM.Schedule.Meeting.Request",
            "MeetingRequest",
        ),
        KindSample(
            _invitation(
                "meeting-cancel", "Cancelada: Revisión del padrón", "CANCEL", 3, status="CANCELLED"
            ),
            "IPM.Schedule.Meeting.Canceled",
            "MeetingCancellation",
        ),
        KindSample(
            _invitation(
                "meeting-accept", "Aceptada: Revisión del padrón", "REPLY", 4, partstat="ACCEPTED"
            ),
            "IPM.Schedule.Meeting.Resp.Pos",
            "MeetingResponse",
        ),
        KindSample(
            _invitation(
                "meeting-decline", "Rechazada: Revisión del padrón", "REPLY", 5, partstat="DECLINED"
            ),
            "IPM.Schedule.Meeting.Resp.Neg",
            "MeetingResponse",
        ),
        KindSample(
            _invitation(
                "meeting-tentative",
                "Provisional: Revisión del padrón",
                "REPLY",
                6,
                partstat="TENTATIVE",
            ),
            "IPM.Schedule.Meeting.Resp.Tent",
            "MeetingResponse",
        ),
        KindSample(
            _report("ndr", "Undelivered Mail Returned to Sender", 7, "delivery-status", failed),
            "REPORT.IPM.Note.NDR",
            "Message",
        ),
        KindSample(
            _report(
                "delivery-report",
                "Delivery Status Notification (Success)",
                8,
                "delivery-status",
                delivered,
            ),
            "REPORT.IPM.Note.DR",
            "Message",
        ),
        KindSample(
            _report("read-receipt", "Read: Original", 9, "disposition-notification", read),
            "REPORT.IPM.Note.IPNRN",
            "Message",
        ),
        KindSample(
            _report("not-read", "Not read: Original", 10, "disposition-notification", deleted),
            "REPORT.IPM.Note.IPNNRN",
            "Message",
        ),
        KindSample(_signed(11), "IPM.Note.SMIME.MultipartSigned", "Message"),
        KindSample(_opaque(12), "IPM.Note.SMIME", "Message"),
    ]
