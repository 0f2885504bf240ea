"""The line `run` prints per account when not on a terminal: "N of M migrated" counts an account
once, on its first completed pass; a delta pass over a migrated account does not add to it."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from rich.console import Console

from migrator.engine.progress import AccountOutcome
from migrator.report.run import RunProgress
from tests.fixtures.campaign import Campaign
from tests.fixtures.ews import SIM_PASSWORD


def _lines(progress: RunProgress, stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_delta_passes_do_not_count_twice() -> None:
    stream = io.StringIO()
    progress = RunProgress(Console(file=stream, width=200, force_terminal=False), live=False)
    progress.run_started(3, 2)  # two accounts migrated before this run
    progress.account_finished(
        AccountOutcome("a@example.org", "synced", messages_done=1, first_pass=False)
    )
    progress.account_finished(AccountOutcome("b@example.org", "synced", first_pass=False))
    progress.account_finished(
        AccountOutcome("c@example.org", "synced", messages_done=4, first_pass=True)
    )
    lines = _lines(progress, stream)
    assert [line.rsplit("[", 1)[1] for line in lines] == [
        "2 of 3 migrated]",
        "2 of 3 migrated]",
        "3 of 3 migrated]",
    ]
    assert lines[2].startswith("synced c@example.org: 4 new messages")


# --- the summary after a real run (EWS simulator, Maildirs), on 80 columns and in a pipe


def test_summary_groups_skips_by_folder_and_gives_advice_in_full(
    campaign_factory: Callable[..., Campaign], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One folder with 40 entries that are no messages (dangling links, never followed), and an
    account without a target mailbox. The
    summary says so in a few lines, by reason and folder, each 'what to do' whole."""
    from migrator.commands.run import RunRequest, run
    from migrator.plan import load_plan
    from migrator.report.run import render_run_summary

    c = campaign_factory(accounts=3, messages_per_folder=2, missing_target={1})
    broken = next(a for a in c.accounts if a != _missing(c))
    archive = c.maildir(broken) / ".Archivo 2019"
    for sub in ("cur", "new", "tmp"):
        (archive / sub).mkdir(parents=True)
    for n in range(40):
        (archive / "cur" / f"17000000{n:02d}.M{n}P1.host:2,S").symlink_to(c.root / "gone" / str(n))
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0

    # the summary of a run on an 80-column terminal
    monkeypatch.setenv("MIGRATOR_TEST_EWS_PASSWORD", SIM_PASSWORD)
    summary = run(load_plan(c.plan_path), RunRequest(), state_url=f"sqlite:///{c.state_path}")
    stream = io.StringIO()
    render_run_summary(
        Console(file=stream, width=80, force_terminal=False), summary, plan_file=str(c.plan_path)
    )
    [failure] = summary.failures
    assert failure["reason"] == "no-mailbox" and len(failure["hint"]) > 40
    # --json: every message counted by folder
    assert summary.as_json()["messages"]["skipped_by_folder"] == [
        {"account": broken, "folder": "Archivo 2019", "reason": "symlink", "messages": 40}
    ]
    # and in a pipe (as from cron): the CLI retrying both accounts, skipped messages too
    piped = c.cli(
        "retry",
        "--plan",
        str(c.plan_path),
        "--account",
        broken,
        "--account",
        failure["account"],
        "--skipped",
        "--quiet",
    )
    assert piped.returncode == 1, piped.stderr

    for text, width in ((piped.stdout, 120), (stream.getvalue(), 80)):
        lines = text.splitlines()
        # only a word longer than the width (the test's deep plan path) may pass it, whole
        assert all(len(line) <= width or len(line.split()) == 1 for line in lines), [
            line for line in lines if len(line) > width
        ]
        flat = " ".join(text.split())
        # each piece of advice whole, on its own line(s)
        assert f"what to do: {failure['hint']}" in flat
        assert "what to do: symbolic links inside the source mailbox are never followed" in flat
        # the 40 links: one line for the folder, not 40 rows
        assert "symlink: 40 message(s) in 1 folder(s) of 1 account(s)" in flat
        assert f"40 in {broken}, folder Archivo 2019" in flat
        assert f"no-mailbox: 1 account(s): {failure['account']}" in flat
        assert f"migrator show {failure['account']} --plan {c.plan_path}" in flat
        assert f"migrator report --plan {c.plan_path} --format csv" in flat
        assert len(lines) < 30, text


