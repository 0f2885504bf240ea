"""The EWS target against a simulator as strict as Exchange 2013/2016/2019: recovery searches
within WCF's read depth, paging through capped and short pages, EWSMaxConcurrency and the
HTTP-200 ErrorServerBusy taken as throttling, a full mailbox stopping the upload, and each
Exchange build. Sources: docs/targets.md, "Exchange compatibility"."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.adapters.targets import TargetFolder, open_target
from migrator.adapters.targets.ews import EwsTarget
from migrator.model.errors import PermanentError, TransientError
from migrator.model.mail import Flags, FolderRole, UploadItem, UploadResult
from migrator.simulator.ews import EwsSimulator, ExchangeLimits, Faults
from migrator.simulator.ews.conversion import convert
from tests.fixtures.ews import forget_protocols, running_simulator, start_simulator
from tests.fixtures.targets import *  # noqa: F403
from tests.fixtures.targets import TargetHarness, ews_harness

SOURCE_KEY_EXT = "name:8f0c5b1e-3d2a-4f6b-9a7e-6d4c2b1a0e93:MigratorSourceKey"


@pytest.fixture
def harness(ews_simulator: EwsSimulator) -> Iterator[TargetHarness]:
    ews_simulator.set_faults(Faults())
    ews_simulator.set_limits(ExchangeLimits())
    h = ews_harness(ews_simulator)
    try:
        yield h
    finally:
        h.close_all()
        ews_simulator.set_faults(Faults())
        ews_simulator.set_limits(ExchangeLimits())


def items(prefix: str, n: int, size: int = 10) -> list[UploadItem]:
    return [
        UploadItem(
            key=f"{prefix}{i}",
            data=b"Subject: x\r\n\r\n" + b"q" * size,
            flags=Flags(),
            internal_date=None,
        )
        for i in range(n)
    ]


def ready(harness: TargetHarness, *path: str) -> tuple[EwsTarget, str, TargetFolder]:
    target = harness.open()
    assert isinstance(target, EwsTarget)
    mailbox = harness.new_mailbox()
    folder = target.ensure_folder(mailbox, path or ("Exchange",), FolderRole.NONE)
    return target, mailbox, folder


def stored_keys(sim: EwsSimulator, mailbox: str, folder: TargetFolder) -> Counter[str]:
    return Counter(item.extended[SOURCE_KEY_EXT] for item in sim.items(mailbox, folder.id))


# --- recovery searches and Exchange's read depth -----------------------------------------------


def test_the_largest_recovery_search_stays_within_exchanges_read_depth(
    harness: TargetHarness,
) -> None:
    """The engine asks find() for up to 100 in-flight keys at once (after a crash or a lost
    answer); each request must stay within the 32 levels Exchange's reader allows, however
    many keys there are."""
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    uploaded = target.upload(mailbox, folder, items("inflight-", 100))
    assert all(r.ok for r in uploaded)
    sim.reset_stats()
    keys = [f"inflight-{i}" for i in range(100)] + [f"never-sent-{i}" for i in range(900)]
    found = target.find(mailbox, folder, keys)
    assert found == {r.key: r.target_id for r in uploaded}
    stats = sim.stats()
    assert stats.refused == {}
    assert stats.max_request_depth <= 8  # one Or of IsEqualTo: flat whatever the number of keys
    assert stats.requests["FindItem"] == 20  # 50 keys a request


def test_find_pages_through_short_and_capped_pages(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    uploaded = target.upload(mailbox, folder, items("page-", 40))
    # every key stored four times (four uploads of the same keys): 160 matches for 40 keys
    for _ in range(3):
        assert all(r.ok for r in target.upload(mailbox, folder, items("page-", 40)))
    sim.set_limits(ExchangeLimits(restricted_find_count_limit=7))
    sim.set_faults(Faults(short_page_rate=0.5, seed=11))
    found = target.find(mailbox, folder, [f"page-{i}" for i in range(40)])
    assert set(found) == {r.key for r in uploaded}
    assert sim.stats().faults.get("short_page", 0) > 0


def test_inventory_counts_every_item_once_through_partial_and_short_pages(
    harness: TargetHarness,
) -> None:
    """Several folders in one FindItem share the caller's find budget: the later folders get
    partial pages, even empty ones, and pages come back short under load. exchangelib's own
    paging reads folders again from the lowest offset (counting their items twice) and drops a
    folder whose first page was empty."""
    sim: EwsSimulator = harness.server
    target = harness.open()
    mailbox = harness.new_mailbox()
    folders = [target.ensure_folder(mailbox, (f"F{n}",), FolderRole.NONE) for n in range(3)]
    sizes = [23, 9, 17]
    for folder, size in zip(folders, sizes, strict=True):
        assert all(r.ok for r in target.upload(mailbox, folder, items(f"{folder.display}-", size)))
    sim.set_limits(ExchangeLimits(find_count_limit=10))
    sim.set_faults(Faults(short_page_rate=0.3, seed=4))
    wanted = {
        f.id: [f"{f.display}-{i}" for i in range(size)]
        for f, size in zip(folders, sizes, strict=True)
    }
    listed = target.inventory(mailbox, wanted)
    for folder, size in zip(folders, sizes, strict=True):
        counts, total = listed[folder.id]
        assert total == size, folder.display
        assert counts == Counter({key: 1 for key in wanted[folder.id]}), folder.display
    assert sim.stats().faults.get("short_page", 0) > 0


# --- throttling without a hint -------------------------------------------------------------------


def test_exceeded_connection_count_is_throttling_sent_once(harness: TargetHarness) -> None:
    """Past EWSMaxConcurrency: a throttling error for the retry layer, without a hint, and the
    request is not sent again at once (exchangelib would resend it once per pooled session)."""
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_limits(ExchangeLimits(max_concurrency=1))
    sim.set_faults(Faults(delay_s=0.4))
    sim.reset_stats()
    start = threading.Barrier(4)
    results: list[UploadResult] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        start.wait(timeout=10)
        answer = target.upload(mailbox, folder, items(f"c{n}-", 1))
        with lock:
            results.extend(answer)

    # daemon threads: exchangelib's own answer to this error (drop a pooled session, which
    # waits for a session to come back) deadlocks threads that each hold one
    threads = [threading.Thread(target=send, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "uploads hung"
    refused = [r.error for r in results if not r.ok]
    assert refused, "with one request allowed and four sent, some are refused"
    for error in refused:
        assert isinstance(error, TransientError) and error.throttled and error.retry_after is None
        assert "ErrorExceededConnectionCount" in error.message and error.hint is not None
    assert sim.stats().refused == {"connection_count": len(refused)}
    sim.set_faults(Faults())
    assert sum(stored_keys(sim, mailbox, folder).values()) == len(results) - len(refused)


def test_internal_server_busy_is_throttling_and_what_was_stored_is_kept(
    harness: TargetHarness,
) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_faults(
        Faults(internal_busy_rate=1.0, operations=frozenset({"CreateItem"}), max_faults=1, seed=3)
    )
    results = target.upload(mailbox, folder, items("ib-", 10))
    ok = [r for r in results if r.ok]
    refused = [r.error for r in results if not r.ok]
    assert ok and refused  # seed 3: the fault strikes part-way through the request
    for error in refused:
        assert isinstance(error, TransientError) and error.throttled and error.retry_after is None
    stored = stored_keys(sim, mailbox, folder)
    assert stored == Counter({r.key: 1 for r in ok})
    assert {r.key: r.target_id for r in ok} == {
        item.extended[SOURCE_KEY_EXT]: item.id for item in sim.items(mailbox, folder.id)
    }


# --- request size and mailbox limits -------------------------------------------------------------


def test_a_full_mailbox_stops_the_upload_with_a_quota_error(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    chunk = items("q-", 12, size=20)
    # room for three items as Exchange measures them (not their MIME's length)
    sim.set_mailbox_limits(mailbox, prohibit_send_receive_bytes=3 * convert(chunk[0].data).size)
    target.request_items = 2  # several requests per chunk: the ones after the refusal are not sent
    sim.reset_stats()
    with pytest.raises(PermanentError) as full:
        target.upload(mailbox, folder, chunk)
    error = full.value
    assert error.reason == "quota"
    assert "ErrorQuotaExceeded" in error.message and mailbox in error.message
    assert "3 of 12 message(s)" in error.message  # the 4th finds it full
    assert error.hint is not None and "quota" in error.hint
    assert sum(stored_keys(sim, mailbox, folder).values()) == 3
    assert sim.stats().requests["CreateItem"] == 2


def test_max_receive_size_fails_one_message_only(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = ready(harness)
    sim.set_mailbox_limits(mailbox, max_receive_bytes=500)
    chunk = [
        *items("small-", 2),
        UploadItem("big", b"Subject: b\r\n\r\n" + b"z" * 800, Flags(), None),
    ]
    results = target.upload(mailbox, folder, chunk)
    assert [r.ok for r in results] == [True, True, False]
    error = results[2].error
    assert isinstance(error, PermanentError) and error.reason == "too-large"


# --- each Exchange build ----------------------------------------------------------------------


@pytest.mark.parametrize("exchange", ["2013", "2016", "2019"])
def test_the_target_works_with_each_exchange_build(tmp_path: Path, exchange: str) -> None:
    sim = start_simulator(tmp_path / "ews", exchange=exchange)
    harness = ews_harness(sim)
    try:
        target = harness.open()
        mailbox = harness.new_mailbox()
        target.preflight(mailbox)
        folder = target.ensure_folder(mailbox, ("Projects", "2024"), FolderRole.NONE)
        results = target.upload(mailbox, folder, items("v-", 5))
        assert all(r.ok for r in results), [r.error for r in results]
        assert target.find(mailbox, folder, [f"v-{i}" for i in range(5)]) == {
            r.key: r.target_id for r in results
        }
        counts, total = target.inventory(mailbox, {folder.id: ["v-0"]})[folder.id]
        assert (counts, total) == (Counter({"v-0": 1}), 5)
        assert target.count(mailbox, folder) == 5
        assert sim.stats().refused.get("schema_validation", 0) == 0
    finally:
        harness.close_all()
        sim.stop()
        forget_protocols(sim.url)


def test_a_plan_pointing_at_exchange_2013_negotiates_its_version(tmp_path: Path) -> None:
    with running_simulator(tmp_path / "ews", exchange="2013") as sim:
        harness = ews_harness(sim)
        target = open_target(harness.settings, secrets=harness.secrets)
        assert isinstance(target, EwsTarget)
        mailbox = harness.new_mailbox()
        target.preflight(mailbox)
        account = target._account(mailbox)
        assert account.version.api_version == "Exchange2013_SP1"
        assert sim.stats().refused == {
            "server_version": 3
        }  # Exchange2016, 2015_SP1, 2015 tried first
        target.close()
