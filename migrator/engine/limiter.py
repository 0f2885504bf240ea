"""An adaptive ceiling on concurrent requests to the target.

Additive increase, multiplicative decrease: each throttling answer halves the number of
requests allowed in flight; a run of successes lets one more in. The hard ceiling comes from
the plan (`target_concurrency`), below what the server tolerates (EWSMaxConcurrency is 27).
On PostgreSQL with several processes it is this process's share of the target's ceiling
shared by all hosts (migrator/store/fleet.py), and moves as workers come and go.

Every request to the target goes through a slot, every throttling answer and every wait before
a retry is reported here: a `LimiterWatch` (the metrics endpoint) sees them all in one place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class LimiterWatch(Protocol):
    """Whoever watches the requests to the target (report/metrics.py)."""

    def watching(self, limiter: AdaptiveLimiter) -> None:
        """Called once: the limiter whose ceiling, limit and requests in flight to show."""
        ...

    def request_done(self, seconds: float) -> None:
        """A request held a slot for `seconds` (answered, failed or throttled)."""
        ...

    def throttled(self) -> None: ...

    def backed_off(self, seconds: float) -> None:
        """A worker waits `seconds` before trying a request again."""
        ...


class AdaptiveLimiter:
    def __init__(
        self,
        ceiling: int,
        *,
        start: int | None = None,
        recover_after: int = 20,
        watch: LimiterWatch | None = None,
    ) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.watch = watch
        self.ceiling = ceiling
        self.limit = min(ceiling, start or ceiling)
        self.recover_after = recover_after  # successes needed to allow one more request
        self.in_flight = 0
        self.throttle_count = 0
        self._successes = 0
        self._cond = threading.Condition()
        if watch is not None:
            watch.watching(self)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
        sent = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify()
            if self.watch is not None:
                self.watch.request_done(time.monotonic() - sent)

    def set_ceiling(self, ceiling: int) -> None:
        """A new hard ceiling (this process's share changed). Lowering it takes effect for the
        next request (those in flight finish); raising it lets the limit grow back one request
        per run of successes, as after throttling, rather than jumping."""
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        with self._cond:
            self.ceiling = ceiling
            if self.limit > ceiling:
                self.limit = ceiling
            self._cond.notify_all()

    def throttled(self) -> None:
        with self._cond:
            self.throttle_count += 1
            self._successes = 0
            self.limit = max(1, self.limit // 2)
        if self.watch is not None:
            self.watch.throttled()

    def backing_off(self, seconds: float) -> None:
        """A worker is about to wait `seconds` before trying a request again (throttled, or
        the target failed); only counted, the wait is the caller's."""
        if self.watch is not None:
            self.watch.backed_off(seconds)

    def succeeded(self) -> None:
        with self._cond:
            self._successes += 1
            if self._successes >= self.recover_after and self.limit < self.ceiling:
                self._successes = 0
                self.limit += 1
                self._cond.notify()
