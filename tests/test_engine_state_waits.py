"""The runner's waits for a state database that went away (`Runner._patiently` for its own
writes, `Runner._execute` for an account), on the one retry loop of migrator/retry.py.

The store raises StateUnavailable when a PostgreSQL connection breaks (a restart, a network
cut). PostgreSQL is shared on the machines that run this suite, so these tests do not restart
it (tests/test_multihost.py does, under a whole run): the action handed to the runner reports
the lost connection itself, on a real SQLite store and a real (never contacted) EWS target.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from migrator.adapters.targets import open_target
from migrator.engine.mailbox import AccountJob
from migrator.engine.progress import AccountOutcome, NullProgress
from migrator.engine.runner import Runner, RunOptions
from migrator.model.status import PassOutcome
from migrator.plan.loader import parse_plan
from migrator.store.claims import Claim
from migrator.store.store import StateUnavailable, open_store

PLAN = """\
[plan]
name = "waits"
[directory]
url = "ldif:{root}/directory.ldif"
base = "dc=example,dc=org"
[source]
kind = "maildir"
root = "{root}"
path = "{{root}}/{{local}}/Maildir"
[target]
kind = "ews"
url = "http://127.0.0.1:9/EWS/Exchange.asmx"
auth = "basic"
username = "svc"
password_env = "UNUSED"
[state]
url = "sqlite:///{root}/state.db"
"""


class Notes(NullProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def runner(root: Path, stop: threading.Event | None = None) -> tuple[Runner, Notes]:
    (root / "directory.ldif").write_text("")
    plan = parse_plan(PLAN.format(root=root))
    store = open_store(f"sqlite:///{root}/state.db")
    target = open_target(plan.target, secrets={"password": "unused"})
    notes = Notes()
    made = Runner(
        plan, store, target, plan_id=1, run_id=1, options=RunOptions(), progress=notes, stop=stop
    )
    return made, notes


class Breaks:
    """An action whose connection to the database breaks `times` times, then works."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise StateUnavailable("lost the connection to state database postgresql://db/m")
        return "recorded"


def test_a_store_action_runs_again_once_the_database_answers(tmp_path: Path) -> None:
    run, notes = runner(tmp_path)
    action = Breaks(2)
    assert run._patiently("ana@example.org: recording the outcome", action) == "recorded"
    assert action.calls == 3
    assert (
        notes.notes
        == [
            "ana@example.org: recording the outcome: lost the connection to state database "
            "postgresql://db/m; waiting for the database"
        ]
        * 2
    )


def test_the_wait_for_the_database_is_bounded_by_reconnect_seconds(tmp_path: Path) -> None:
    run, notes = runner(tmp_path)
    run.store.reconnect_seconds = 0.5
    action = Breaks(10**6)
    started = time.monotonic()
    with pytest.raises(StateUnavailable):
        run._patiently("claiming the next account", action)
    assert time.monotonic() - started < 0.5 + 5.0  # never a wait past the bound
    assert action.calls >= 2 and len(notes.notes) == action.calls - 1


class _BrokenJob:
    """An account's job whose database connection broke off mid-way."""

    def __init__(self) -> None:
        self.outcome = AccountOutcome(address="ana@example.org", status=PassOutcome.RUNNING)

    def execute(self) -> AccountOutcome:
        raise StateUnavailable("lost the connection to state database postgresql://db/m")


def _claim() -> Claim:
    return Claim(
        account_id=1, plan_id=1, epoch=1, worker="w", key="ana@example.org",
        address="ana@example.org", target_address=None, source_path=None, attributes={},
        previous_status="pending", passes=1, attempts=0, name=None, uid=None, batch=None,
    )  # fmt: skip


def test_a_stop_request_ends_an_account_instead_of_resuming_it(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    run, notes = runner(tmp_path, stop)
    jobs = cast(list[AccountJob], [_BrokenJob()])
    with pytest.raises(StateUnavailable):
        run._execute(_claim(), jobs)
    assert len(jobs) == 1 and notes.notes == []  # not resumed, nothing waited for


def test_an_account_is_not_resumed_past_reconnect_seconds(tmp_path: Path) -> None:
    run, notes = runner(tmp_path)
    run.store.reconnect_seconds = 0.0
    jobs: list[Any] = [_BrokenJob()]
    with pytest.raises(StateUnavailable):
        run._execute(_claim(), jobs)
    assert len(jobs) == 1 and notes.notes == []
