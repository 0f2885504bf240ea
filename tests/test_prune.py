"""`migrator prune` (issue 19): old events, finished runs and gone workers rows go; the ledger,
the accounts, a run still going and its events stay. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Table, event, func, select, text, update

from migrator.cli.main import cli
from migrator.commands.prune import prune
from migrator.plan.loader import parse_plan
from migrator.store import Store
from migrator.store.schema import accounts as A
from migrator.store.schema import events as E
from migrator.store.schema import folders as F
from migrator.store.schema import messages as M
from migrator.store.schema import plans as P
from migrator.store.schema import runs as R
from migrator.store.schema import workers as W

PLAN = """\
[plan]
name = "{name}"
[directory]
url = "ldap://127.0.0.1:1"
base = "dc=example,dc=org"
[source]
kind = "maildir"
root = "/srv/vmail"
path = "{{root}}/{{domain}}/{{local}}/Maildir"
[target]
kind = "ews"
url = "https://127.0.0.1:1/EWS/Exchange.asmx"
username = "svc"
password_env = "X"
[run]
lease_seconds = 120
{state}"""


@pytest.fixture
def plan_name() -> str:
    """A plan name of its own per test (PostgreSQL's database is shared by the module)."""
    return f"prune-{uuid.uuid4().hex[:8]}"


def _campaign(store: Store, name: str) -> dict[str, Any]:
    """A plan 90 days into its campaign: two accounts with their ledger, runs old and new (one
    of them, started long ago, still going), events of each, workers live, gone and stopped."""
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=1)
    plan_id = store.ensure_plan(name, "maildir", "ews")
    ids: dict[str, Any] = {"plan": plan_id}
    with store.session(write=True) as s:
        c = s.connection()

        def run(
            status: str, started: datetime, finished: datetime | None, command: str = "run"
        ) -> int:
            return int(c.execute(R.insert().values(plan_id=plan_id, command=command, host="h", pid=1, started_at=started,
                                                   finished_at=finished, status=status,
                                                   alive_until=now + timedelta(minutes=2))).inserted_primary_key[0])  # fmt: skip

        ids["old_run"] = run("done", old - timedelta(hours=2), old)
        ids["discovery_run"] = run(
            "done", old - timedelta(days=10), old - timedelta(days=10), "discover"
        )
        ids["live_run"] = run("running", old - timedelta(hours=1), None)
        ids["recent_run"] = run("done", recent - timedelta(hours=1), recent)
        c.execute(
            update(P).where(P.c.id == plan_id).values(last_discovery_run_id=ids["discovery_run"])
        )
        accounts = []
        for n in range(2):
            accounts.append(int(c.execute(A.insert().values(
                plan_id=plan_id, key=f"u{n}", dn="uid=x", address=f"u{n}@example.org", scope="in_scope", fingerprint="fp",
                aliases=[], attributes={}, discovered_at=old, last_seen_at=old, status="synced", passes=3, attempts=0,
                messages_done=2, messages_skipped=0, messages_failed=0, bytes_done=10, lease_epoch=1, last_pass_at=old,
            )).inserted_primary_key[0]))  # fmt: skip
            folder = int(c.execute(F.insert().values(account_id=accounts[-1], native="INBOX", display="Inbox",
                                                     role="inbox", created_at=old)).inserted_primary_key[0])  # fmt: skip
            for k in range(2):
                c.execute(M.insert().values(folder_id=folder, account_id=accounts[-1], source_key=f"k{k}", state="done",
                                            lease_epoch=1, created_at=old, updated_at=old))  # fmt: skip
        ids["accounts"] = accounts

        def events(count: int, at: datetime, run_id: int | None) -> None:
            c.execute(E.insert(), [{"plan_id": plan_id, "account_id": accounts[n % 2], "run_id": run_id, "at": at,
                                    "kind": "released", "from_state": "running", "to_state": "synced", "detail": None}
                                   for n in range(count)])  # fmt: skip

        events(7, old, ids["old_run"])  # go
        events(2, old, None)  # go (a reset, a scope change: no run)
        events(3, old, ids["live_run"])  # stay: its run is still going
        events(4, recent, ids["recent_run"])  # stay: younger than the retention

        def worker(name: str, beat: datetime, stopped: datetime | None) -> None:
            c.execute(W.insert().values(name=f"{name}#{plan_id}", label=name, plan_id=plan_id, host="h", pid=1, started_at=beat - timedelta(hours=1),
                                        heartbeat_at=beat, stopped_at=stopped))  # fmt: skip

        worker("live", now - timedelta(seconds=3), None)
        worker(
            "stale", now - timedelta(seconds=60), None
        )  # silent for less than the lease: may come back
        worker("gone", now - timedelta(minutes=10), None)
        worker("stopped", recent, recent)
    return ids


def _counts(store: Store, plan_id: int) -> dict[str, int]:
    with store.session() as s:

        def n(table: Table, *where: Any) -> int:
            return int(
                s.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
            )

        return {
            "events": n(E, E.c.plan_id == plan_id), "runs": n(R, R.c.plan_id == plan_id),
            "workers": n(W, W.c.plan_id == plan_id), "accounts": n(A, A.c.plan_id == plan_id),
            "messages": n(M, M.c.account_id.in_(select(A.c.id).where(A.c.plan_id == plan_id))),
            "folders": n(F, F.c.account_id.in_(select(A.c.id).where(A.c.plan_id == plan_id))),
        }  # fmt: skip


