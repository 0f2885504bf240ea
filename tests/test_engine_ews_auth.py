"""`migrator run` with the service account on the wire as Exchange has it: NTLM (Exchange
Server's default) and OAuth2 client credentials whose tokens the server stops taking mid-run,
both ending exact; and the three refusals an operator meets (a wrong password, a locked-out
account, an expired client secret), each stopping the run within seconds with exit 2, its own
words and what to do, and no account charged (engine.md, "When a server is down")."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.ews import SIM_USER
from tests.fixtures.ews_auth import EwsIdentityPlatform
from tests.fixtures.exo_front import CLIENT_ID, CLIENT_SECRET, TENANT

BOUND_S = 30.0  # a refused service account stops the run in seconds, not per account


def _accounts(state: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(state) as db:
        return [
            (str(a), str(s), int(n))
            for a, s, n in db.execute(
                "select address, status, attempts from accounts where scope = 'in_scope' order by address"
            )
        ]


def _oauth_plan(c: Campaign, platform: EwsIdentityPlatform) -> dict[str, str]:
    text = c.plan_path.read_text()
    text = re.sub(
        r'auth = "basic"\nusername = "[^"]*"\npassword_env = "[^"]*"\n',
        f'auth = "oauth2"\nclient_id = "{CLIENT_ID}"\ntenant_id = "{TENANT}"\n'
        f'client_secret_env = "MIGRATOR_TEST_EWS_SECRET"\ntoken_url = "{platform.token_url}"\n',
        text,
    )
    assert 'auth = "oauth2"' in text
    c.plan_path.write_text(text)
    # the local token endpoint and simulator speak http; oauthlib wants https unless told
    return {**c.env, "MIGRATOR_TEST_EWS_SECRET": CLIENT_SECRET, "OAUTHLIB_INSECURE_TRANSPORT": "1"}


def _stopped(c: Campaign, env: dict[str, str], cause: str, hint: str) -> None:
    before = _accounts(c.state_path)
    started = time.monotonic()
    result = c.cli("run", "--plan", str(c.plan_path), "--quiet", env=env)
    elapsed = time.monotonic() - started
    err = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stdout + result.stderr
    assert elapsed < BOUND_S, elapsed
    assert f"error: the target server is unavailable: {cause}" in err, err[-2000:]
    assert f"hint: {hint}" in err, err[-2000:]
    assert "no account was charged an attempt" in err
    assert _accounts(c.state_path) == before
    assert c.sim.stats().items_created == 0
    assert CLIENT_SECRET not in result.stdout + result.stderr and "not-the-password" not in err


def test_a_migration_over_ntlm(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "c", accounts=3, workers=3, chunk=4, auth="ntlm") as c:
        assert 'auth = "ntlm"' in c.plan_path.read_text()
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        result = c.cli("run", "--plan", str(c.plan_path), "--quiet")
        assert result.returncode == 0, result.stderr
        for address in c.accounts:
            c.compare(address)
        stats = c.sim.stats()
        # NTLM authenticates connections, not requests: far fewer handshakes than requests
        assert 0 < stats.requests["auth"] < sum(stats.requests.values()) // 4
        assert c.cli("verify", "--plan", str(c.plan_path)).returncode == 0


def test_a_migration_with_oauth2_tokens_the_server_stops_taking(tmp_path: Path) -> None:
    platform = EwsIdentityPlatform()
    platform.revoke_after = 12  # each token refused after a dozen requests: several renewals a run
    c = build_campaign(
        tmp_path / "c",
        accounts=3,
        workers=3,
        chunk=4,
        sim_options={"auth": "oauth2", "token_check": platform.check},
    )
    try:
        env = _oauth_plan(c, platform)
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        result = c.cli("run", "--plan", str(c.plan_path), "--quiet", env=env)
        assert result.returncode == 0, result.stderr
        for address in c.accounts:
            c.compare(address)
        assert platform.refused_tokens["expired"] >= 2 and platform.fetches >= 3
        assert not platform.refused_tokens["invalid"]
    finally:
        c.sim.stop()
        platform.close()


def test_wrong_password_locked_account_and_expired_secret_each_stop_the_run(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "ntlm", accounts=3, workers=3, auth="ntlm") as c:
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        _stopped(
            c,
            {**c.env, "MIGRATOR_TEST_EWS_PASSWORD": "not-the-password"},
            "the EWS server refused the service account's credentials (HTTP 401 for EXAMPLE\\svc-migrator",
            "check the service account ([target] username) and the password",
        )
        c.sim.set_account_state(SIM_USER, locked=True)
        _stopped(
            c,
            c.env,
            "the service account EXAMPLE\\svc-migrator is locked out in Active Directory",
            "unlock it (Unlock-ADAccount)",
        )

    platform = EwsIdentityPlatform()
    platform.secret_expired = True
    c = build_campaign(
        tmp_path / "oauth",
        accounts=3,
        workers=3,
        sim_options={"auth": "oauth2", "token_check": platform.check},
    )
    try:
        env = _oauth_plan(c, platform)
        assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
        _stopped(
            c,
            env,
            "the app's client secret has expired (AADSTS7000222)",
            "create a new client secret",
        )
        platform.secret_expired = False  # a new secret was made: the same accounts migrate
        again = c.cli("run", "--plan", str(c.plan_path), "--quiet", env=env)
        assert again.returncode == 0, again.stderr
        assert {status for _, status, _ in _accounts(c.state_path)} == {"synced"}
    finally:
        c.sim.stop()
        platform.close()
