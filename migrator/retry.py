"""Retries of transient failures: the one retry primitive, and the only home of tenacity.

What is retried is what a predicate says (`retry_if`): by default `TransientError`, which the
adapters raise (the state store passes its own, for a PostgreSQL server that is down; the
runner StateUnavailable, for a state database that went away in the middle of its work).
Attempts and a total deadline bound every retry loop; the wait is a jittered exponential
backoff that is never shorter than the server's own hint (`TransientError.retry_after`, from
ErrorServerBusy's BackOffMilliseconds or Retry-After). When honouring a hint would overrun the
deadline, the loop gives up at once instead. A caller whose failed attempts may still get
something done (a chunk of which some messages were stored) says so with `progress`: the
attempts are then counted again from the attempt that got further, so what is bounded is
attempts without progress. A stop request ends the loop before the next attempt and during a
wait.

A layer of its own, below the store and above model/: the adapters, the engine, the commands
and the store all retry through it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

from migrator.model.errors import TransientError

T = TypeVar("T")


class StoppedWaiting(TransientError):
    """The stop event was set while waiting to retry: raised instead of the next attempt."""


def is_transient(exc: BaseException) -> bool:
    """The default of what is retried: a TransientError, never anything else."""
    return isinstance(exc, TransientError)


def _sleep_until_stopped(stop: threading.Event | None) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.wait(seconds):
            raise StoppedWaiting("stopped while waiting to retry")

    return sleep


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 10  # without progress (see the module doc)
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
    # attempts counted against RetryPolicy.attempts when the loop last failed (since progress)
    attempts: int = 0


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    stop: threading.Event | None = None,
    on_retry: Callable[[Exception, float, int], None] | None = None,
    stats: RetryStats | None = None,
    sleep: Callable[[float], None] | None = None,
    retry_if: Callable[[BaseException], bool] = is_transient,
    progress: Callable[[], int] | None = None,
) -> T:
    """Call `fn`, retrying what `retry_if` accepts per `policy`; the last error is re-raised
    (StoppedWaiting when `stop` is set during a wait).

    `on_retry(error, seconds, attempt)` is told before each wait. `progress`: a count that
    grows when an attempt got something done although it failed; the attempt that made it
    counts as the first again, for the attempts bound and the backoff."""
    started = time.monotonic()
    counted = 1  # attempts since the last progress, the current one included
    offset = 0  # attempt_number of the last attempt before the one that made progress
    reached = progress() if progress is not None else 0
    upcoming = 0.0
    # Nearly every call succeeds at once: setting tenacity up costs more client CPU than a
    # small request's own work (issue 19), so it is set up only after a first failure, which
    # it is handed as its own first attempt (same attempt count, deadline and waits).
    first: BaseException | None = None
    try:
        return fn()
    except BaseException as exc:
        if not retry_if(exc):
            raise
        first = exc

    def hint_of(state: RetryCallState) -> float | None:
        exc = state.outcome.exception() if state.outcome else None
        return exc.retry_after if isinstance(exc, TransientError) else None

    def after(state: RetryCallState) -> None:
        # after each failed attempt that may be retried, before the stop and wait decisions
        nonlocal counted, offset, reached, upcoming
        if progress is not None:
            now = progress()
            if now > reached:
                reached, offset = now, state.attempt_number - 1
        counted = state.attempt_number - offset
        if stats is not None:
            stats.attempts = counted
        upcoming = policy.backoff(counted, hint_of(state))

    def wait(state: RetryCallState) -> float:
        return upcoming

    def should_stop(state: RetryCallState) -> bool:
        if counted >= policy.attempts:
            return True
        if stop is not None and stop.is_set():
            return True
        # give up now rather than wait less than the hint or beyond the deadline
        return time.monotonic() - started + upcoming > policy.deadline

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        seconds = state.next_action.sleep if state.next_action else 0.0
        if stats is not None:
            stats.retries += 1
            stats.waited += seconds
            if isinstance(exc, TransientError):
                stats.last_hint = exc.retry_after
        if on_retry is not None and isinstance(exc, Exception):
            on_retry(exc, seconds, counted)

    retrying = Retrying(
        retry=retry_if_exception(retry_if),
        after=after,
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
