"""Limits Exchange enforces on every EWS caller, and the per-caller budgets that apply them.

Not faults: a real Exchange 2013/2016/2019 has these with its default throttling policy, so a
strict simulator (the default) has them too. Sources (each also in docs/targets.md):
- max_read_depth: WCF's XmlDictionaryReaderQuotas.MaxDepth (32) on Exchange's EWS endpoint;
  deeper requests fail with ErrorSchemaValidation "The maximum read depth (32) has been
  exceeded" (php-ews issue #440 quotes the answer).
- max_concurrency: EWSMaxConcurrency, 27 by default since Exchange 2013, per caller; past it,
  ErrorExceededConnectionCount ("EWS throttling in Exchange", Microsoft Learn).
- find_count_limit / restricted_find_count_limit: EWSFindCountLimit, items (or folders) of
  FindItem/FindFolder held in memory for one caller at a time: 1,000, and 250 for a search with
  a restriction (same page). A paged request past the budget gets a partial page
  (IncludesLastItemInRange false); one that finds the budget spent gets an error.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class ExchangeLimits:
    max_read_depth: int = 32
    max_concurrency: int = 27
    find_count_limit: int = 1000
    restricted_find_count_limit: int = 250

    def __post_init__(self) -> None:
        for name in (
            "max_read_depth",
            "max_concurrency",
            "find_count_limit",
            "restricted_find_count_limit",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ExchangeLimits.{name} must be at least 1")


class Budgets:
    """Per-caller counters: requests in flight, and find results held until answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._finds: Counter[str] = Counter()

    def enter(self, caller: str, limit: int) -> bool:
        """Count a request of `caller`; False (and not counted) when it would be one too many."""
        with self._lock:
            if self._in_flight[caller] >= limit:
                return False
            self._in_flight[caller] += 1
            return True

    def leave(self, caller: str) -> None:
        with self._lock:
            self._in_flight[caller] -= 1
            if self._in_flight[caller] <= 0:
                del self._in_flight[caller]

    def in_flight(self, caller: str) -> int:
        with self._lock:
            return self._in_flight[caller]

    def charge_find(self, caller: str, wanted: int, limit: int) -> int:
        """Reserve up to `wanted` find results for `caller` within `limit`; returns how many."""
        with self._lock:
            granted = max(0, min(wanted, limit - self._finds[caller]))
            self._finds[caller] += granted
            return granted

    def release_find(self, caller: str, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            self._finds[caller] -= count
            if self._finds[caller] <= 0:
                del self._finds[caller]


@dataclass(frozen=True)
class MailboxLimits:
    """Limits of one mailbox (Set-Mailbox): MaxReceiveSize refuses a larger item with
    ErrorMessageSizeExceeded; a mailbox whose size has reached ProhibitSendReceiveQuota refuses
    every new item with ErrorQuotaExceeded. None: unlimited."""

    max_receive_bytes: int | None = None
    prohibit_send_receive_bytes: int | None = None
