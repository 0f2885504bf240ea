"""The circuit breaker: a target or source server that is down, silent, or
refuses the service account's credentials stops the whole run within seconds, with exit 2 and
the innermost cause, and charges no account an attempt, where a campaign of 20 accounts against
a refusing target would otherwise take minutes to fail and mark every account failed.

Real servers throughout: a closed port, a listener that accepts and never answers, the EWS
simulator and Dovecot with wrong credentials (as IMAP target and as IMAP source)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from migrator.engine.breaker import TRIP_AFTER, TRIP_SPAN_S, Breaker, WaitNotices
from migrator.model.errors import Outage, ServiceUnavailable
from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.dead_servers import closed_port, silent_listener
from tests.fixtures.dovecot import MASTER_PASSWORD, MASTER_USER, DovecotServer
from tests.fixtures.ews import SIM_PASSWORD, SIM_USER, start_simulator
from tests.fixtures.imap_campaign import PASSWORD_ENV, build_imap_campaign

ACCOUNTS = 20
BOUND_S = 30.0  # generous: without the breaker these runs take minutes


def _accounts(state: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(state) as db:
        return db.execute(
            "SELECT address, status, attempts FROM accounts WHERE scope = 'in_scope' ORDER BY address"
        ).fetchall()


def _run_quiet(
    cli: object, plan: Path, **kwargs: object
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = cli("run", "--plan", str(plan), "--quiet", **kwargs)  # type: ignore[operator]
    return result, time.monotonic() - started


def _assert_stopped_cleanly(
    result: subprocess.CompletedProcess[str],
    elapsed: float,
    before: list[tuple[str, str, int]],
    after: list[tuple[str, str, int]],
    cause: str,
) -> None:
    err = " ".join(result.stderr.split())  # rich wraps long lines
    assert result.returncode == 2, result.stdout + result.stderr
    assert elapsed < BOUND_S, (elapsed, err[-2000:])
    assert re.search(cause, err), err[-2000:]
    assert "no account was charged an attempt" in err
    # every account as it was: not failed, no attempt used up
    assert after == before
    assert all(status != "failed" and attempts == 0 for _, status, attempts in after), after


def _point_ews_at(c: Campaign, port: int, *, timeout: float | None = None) -> None:
    text = re.sub(
        r'url = "http://[^"]+"',
        f'url = "http://127.0.0.1:{port}/EWS/Exchange.asmx"',
        c.plan_path.read_text(),
    )
    if timeout is not None:
        text = text.replace('auth = "basic"', f'auth = "basic"\ntimeout = {timeout}')
    c.plan_path.write_text(text)


def test_a_target_that_refuses_connections_stops_the_run_in_seconds(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=ACCOUNTS, messages_per_folder=1, workers=4) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        port = closed_port()
        _point_ews_at(c, port)
        before = _accounts(c.state_path)
        result, elapsed = _run_quiet(c.cli, c.plan_path)
        # the socket's words, not exchangelib's "No valid version headers found"
        _assert_stopped_cleanly(
            result,
            elapsed,
            before,
            _accounts(c.state_path),
            rf"error: the target server is unavailable: connection refused by 127\.0\.0\.1:{port}",
        )
        assert "No valid version headers" not in result.stderr
        # --quiet, and still the run said what it was waiting for while it retried
        assert re.search(
            rf"waiting for the target server until \d\d:\d\d:\d\d: connection refused by 127\.0\.0\.1:{port}",
            result.stderr,
        ), result.stderr
        assert result.stdout == ""


def test_a_target_that_never_answers_is_bounded_by_the_plans_timeout(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=ACCOUNTS, messages_per_folder=1, workers=4) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        with silent_listener() as port:
            _point_ews_at(c, port, timeout=2)
            before = _accounts(c.state_path)
            result, elapsed = _run_quiet(c.cli, c.plan_path)
        _assert_stopped_cleanly(
            result,
            elapsed,
            before,
            _accounts(c.state_path),
            rf"the target server is unavailable: no answer from 127\.0\.0\.1:{port} within 2 s",
        )
        assert re.search(
            rf"waiting for the target server until .*no answer from 127\.0\.0\.1:{port}",
            result.stderr,
        )


def test_wrong_ews_credentials_stop_the_run_without_charging_an_account(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=ACCOUNTS, messages_per_folder=1, workers=4) as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        before = _accounts(c.state_path)
        result, elapsed = _run_quiet(
            c.cli, c.plan_path, env={**c.env, "MIGRATOR_TEST_EWS_PASSWORD": "not-the-password"}
        )
        _assert_stopped_cleanly(
            result,
            elapsed,
            before,
            _accounts(c.state_path),
            r"the target server is unavailable: the EWS server refused the service account's credentials",
        )
        assert "hint: check the service account" in " ".join(result.stderr.split())
        assert "not-the-password" not in result.stdout + result.stderr
        assert re.search(
            r"waiting for the target server until \d\d:\d\d:\d\d: the EWS server refused",
            result.stderr,
        )
        assert c.sim.stats().items_created == 0
        # with the right password the same accounts migrate, every one on its first attempt
        again = c.cli("run", "--plan", str(c.plan_path), "--quiet")
        assert again.returncode == 0, again.stderr
        assert {status for _, status, _ in _accounts(c.state_path)} == {"synced"}
        c.compare(c.accounts[0])


def test_wrong_imap_target_credentials_stop_the_run(tmp_path: Path, dovecot: DovecotServer) -> None:
    c = build_imap_campaign(tmp_path / "c", dovecot, accounts=8, messages_per_folder=1, workers=4)
    try:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        before = _accounts(c.state_path)
        result, elapsed = _run_quiet(
            c.cli, c.plan_path, env={**c.env, PASSWORD_ENV: "not-the-password"}
        )
        _assert_stopped_cleanly(
            result,
            elapsed,
            before,
            _accounts(c.state_path),
            rf"the target server is unavailable: IMAP server 127\.0\.0\.1:{dovecot.port} refused the password of "
            rf"{MASTER_USER} \(\[AUTHENTICATIONFAILED\]",
        )
        assert "not-the-password" not in result.stdout + result.stderr
    finally:
        c.close()


def test_an_imap_target_that_refuses_connections_stops_the_run(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    c = build_imap_campaign(tmp_path / "c", dovecot, accounts=8, messages_per_folder=1, workers=4)
    try:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        port = closed_port()
        c.plan_path.write_text(
            c.plan_path.read_text().replace(f"port = {dovecot.port}", f"port = {port}")
        )
        before = _accounts(c.state_path)
        result, elapsed = _run_quiet(c.cli, c.plan_path)
        _assert_stopped_cleanly(
            result,
            elapsed,
            before,
            _accounts(c.state_path),
            rf"the target server is unavailable: connection refused by 127\.0\.0\.1:{port}",
        )
    finally:
        c.close()


# --- the source server ---------------------------------------------------------------------------
IMAP_SOURCE_PLAN = """\
[plan]
name = "imap-src"
[directory]
url = "ldif:{ldif}"
base = "ou=people,dc=ife,dc=org,dc=mx"
filter = "(mail=*)"
[source]
kind = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
login = "{{uid}}"
master_user = "{master}"
password_env = "MIGRATOR_TEST_IMAP_MASTER"
timeout = 2
[target]
kind = "ews"
url = "{url}"
auth = "basic"
username = "{user}"
password_env = "MIGRATOR_TEST_EWS_PASSWORD"
[run]
workers = 4
[state]
url = "sqlite:///{state}"
"""


def _imap_source_campaign(
    tmp_path: Path, dovecot: DovecotServer, port: int, accounts: int
) -> tuple[Path, Path, object]:
    entries = ["dn: ou=people,dc=ife,dc=org,dc=mx\nobjectClass: organizationalUnit\nou: people\n"]
    sim = start_simulator(tmp_path / "ews")
    for _ in range(accounts):
        user, _ = dovecot.new_user()
        address = f"{user}@ife.org.mx"
        sim.add_mailbox(address)
        entries.append(
            f"dn: uid={user},ou=people,dc=ife,dc=org,dc=mx\nobjectClass: inetOrgPerson\n"
            f"uid: {user}\ncn: User {user}\nsn: User\nmail: {address}\n"
        )
    ldif = tmp_path / "people.ldif"
    ldif.write_text("\n".join(entries) + "\n")
    plan = tmp_path / "plan.toml"
    state = tmp_path / "state.db"
    plan.write_text(
        IMAP_SOURCE_PLAN.format(
            ldif=ldif, port=port, master=MASTER_USER, url=sim.url, user=SIM_USER, state=state
        )
    )
    return plan, state, sim


def _cli(password: str):  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "MIGRATOR_TEST_IMAP_MASTER": password,
        "MIGRATOR_TEST_EWS_PASSWORD": SIM_PASSWORD,
    }

    def cli(*args: str, env: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "migrator", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return cli


def test_a_wrong_imap_source_master_password_stops_the_run(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    plan, state, sim = _imap_source_campaign(tmp_path, dovecot, dovecot.port, ACCOUNTS)
    try:
        cli = _cli("not-the-master-password")
        assert cli("discover", "--plan", str(plan)).returncode == 0
        before = _accounts(state)
        result, elapsed = _run_quiet(cli, plan)
        _assert_stopped_cleanly(
            result,
            elapsed,
            before,
            _accounts(state),
            rf"the source server is unavailable: 127\.0\.0\.1:{dovecot.port} refused the password of the master "
            rf"user {MASTER_USER} \(\[AUTHENTICATIONFAILED\]",
        )
        assert "not-the-master-password" not in result.stdout + result.stderr
        assert re.search(r"waiting for the source server until \d\d:\d\d:\d\d: ", result.stderr), (
            result.stderr
        )
        # and with the right one, the next run takes every account on its first attempt
        again = _cli(MASTER_PASSWORD)("run", "--plan", str(plan), "--quiet")
        assert again.returncode == 0, again.stderr
        assert {(status, attempts) for _, status, attempts in _accounts(state)} == {("synced", 0)}
    finally:
        sim.stop()  # type: ignore[attr-defined]


def test_an_imap_source_that_never_greets_stops_the_run(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    with silent_listener() as port:
        plan, state, sim = _imap_source_campaign(tmp_path, dovecot, port, ACCOUNTS)
        try:
            cli = _cli(MASTER_PASSWORD)
            assert cli("discover", "--plan", str(plan)).returncode == 0
            before = _accounts(state)
            result, elapsed = _run_quiet(cli, plan)
            _assert_stopped_cleanly(
                result,
                elapsed,
                before,
                _accounts(state),
                rf"the source server is unavailable: no answer from 127\.0\.0\.1:{port} within 2 s",
            )
        finally:
            sim.stop()  # type: ignore[attr-defined]


# --- the rules, on a clock of our own ---------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


REFUSED = Outage("target", "unreachable", "connection refused by mail.example.org:443")


def test_a_blip_shorter_than_the_span_is_ridden_out_and_an_answer_clears_the_count() -> None:
    clock, trips = Clock(), []
    breaker = Breaker(trips.append, clock=clock)
    for _ in range(TRIP_AFTER * 3):  # many workers failing at the same instant
        breaker.failed(REFUSED)
    assert trips == [] and breaker.tripped is None
    breaker.succeeded("target")  # the server answered: it is back
    clock.now += TRIP_SPAN_S * 2
    for _ in range(TRIP_AFTER - 1):
        breaker.failed(REFUSED)
        clock.now += TRIP_SPAN_S
    assert trips == []
    # another service's answer does not vouch for this one
    breaker.succeeded("source")
    breaker.failed(REFUSED)
    [error] = trips
    assert isinstance(error, ServiceUnavailable) and error.exit_code == 2
    assert error.message.startswith(
        "the target server is unavailable: connection refused by mail.example.org:443"
    )
    assert f"{TRIP_AFTER} failures in a row" in error.message


def test_waiting_lines_are_rate_limited_per_service_and_reason() -> None:
    clock, lines = Clock(), []
    notices = WaitNotices(lines.append, every=30, clock=clock, wall=lambda: 0.0)
    for _ in range(50):  # fifty retries of sixteen workers in a few seconds
        notices.waiting("the target server", "throttled", "it asks us to slow down", 5)
        clock.now += 0.1
    notices.waiting(
        "the target server", "unreachable", "connection refused by x:443", 5
    )  # news: said at once
    notices.waiting("the source server", "unreachable", "connection refused by y:993", 5)
    clock.now += 31
    notices.waiting("the target server", "unreachable", "connection refused by x:443", 5)
    assert [line.split(":", 3)[-1].strip() for line in lines] == [
        "it asks us to slow down",
        "connection refused by x:443",
        "connection refused by y:993",
        "connection refused by x:443",
    ]
    assert all(line.startswith("waiting for the ") and " until " in line for line in lines)
