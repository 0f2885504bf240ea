"""Fault injection settings and the seeded decision maker that applies them per request."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from enum import StrEnum


@dataclass
class Faults:
    """What the simulator does wrong, and how often. All rates are probabilities per request."""

    server_busy_rate: float = 0.0
    backoff_ms: int = 1000
    http503_rate: float = 0.0
    retry_after_s: int | None = None
    reset_rate: float = 0.0
    delay_s: float = 0.0
    # past this many requests in flight (all callers), ErrorServerBusy with backoff_ms: a server
    # that is busy under load. Exchange's own per-caller EWSMaxConcurrency is always on in a
    # strict simulator (ExchangeLimits.max_concurrency, ErrorExceededConnectionCount).
    max_concurrency: int | None = None
    # IIS request filtering (maxAllowedContentLength): a larger request is refused with
    # HTTP 404.13 before EWS sees it
    max_request_bytes: int | None = None
    seed: int | None = None
    # Per-message limit (bytes of MIME), answered per item with ErrorMessageSizeExceeded,
    # like a mailbox's MaxReceiveSize. Not a fault as such, but settable at runtime too.
    max_message_bytes: int | None = None
    # The request is carried out but its answer never arrives (RST after the work is done):
    # what a client sees when a load balancer or a network drop cuts a slow answer off.
    lost_answer_rate: float = 0.0
    # HTTP 200 whose response messages are ErrorInternalServerError with the inner error
    # ErrorServerBusy and no back-off hint ("EWS throttling in Exchange", table 4); a CreateItem
    # meets it part-way, having stored the items before a random point
    internal_busy_rate: float = 0.0
    # a FindItem/FindFolder page comes back shorter than asked, before the end of the view
    # (IncludesLastItemInRange false), as under EWSFindCountLimit with concurrent searches
    short_page_rate: float = 0.0
    # Only requests of these EWS operations (e.g. {"CreateItem"}) draw faults; None: all.
    operations: frozenset[str] | None = None
    # At most this many faults in total (counted from set_faults), then none: a test can
    # make exactly the first CreateItem fail without racing a thread that clears the faults.
    max_faults: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "server_busy_rate",
            "http503_rate",
            "reset_rate",
            "lost_answer_rate",
            "internal_busy_rate",
            "short_page_rate",
        ):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name} must be between 0 and 1, got {rate!r}")
        if self.delay_s < 0:
            raise ValueError(f"Faults.delay_s must not be negative, got {self.delay_s!r}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(
                f"Faults.max_concurrency must be at least 1, got {self.max_concurrency!r}"
            )


class FaultKind(StrEnum):
    """Names under which injected faults are counted in SimStats.faults."""

    SERVER_BUSY = "server_busy"
    CONCURRENCY = "concurrency"
    HTTP503 = "http503"
    RESET = "reset"
    DELAY = "delay"
    REQUEST_TOO_LARGE = "request_too_large"
    MESSAGE_TOO_LARGE = "message_too_large"
    LOST_ANSWER = "lost_answer"
    INTERNAL_BUSY = "internal_busy"
    SHORT_PAGE = "short_page"


class FaultDice:
    """Seeded random draws shared by all request threads.

    One generator behind a lock: for a client that sends requests one at a time the sequence of
    injected faults is the same on every run with the same seed.
    """

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self._faults = faults
        self._rng = random.Random(faults.seed)
        self._injected = 0

    @property
    def faults(self) -> Faults:
        return self._faults

    def replace(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._injected = 0

    def applies_to(self, operation: str | None) -> bool:
        """Whether a request of this operation (None: not known yet) may draw faults."""
        only = self._faults.operations
        return only is None or (operation is not None and operation in only)

    def roll(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        with self._lock:
            limit = self._faults.max_faults
            if limit is not None and self._injected >= limit:
                return False
            hit = self._rng.random() < rate
            self._injected += hit
            return hit

    def uniform(self) -> float:
        """A draw in [0, 1) from the same seeded sequence (where a fault strikes)."""
        with self._lock:
            return self._rng.random()
