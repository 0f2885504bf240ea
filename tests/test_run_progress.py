"""The line `run` prints per account when not on a terminal: "N of M migrated" counts an account
once, on its first completed pass; a delta pass over a migrated account does not add to it."""

from __future__ import annotations

import io

from rich.console import Console

from migrator.engine.progress import AccountOutcome
from migrator.report.run import RunProgress


def _lines(progress: RunProgress, stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_delta_passes_do_not_count_twice() -> None:
    stream = io.StringIO()
    progress = RunProgress(Console(file=stream, width=200, force_terminal=False), live=False)
    progress.run_started(3, 2)  # two accounts migrated before this run
    progress.account_finished(AccountOutcome("a@example.org", "synced", messages_done=1, first_pass=False))
    progress.account_finished(AccountOutcome("b@example.org", "synced", first_pass=False))
    progress.account_finished(AccountOutcome("c@example.org", "synced", messages_done=4, first_pass=True))
    lines = _lines(progress, stream)
    assert [line.rsplit("[", 1)[1] for line in lines] == ["2 of 3 migrated]", "2 of 3 migrated]", "3 of 3 migrated]"]
    assert lines[2].startswith("synced c@example.org: 4 new messages")
