"""What the simulator makes of MIME (simulator/ews/conversion.py), case by case: the class of
nested and attached calendars and of mixed delivery reports, the size of attachments, and MIME
written anew from hostile input without failing."""

from __future__ import annotations

import base64

from migrator.samples.mail import hard_case_messages
from migrator.simulator.ews.conversion import ITEM_OVERHEAD, convert, element_for, regenerate
from tests.fixtures.ews import mime_content

CALENDAR = (
    b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def test_an_invitation_nested_in_alternative_inside_mixed_is_a_meeting_request() -> None:
    raw = (
        b'Subject: x\r\nContent-Type: multipart/mixed; boundary="out"\r\n\r\n--out\r\n'
        b'Content-Type: multipart/alternative; boundary="in"\r\n\r\n--in\r\n'
        b"Content-Type: text/plain\r\n\r\nhola\r\n--in\r\nContent-Type: text/calendar\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(CALENDAR)
        + b"--in--\r\n--out--\r\n"
    )
    converted = convert(raw)
    assert converted.item_class == "IPM.Schedule.Meeting.Request"  # METHOD read from the body
    assert element_for(converted.item_class) == "MeetingRequest"


def test_a_calendar_attached_to_a_note_leaves_it_a_note() -> None:
    raw = (
        b'Subject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nthe invite is attached\r\n--b\r\n"
        b'Content-Type: text/calendar; method=REQUEST; name="invite.ics"\r\n'
        b'Content-Disposition: attachment; filename="invite.ics"\r\n\r\n' + CALENDAR + b"--b--\r\n"
    )
    converted = convert(raw)
    assert (converted.item_class, converted.has_attachments) == ("IPM.Note", True)
    assert element_for(converted.item_class) == "Message"


def test_the_most_severe_action_of_a_delivery_report_decides() -> None:
    raw = (
        b'Subject: x\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nsome delivered, one failed\r\n--r\r\n"
        b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        b"Final-Recipient: rfc822; a@x\r\nAction: delivered\r\n\r\n"
        b"Final-Recipient: rfc822; b@x\r\nAction: failed\r\n--r--\r\n"
    )
    assert convert(raw).item_class == "REPORT.IPM.Note.NDR"


def test_an_attachment_counts_its_bytes_not_its_base64() -> None:
    payload = bytes(range(256)) * 400  # 100 KB
    raw = (
        b'Subject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="d.bin"\r\n\r\n'
        + base64.encodebytes(payload)
        + b"--b--\r\n"
    )
    converted = convert(raw)
    assert converted.has_attachments
    assert len(payload) < converted.size - ITEM_OVERHEAD < len(payload) * 1.05 < len(raw)


def test_mime_is_written_anew_from_every_hard_case() -> None:
    for sample in hard_case_messages():
        again = regenerate(sample.raw)
        assert again.isascii(), sample.name
        assert b"\n" not in again.replace(b"\r\n", b""), sample.name  # CRLF only
        if "not-mail" not in sample.traits and "no-header-break" not in sample.traits:
            assert (
                mime_content(again)[1] == mime_content(sample.raw)[1] or "nul" in sample.traits
            ), sample.name
        assert convert(sample.raw).item_class == "IPM.Note", sample.name