def test_prune_removes_old_history_and_gone_workers_and_keeps_the_ledger(
    store: Store, store_url: str, plan_name: str
) -> None:
    plan = parse_plan(PLAN.format(name=plan_name, state="[state]\nretention_days = 30\n"))
    ids = _campaign(store, plan_name)
    other = _campaign(store, plan_name + "-other")  # another plan of the same database: untouched
    before = _counts(store, ids["plan"])
    assert before == {
        "events": 16,
        "runs": 4,
        "workers": 4,
        "accounts": 2,
        "messages": 4,
        "folders": 2,
    }

    dry = prune(plan, state_url=store_url)
    assert (dry["applied"], dry["events"], dry["runs"], dry["workers"]) == (False, 9, 1, 2)
    assert _counts(store, ids["plan"]) == before  # a dry run changes nothing

    done = prune(plan, state_url=store_url, apply=True)
    assert (done["applied"], done["events"], done["runs"], done["workers"]) == (True, 9, 1, 2)
    after = _counts(store, ids["plan"])
    assert after == {**before, "events": 7, "runs": 3, "workers": 2}
    with store.session() as s:
        runs = set(s.execute(select(R.c.id).where(R.c.plan_id == ids["plan"])).scalars())
        kept_events = sorted(
            s.execute(select(E.c.run_id).where(E.c.plan_id == ids["plan"])).scalars()
        )
        workers = set(s.execute(select(W.c.label).where(W.c.plan_id == ids["plan"])).scalars())
    assert runs == {ids["discovery_run"], ids["live_run"], ids["recent_run"]}
    assert kept_events == sorted([ids["live_run"]] * 3 + [ids["recent_run"]] * 4)
    assert workers == {"live", "stale"}
    assert _counts(store, other["plan"])["events"] == 16
    # pruned again: nothing left to remove
    assert prune(plan, state_url=store_url, apply=True)["events"] == 0


def test_prune_command_is_a_dry_run_unless_applied(
    store: Store, store_url: str, plan_name: str, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(PLAN.format(name=plan_name, state=""))
    ids = _campaign(store, plan_name)
    runner = CliRunner()
    unset = runner.invoke(cli, ["prune", "--plan", str(plan_file), "--state", store_url])
    assert unset.exit_code == 2 and "retention_days" in unset.output, unset.output

    dry = runner.invoke(
        cli, ["prune", "--plan", str(plan_file), "--state", store_url, "--older-than", "30"]
    )
    assert dry.exit_code == 0, dry.output
    assert "would remove 9 events and 1 finished runs" in " ".join(dry.output.split())
    assert "--apply" in dry.output
    assert _counts(store, ids["plan"])["events"] == 16

    applied = runner.invoke(
        cli,
        ["prune", "--plan", str(plan_file), "--state", store_url, "--older-than", "30", "--apply"],
    )
    assert applied.exit_code == 0, applied.output
    assert "removed 9 events and 1 finished runs" in " ".join(applied.output.split())
    assert _counts(store, ids["plan"])["events"] == 7


def test_an_accounts_newest_events_come_from_an_index(store: Store, plan_name: str) -> None:
    """`events --account` and `show ADDR` at millions of events: the account's events are read
    from ix_events_account_id in id order, not the plan's log backwards."""
    from migrator.store.reporting import queries

    ids = _campaign(store, plan_name)
    now = datetime.now(UTC)
    with store.session(write=True) as s:
        s.execute(E.insert(), [{"plan_id": ids["plan"], "account_id": ids["accounts"][0], "run_id": None, "at": now,
                                "kind": "claimed", "from_state": "synced", "to_state": "running", "detail": None}
                               for _ in range(20_000)])  # fmt: skip
        if (
            store.backend == "postgresql"
        ):  # as autovacuum would; SQLite goes without (nothing runs ANALYZE)
            s.execute(text("ANALYZE events"))
    prefix = "EXPLAIN QUERY PLAN " if store.backend == "sqlite" else "EXPLAIN (COSTS OFF) "
    plans: list[str] = []

    def explain(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        return prefix + statement, parameters

    def capture(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if statement.startswith(prefix):
            plans.append("\n".join(str(r[-1]) for r in cursor.fetchall()))

    event.listen(store.engine, "before_cursor_execute", explain, retval=True)
    event.listen(store.engine, "after_cursor_execute", capture)
    try:
        queries.events(
            store, ids["plan"], account_id=ids["accounts"][1], limit=50, newest_first=True
        )
        # `show ADDR`: by address, then target address, then key, each from an index
        queries.find_account(store, ids["plan"], "nobody@example.org")
    finally:
        event.remove(store.engine, "before_cursor_execute", explain)
        event.remove(store.engine, "after_cursor_execute", capture)
    events, *lookups = plans
    assert "ix_events_account_id" in events, events
    assert "TEMP B-TREE" not in events and "Sort" not in events and "Seq Scan" not in events, events
    assert len(lookups) == 3
    if store.backend == "postgresql":
        return  # its accounts table is a few rows here: a sequential scan is what it should do
    for plan, index in zip(
        lookups, ("ix_accounts_plan_address", "ix_accounts_plan_target_address", "key"), strict=True
    ):
        assert index in plan and "Seq Scan" not in plan, plan


def test_retention_days_is_a_plan_key_with_bounds() -> None:
    from migrator.model.errors import PlanError

    assert (
        parse_plan(PLAN.format(name="p", state="[state]\nretention_days = 45\n")).retention_days
        == 45
    )
    assert parse_plan(PLAN.format(name="p", state="")).retention_days is None
    with pytest.raises(PlanError, match="retention_days"):
        parse_plan(PLAN.format(name="p", state="[state]\nretention_days = 0\n"))
