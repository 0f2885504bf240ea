"""Reading the active Sieve script over ManageSieve (RFC 5804) from a real Dovecot with
Pigeonhole, as a master user (user*master, or SASL PLAIN with the user as authzid)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from migrator.adapters.sieve.managesieve import ManageSieveError, ManageSieveReader
from migrator.model.plan import FilterSettings
from tests.fixtures.dovecot import MASTER_PASSWORD, MASTER_USER, DovecotServer

SCRIPT = 'require ["fileinto"];\n# rule:[Lists]\nif header :contains "list-id" "x" { fileinto "Lists"; }\n'


def _settings(server: DovecotServer, **changes: object) -> FilterSettings:
    base = FilterSettings(
        sieve="managesieve",
        host=server.host,
        port=server.sieve_port,
        tls="starttls",
        ca_file=str(server.ca_file),
        master_user=MASTER_USER,
        timeout=10,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _install(server: DovecotServer, user: str, scripts: dict[str, str], active: str | None) -> None:
    home = server.home(user)
    (home / "sieve").mkdir(parents=True, exist_ok=True)
    for name, text in scripts.items():
        (home / "sieve" / f"{name}.sieve").write_text(text)
    if active:
        os.symlink(f"sieve/{active}.sieve", home / ".dovecot.sieve")
    server.chown_tree(user)


@pytest.mark.dovecot
def test_the_active_script_is_read_as_master_user_both_ways(dovecot_sieve: DovecotServer) -> None:
    user, _ = dovecot_sieve.new_user()
    _install(dovecot_sieve, user, {"main": SCRIPT, "old": "keep;\n"}, active="main")
    for settings in (_settings(dovecot_sieve), _settings(dovecot_sieve, authzid=True)):
        script = ManageSieveReader(settings, MASTER_PASSWORD).read_active(user)
        assert script is not None
        assert (script.name, script.text) == ("main", SCRIPT)
        assert script.origin.startswith(
            f"managesieve {dovecot_sieve.host}:{dovecot_sieve.sieve_port}"
        )


@pytest.mark.dovecot
def test_no_active_script_is_none(dovecot_sieve: DovecotServer) -> None:
    user, _ = dovecot_sieve.new_user()
    _install(dovecot_sieve, user, {"draft": SCRIPT}, active=None)
    assert ManageSieveReader(_settings(dovecot_sieve), MASTER_PASSWORD).read_active(user) is None


@pytest.mark.dovecot
def test_a_refused_login_names_the_user_never_the_password(dovecot_sieve: DovecotServer) -> None:
    user, _ = dovecot_sieve.new_user()
    wrong = "not-the-master-Pw9"
    with pytest.raises(ManageSieveError) as refused:
        ManageSieveReader(_settings(dovecot_sieve), wrong).read_active(user)
    assert refused.value.reason == "sieve-auth"
    assert user in str(refused.value) and wrong not in str(refused.value)


@pytest.mark.dovecot
def test_an_untrusted_certificate_is_refused(dovecot_sieve: DovecotServer) -> None:
    user, _ = dovecot_sieve.new_user()
    with pytest.raises(ManageSieveError) as refused:
        ManageSieveReader(_settings(dovecot_sieve, ca_file=None), MASTER_PASSWORD).read_active(user)
    assert refused.value.reason == "tls"


@pytest.mark.dovecot
def test_a_plan_reading_over_managesieve_with_its_imap_sources_master_user(
    dovecot_sieve: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrator.commands.filters import _reader
    from migrator.plan.loader import parse_plan

    user, _ = dovecot_sieve.new_user()
    _install(dovecot_sieve, user, {"main": SCRIPT}, active="main")
    monkeypatch.setenv("MIGRATOR_TEST_MASTER", MASTER_PASSWORD)
    plan = parse_plan(f"""
[plan]
name = "ms"
[directory]
url = "ldif:/dev/null"
base = "dc=x"
[source]
kind = "imap"
host = "{dovecot_sieve.host}"
port = {dovecot_sieve.port}
tls = "starttls"
ca_file = "{dovecot_sieve.ca_file}"
login = "{{uid}}"
master_user = "{MASTER_USER}"
password_env = "MIGRATOR_TEST_MASTER"
[target]
kind = "ews"
url = "http://127.0.0.1:1/EWS/Exchange.asmx"
[settings]
sieve = "managesieve"
sieve_port = {dovecot_sieve.sieve_port}
""")
    assert (plan.filters.host, plan.filters.login, plan.filters.master_user) == (
        dovecot_sieve.host,
        "{uid}",
        MASTER_USER,
    )
    script = _reader(plan)({"uid": user, "address": f"{user}@example.org"})
    assert script is not None and script.text == SCRIPT
