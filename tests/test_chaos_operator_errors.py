"""Found by bench/bench_chaos.py under heavy throttling: an account whose uploads the target kept
refusing failed with "12 message(s) not confirmed after 5 attempt(s): ..." and an empty
"what to do" column. The operator must read which account, what happened, and that running
again resumes it safely."""

from __future__ import annotations

import json
from pathlib import Path

from migrator.simulator.ews import Faults
from tests.fixtures.campaign import build_campaign


def test_an_account_the_target_keeps_throttling_fails_with_what_to_do(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=1, workers=1, chunk=5) as c:
        [address] = c.accounts
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        # every CreateItem is refused as busy with a 1 ms back-off: the retries run out fast
        c.sim.set_faults(
            Faults(server_busy_rate=1.0, backoff_ms=1, operations=frozenset({"CreateItem"}))
        )
        failed = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert failed.returncode == 1, failed.stderr
        [failure] = json.loads(failed.stdout)["failures"]
        assert failure["account"] == address
        assert "could not be uploaded after" in failure["error"] and "busy" in failure["error"]
        assert "next `migrator run` resumes this account" in failure["hint"]
        # and it is true: with the target healthy again, the next run finishes the account
        c.sim.set_faults(Faults())
        again = c.cli("run", "--plan", str(c.plan_path))
        assert again.returncode == 0, again.stderr
        c.compare(address)
