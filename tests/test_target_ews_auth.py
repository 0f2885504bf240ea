"""The service account on the wire: NTLM (Exchange Server's default) and OAuth2 client
credentials against the simulator, whose IIS front checks them (simulator/ews/auth.py), and one
clear error for each way they are refused: a wrong password (or an expired one), a locked-out
account, a wrong client secret, an expired secret, a disabled app, a token the server refuses.
Each carries an Outage, so `run` stops on it (engine.md, "When a server is down")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from migrator.adapters.targets import open_target
from migrator.adapters.targets.ews import EwsTarget
from migrator.model.errors import PermanentError
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.model.plan import TargetSettings
from migrator.simulator.ews import EwsSimulator
from tests.fixtures.ews import (
    SIM_PASSWORD,
    SIM_USER,
    forget_protocols,
    running_simulator,
    start_simulator,
)
from tests.fixtures.ews_auth import EwsIdentityPlatform
from tests.fixtures.exo_front import CLIENT_ID, CLIENT_SECRET, TENANT

MAILBOX = "ana@ife.example"


@pytest.fixture(autouse=True)
def http_allowed_for_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local token endpoint and simulator speak plain HTTP; oauthlib refuses that unless
    told (a real token endpoint and EWS URL are https)."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture
def ntlm_sim(tmp_path: Path) -> Iterator[EwsSimulator]:
    with running_simulator(tmp_path / "ews", auth="ntlm") as sim:
        sim.add_mailbox(MAILBOX)
        yield sim


@pytest.fixture
def platform() -> Iterator[EwsIdentityPlatform]:
    p = EwsIdentityPlatform()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def oauth_sim(tmp_path: Path, platform: EwsIdentityPlatform) -> Iterator[EwsSimulator]:
    with running_simulator(tmp_path / "ews", auth="oauth2", token_check=platform.check) as sim:
        sim.add_mailbox(MAILBOX)
        yield sim


def ntlm_target(sim: EwsSimulator, password: str = SIM_PASSWORD, **changes: Any) -> EwsTarget:
    settings = TargetSettings(
        kind="ews",
        url=sim.url,
        auth="ntlm",
        username=f"EXAMPLE\\{SIM_USER}",
        password_env="UNUSED",
        timeout=30.0,
    )
    target = open_target(
        replace(settings, **changes), secrets={"password": password}, max_connections=1
    )
    assert isinstance(target, EwsTarget)
    return target


def oauth_target(
    sim: EwsSimulator, platform: EwsIdentityPlatform, secret: str = CLIENT_SECRET
) -> EwsTarget:
    settings = TargetSettings(
        kind="ews",
        url=sim.url,
        auth="oauth2",
        client_id=CLIENT_ID,
        tenant_id=TENANT,
        client_secret_env="UNUSED",
        token_url=platform.token_url,
        timeout=30.0,
    )
    target = open_target(settings, secrets={"client_secret": secret}, max_connections=2)
    assert isinstance(target, EwsTarget)
    return target


def chunk(prefix: str, n: int) -> list[UploadItem]:
    return [
        UploadItem(
            f"{prefix}{i}",
            f"Subject: {prefix}{i}\r\n\r\ncuerpo\r\n".encode(),
            Flags(seen=True),
            None,
        )
        for i in range(n)
    ]


def refusal(target: EwsTarget) -> PermanentError:
    try:
        with pytest.raises(PermanentError) as refused:
            target.preflight(MAILBOX)
    finally:
        target.close()
    error = refused.value
    assert error.reason == "auth"
    assert (
        error.outage is not None
        and error.outage.kind == "auth"
        and error.outage.service == "target"
    )
    return error


# --- NTLM ----------------------------------------------------------------------------------------


def test_ntlm_authenticates_each_connection_once_and_uploads(ntlm_sim: EwsSimulator) -> None:
    ntlm_sim.reset_stats()
    target = ntlm_target(ntlm_sim)
    try:
        folder = target.ensure_folder(MAILBOX, ("INBOX",), FolderRole.INBOX)
        for n in range(3):
            assert all(r.ok for r in target.upload(MAILBOX, folder, chunk(f"n{n}-", 5)))
        assert len(target.find(MAILBOX, folder, [f"n2-{i}" for i in range(5)])) == 5
    finally:
        target.close()
    assert len(ntlm_sim.items(MAILBOX)) == 15
    stats = ntlm_sim.stats()
    # one connection: its first request answered 401, then NEGOTIATE/CHALLENGE, then every
    # request of the connection went through without another handshake (IIS's default)
    assert stats.requests["auth"] == 2
    assert stats.requests["CreateItem"] == 3


def test_basic_is_refused_where_only_ntlm_is_on(ntlm_sim: EwsSimulator) -> None:
    error = refusal(ntlm_target(ntlm_sim, auth="basic"))
    assert "refused the service account's credentials" in error.message


def test_a_wrong_or_expired_password_is_one_clear_error(ntlm_sim: EwsSimulator) -> None:
    wrong = refusal(ntlm_target(ntlm_sim, password="not-the-password"))
    assert (
        "refused the service account's credentials (HTTP 401 for EXAMPLE\\svc-migrator"
        in wrong.message
    )
    assert "not-the-password" not in wrong.message + (wrong.hint or "")
    assert wrong.hint is not None and "password_env" in wrong.hint and "Get-ADUser" in wrong.hint
    assert wrong.outage is not None and wrong.outage.hint == wrong.hint
    ntlm_sim.set_account_state(SIM_USER, password_expired=True)
    expired = refusal(ntlm_target(ntlm_sim))  # the right password, expired: refused the same way
    assert expired.message == wrong.message


def test_a_locked_out_account_says_so(ntlm_sim: EwsSimulator) -> None:
    ntlm_sim.set_account_state(SIM_USER, locked=True)
    for password in (SIM_PASSWORD, "not-the-password"):
        locked = refusal(ntlm_target(ntlm_sim, password=password))
        assert (
            "the service account EXAMPLE\\svc-migrator is locked out in Active Directory"
            in locked.message
        )
        assert locked.hint is not None and "Unlock-ADAccount" in locked.hint
    ntlm_sim.set_account_state(SIM_USER)
    target = ntlm_target(ntlm_sim)
    try:
        target.preflight(MAILBOX)
    finally:
        target.close()


# --- OAuth2 --------------------------------------------------------------------------------------


def test_oauth2_client_credentials_reuse_one_token(
    oauth_sim: EwsSimulator, platform: EwsIdentityPlatform
) -> None:
    target = oauth_target(oauth_sim, platform)
    try:
        folder = target.ensure_folder(MAILBOX, ("INBOX",), FolderRole.INBOX)
        for n in range(3):
            assert all(r.ok for r in target.upload(MAILBOX, folder, chunk(f"o{n}-", 4)))
    finally:
        target.close()
    assert len(oauth_sim.items(MAILBOX)) == 12
    assert platform.fetches == 1 and not platform.refused_tokens


def test_a_token_the_server_stops_taking_is_replaced_and_nothing_is_sent_twice(
    oauth_sim: EwsSimulator, platform: EwsIdentityPlatform
) -> None:
    platform.revoke_after = 3  # every token is refused from its 4th request on
    target = oauth_target(oauth_sim, platform)
    try:
        folder = target.ensure_folder(MAILBOX, ("INBOX",), FolderRole.INBOX)
        for n in range(6):
            results = target.upload(MAILBOX, folder, chunk(f"r{n}-", 3))
            assert all(r.ok for r in results), [r.error for r in results]
    finally:
        target.close()
    assert platform.refused_tokens["expired"] >= 2 and platform.fetches >= 3
    subjects = sorted(i.subject or "" for i in oauth_sim.items(MAILBOX))
    assert subjects == sorted(f"r{n}-{i}" for n in range(6) for i in range(3))  # each once


def test_a_token_that_expires_mid_run_is_renewed(tmp_path: Path) -> None:
    platform = EwsIdentityPlatform(lifetime=2)
    sim = start_simulator(tmp_path / "ews", auth="oauth2", token_check=platform.check)
    sim.add_mailbox(MAILBOX)
    target = oauth_target(sim, platform)
    try:
        folder = target.ensure_folder(MAILBOX, ("INBOX",), FolderRole.INBOX)
        sent = 0
        deadline = time.monotonic() + 30
        while platform.fetches < 3:  # uploads go on while tokens run out (2 s each)
            assert time.monotonic() < deadline, "tokens did not run out"
            results = target.upload(MAILBOX, folder, chunk(f"e{sent}-", 2))
            assert all(r.ok for r in results), [r.error for r in results]
            sent += 1
        assert len(sim.items(MAILBOX)) == 2 * sent
    finally:
        target.close()
        sim.stop()
        forget_protocols(sim.url)
        platform.close()


@pytest.mark.parametrize(
    ("setup", "cause", "hint"),
    [
        (
            "wrong secret",
            "the token endpoint refused the app's client secret (AADSTS7000215: invalid client secret)",
            "Secret ID",
        ),
        (
            "expired secret",
            "the app's client secret has expired (AADSTS7000222)",
            "create a new client secret",
        ),
        (
            "disabled app",
            "the app is disabled in the tenant (AADSTS7000112)",
            "Enabled for users to sign in",
        ),
        ("token refused", "the EWS server refused the access token of app", "full_access_as_app"),
    ],
)
def test_each_oauth2_refusal_is_one_clear_error(
    tmp_path: Path, platform: EwsIdentityPlatform, setup: str, cause: str, hint: str
) -> None:
    def refuse_every_token(token: str) -> str:
        from migrator.simulator.ews.auth import TokenRefused

        raise TokenRefused.invalid()

    check = refuse_every_token if setup == "token refused" else platform.check
    with running_simulator(tmp_path / "ews", auth="oauth2", token_check=check) as sim:
        sim.add_mailbox(MAILBOX)
        platform.secret_expired = setup == "expired secret"
        platform.app_disabled = setup == "disabled app"
        secret = "wrong-secret" if setup == "wrong secret" else CLIENT_SECRET
        error = refusal(oauth_target(sim, platform, secret=secret))
        assert cause in error.message and error.outage is not None and cause in error.outage.cause
        assert error.hint is not None and hint in error.hint and error.outage.hint == error.hint
        assert (
            CLIENT_SECRET not in error.message + error.hint and "wrong-secret" not in error.message
        )
        assert sim.stats().items_created == 0
