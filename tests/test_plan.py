"""Plan validation: every broken plan fails before anything runs, naming file, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.model.errors import PlanError, SecretError
from migrator.plan import load_plan, parse_plan, read_secret

REPO = Path(__file__).resolve().parent.parent

GOOD = """
[plan]
name = "ife-2012"
[directory]
url = "ldap://127.0.0.1:3389"
bind_dn = "cn=admin,dc=ife,dc=org,dc=mx"
password_env = "MIGRATOR_LDAP_PASSWORD"
base = "ou=people,dc=ife,dc=org,dc=mx"
filter = "(&(|(employeeType=mando medio)(employeeType=vocal))(mail=*))"
start_tls = false
[directory.attributes]
address = "mail"
uid = "uid"
name = "cn"
batch = "ou"
[source]
kind = "maildir"
root = "/var/vmail"
path = "{root}/{domain}/{uid}/Maildir"
[target]
kind = "ews"
"""


def broken(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


def test_the_committed_example_plan_is_valid() -> None:
    plan = load_plan(REPO / "plans" / "example.toml")
    assert plan.name == "ife-2012"
    assert plan.directory.attributes.address == "mail"
    assert plan.source.kind == "maildir" and plan.source.root == "/var/vmail"
    assert plan.target.kind == "ews"


def test_contract_keys_are_read() -> None:
    plan = parse_plan(GOOD, "p.toml")
    assert plan.directory.url == "ldap://127.0.0.1:3389"
    assert plan.directory.bind_dn == "cn=admin,dc=ife,dc=org,dc=mx"
    assert plan.directory.password_env == "MIGRATOR_LDAP_PASSWORD"
    assert plan.directory.filter.startswith("(&(|(employeeType=mando medio)")
    assert plan.directory.start_tls is False
    assert plan.source.path == "{root}/{domain}/{uid}/Maildir"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("[plan\nname=1", None, "not valid TOML"),
        (broken('kind = "maildir"', 'kind = "maildri"'), "source.kind", "did you mean 'maildir'"),
        (broken('kind = "ews"', 'kind = "graph"'), "target.kind", "expected one of"),
        (broken('base = "ou=people,dc=ife,dc=org,dc=mx"\n', ""), "directory.base", "is missing"),
        (broken("[target]\nkind = \"ews\"\n", ""), "target", "section is missing"),
        (broken("{root}/{domain}/{uid}/Maildir", "{root}/{domian}/{uid}"), "source.path", "unknown field {domian}"),
        (broken("{root}/{domain}/{uid}/Maildir", "{root}/{uid.__class__}"), "source.path", "not a plain name"),
        (broken("{root}/{domain}/{uid}/Maildir", "{root}/{uid"), "source.path", "unbalanced"),
        (broken("start_tls = false", "start_tls = \"no\""), "directory.start_tls", "true or false"),
        (broken("start_tls = false", "strat_tls = false"), "directory.strat_tls", "did you mean 'start_tls'"),
        (broken('url = "ldap://127.0.0.1:3389"', 'url = "http://x"'), "directory.url", "not an LDAP URL"),
        (broken("[plan]", "[plna]"), "plna", "did you mean [plan]"),
        (broken('filter = "(&(|(employeeType=mando medio)(employeeType=vocal))(mail=*))"', 'filter = "mail=*"'), "directory.filter", "not an LDAP filter"),
        (broken('name = "ife-2012"', 'name = "ife 2012/../x"'), "plan.name", "not a plan name"),
        (broken('password_env = "MIGRATOR_LDAP_PASSWORD"', 'password_env = "MY-VAR"'), "directory.password_env", "not an environment variable name"),
    ],
)
def test_broken_plans_name_the_key(text: str, key: str | None, words: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(text, "plans/broken.toml")
    err = info.value
    assert err.file == "plans/broken.toml"
    assert err.key == key
    assert words in str(err) + " " + (err.hint or "")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('password_env = "MIGRATOR_LDAP_PASSWORD"', 'password = "hunter2"', "directory.password"),
        ('kind = "ews"', 'kind = "ews"\nclient_secret = "abc"', "target.client_secret"),
        ('url = "ldap://127.0.0.1:3389"', 'url = "ldap://admin:hunter2@127.0.0.1:3389"', "directory.url"),
    ],
)
def test_a_plan_holding_a_secret_is_refused_without_echoing_it(old: str, new: str, key: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(broken(old, new), "p.toml")
    assert info.value.key == key
    text = str(info.value) + (info.value.hint or "")
    assert "password" in text.lower() or "secret" in text.lower()
    assert "hunter2" not in text and "abc" not in text.split("secret")[-1]


def test_relative_paths_are_relative_to_the_plan_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    plan_file = tmp_path / "sub" / "p.toml"
    plan_file.write_text(
        GOOD.replace('url = "ldap://127.0.0.1:3389"', 'url = "ldif:people.ldif"').replace(
            'root = "/var/vmail"', 'root = "vmail"'
        )
    )
    plan = load_plan(plan_file)
    assert plan.directory.ldif_path == str(tmp_path / "sub" / "people.ldif")
    assert plan.source.root == str(tmp_path / "sub" / "vmail")


def test_missing_and_unreadable_plan_files(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="does not exist"):
        load_plan(tmp_path / "nope.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes("name = 'Jos\xe9'".encode("latin-1"))
    with pytest.raises(PlanError, match="not UTF-8"):
        load_plan(bad)


def test_imap_source_needs_a_password_reference() -> None:
    text = broken('kind = "maildir"\nroot = "/var/vmail"\npath = "{root}/{domain}/{uid}/Maildir"', 'kind = "imap"\nhost = "127.0.0.1"')
    with pytest.raises(PlanError) as info:
        parse_plan(text, "p.toml")
    assert info.value.key == "source.password_env"


def test_secrets_come_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATOR_TEST_SECRET", "s3cr3t")
    assert read_secret("x", env="MIGRATOR_TEST_SECRET", file=None) == "s3cr3t"
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    assert read_secret("x", env=None, file=str(secret_file)) == "from-file"
    monkeypatch.delenv("MIGRATOR_TEST_SECRET")
    with pytest.raises(SecretError, match="MIGRATOR_TEST_SECRET is not set"):
        read_secret("directory password", env="MIGRATOR_TEST_SECRET", file=None)
    with pytest.raises(SecretError, match="does not exist"):
        read_secret("x", env=None, file=str(tmp_path / "missing"))
