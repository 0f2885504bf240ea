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
        (broken('[target]\nkind = "ews"\n', ""), "target", "section is missing"),
        (
            broken("{root}/{domain}/{uid}/Maildir", "{root}/{domian}/{uid}"),
            "source.path",
            "unknown field {domian}",
        ),
        (
            broken("{root}/{domain}/{uid}/Maildir", "{root}/{uid.__class__}"),
            "source.path",
            "not a plain name",
        ),
        (broken("{root}/{domain}/{uid}/Maildir", "{root}/{uid"), "source.path", "unbalanced"),
        (broken("start_tls = false", 'start_tls = "no"'), "directory.start_tls", "true or false"),
        (
            broken("start_tls = false", "strat_tls = false"),
            "directory.strat_tls",
            "did you mean 'start_tls'",
        ),
        (
            broken('url = "ldap://127.0.0.1:3389"', 'url = "http://x"'),
            "directory.url",
            "not an LDAP URL",
        ),
        (broken("[plan]", "[plna]"), "plna", "did you mean [plan]"),
        (
            broken(
                'filter = "(&(|(employeeType=mando medio)(employeeType=vocal))(mail=*))"',
                'filter = "mail=*"',
            ),
            "directory.filter",
            "not an LDAP filter",
        ),
        (broken('name = "ife-2012"', 'name = "ife 2012/../x"'), "plan.name", "not a plan name"),
        (
            broken('password_env = "MIGRATOR_LDAP_PASSWORD"', 'password_env = "MY-VAR"'),
            "directory.password_env",
            "not an environment variable name",
        ),
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
        (
            'url = "ldap://127.0.0.1:3389"',
            'url = "ldap://admin:hunter2@127.0.0.1:3389"',
            "directory.url",
        ),
    ],
)
def test_a_plan_holding_a_secret_is_refused_without_echoing_it(
    old: str, new: str, key: str
) -> None:
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
    text = broken(
        'kind = "maildir"\nroot = "/var/vmail"\npath = "{root}/{domain}/{uid}/Maildir"',
        'kind = "imap"\nhost = "127.0.0.1"',
    )
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
    with pytest.raises(
        SecretError, match=r"named by \[directory\] password_env is not set"
    ) as unset:
        read_secret(
            "directory password",
            env="MIGRATOR_TEST_SECRET",
            file=None,
            key="[directory] password_env",
        )
    # the variable's name is not repeated: a plan may hold the password in its place
    assert "MIGRATOR_TEST_SECRET" not in f"{unset.value} {unset.value.hint}"
    assert "password_file" in (unset.value.hint or "")
    with pytest.raises(SecretError, match="does not exist"):
        read_secret("x", env=None, file=str(tmp_path / "missing"))


IMAP_SOURCE = 'kind = "imap"\nhost = "imap.ife.org.mx"\npassword_env = "MIGRATOR_IMAP_PASSWORD"'
NUMBERS = [
    # (section text to add or change, key, a value too small, a value too large)
    ("directory", "page_size", 0, 100_001),
    ("directory", "timeout", 0, 86_401),
    ("source", "port", 0, 65_536),
    ("source", "timeout", -1, 1e9),
    ("target", "max_message_size", 0, 2**31),
    ("target", "timeout", 0.0, 86_401),
    ("run", "workers", 0, 100_000),
    ("run", "max_account_attempts", 0, 1001),
    ("run", "chunk_messages", 0, 10_001),
    ("run", "chunk_bytes", 1023, 2**30 + 1),
    ("run", "target_concurrency", 0, 1025),
    ("run", "lease_seconds", 9, 86_401),
]


def _with_key(section: str, key: str, value: float) -> str:
    text = (
        GOOD
        if section != "source"
        else broken(
            'kind = "maildir"\nroot = "/var/vmail"\npath = "{root}/{domain}/{uid}/Maildir"',
            IMAP_SOURCE,
        )
    )
    if section == "run":
        return text + f"[run]\n{key} = {value!r}\n"
    header = f"[{section}]\n"
    return text.replace(header, f"{header}{key} = {value!r}\n", 1)


@pytest.mark.parametrize(("section", "key", "low", "high"), NUMBERS)
def test_every_number_in_a_plan_has_bounds(section: str, key: str, low: float, high: float) -> None:
    for value in (low, high):
        with pytest.raises(PlanError) as info:
            parse_plan(_with_key(section, key, value), "p.toml")
        assert info.value.key == f"{section}.{key}"
        assert "must be between" in info.value.problem, info.value.problem


