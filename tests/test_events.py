"""`events`: the event log, filtered by account and time, and followed as it grows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migrator.commands.events import follow_events, parse_since
from migrator.model.errors import UsageError
from migrator.plan import load_plan
from migrator.store import open_store
from tests.fixtures.reports import Reported, invoke, synthetic_state


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_events_of_the_campaign(reported_campaign: Reported) -> None:
    plan = str(reported_campaign.plan_path)
    result = invoke("events", "--plan", plan, "--json")
    assert result.exit_code == 0, result.output
    events = _json_lines(result.output)
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)  # oldest first
    assert events[0]["kind"] == "discovery"
    released = {e["account"]: e["to"] for e in events if e["kind"] == "released"}
    assert released == {a: "synced" for a in reported_campaign.migrated} | {
        reported_campaign.failed: "failed"
    }

    mine = _json_lines(
        invoke("events", "--plan", plan, "--json", "--account", reported_campaign.failed).output
    )
    assert {e["account"] for e in mine} == {reported_campaign.failed}
    assert [e["kind"] for e in mine] == ["claimed", "released"]
    assert mine[1]["detail"]["reason"] == "no-mailbox"

    assert _json_lines(invoke("events", "--plan", plan, "--json", "--since", "1h").output) == events
    assert invoke("events", "--plan", plan, "--json", "--since", "2999-01-01").output == ""
    last_two = _json_lines(invoke("events", "--plan", plan, "--json", "--limit", "2").output)
    assert last_two == events[-2:]

    text = invoke("events", "--plan", plan, "--account", reported_campaign.failed).output
    assert f"{reported_campaign.failed}  released  running -> failed" in text

    bad = invoke("events", "--plan", plan, "--since", "yesterday")
    assert bad.exit_code == 2 and "neither a duration nor an ISO time" in bad.output


def test_parse_since() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("3d", now) == now - timedelta(days=3)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("1w", now) == now - timedelta(weeks=1)
    assert parse_since("2026-11-19T08:00", now) == datetime(2026, 11, 19, 8, 0, tzinfo=UTC)
    assert parse_since("2026-11-19T08:00:00-06:00", now) == datetime(
        2026, 11, 19, 14, 0, tzinfo=UTC
    )
    with pytest.raises(UsageError):
        parse_since("soon", now)


def test_follow_sees_events_written_after_it_started(tmp_path: Path) -> None:
    data = synthetic_state(tmp_path / "s", 3)
    plan = load_plan(data.plan_path)
    store = open_store(f"sqlite:///{data.state_path}")
    try:
        plan_id = store.plan_id("synthetic")
        assert plan_id is not None
        last = max(e["id"] for e in store.list_events(plan_id))
        follow = follow_events(plan, after_id=last, poll_seconds=0.02, timeout=20)
        for n in range(3):
            store.add_event(plan_id, "note", detail={"n": n})
            event = next(follow)  # polls until the new event shows up
            assert (event["kind"], event["detail"]) == ("note", {"n": n})
        follow.close()
    finally:
        store.close()

    # the CLI prints what exists, then follows until the (test-only) timeout
    result = invoke(
        "events",
        "--plan",
        str(data.plan_path),
        "--json",
        "--follow",
        env={"MIGRATOR_FOLLOW_TIMEOUT": "0.2"},
    )
    assert result.exit_code == 0, result.output
    assert [e["detail"] for e in _json_lines(result.output) if e["kind"] == "note"] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


FOLLOW_SCRIPT = (
    "from migrator.cli.main import cli, main\n"
    "from migrator.cli.reports import register\n"
    "register(cli)\n"
    "main()\n"
)


def test_follow_in_a_process_until_ctrl_c(tmp_path: Path) -> None:
    import os
    import queue
    import signal
    import subprocess
    import sys
    import threading
    import time

    data = synthetic_state(tmp_path / "s", 2)
    store = open_store(f"sqlite:///{data.state_path}")
    try:
        plan_id = store.plan_id("synthetic")
        assert plan_id is not None
        existing = [e["kind"] for e in sorted(store.list_events(plan_id), key=lambda e: e["id"])]
    finally:
        store.close()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            FOLLOW_SCRIPT,
            "events",
            "--plan",
            str(data.plan_path),
            "--json",
            "--follow",
            "--poll-interval",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert proc.stdout is not None
    # A reader thread, not select() on the pipe: readline() buffers several lines at once,
    # and select() would then wait for more bytes while the lines sit in the buffer.
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()

    def next_event(deadline: float) -> dict:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("no event printed in time") from None
        assert line, f"events --follow ended early: {proc.stderr.read()}"  # type: ignore[union-attr]
        return json.loads(line)

    try:
        deadline = time.monotonic() + 20
        assert [
            next_event(deadline)["kind"] for _ in existing
        ] == existing  # what was there, in order
        store = open_store(f"sqlite:///{data.state_path}")
        try:
            store.add_event(plan_id, "note", detail={"from": "another process"})
        finally:
            store.close()
        event = next_event(time.monotonic() + 20)
        assert (event["kind"], event["detail"]) == ("note", {"from": "another process"})
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
