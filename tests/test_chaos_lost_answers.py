"""The simulator faults bench/bench_chaos.py needs, and what the EWS adapter makes of them.

A lost answer (the server stored the items, the connection then broke) is the case the
exactly-once protocol exists for: the adapter must find what the server stored instead of
reporting it missing, and never store it twice. `operations` and `max_faults` make such a
fault hit exactly one chosen request, so tests need no thread racing to clear the faults.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migrator.adapters.targets import TargetFolder
from migrator.adapters.targets.ews import EwsTarget
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.simulator.ews import EwsSimulator, Faults
from tests.fixtures.targets import *  # noqa: F403
from tests.fixtures.targets import TargetHarness, ews_harness


@pytest.fixture
def harness(ews_simulator: EwsSimulator) -> Iterator[TargetHarness]:
    ews_simulator.set_faults(Faults())
    h = ews_harness(ews_simulator)
    try:
        yield h
    finally:
        h.close_all()
        ews_simulator.set_faults(Faults())


def _ready(harness: TargetHarness) -> tuple[EwsTarget, str, TargetFolder]:
    target = harness.open()
    assert isinstance(target, EwsTarget)
    mailbox = harness.new_mailbox()
    return target, mailbox, target.ensure_folder(mailbox, ("Lost",), FolderRole.NONE)


def _items(n: int) -> list[UploadItem]:
    return [UploadItem(key=f"lost{i}", data=b"Subject: lost %d\r\n\r\nbody\r\n" % i, flags=Flags(seen=True),
                       internal_date=None) for i in range(n)]


def test_a_lost_createitem_answer_is_found_by_tag_not_stored_twice(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = _ready(harness)
    sim.set_faults(Faults(lost_answer_rate=1.0, operations=frozenset({"CreateItem"}), max_faults=1))
    sim.reset_stats()
    results = target.upload(mailbox, folder, _items(3))
    stats = sim.stats()
    assert stats.faults == {"lost_answer": 1}  # the lookup (FindItem) drew no fault
    assert stats.items_created == 3 and stats.requests["CreateItem"] == 1
    stored = {item.extended["name:8f0c5b1e-3d2a-4f6b-9a7e-6d4c2b1a0e93:MigratorSourceKey"]: item.id
              for item in sim.items(mailbox, folder.id)}
    assert len(stored) == 3
    assert {r.key: (r.target_id, r.error) for r in results} == {k: (v, None) for k, v in stored.items()}


def test_max_faults_bounds_the_faults_and_set_faults_starts_the_count_again(harness: TargetHarness) -> None:
    sim: EwsSimulator = harness.server
    target, mailbox, folder = _ready(harness)
    sim.set_faults(Faults(reset_rate=1.0, operations=frozenset({"CreateItem"}), max_faults=1))
    sim.reset_stats()
    first = target.upload(mailbox, folder, _items(1))
    second = target.upload(mailbox, folder, [UploadItem("again", b"Subject: a\r\n\r\nb\r\n", Flags(), None)])
    assert first[0].error is not None and second[0].error is None
    assert sim.stats().faults == {"reset": 1}
    sim.set_faults(Faults(reset_rate=1.0, operations=frozenset({"CreateItem"}), max_faults=1))
    third = target.upload(mailbox, folder, [UploadItem("third", b"Subject: t\r\n\r\nb\r\n", Flags(), None)])
    assert third[0].error is not None and sim.stats().faults == {"reset": 2}
