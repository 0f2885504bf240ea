"""`migrator accounts` on thousands of accounts: the listing streams (its first accounts are out
while the state database is still being read), `--json` is one valid JSON array in the format
it always had, and the table is one line per account."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.reports import REPO, Synthetic, synthetic_state

COUNT = 3000


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    return synthetic_state(tmp_path_factory.mktemp("listing"), COUNT)


def _migrator(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "migrator", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _holds_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (its file descriptors, as the kernel lists them)."""
    fds = Path(f"/proc/{pid}/fd")
    return any(
        os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir() if fd.is_symlink()
    )


def test_accounts_json_streams_a_valid_array(state: Synthetic) -> None:
    proc = _migrator("accounts", "--plan", str(state.plan_path), "--json")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        # the first accounts arrive; the rest wait in the process, which cannot write more
        # than the pipe holds until we read on
        head = proc.stdout.read1(1 << 14)
        while b"\n  }," not in head:
            more = proc.stdout.read1(1 << 14)
            assert more, "the listing ended before its first account was complete"
            head += more
        first = json.loads(head[: head.index(b"\n  },") + 4].removeprefix(b"[") + b"\n")
        assert first["address"] == "user00000@ife.org.mx" and first["state"] == "failed"
        # ...while it is still reading the state database: the listing is written as it is
        # read, not gathered first (a gathered list would have closed the database by now)
        assert proc.poll() is None
        assert _holds_open(proc.pid, state.state_path), (
            "the state database was read to the end before any output"
        )
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    text = (head + rest).decode()
    listed = json.loads(text)
    assert [a["address"] for a in listed] == sorted(state.statuses)
    assert {a["address"]: a["state"] for a in listed} == state.statuses
    # the format it always had: print_json of the whole list (indent 2), byte for byte
    assert text == json.dumps(listed, ensure_ascii=False, indent=2) + "\n"


def test_accounts_json_of_an_empty_selection_is_an_empty_array(state: Synthetic) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "migrator", "accounts", "--plan", str(state.plan_path), "--status", "verified", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_accounts_json_refuses_an_unknown_batch_without_half_an_array(state: Synthetic) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "migrator", "accounts", "--plan", str(state.plan_path), "--batch", "Office999", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Office999" in result.stderr


def test_accounts_table_is_one_line_per_account(state: Synthetic) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "migrator", "accounts", "--plan", str(state.plan_path), "--status", "failed"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    failed = sorted(a for a, s in state.statuses.items() if s == "failed")
    assert lines[0].split() == ["address", "name", "batch", "state", "reason"]
    body = lines[2:-1]
    assert [line.split()[0] for line in body] == failed
    # why each failed: the reason of its last error
    assert {tuple(line.split()[-2:]) for line in body} == {("failed", "no-mailbox")}
    assert lines[-1] == f"{len(failed):,} accounts"
