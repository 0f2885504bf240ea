"""`migrator run` against the EWS simulator with real Maildirs: first pass, delta pass,
skipped messages with reasons, a missing target mailbox, two runs on one state. Each test runs
with its state on SQLite and on PostgreSQL (MIGRATOR_STATE, as an operator would set it)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.store import postgres_database

Ledger = Callable[[Campaign, str], list[tuple[object, ...]]]


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    """Where the campaign's state lives, and how to query it."""
    if request.param == "sqlite":

        def on_sqlite(c: Campaign, sql: str) -> list[tuple[object, ...]]:
            with sqlite3.connect(c.state_path) as db:
                return db.execute(sql).fetchall()

        yield on_sqlite
        return
    with postgres_database(request.node.name) as url:
        monkeypatch.setenv("MIGRATOR_STATE", url)

        def on_postgresql(c: Campaign, sql: str) -> list[tuple[object, ...]]:
            with psycopg.connect(url, autocommit=True) as db:
                return [tuple(row) for row in db.execute(sql).fetchall()]

        yield on_postgresql


def _discover(c: Campaign) -> None:
    result = c.cli("discover", "--plan", str(c.plan_path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["in_scope"] == len(c.accounts)


def test_first_pass_then_a_delta_pass_moves_every_message_once(
    tmp_path: Path, ledger: Ledger
) -> None:
    with build_campaign(tmp_path / "c", accounts=3) as c:
        _discover(c)
        first = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert first.returncode == 0, first.stderr
        summary = json.loads(first.stdout)
        assert summary["accounts"]["synced"] == 3 and summary["accounts"]["failed"] == 0
        total = sum(len(rows) for a in c.accounts for rows in c.source_messages(a).values())
        assert summary["messages"]["done"] == total
        for address in c.accounts:
            c.compare(address)
        # new mail arrives in one mailbox; the delta pass sends only that
        new = c.maildir(c.accounts[0]) / "new" / "1800000000.M1P1.host"
        new.write_bytes(b"From: a@b.mx\r\nSubject: late\r\n\r\nafter the first pass\r\n")
        second = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert second.returncode == 0, second.stderr
        delta = json.loads(second.stdout)
        assert delta["messages"]["done"] == 1 and delta["accounts"]["synced"] == 3
        for address in c.accounts:
            c.compare(address)
        passes = ledger(c, "select passes from accounts where scope = 'in_scope'")
        assert {p for (p,) in passes} == {2}
        assert ledger(c, "select count(*) from messages where state = 'inflight'") == [(0,)]


def test_skipped_messages_have_reasons_and_the_rest_migrates(
    tmp_path: Path, ledger: Ledger
) -> None:
    with build_campaign(tmp_path / "c", accounts=2, max_size=200_000) as c:
        box = c.maildir(c.accounts[0])
        big = box / "cur" / "1700000000.M9P9.host:2,S"
        big.write_bytes(b"Subject: big\r\n\r\n" + b"x" * 300_000 + b"\r\n")
        # tests run as root, where permissions do not stop reading: a FIFO is a file that
        # cannot be read as a message either
        os.mkfifo(box / "cur" / "1700000001.M9P9.host:2,S")
        _discover(c)
        result = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert result.returncode == 1, result.stderr  # finished, but messages were skipped
        summary = json.loads(result.stdout)
        assert summary["accounts"]["synced"] == 2
        reasons = {s["reason"] for s in summary["skipped"]}
        assert "too-large" in reasons
        assert len(summary["skipped"]) == 2, summary["skipped"]
        skipped_keys = {s["key"] for s in summary["skipped"]}
        c.compare(c.accounts[0], exclude_keys=skipped_keys)
        c.compare(c.accounts[1])
        rows = ledger(
            c, "select reason, count(*) from messages where state = 'skipped' group by reason"
        )
        assert sum(n for _, n in rows) == 2
        # a rerun does not retry them forever: nothing new, still listed in the ledger
        again = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert json.loads(again.stdout)["messages"]["skipped"] == 0


def test_a_missing_target_mailbox_fails_that_account_only(tmp_path: Path, ledger: Ledger) -> None:
    with build_campaign(tmp_path / "c", accounts=3, missing_target={1}) as c:
        _discover(c)
        result = c.cli("run", "--plan", str(c.plan_path), "--json")
        assert result.returncode == 1
        summary = json.loads(result.stdout)
        assert summary["accounts"]["failed"] == 1 and summary["accounts"]["synced"] == 2
        [failure] = summary["failures"]
        assert failure["reason"] == "no-mailbox"
        failed_rows = ledger(
            c, "select address, last_error, attempts from accounts where status = 'failed'"
        )
        assert len(failed_rows) == 1 and failed_rows[0][2] == 1
        assert failed_rows[0][0] in failure["account"]


def test_two_runs_on_one_state_never_handle_an_account_twice(
    tmp_path: Path, ledger: Ledger
) -> None:
    with build_campaign(tmp_path / "c", accounts=6, workers=2) as c:
        _discover(c)
        one = c.start("run", "--plan", str(c.plan_path), "--json")
        two = c.start("run", "--plan", str(c.plan_path), "--json")
        out1, err1 = one.communicate(timeout=300)
        out2, err2 = two.communicate(timeout=300)
        assert one.returncode == 0, err1
        assert two.returncode == 0, err2
        for address in c.accounts:
            c.compare(address)
        # every claim is followed by its release before the next claim of the same account
        events = ledger(
            c,
            "select account_id, kind, worker from events where kind in ('claimed','released','taken-over') order by id",
        )
        holder: dict[object, object] = {}
        for account_id, kind, worker in events:
            if kind == "claimed":
                assert account_id not in holder, (
                    f"account {account_id} claimed while held by {holder[account_id]}"
                )
                holder[account_id] = worker
            elif kind == "released":
                assert holder.pop(account_id) == worker
        assert holder == {}
        # each claim is in the name of the process that made it (its unique id, labelled
        # host:pid), not this one's
        host = socket.gethostname()
        assert sorted(w.partition("#")[0] for w in {w for _, _, w in events}) == sorted(
            [f"{host}:{one.pid}", f"{host}:{two.pid}"]
        )
