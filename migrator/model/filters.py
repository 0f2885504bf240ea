"""What `migrator filters` made of an account's Sieve script: `sieve_filters.outcome` and
`sieve_filters.auto_reply`.

The values are what the state database stores and what `filters --json`, `status` and `show`
print: never change one.
"""

from __future__ import annotations

import enum


class FilterOutcome(enum.StrEnum):
    APPLIED = "applied"  # the inbox rules and auto-reply are in the Exchange mailbox
    REPORTED = "reported"  # translated for a report an administrator applies (no EWS target)
    NONE = "none"  # the account has no Sieve script
    CHECKED = "checked"  # `--dry-run`: translated, nothing written
    BROKEN = "broken"  # the script does not parse; what was applied before stays
    FAILED = "failed"  # reading the script or writing to Exchange failed


# an outcome that makes `migrator filters` exit 1 and that the summary always lists
FILTER_PROBLEMS = (FilterOutcome.FAILED, FilterOutcome.BROKEN)


class AutoReplyState(enum.StrEnum):
    """The auto-reply (vacation) migrator set; NULL: it did not touch the mailbox's."""

    ON = "on"
    SCHEDULED = "scheduled"  # on between a start and an end date
    EXPIRED = "expired"  # the script's reply is past its end: none set
    OFF = "off"  # the reply migrator set earlier was switched off (the script dropped it)


# an auto-reply migrator set and may switch off again
LIVE_REPLY = (AutoReplyState.ON, AutoReplyState.SCHEDULED)
