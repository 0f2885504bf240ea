"""The safety valve on deletions: a pass that would delete more than [run] deletion_limit of an
account's migrated messages (a source disk not mounted, folders emptied by hand) deletes none
of them and stops the account with a reason that says so; `run --allow-deletions` lets it
through when the deletions are right."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.campaign import build_campaign


def test_a_pass_that_would_delete_most_of_a_mailbox_deletes_nothing_until_allowed(
    tmp_path: Path,
) -> None:
    with build_campaign(tmp_path / "c", accounts=2, messages_per_folder=3) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        assert c.cli("run", "--plan", str(c.plan_path)).returncode == 0
        victim, other = c.accounts
        before = {a: len(c.sim.items(a)) for a in c.accounts}
        # the victim's mail is gone from the source: every message file of every folder
        for sub in c.maildir(victim).rglob("*"):
            if sub.is_file() and sub.parent.name in ("cur", "new"):
                sub.unlink()
        ran = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert ran.returncode == 1, ran.stdout[-2000:] + ran.stderr[-2000:]
        summary = json.loads(ran.stdout)
        [failure] = summary["failures"]
        assert failure["account"] == victim and failure["reason"] == "deletion-limit"
        assert "nothing was deleted" in failure["error"] and "--allow-deletions" in failure["hint"]
        assert {a: len(c.sim.items(a)) for a in c.accounts} == before  # the target untouched
        shown = c.cli("show", victim, "--plan", str(c.plan_path), "--no-source")
        assert "deletion-limit" in shown.stdout

        allowed = c.cli(
            "run", "--plan", str(c.plan_path), "--json", "--allow-deletions", "--account", victim
        )
        assert allowed.returncode == 0, allowed.stdout[-2000:] + allowed.stderr[-2000:]
        assert json.loads(allowed.stdout)["messages"]["changes"]["deleted"] == before[victim]
        assert c.sim.items(victim) == [] and len(c.sim.items(other)) == before[other]
