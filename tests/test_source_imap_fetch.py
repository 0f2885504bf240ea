"""The fast parser of listing FETCH responses, on responses shaped as servers send them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migrator.adapters.sources.imap_fetch import (
    UnexpectedResponse,
    parse_internaldate,
    parse_listing,
)


def test_literal_headers_flags_and_dates_as_dovecot_sends_them() -> None:
    data = [
        (
            b"1 (UID 7 FLAGS (\\Seen \\Answered $Forwarded Work) RFC822.SIZE 1234 "
            b'INTERNALDATE "01-Mar-2024 10:30:00 +0100" BODY[HEADER.FIELDS (MESSAGE-ID)] {26}',
            b"Message-ID: <a@b.c>\r\n\r\n\r\n",
        ),
        b")",
        (
            b'2 (UID 9 FLAGS () RFC822.SIZE 1 INTERNALDATE " 2-Jan-2023 00:00:05 -0330" '
            b"BODY[HEADER.FIELDS (MESSAGE-ID)] {2}",
            b"\r\n",
        ),
        b")",
    ]
    items = parse_listing(data)
    assert sorted(items) == [7, 9]
    first, second = items[7], items[9]
    assert first.size == 1234
    assert first.flags == (b"\\Seen", b"\\Answered", b"$Forwarded", b"Work")
    assert first.internal_date == datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    assert first.message_id_header == b"Message-ID: <a@b.c>\r\n\r\n\r\n"
    assert second.flags == () and second.size == 1
    assert second.internal_date == datetime(2023, 1, 2, 3, 30, 5, tzinfo=UTC)
    assert second.message_id_header == b"\r\n"


def test_items_in_another_order_quoted_or_nil_headers_and_unsolicited_fetches() -> None:
    data = [
        b'3 (BODY[HEADER.FIELDS ("MESSAGE-ID")] "Message-ID: <q\\"x@y>" UID 11 '
        b'RFC822.SIZE 50 INTERNALDATE "05-Jun-2020 12:00:00 +0000" FLAGS (\\Flagged))',
        b"4 (FLAGS (\\Seen))",  # another session changed flags: no UID, not part of the answer
        b"5 (UID 12 FLAGS (\\Draft) BODY[HEADER.FIELDS (MESSAGE-ID)] NIL RFC822.SIZE 9 "
        b'INTERNALDATE "05-Jun-2020 12:00:00 +0000")',
    ]
    items = parse_listing(data)
    assert sorted(items) == [11, 12]
    assert items[11].message_id_header == b'Message-ID: <q"x@y>'
    assert items[11].flags == (b"\\Flagged",)
    assert items[12].message_id_header == b""


@pytest.mark.parametrize(
    "data",
    [
        [b'1 (UID 3 FLAGS () INTERNALDATE "05-Jun-2020 12:00:00 +0000")'],  # items missing
        [object()],
    ],
)
def test_shapes_it_does_not_know_are_refused_not_guessed(data: list[object]) -> None:
    with pytest.raises(UnexpectedResponse):
        parse_listing(data)


def test_malformed_internaldate_is_none() -> None:
    assert parse_internaldate("yesterday") is None
    assert parse_internaldate("31-Feb-2024 10:00:00 +0000") is None