def test_plan_bounds_are_the_command_line_bounds(tmp_path: Path) -> None:
    """`[run] workers = 100000` passed check-plan while --workers stopped at 256; the run then
    tried to start 100,000 threads. Both now read one table (model/limits.py)."""
    from click.testing import CliRunner

    from migrator.cli.main import cli
    from migrator.model import limits
    from migrator.model.plan import DirectorySettings, RunSettings, SourceSettings, TargetSettings

    plan_file = tmp_path / "p.toml"
    runner = CliRunner()
    plan_file.write_text(_with_key("run", "workers", 100_000))
    result = runner.invoke(cli, ["check-plan", "--plan", str(plan_file)])
    assert result.exit_code == 2
    assert (
        "[run.workers]: must be between 1 and 256" in result.output and "100,000" in result.output
    )
    plan_file.write_text(_with_key("run", "workers", limits.WORKERS.high))
    assert runner.invoke(cli, ["check-plan", "--plan", str(plan_file)]).exit_code == 0
    for command in ("run", "verify", "retry"):
        too_many = runner.invoke(
            cli, [command, "--plan", str(plan_file), "--workers", str(limits.WORKERS.high + 1)]
        )
        assert too_many.exit_code == 2 and "1<=x<=256" in too_many.output, too_many.output
    # the defaults lie inside the bounds
    run, directory, target = (
        RunSettings(),
        DirectorySettings(url="ldap://x", base="dc=x"),
        TargetSettings(kind="ews"),
    )
    assert run.workers in range(int(limits.WORKERS.low), int(limits.WORKERS.high) + 1)
    for value, bound in (
        (run.max_account_attempts, limits.MAX_ACCOUNT_ATTEMPTS),
        (run.chunk_messages, limits.CHUNK_MESSAGES),
        (run.chunk_bytes, limits.CHUNK_BYTES),
        (run.target_concurrency, limits.TARGET_CONCURRENCY),
        (run.lease_seconds, limits.LEASE_SECONDS),
        (directory.page_size, limits.PAGE_SIZE),
        (directory.timeout, limits.TIMEOUT),
        (SourceSettings(kind="imap").timeout, limits.TIMEOUT),
        (target.timeout, limits.TIMEOUT),
        (target.max_message_size, limits.MAX_MESSAGE_SIZE),
    ):
        assert bound.low <= value <= bound.high


@pytest.mark.parametrize(
    ("old", "new", "key", "hint_has", "hint_lacks"),
    [
        # there is no token_env: a token is fetched with the client secret
        (
            'kind = "ews"',
            'kind = "ews"\ntoken = "eyJ0eXAi"',
            "target.token",
            "client_secret_env",
            "token_env",
        ),
        (
            'kind = "ews"',
            'kind = "ews"\nsecret = "x"',
            "target.secret",
            "password_env",
            " secret_env",
        ),
        (
            'password_env = "MIGRATOR_LDAP_PASSWORD"',
            'password = "x"',
            "directory.password",
            "password_env",
            "secret_env",
        ),
        (
            "[target]",
            '[run]\napi_key = "x"\n[target]',
            "run.api_key",
            "takes no secret",
            "api_key_env",
        ),
        # the state database's password comes from libpq (PGPASSWORD, ~/.pgpass), not from password_env
        (
            'kind = "ews"',
            'kind = "ews"\n[state]\npassword = "x"',
            "state.password",
            "PGPASSWORD",
            "password_env",
        ),
        (
            'kind = "ews"',
            'kind = "ews"\n[state]\nurl = "postgresql+psycopg://u:x@db/state"',
            "state.url",
            "PGPASSWORD",
            "password_env",
        ),
    ],
)
def test_secret_hints_name_keys_that_exist(
    old: str, new: str, key: str, hint_has: str, hint_lacks: str
) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(broken(old, new), "p.toml")
    assert info.value.key == key
    hint = info.value.hint or ""
    assert hint_has in hint and hint_lacks not in hint, hint


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        # the password itself written where the variable's name belongs
        (
            'password_env = "MIGRATOR_LDAP_PASSWORD"',
            'password_env = "Tr0ub4dor&3"',
            "directory.password_env",
        ),
        (
            'password_env = "MIGRATOR_LDAP_PASSWORD"',
            "password_env = 8675309",
            "directory.password_env",
        ),
        (
            'kind = "ews"',
            'kind = "ews"\nclient_secret_env = "Tr0ub4dor&3"',
            "target.client_secret_env",
        ),
        # a URL that is wrong in two ways: the secret is reported first, the URL never quoted
        (
            'url = "ldap://127.0.0.1:3389"',
            'url = "http://admin:Tr0ub4dor@127.0.0.1"',
            "directory.url",
        ),
        ('url = "ldap://127.0.0.1:3389"', 'url = "ldap://admin:Tr0ub4dor@[::1"', "directory.url"),
    ],
)
def test_a_secret_in_place_of_a_name_is_never_echoed(old: str, new: str, key: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(broken(old, new), "p.toml")
    assert info.value.key == key
    text = f"{info.value} {info.value.hint}"
    assert "Tr0ub4dor" not in text and "8675309" not in text, text


IMAP_TARGET = (
    'kind = "imap"\nhost = "outlook.office365.com"\npassword_env = "MIGRATOR_IMAP_PASSWORD"'
)


def test_an_imap_target_says_whether_the_server_converts_messages() -> None:
    plan = parse_plan(broken('[target]\nkind = "ews"', f"[target]\n{IMAP_TARGET}"), "p.toml")
    assert plan.target.converts == "auto"  # Exchange is recognised by its greeting, capabilities
    forced = parse_plan(
        broken('[target]\nkind = "ews"', f'[target]\n{IMAP_TARGET}\nconverts = "yes"'), "p.toml"
    )
    assert forced.target.converts == "yes"
    with pytest.raises(PlanError) as info:
        parse_plan(
            broken('[target]\nkind = "ews"', f'[target]\n{IMAP_TARGET}\nconverts = "sometimes"'),
            "p.toml",
        )
    assert info.value.key == "target.converts" and "auto, yes, no" in str(info.value)
