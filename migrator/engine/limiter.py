"""An adaptive ceiling on concurrent requests to the target.

Additive increase, multiplicative decrease: each throttling answer halves the number of
requests allowed in flight; a run of successes lets one more in. The hard ceiling comes from
the plan (`target_concurrency`), below what the server tolerates (EWSMaxConcurrency is 27).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class AdaptiveLimiter:
    def __init__(self, ceiling: int, *, start: int | None = None, recover_after: int = 20) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.ceiling = ceiling
        self.limit = min(ceiling, start or ceiling)
        self.recover_after = recover_after  # successes needed to allow one more request
        self.in_flight = 0
        self.throttle_count = 0
        self._successes = 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify()

    def throttled(self) -> None:
        with self._cond:
            self.throttle_count += 1
            self._successes = 0
            self.limit = max(1, self.limit // 2)

    def succeeded(self) -> None:
        with self._cond:
            self._successes += 1
            if self._successes >= self.recover_after and self.limit < self.ceiling:
                self._successes = 0
                self.limit += 1
                self._cond.notify()
