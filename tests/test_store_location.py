"""Where the state database is: a plan's relative SQLite path (and the default) starts at the
plan's folder, like every other path in a plan; --state and $MIGRATOR_STATE start at the current
directory, like every command-line path; a PostgreSQL user name may be in the plan, a password
may not. End to end: commands run from another directory use the plan's database, so a second
`discover` + `run` from there finds the campaign done instead of uploading it again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from migrator.cli.main import cli
from migrator.commands.state import state_location
from migrator.model.errors import PlanError
from migrator.plan import Template, load_plan, parse_plan
from tests.fixtures.campaign import build_campaign

PLAN = """\
[plan]
name = "ife"
[directory]
url = "ldif:people.ldif"
base = "ou=people,dc=ife,dc=org,dc=mx"
[source]
kind = "maildir"
root = "vmail"
{path}
[target]
kind = "ews"
{state}
"""


def write(folder: Path, *, state: str = "", path: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    plan = folder / "plan.toml"
    plan.write_text(PLAN.format(state=f'[state]\nurl = "{state}"' if state else "", path=path))
    return plan


def database_of(url: str) -> str:
    """The file SQLAlchemy (and so migrator) opens for a sqlite:/// URL."""
    return str(make_url(url).database)


def test_a_relative_sqlite_path_in_a_plan_starts_at_the_plans_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = tmp_path / "plans"
    monkeypatch.chdir(tmp_path)  # elsewhere: the current directory must not matter
    plan = load_plan(Path("plans") / write(plans, state="sqlite:///state/migrator.db").name)
    assert plan.state_url is not None and database_of(plan.state_url) == str(
        plans / "state" / "migrator.db"
    )
    # options after the path are kept; .. leaves the folder as a path would
    plan = load_plan(write(plans, state="sqlite:///../shared/ife.db?timeout=5"))
    assert plan.state_url is not None
    assert database_of(plan.state_url) == str(plans / ".." / "shared" / "ife.db")
    assert make_url(plan.state_url).query == {"timeout": "5"}
    # absolute paths, memory and PostgreSQL URLs are what they say
    for url in (
        "sqlite:////var/lib/migrator/ife.db",
        "sqlite://",
        "postgresql://migrator@db.example.org/ife",
    ):
        assert load_plan(write(plans, state=url)).state_url == url


def test_a_plans_folder_with_url_characters_in_its_name(tmp_path: Path) -> None:
    odd = tmp_path / "campaña 100% ok?" / "plans"
    plan = load_plan(write(odd, state="sqlite:///state.db"))
    assert plan.state_url is not None and database_of(plan.state_url) == str(odd / "state.db")


def test_the_default_state_is_beside_the_plan_and_the_command_line_starts_at_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIGRATOR_STATE", raising=False)
    plan = load_plan(write(tmp_path / "plans"))
    where = state_location(plan)
    assert database_of(where.url) == str(tmp_path / "plans" / "state" / "migrator.db")
    assert "plan's folder" in where.origin
    # --state and $MIGRATOR_STATE: as given, relative to the current directory
    assert state_location(plan, "sqlite:///elsewhere.db").url == "sqlite:///elsewhere.db"
    assert "current directory" in state_location(plan, "sqlite:///elsewhere.db").origin
    monkeypatch.setenv("MIGRATOR_STATE", "sqlite:///env.db")
    assert state_location(plan).url == "sqlite:///env.db"
    assert "current directory" in state_location(plan).origin


def test_a_relative_path_template_starts_at_the_plans_folder(tmp_path: Path) -> None:
    folder = tmp_path / "odd {name}"  # braces in the folder stay literal text
    plan = load_plan(write(folder, path='path = "vmail/{domain}/{uid}/Maildir"'))
    assert plan.source.path is not None
    rendered = Template.parse(plan.source.path).render({"domain": "ife.org.mx", "uid": "ana"})
    assert rendered == f"{folder}/vmail/ife.org.mx/ana/Maildir"
    assert plan.source.root == str(folder / "vmail")
    # {root}-based and absolute templates are unchanged
    plan = load_plan(write(folder, path='path = "{root}/{domain}/{uid}/Maildir"'))
    assert plan.source.path == "{root}/{domain}/{uid}/Maildir"


def test_a_postgresql_user_in_the_plan_is_accepted_a_password_is_not(tmp_path: Path) -> None:
    plan = write(tmp_path, state="postgresql+psycopg://migrator@db.example.org/ife")
    result = CliRunner().invoke(cli, ["check-plan", "--plan", str(plan)])
    assert result.exit_code == 0, result.output
    for url in (
        "postgresql://migrator:hunter2@db.example.org/ife",
        "postgresql://migrator:@db/ife",
    ):
        with pytest.raises(PlanError) as info:
            parse_plan(PLAN.format(state=f'[state]\nurl = "{url}"', path=""), "p.toml")
        told = str(info.value) + (info.value.hint or "")
        assert info.value.key == "state.url" and "password" in told and "hunter2" not in told
        assert "PGPASSWORD" in told


def _cli(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_commands_from_another_directory_use_the_plans_database(tmp_path: Path) -> None:
    with build_campaign(tmp_path / "campaign", accounts=2) as c:
        text = c.plan_path.read_text()
        assert f'url = "sqlite:///{c.state_path}"' in text
        c.plan_path.write_text(
            text.replace(f'url = "sqlite:///{c.state_path}"', 'url = "sqlite:///state/migrator.db"')
        )
        env = {k: v for k, v in c.env.items() if k != "MIGRATOR_STATE"}
        # the first run, from the plan's folder
        for args in (("discover",), ("run",)):
            done = _cli(c.root, *args, "--plan", "plan.toml", env=env)
            assert done.returncode == 0, done.stderr
        assert (c.root / "state" / "migrator.db").is_file()
        # then from the parent folder: the same database, the campaign is done
        elsewhere = tmp_path
        plan = str(c.plan_path.relative_to(elsewhere))
        status = _cli(elsewhere, "status", "--plan", plan, "--json", env=env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["headline"] == "2 of 2 accounts migrated (100.0 %)"
        again = _cli(elsewhere, "discover", "--plan", plan, "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["changes"]["new"] == 0
        rerun = _cli(elsewhere, "run", "--plan", plan, "--json", env=env)
        assert rerun.returncode == 0, rerun.stderr
        for address in c.accounts:
            c.compare(address)  # every message in the target exactly once
        assert not (elsewhere / "state").exists()
