"""A message's dates, read leniently from raw bytes: PR_CLIENT_SUBMIT_TIME /
PR_MESSAGE_DELIVERY_TIME
on EWS, and the APPEND date on IMAP when the source knows no internal date."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# FILETIME starts in 1601; Exchange rejects SystemTime values outside what it can store.
_EARLIEST = datetime(1601, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_DATE_LINE = re.compile(rb"^date[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
HEADER_SCAN_LIMIT = 256 * 1024  # a header block larger than this is not a header block


def aware(when: datetime | None) -> datetime | None:
    """`when` with a time zone (naive means UTC), or None when Exchange could not store it."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if not _EARLIEST <= when <= _LATEST:
        return None
    return when


def header_date(raw: bytes) -> datetime | None:
    """The first Date: header of the message's top header block, or None if absent/unparsable.

    Bytes are read as Latin-1 so 8-bit garbage in other headers cannot make this fail.
    """
    head = raw[:HEADER_SCAN_LIMIT]
    end = _HEADER_END.search(head)
    if end:
        head = head[: end.start() + 1]
    match = _DATE_LINE.search(head)
    if not match:
        return None
    text = re.sub(r"\s+", " ", match.group(1).decode("latin-1")).strip()
    # Drop comments like "(CEST)" and trailing junk some mailers add after the zone.
    text = re.sub(r"\([^)]*\)", "", text).strip()
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return aware(parsed)


def submit_and_delivery(
    raw: bytes, internal_date: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """(submit time, delivery time): the Date header and the source's internal date, each
    standing in for the other when missing. (None, None) leaves both to the server."""
    delivered = aware(internal_date)
    submitted = header_date(raw)
    return submitted or delivered, delivered or submitted
