"""`run`/`retry --log-format json`: every stdout line is one JSON record a log shipper can
ingest, with one account_finished per account and a final run_finished carrying the summary."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from migrator.report.jsonlog import JsonLinesProgress
from tests.fixtures.campaign import Campaign, build_campaign


def _records(stdout: str) -> list[dict[str, Any]]:
    lines = stdout.splitlines()
    assert lines, "no output"
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"stdout line {number} is not JSON: {line!r}") from exc
        assert isinstance(record, dict), line
        for key in ("ts", "level", "event", "plan"):
            assert key in record, f"line {number} lacks {key}: {line!r}"
        ts = datetime.fromisoformat(record["ts"])
        assert ts.utcoffset() == timedelta(0), record["ts"]
        assert abs(datetime.now(UTC) - ts) < timedelta(minutes=10), record["ts"]
        records.append(record)
    return records


def _source_count(c: Campaign, address: str) -> int:
    return sum(len(rows) for rows in c.source_messages(address).values())


def test_a_run_logs_one_json_record_per_line_ending_with_the_summary(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=3, max_size=200_000) as c:
        big = c.maildir(c.accounts[0]) / "cur" / "1700000000.M9P9.host:2,S"
        big.write_bytes(b"Subject: big\r\n\r\n" + b"x" * 300_000 + b"\r\n")
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        result = c.cli("run", "--plan", str(c.plan_path), "--log-format", "json")
        assert result.returncode == 1, result.stderr  # finished, one message skipped
        records = _records(result.stdout)
        assert {r["plan"] for r in records} == {"t"}
        assert records[0]["event"] == "run_started" and records[0]["total_accounts"] == 3

        finished = {r["address"]: r for r in records if r["event"] == "account_finished"}
        assert sorted(finished) == c.accounts
        started = [r["address"] for r in records if r["event"] == "account_started"]
        assert sorted(started) == c.accounts
        for address, record in finished.items():
            assert record["status"] == "synced", record
            skipped = 1 if address == c.accounts[0] else 0
            assert record["messages_done"] == _source_count(c, address) - skipped
            assert record["skipped"] == skipped
            # chunk progress lines add up to the account's total
            chunks = [
                r for r in records if r["event"] == "messages_done" and r["address"] == address
            ]
            assert sum(r["messages"] for r in chunks) == record["messages_done"]
        first = finished[c.accounts[0]]
        assert first["level"] == "warning"
        assert first["skipped_by_reason"] == {"too-large": 1}
        assert first["skipped_messages"][0]["key"].startswith("1700000000.M9P9")

        last = records[-1]
        assert last["event"] == "run_finished" and last["exit_code"] == 1
        assert last["accounts"]["processed"] == 3 and last["accounts"]["synced"] == 3
        assert last["accounts"]["failed"] == 0
        total = sum(_source_count(c, a) for a in c.accounts)
        assert last["messages"]["done"] == total - 1
        assert last["messages"]["skipped"] == 1
        assert last["messages"]["skipped_by_reason"] == {"too-large": 1}
        assert last["bytes_done"] == sum(r["bytes_done"] for r in finished.values())
        assert [r["event"] for r in records].count("run_finished") == 1


def test_retry_logs_json_too_and_failures_carry_reason_and_hint(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=2, missing_target={1}) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        result = c.cli("run", "--plan", str(c.plan_path), "--log-format", "json")
        assert result.returncode == 1, result.stderr
        records = _records(result.stdout)
        [failed] = [
            r for r in records if r["event"] == "account_finished" and r["status"] != "synced"
        ]
        missing = failed["address"]
        assert missing in c.accounts and failed["status"] == "failed"
        assert sum(r["event"] == "account_finished" for r in records) == 2
        assert failed["level"] == "error" and failed["reason"] == "no-mailbox"
        assert failed["error"] and failed["hint"]
        last = records[-1]
        assert (
            last["event"] == "run_finished"
            and last["level"] == "warning"
            and last["exit_code"] == 1
        )
        assert [f["account"] for f in last["failures"]] == [missing]

        c.sim.add_mailbox(missing)
        retry = c.cli(
            "retry", "--plan", str(c.plan_path), "--failed", "--log-format", "json", "--quiet"
        )
        assert retry.returncode == 0, retry.stderr
        [only] = _records(retry.stdout)  # --quiet keeps only the summary
        assert (
            only["event"] == "run_finished" and only["exit_code"] == 0 and only["level"] == "info"
        )
        assert only["accounts"]["synced"] == 1 and only["messages"]["done"] == _source_count(
            c, missing
        )
        c.compare(missing)

        nothing = c.cli("retry", "--plan", str(c.plan_path), "--failed", "--log-format", "json")
        assert nothing.returncode == 0, nothing.stderr
        [note] = _records(nothing.stdout)
        assert note["event"] == "note" and "no failed accounts" in note["message"]


def test_concurrent_writers_never_interleave_and_hostile_text_stays_in_its_string(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.jsonl"
    hostile = 'line\nbreak "quoted" \x1b[31m Zürich \u2028 ' + "y" * 5000
    with path.open("w", encoding="utf-8") as stream:
        progress = JsonLinesProgress("p", stream)

        def worker(n: int) -> None:
            for i in range(200):
                progress.note(f"{n}/{i} {hostile}")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    text = path.read_text(encoding="utf-8")
    assert "Zürich" in text  # not \u-escaped: ensure_ascii=False
    records = [json.loads(line) for line in text.split("\n") if line]
    assert len(records) == 8 * 200
    assert {r["message"].split(" ", 1)[1] for r in records} == {hostile}
    assert sorted(r["message"].split(" ", 1)[0] for r in records) == sorted(
        f"{n}/{i}" for n in range(8) for i in range(200)
    )
