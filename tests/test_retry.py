"""Retry policy: only transient errors, bounded, never waiting less than the server's hint."""

from __future__ import annotations

import random
import threading

import pytest

from migrator.model.errors import PermanentError, TransientError
from migrator.retry import RetryPolicy, RetryStats, StoppedWaiting, call_with_retry


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_transient_errors_are_retried_and_waits_honour_the_hint() -> None:
    waits: list[float] = []
    fn = Flaky(
        [
            TransientError("busy", retry_after=7.5),
            TransientError("reset"),
            TransientError("busy", retry_after=2.0),
        ]
    )
    stats = RetryStats()
    policy = RetryPolicy(attempts=5, deadline=1000, base=0.1, rng=random.Random(1))
    assert call_with_retry(fn, policy, sleep=waits.append, stats=stats) == "ok"
    assert fn.calls == 4
    assert waits[0] >= 7.5 and waits[2] >= 2.0
    assert 0.1 <= waits[1] < 2.0  # exponential backoff, jittered, without a hint
    assert stats.retries == 3 and stats.waited == pytest.approx(sum(waits))


def test_permanent_errors_are_not_retried() -> None:
    fn = Flaky([PermanentError("too big", reason="too-large")])
    with pytest.raises(PermanentError):
        call_with_retry(fn, RetryPolicy(), sleep=lambda s: None)
    assert fn.calls == 1


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    fn = Flaky([TransientError(f"busy {i}") for i in range(10)])
    with pytest.raises(TransientError, match="busy 2"):
        call_with_retry(fn, RetryPolicy(attempts=3), sleep=lambda s: None)
    assert fn.calls == 3


def test_a_hint_beyond_the_deadline_gives_up_instead_of_waiting_less() -> None:
    waits: list[float] = []
    fn = Flaky([TransientError("busy", retry_after=120.0)])
    with pytest.raises(TransientError):
        call_with_retry(fn, RetryPolicy(attempts=5, deadline=60.0), sleep=waits.append)
    assert waits == [] and fn.calls == 1


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0, jitter=0.0)
    assert [policy.backoff(n, None) for n in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert 30.0 <= policy.backoff(1, 30.0) <= 36.0
    assert 0.2 <= policy.backoff(9, 0.2) <= 0.24  # a hint is honoured, not escalated


def test_a_stop_request_ends_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    fn = Flaky([TransientError("busy", retry_after=0.01)] * 3)
    with pytest.raises(TransientError):
        call_with_retry(fn, RetryPolicy(attempts=5), stop=stop)
    assert fn.calls == 1


def test_a_stop_during_the_wait_ends_it_at_once() -> None:
    stop = threading.Event()
    fn = Flaky([TransientError("busy", retry_after=30.0)] * 3)
    with pytest.raises(StoppedWaiting):
        # the stop request comes when the wait of 30 s has just been decided
        call_with_retry(
            fn,
            RetryPolicy(attempts=5, deadline=100.0),
            stop=stop,
            on_retry=lambda exc, seconds, attempt: stop.set(),
        )
    assert fn.calls == 1


def test_a_predicate_names_what_else_is_retried() -> None:
    class Away(Exception):
        pass

    seen: list[tuple[str, int]] = []
    fn = Flaky([Away("db gone"), Away("db gone again")])
    result = call_with_retry(
        fn,
        RetryPolicy(attempts=5),
        sleep=lambda s: None,
        retry_if=lambda exc: isinstance(exc, Away),
        on_retry=lambda exc, seconds, attempt: seen.append((str(exc), attempt)),
    )
    assert result == "ok" and fn.calls == 3
    assert seen == [("db gone", 1), ("db gone again", 2)]
    # and then a TransientError is not retried unless the predicate says so
    fn = Flaky([TransientError("busy")])
    with pytest.raises(TransientError):
        call_with_retry(
            fn, RetryPolicy(), sleep=lambda s: None, retry_if=lambda exc: isinstance(exc, Away)
        )
    assert fn.calls == 1


def test_attempts_that_make_progress_count_again_from_one() -> None:
    """A chunk of 6 items of which each attempt stores one: 6 attempts in all, with a bound of
    3 attempts without progress; the backoff starts over after each bit of progress."""
    left = [6]
    stored = [0]

    def upload() -> str:
        if left[0] > 1:
            left[0] -= 1
            stored[0] += 1
            raise TransientError("some left")
        return "ok"

    waits: list[float] = []
    stats = RetryStats()
    policy = RetryPolicy(attempts=3, base=1.0, jitter=0.0)
    assert (
        call_with_retry(upload, policy, sleep=waits.append, stats=stats, progress=lambda: stored[0])
        == "ok"
    )
    assert waits == [1.0] * 5 and stats.retries == 5 and stats.attempts == 1
    # without progress the same bound ends it after 3 attempts, backing off 1 s then 2 s
    waits.clear()
    fn = Flaky([TransientError(f"busy {i}") for i in range(5)])
    with pytest.raises(TransientError, match="busy 2"):
        call_with_retry(fn, policy, sleep=waits.append, stats=stats, progress=lambda: 0)
    assert waits == [1.0, 2.0] and stats.attempts == 3