def _missing(c: Campaign) -> str:
    """The account the simulator has no mailbox for."""
    for address in c.accounts:
        try:
            c.sim.folders(address)
        except KeyError:
            return address
    raise AssertionError("every account has a target mailbox")


# --- at 100,000 accounts: bounded, whatever the number of failures


def test_summary_of_100000_failures_stays_a_screenful() -> None:
    from migrator.engine.runner import FAILURES_KEPT, RunSummary
    from migrator.report.run import render_run_summary

    summary = RunSummary(accounts=100_000, failed=100_000)
    reasons = ("network", "no-mailbox", "auth")
    for n in range(100_000):
        reason = reasons[0] if n % 10 < 7 else reasons[1] if n % 10 < 9 else reasons[2]
        summary.add_failure(
            f"user{n:06d}@uni.example.org", reason, f"error of user{n:06d}", f"do this for {reason}"
        )
    assert len(summary.failures) == FAILURES_KEPT
    assert summary.as_json()["failed_by_reason"] == {
        "network": 70_000,
        "no-mailbox": 20_000,
        "auth": 10_000,
    }

    stream = io.StringIO()
    render_run_summary(
        Console(file=stream, width=100, force_terminal=False), summary, plan_file="plan.toml"
    )
    text = stream.getvalue()
    lines = text.splitlines()
    assert len(lines) < 30, text
    flat = " ".join(text.split())
    assert "Failed accounts: 100,000, by reason" in flat
    # every reason with its full count, the first accounts named, the rest counted
    assert (
        "network: 70,000 account(s): user000000@uni.example.org, user000001@uni.example.org" in flat
    )
    assert "and 69,995 more accounts" in flat
    assert "no-mailbox: 20,000 account(s)" in flat and "and 19,995 more accounts" in flat
    assert "auth: 10,000 account(s)" in flat
    assert (
        flat.index("network: 70,000")
        < flat.index("no-mailbox: 20,000")
        < flat.index("auth: 10,000")
    )
    # and where the whole list is
    assert "`migrator accounts --plan plan.toml --status failed`" in flat


def test_live_view_stays_a_screenful() -> None:
    """A live view over 100 accounts in flight and 1,000 failures: 12 rows in flight and the
    first 20 failures above it, then only their count."""
    stream = io.StringIO()
    progress = RunProgress(
        Console(file=stream, width=120, force_terminal=True), live=True, plan_file="plan.toml"
    )
    progress.run_started(100_000, 0)
    try:
        for n in range(100):
            progress.account_started(f"busy{n:03d}@uni.example.org")
        view = io.StringIO()
        Console(file=view, width=120, force_terminal=False).print(progress._render())
        rows = [line for line in view.getvalue().splitlines() if "@uni.example.org" in line]
        assert len(rows) == 12
        assert "and 88 more in flight" in view.getvalue()
        for n in range(1000):
            progress.account_finished(
                AccountOutcome(
                    f"user{n:06d}@uni.example.org", "failed", error="refused", reason="auth"
                )
            )
    finally:
        progress.close()
    printed = re.sub(
        r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue()
    )  # without the terminal's codes
    assert "failed user000019@uni.example.org: refused" in printed
    assert "user000020@uni.example.org" not in printed and "user000999" not in printed
    assert "further failures are counted, not printed" in printed
    assert "`migrator accounts --plan plan.toml --status failed` lists them" in " ".join(
        printed.split()
    )


def test_live_view_is_drawn_when_it_refreshes_not_per_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal the view shows the counts of the moment it is drawn (4 times a second);
    a campaign of small accounts sends thousands of events a minute, and building the view for
    each cost more than the accounts' own work (issue 19)."""
    stream = io.StringIO()
    progress = RunProgress(Console(file=stream, width=160, force_terminal=True), live=True)
    drawn = 0
    render = progress._render

    def counting() -> object:
        nonlocal drawn
        drawn += 1
        return render()

    monkeypatch.setattr(progress, "_render", counting)
    progress.run_started(2000, 0)
    try:
        for n in range(1000):
            address = f"user{n}@example.org"
            progress.account_started(address)
            progress.messages_done(address, 5, 2000)
            progress.account_finished(
                AccountOutcome(address, "synced", messages_done=5, first_pass=True)
            )
        progress.account_started("last@example.org")
        assert progress._live is not None
        progress._live.refresh()
    finally:
        progress.close()
    assert drawn < 50, drawn
    shown = stream.getvalue()
    assert "1,000 of 2,000 accounts migrated" in shown and "5,000 messages" in shown
    assert "last@example.org" in shown
