"""Retries of transient failures: the only home of tenacity.

Only `TransientError` is retried. Attempts and a total deadline bound every retry loop; the
wait is a jittered exponential backoff that is never shorter than the server's own hint
(`TransientError.retry_after`, from ErrorServerBusy's BackOffMilliseconds or Retry-After).
When honouring a hint would overrun the deadline, the loop gives up at once instead.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type

from migrator.model.errors import TransientError

T = TypeVar("T")


def _sleep_until_stopped(stop: threading.Event | None) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.wait(seconds):
            raise TransientError("stopped while waiting to retry")

    return sleep


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 10
    deadline: float = 600.0  # seconds for all attempts of one call together
    base: float = 0.5  # first backoff, doubled each attempt
    cap: float = 60.0  # longest backoff without a server hint
    jitter: float = 0.5  # fraction of random extra wait, so workers do not retry in lockstep
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def backoff(self, attempt: int, hint: float | None) -> float:
        """The wait before attempt `attempt + 1`; never below the server's hint.

        With a hint (BackOffMilliseconds, Retry-After) the server has said how long it needs:
        wait that, plus up to 20 % so that workers do not come back in lockstep. Without
        one, back off exponentially.
        """
        if hint is not None:
            return hint * (1.0 + self.rng.random() * 0.2)
        wait = min(self.cap, self.base * (2 ** (attempt - 1)))
        return wait * (1.0 + self.rng.random() * self.jitter)


@dataclass
class RetryStats:
    retries: int = 0
    waited: float = 0.0
    last_hint: float | None = None


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    stop: threading.Event | None = None,
    on_retry: Callable[[TransientError, float, int], None] | None = None,
    stats: RetryStats | None = None,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Call `fn`, retrying TransientError per `policy`; the last error is re-raised."""
    started = time.monotonic()
    # Nearly every call succeeds at once: setting tenacity up costs more client CPU than a
    # small request's own work (issue 19), so it is set up only after a first failure, which
    # it is handed as its own first attempt (same attempt count, deadline and waits).
    try:
        return fn()
    except TransientError as exc:
        first: TransientError | None = exc

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = exc.retry_after if isinstance(exc, TransientError) else None
        return policy.backoff(state.attempt_number, hint)

    def should_stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        if stop is not None and stop.is_set():
            return True
        exc = state.outcome.exception() if state.outcome else None
        hint = exc.retry_after if isinstance(exc, TransientError) else None
        # give up now rather than wait less than the hint or beyond the deadline
        needed = policy.backoff(state.attempt_number, hint) if hint is None else hint
        return time.monotonic() - started + needed > policy.deadline

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        seconds = state.next_action.sleep if state.next_action else 0.0
        if stats is not None:
            stats.retries += 1
            stats.waited += seconds
            if isinstance(exc, TransientError):
                stats.last_hint = exc.retry_after
        if on_retry is not None and isinstance(exc, TransientError):
            on_retry(exc, seconds, state.attempt_number)

    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=should_stop,
        wait=wait,
        sleep=sleep or _sleep_until_stopped(stop),
        before_sleep=before_sleep,
        reraise=True,
    )

    def attempt() -> T:
        nonlocal first
        if first is not None:
            failed, first = first, None
            raise failed
        return fn()

    return retrying(attempt)
