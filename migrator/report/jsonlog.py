"""`run --log-format json`: one JSON object per line, for log shippers (journald, Filebeat, Vector).

Every line carries `ts` (ISO 8601, UTC), `level`, `event` and `plan`, then the event's data.
Events: run_started, account_started, messages_done, account_finished, note, waiting,
run_finished.
Workers report concurrently, so each line is built first and written under a lock in one call:
lines never interleave. Values are escaped by json.dumps only (a newline in a subject or an
error message stays inside its string), so a line is always one parseable record.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

from migrator.engine.progress import AccountOutcome
from migrator.model.status import PassOutcome

# how loud a finished account is; anything unknown is a warning so it is not overlooked
_OUTCOME_LEVEL = {PassOutcome.SYNCED: "info", PassOutcome.FAILED: "error"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLinesProgress:
    """Implements engine.progress.Progress as JSON lines on a stream (stdout by default).

    `quiet` keeps only what `--quiet` keeps on the terminal: the final run_finished line.
    """

    def __init__(self, plan: str, stream: IO[str] | None = None, *, quiet: bool = False) -> None:
        self.plan = plan
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self._lock = threading.Lock()

    def emit(self, event: str, level: str = "info", *, always: bool = False, **data: Any) -> None:
        if self.quiet and not always:
            return
        record = {"ts": _now(), "level": level, "event": event, "plan": self.plan, **data}
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()

    # --- Progress protocol ---------------------------------------------------------------
    def run_started(self, total_accounts: int, migrated_before: int) -> None:
        self.emit("run_started", total_accounts=total_accounts, migrated_before=migrated_before)

    def account_started(self, address: str) -> None:
        self.emit("account_started", address=address)

    def messages_done(self, address: str, count: int, nbytes: int) -> None:
        # one line per committed chunk: the shipper sees progress inside a long mailbox
        self.emit("messages_done", "debug", address=address, messages=count, bytes=nbytes)

    def account_finished(self, outcome: AccountOutcome) -> None:
        level = _OUTCOME_LEVEL.get(outcome.status, "warning")
        if level == "info" and outcome.skipped:
            level = "warning"
        reasons: dict[str, int] = {}
        for skip in outcome.skipped:
            reasons[skip.reason] = reasons.get(skip.reason, 0) + 1
        self.emit(
            "account_finished",
            level,
            address=outcome.address,
            status=outcome.status,
            messages_done=outcome.messages_done,
            bytes_done=outcome.bytes_done,
            messages_seen=outcome.messages_seen,
            folders=outcome.folders,
            skipped=len(outcome.skipped),
            skipped_by_reason=reasons,
            skipped_messages=[
                {"folder": s.folder, "key": s.key, "reason": s.reason, "detail": s.detail}
                for s in outcome.skipped
            ],
            error=outcome.error,
            reason=outcome.reason,
            hint=outcome.hint,
            seconds=round(outcome.seconds, 3),
        )

    def note(self, message: str) -> None:
        self.emit("note", message=message)

    def waiting(self, message: str) -> None:
        # the run backs off (a throttled or unreachable server): kept even with --quiet
        self.emit("waiting", "warning", always=True, message=message)

    # --- after the run -------------------------------------------------------------------
    def run_finished(self, summary: Any, *, exit_code: int) -> None:
        """`summary` is an engine.runner.RunSummary; its numbers become the last line."""
        data = summary.as_json()
        failed = (
            data["accounts"]["failed"]
            or data["accounts"]["deferred"]
            or data["messages"]["skipped"]
        )
        self.emit(
            "run_finished",
            "warning" if failed else "info",
            always=True,
            exit_code=exit_code,
            **data,
        )

    def close(self) -> None:
        # nothing buffered: every line is flushed as it is written
        pass
