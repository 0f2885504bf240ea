"""Each fault the simulator injects ends as the documented error class, with the server's hint,
and never as an exchangelib exception."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest

from migrator.adapters.targets import TargetFolder
from migrator.adapters.targets.ews import EwsTarget
from migrator.model.errors import PermanentError, TransientError
from migrator.model.mail import Flags, FolderRole, UploadItem, UploadResult
from migrator.simulator.ews import EwsSimulator, Faults
from tests.fixtures.targets import *  # noqa: F403
from tests.fixtures.targets import TargetHarness, ews_harness

MB = 1024 * 1024


@pytest.fixture
def harness(ews_simulator: EwsSimulator) -> Iterator[TargetHarness]:
    ews_simulator.set_faults(Faults())
    h = ews_harness(ews_simulator)
    try:
        yield h
    finally:
        h.close_all()
        ews_simulator.set_faults(Faults())


def items(prefix: str, n: int, size: int = 10) -> list[UploadItem]:
    return [
        UploadItem(
            key=f"{prefix}{i}",
            data=b"Subject: f\r\n\r\n" + b"q" * size,
            flags=Flags(),
            internal_date=None,
        )
        for i in range(n)
    ]


def ready(harness: TargetHarness) -> tuple[EwsTarget, str, TargetFolder]:
    """A target with a mailbox and folder set up while the server is still healthy."""
    target = harness.open()
    assert isinstance(target, EwsTarget)
    mailbox = harness.new_mailbox()
    folder = target.ensure_folder(mailbox, ("Faults",), FolderRole.NONE)
    return target, mailbox, folder


def all_transient(results: list[UploadResult]) -> list[TransientError]:
    errors = [r.error for r in results]
    assert all(isinstance(e, TransientError) for e in errors), errors
    return errors  # type: ignore[return-value]


def test_server_busy_carries_back_off_milliseconds(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_faults(Faults(server_busy_rate=1.0, backoff_ms=1500))
    sim.reset_stats()
    results = target.upload(mailbox, folder, items("busy", 3))
    errors = all_transient(results)
    assert {e.retry_after for e in errors} == {1.5}
    assert "busy" in str(errors[0]) and mailbox in str(errors[0])
    # a refused request stored nothing, and the adapter did not hammer the server
    assert sim.stats().requests.get("CreateItem") == 1
    with pytest.raises(TransientError) as raised:
        target.preflight(harness.new_mailbox())
    assert raised.value.retry_after == 1.5
    sim.set_faults(Faults())
    assert target.count(mailbox, folder) == 0


def test_busy_stops_the_rest_of_the_chunk(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    target.request_items = 2
    sim.set_faults(Faults(server_busy_rate=1.0, backoff_ms=250))
    sim.reset_stats()
    results = target.upload(mailbox, folder, items("rest", 6))
    assert {e.retry_after for e in all_transient(results)} == {0.25}
    assert sim.stats().requests.get("CreateItem") == 1


def test_http_503_carries_retry_after(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_faults(Faults(http503_rate=1.0, retry_after_s=7))
    errors = all_transient(target.upload(mailbox, folder, items("u", 2)))
    assert {e.retry_after for e in errors} == {7.0}
    assert "HTTP 503" in str(errors[0])
    sim.set_faults(Faults(http503_rate=1.0))
    errors = all_transient(target.upload(mailbox, folder, items("v", 1)))
    assert errors[0].retry_after is None  # no header, no invented hint
    with pytest.raises(TransientError):
        target.find(mailbox, folder, ["u0"])
    with pytest.raises(TransientError):
        target.count(mailbox, folder)


def test_connection_reset_is_transient_and_nothing_is_duplicated(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_faults(Faults(reset_rate=1.0))
    errors = all_transient(target.upload(mailbox, folder, items("r", 3)))
    assert "connection" in str(errors[0])
    with pytest.raises(TransientError):
        target.ensure_folder(mailbox, ("Elsewhere",), FolderRole.NONE)
    sim.set_faults(Faults())
    # the retry of the same chunk stores each message once
    assert all(r.ok for r in target.upload(mailbox, folder, items("r", 3)))
    assert target.count(mailbox, folder) == 3


def test_slow_server_times_out_as_transient_and_find_tells_what_arrived(
    harness: TargetHarness,
) -> None:
    sim: EwsSimulator = harness.server
    mailbox = harness.new_mailbox()
    target = harness.open(timeout=0.5)
    folder = target.ensure_folder(mailbox, ("Slow",), FolderRole.NONE)
    sim.set_faults(Faults(delay_s=1.5))
    results = target.upload(mailbox, folder, items("slow", 2))
    errors = all_transient(results)
    # what the socket said, and where: not exchangelib's wrapper around it
    assert re.search(r"no answer from 127\.0\.0\.1:\d+ within 0\.5 s", str(errors[0])), str(
        errors[0]
    )
    sim.set_faults(Faults())
    # The server went on and stored the chunk after we gave up: the ambiguous case. find() is
    # how a caller learns that before sending again.
    deadline = time.monotonic() + 10
    while target.count(mailbox, folder) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(target.find(mailbox, folder, ["slow0", "slow1"])) == {"slow0", "slow1"}


def test_concurrency_ceiling_answers_busy(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_faults(Faults(max_concurrency=1, delay_s=0.3, backoff_ms=400))
    sim.reset_stats()
    start = threading.Barrier(3)
    results: list[UploadResult] = []

    def send(n: int) -> None:
        start.wait(timeout=10)
        results.extend(target.upload(mailbox, folder, items(f"c{n}-", 1)))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    refused = [r.error for r in results if not r.ok]
    assert refused and all(isinstance(e, TransientError) and e.retry_after == 0.4 for e in refused)
    assert sim.stats().faults.get("concurrency", 0) == len(refused)
    sim.set_faults(Faults())
    assert target.count(mailbox, folder) == len(results) - len(refused)


def test_request_size_limit_below_ours_is_met_by_splitting(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_faults(Faults(max_request_bytes=3 * MB))
    chunk = items("split", 4, size=MB)  # four 1 MB messages: ~5.3 MB of base64 in one request
    results = target.upload(mailbox, folder, chunk)
    assert all(r.ok for r in results), [r.error for r in results]
    assert sim.stats().faults.get("request_too_large", 0) >= 1
    too_big = target.upload(mailbox, folder, items("huge", 1, size=4 * MB))
    assert isinstance(too_big[0].error, PermanentError) and too_big[0].error.reason == "too-large"
    sim.set_faults(Faults())
    assert target.count(mailbox, folder) == 4


# --- lost answers and faults aimed at one request (bench/bench_chaos.py needs them) -----------
# A lost answer (the server stored the items, the connection then broke) is the case the
# exactly-once protocol exists for: the adapter must find what the server stored instead of
# reporting it missing, and never store it twice. `operations` and `max_faults` make such a
# fault hit exactly one chosen request, so tests need no thread racing to clear the faults.


def test_a_lost_createitem_answer_is_found_by_tag_not_stored_twice(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_faults(Faults(lost_answer_rate=1.0, operations=frozenset({"CreateItem"}), max_faults=1))
    sim.reset_stats()
    results = target.upload(mailbox, folder, items("lost", 3))
    stats = sim.stats()
    assert stats.faults == {"lost_answer": 1}  # the lookup (FindItem) drew no fault
    assert stats.items_created == 3 and stats.requests["CreateItem"] == 1
    stored = {
        item.extended["name:8f0c5b1e-3d2a-4f6b-9a7e-6d4c2b1a0e93:MigratorSourceKey"]: item.id
        for item in sim.items(mailbox, folder.id)
    }
    assert len(stored) == 3
    assert {r.key: (r.target_id, r.error) for r in results} == {
        k: (v, None) for k, v in stored.items()
    }


def test_max_faults_bounds_the_faults_and_set_faults_starts_the_count_again(
    harness: TargetHarness,
) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_faults(Faults(reset_rate=1.0, operations=frozenset({"CreateItem"}), max_faults=1))
    sim.reset_stats()
    first = target.upload(mailbox, folder, items("lost", 1))
    second = target.upload(
        mailbox, folder, [UploadItem("again", b"Subject: a\r\n\r\nb\r\n", Flags(), None)]
    )
    assert first[0].error is not None and second[0].error is None
    assert sim.stats().faults == {"reset": 1}
    sim.set_faults(Faults(reset_rate=1.0, operations=frozenset({"CreateItem"}), max_faults=1))
    third = target.upload(
        mailbox, folder, [UploadItem("third", b"Subject: t\r\n\r\nb\r\n", Flags(), None)]
    )
    assert third[0].error is not None and sim.stats().faults == {"reset": 2}
