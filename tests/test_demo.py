"""`make demo` end to end, at a small scale: the same code path as the full sample campaign
(LDIF directory with hostile entries, Maildirs with hard cases and deliberate trouble, the
EWS simulator in its own process, discover -> run -> verify -> status), then a second run
that is a delta pass with nothing to send."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from migrator.commands.classify import classify_all
from migrator.model.account import DirectoryEntry, Scope
from migrator.samples.demo import (
    Shape,
    _people,
    _probe_plan,
    prepare,
    sample_plan,
    size_problem,
)
from migrator.samples.directory import DEFAULT_BASE


def _demo(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "migrator.samples.demo",
            "--dir",
            str(folder),
            "--people",
            "400",
            "--in-scope",
            "60",
            "--offices",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
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
    finished = re.search(
        r"run finished in [\d.]+ s: 60 accounts \(60 synced, 0 failed\), 0 messages", again.stdout
    )
    assert finished, again.stdout[-3000:]
    # nothing new: the accounts stay verified and verify has nothing to do
    assert "nothing to verify" in again.stdout
    assert "accounts: 60 verified, 0 synced" in again.stdout


def _demo_sizes(folder: Path, *sizes: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator.samples.demo", "--dir", str(folder), *sizes],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("sizes", "words"),
    [
        (
            ("--people", "200", "--in-scope", "20"),
            "--in-scope 20 is too small: the sample's 36 awkward directory "
            "entries alone put 23 accounts in scope; use --in-scope 23 or more",
        ),
        (
            ("--people", "35", "--in-scope", "23"),
            "--people 35 is too small for --in-scope 23: the directory also "
            "holds 13 awkward entries out of scope; use --people 36 or more",
        ),
        (("--people", "10", "--in-scope", "60"), "use --people 73 or more"),
        (
            (
                "--offices",
                "0",
            ),
            "--offices 0: a sample needs at least 1 office",
        ),
        (
            (
                "--in-scope",
                "-5",
            ),
            "use --in-scope 23 or more",
        ),
    ],
)
def test_sizes_too_small_for_the_sample_are_one_error_line(
    tmp_path: Path, sizes: tuple[str, ...], words: str
) -> None:
    """The README's small sample with other sizes (--people 200 --in-scope 20) ended in a
    Python traceback (ValueError)."""
    result = _demo_sizes(tmp_path / "demo", *sizes)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    last = result.stderr.splitlines()[-1]  # after argparse's usage lines: the one error line
    assert last.startswith("python -m migrator.samples.demo: error: --") and words in last, last
    assert not (tmp_path / "demo").exists()  # nothing half-built


@pytest.mark.parametrize(
    ("people", "in_scope", "offices"), [(36, 23, 1), (37, 23, 2), (37, 24, 400), (90, 41, 7)]
)
def test_every_size_from_the_smallest_up_builds_the_sample_asked_for(
    people: int, in_scope: int, offices: int
) -> None:
    shape = Shape(people, in_scope, offices)
    assert size_problem(shape) is None
    people_list = _people(shape)
    selected = [
        DirectoryEntry(p.dn(DEFAULT_BASE), p.attributes()) for p in people_list if p.selected
    ]
    accounts = classify_all(_probe_plan(shape), selected, [])
    assert len(people_list) == people
    assert sum(a.scope is Scope.IN_SCOPE for a in accounts) == in_scope


def test_the_smallest_sample_is_discovered_whole(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    shape = Shape(36, 23, 1)
    prepare(folder, shape)
    plan = sample_plan(folder, 1, shape).write(folder / "plan.toml")
    discovered = subprocess.run(
        [sys.executable, "-m", "migrator", "discover", "--plan", str(plan), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert discovered.returncode == 0, discovered.stderr
    assert json.loads(discovered.stdout)["in_scope"] == 23
    # asked again for other sizes, the folder says what it holds instead of running another sample
    again = _demo_sizes(folder, "--people", "400", "--in-scope", "60")
    assert again.returncode == 2
    assert "holds a sample built with --people 36 --in-scope 23 --offices 1" in again.stderr
