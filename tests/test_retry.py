"""Retry policy: only transient errors, bounded, never waiting less than the server's hint."""

from __future__ import annotations

import random
import threading

import pytest

from migrator.model.errors import PermanentError, TransientError
from migrator.retry import RetryPolicy, RetryStats, call_with_retry


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
