"""A throttled, flaky target: ErrorServerBusy with back-off hints, 503s, resets and slow
answers together. The run still ends with every message exactly once, with the state on SQLite
and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from migrator.simulator.ews import Faults
from tests.fixtures.campaign import build_campaign
from tests.test_engine_run import Ledger
from tests.test_engine_run import ledger as ledger  # the state backend fixture: SQLite, PostgreSQL


def test_a_throttled_flaky_target_still_gets_every_message_exactly_once(
    tmp_path: Path, ledger: Ledger
) -> None:
    faults = Faults(
        server_busy_rate=0.3,
        backoff_ms=200,
        http503_rate=0.05,
        retry_after_s=1,
        reset_rate=0.05,
        delay_s=0.01,
        seed=5,
    )
    with build_campaign(tmp_path / "c", accounts=3, workers=3, chunk=6, faults=faults) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        result = c.cli("run", "--plan", str(c.plan_path), "--json")
        summary = json.loads(result.stdout)
        # transient trouble is retried inside the run; an account that exhausted its retries
        # is failed and picked up by the next run
        for _ in range(3):
            if summary["accounts"]["failed"] == 0:
                break
            result = c.cli("run", "--plan", str(c.plan_path), "--json")
            summary = json.loads(result.stdout)
        assert result.returncode == 0, result.stderr + result.stdout
        stats = c.sim.stats()
        assert stats.faults.get("server_busy", 0) > 10, stats.faults
        assert stats.faults.get("reset", 0) > 0 and stats.faults.get("http503", 0) > 0, stats.faults
        for address in c.accounts:
            c.compare(address)
        total = sum(len(rows) for a in c.accounts for rows in c.source_messages(a).values())
        assert ledger(c, "select state, count(*) from messages group by state") == [("done", total)]
        # after an answer with a back-off hint, the next request for that mailbox never came
        # sooner than the hint asked (one worker per mailbox, so its requests are sequential)
        by_mailbox: dict[str, list[object]] = {}
        for entry in stats.timeline:
            by_mailbox.setdefault(entry.mailbox, []).append(entry)
        checked = 0
        for mailbox, entries in by_mailbox.items():
            if not mailbox:
                continue
            for answer, following in zip(entries, entries[1:], strict=False):
                if answer.hint_s is None:  # type: ignore[attr-defined]
                    continue
                waited = following.arrived - answer.answered  # type: ignore[attr-defined]
                assert waited >= answer.hint_s, (mailbox, answer, waited)  # type: ignore[attr-defined]
                checked += 1
        assert checked > 10
