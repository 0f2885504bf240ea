"""`make demo` end to end, at a small scale: the same code path as the full sample campaign
(LDIF directory with hostile entries, Maildirs with hard cases and deliberate trouble, the
EWS simulator in its own process, discover -> run -> verify -> status), then a second run
that is a delta pass with nothing to send."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def _demo(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator.samples.demo", "--dir", str(folder),
         "--people", "400", "--in-scope", "60", "--offices", "6"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "160"},
    )


def test_demo_migrates_every_account_and_a_second_run_sends_nothing(tmp_path: Path) -> None:
    first = _demo(tmp_path / "demo")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert "60 of 60 accounts migrated (100.0 %)" in out
    assert "60 of 60 accounts verified" in out
    # the deliberate trouble of account #7 is reported with its reasons, not lost
    assert "too-large" in out and "symlink" in out
    assert re.search(r"messages: [\d,]+ migrated .*2 skipped", out), out[-2000:]

    again = _demo(tmp_path / "demo")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    finished = re.search(r"run finished in [\d.]+ s: 60 accounts \(60 synced, 0 failed\), 0 messages", again.stdout)
    assert finished, again.stdout[-3000:]
    # nothing new: the accounts stay verified and verify has nothing to do
    assert "nothing to verify" in again.stdout
    assert "accounts: 60 verified, 0 synced" in again.stdout
