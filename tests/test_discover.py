"""`migrator discover` end to end: a real slapd (size limit 500, 5,200 people, hostile values)
and the same directory as an LDIF file; every entry ends in exactly one outcome with the
right reason, re-runs are idempotent and never reset progress; CLI output and exit codes."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli.main import cli
from migrator.samples.directory import DEFAULT_FILTER, PersonSpec
from tests.fixtures.dead_servers import silent_listener
from tests.fixtures.slapd import READER_PASSWORD, SlapdServer

PLAN = """\
[plan]
name = "ife-test"
[directory]
url = "{url}"
{bind}
base = "ou=people,dc=ife,dc=org,dc=mx"
filter = "{filter}"
page_size = 200
[directory.attributes]
address = "mail"
uid = "uid"
name = "cn"
batch = "ou"
[source]
kind = "maildir"
root = "{root}"
path = "{{root}}/{{domain}}/{{uid}}/Maildir"
[target]
kind = "ews"
[state]
url = "sqlite:///{state}"
"""


def _unsafe_uid(uid: str) -> bool:
    return "/" in uid or ".." in uid or any(ord(c) < 32 or ord(c) == 127 for c in uid)


def expected(people: list[PersonSpec]) -> dict[str, object]:
    """What a correct discovery concludes, from the generator's ground truth."""
    selected = [p for p in people if p.selected]
    mails = Counter((p.primary_mail or "").lower() for p in selected)
    invalid: dict[str, str] = {}
    for p in selected:
        primary = p.primary_mail or ""
        local, at, domain = primary.rpartition("@")
        if not at or not local or "." not in domain or " " in primary or "@" in local:
            invalid[p.uid] = "unparsable-address"
        elif mails[primary.lower()] > 1:
            invalid[p.uid] = "duplicate-address"
        elif _unsafe_uid(p.uid):
            invalid[p.uid] = "unsafe-path"
    in_scope = {p.uid for p in selected if p.uid not in invalid}
    excluded = Counter("not-selected" if p.mails else "no-address" for p in people if not p.selected)
    batches = Counter(p.office for p in selected if p.uid in in_scope)
    return {"in_scope": in_scope, "invalid": invalid, "excluded": dict(excluded), "batches": dict(batches)}


def write_plan(tmp_path: Path, url: str, bind: str) -> Path:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        PLAN.format(url=url, bind=bind, filter=DEFAULT_FILTER, root=tmp_path / "vmail", state=tmp_path / "state.db")
    )
    return plan


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(params=["slapd", "ldif"])
def plan_file(request: pytest.FixtureRequest, tmp_path: Path, reader_password: str) -> Path:
    if request.param == "slapd":
        server: SlapdServer = request.getfixturevalue("slapd")
        bind = f'bind_dn = "{server.bind_dn}"\npassword_env = "MIGRATOR_TEST_LDAP_PASSWORD"'
        return write_plan(tmp_path, server.url, bind)
    ldif: Path = request.getfixturevalue("people_ldif")
    return write_plan(tmp_path, f"ldif:{ldif}", "")


def test_every_entry_ends_in_exactly_one_outcome_with_its_reason(
    plan_file: Path, session_people: list[PersonSpec]
) -> None:
    want = expected(session_people)
    code, out, err = run_cli("discover", "--plan", str(plan_file), "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["in_scope"] == len(want["in_scope"])  # type: ignore[arg-type]
    assert got["excluded"] == want["excluded"]
    assert got["invalid"] == dict(Counter(want["invalid"].values()))  # type: ignore[attr-defined]
    assert got["batches"] == want["batches"]
    assert got["changes"]["new"] == len(session_people)
    # per person, from the state database
    state = plan_file.parent / "state.db"
    with sqlite3.connect(state) as db:
        assert db.execute("select count(*) from accounts").fetchone() == (len(session_people),)
        rows = db.execute(
            "select uid, scope, reason, address, aliases, name, source_path from accounts where scope != 'excluded'"
        ).fetchall()
    by_uid = {p.uid: p for p in session_people}
    assert len(rows) == len(want["in_scope"]) + len(want["invalid"])  # type: ignore[arg-type]
    for uid, scope, reason, address, aliases, name, source_path in rows:
        person = by_uid[uid]
        if person.uid in want["in_scope"]:  # type: ignore[operator]
            assert scope == "in_scope", (person.uid, reason)
            assert address == (person.primary_mail or "").lower()
            assert json.loads(aliases) == [m.lower() for m in person.mails[1:]]
            assert name == person.cn  # UTF-8 (and 2,000-character names) intact
            assert source_path.startswith(str(plan_file.parent / "vmail"))
        elif person.uid in want["invalid"]:  # type: ignore[operator]
            assert (scope, reason) == ("invalid", want["invalid"][person.uid]), person.uid  # type: ignore[index]
            assert source_path is None
        else:
            raise AssertionError(f"{person.uid!r} should have been excluded, is {scope}/{reason}")


def test_rediscovery_is_idempotent_and_never_resets_progress(plan_file: Path) -> None:
    assert run_cli("discover", "--plan", str(plan_file))[0] == 0
    state = plan_file.parent / "state.db"
    with sqlite3.connect(state) as db:
        db.execute(
            "update accounts set status = 'synced', passes = 3, messages_done = 42 "
            "where id = (select min(id) from accounts where scope = 'in_scope')"
        )
    code, out, _ = run_cli("discover", "--plan", str(plan_file), "--json")
    assert code == 0
    again = json.loads(out)
    assert again["changes"]["new"] == 0 and again["changes"]["updated"] == 0
    with sqlite3.connect(state) as db:
        assert db.execute("select count(*) from accounts where status = 'synced' and passes = 3 and messages_done = 42").fetchone() == (1,)


def test_rich_output_names_outcomes_and_escapes_hostile_values(plan_file: Path) -> None:
    code, out, _ = run_cli("discover", "--plan", str(plan_file))
    assert code == 0
    assert "accounts in scope" in out and "duplicate-address" in out and "unsafe-path" in out
    assert "\x1b[31m" not in out and "\x07" not in out  # a uid's escape sequence is not replayed
    code, out, _ = run_cli("accounts", "--plan", str(plan_file), "--status", "invalid", "--json")
    assert code == 0
    reasons = Counter(row["reason"] for row in json.loads(out))
    assert set(reasons) == {"unparsable-address", "duplicate-address", "unsafe-path"}


def test_a_wrong_password_is_a_clear_error_that_never_shows_it(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = write_plan(tmp_path, slapd.url, f'bind_dn = "{slapd.bind_dn}"\npassword_env = "MIGRATOR_TEST_WRONG"')
    monkeypatch.setenv("MIGRATOR_TEST_WRONG", "not-" + READER_PASSWORD)
    code, out, err = run_cli("discover", "--plan", str(plan))
    assert code == 2
    assert "error:" in err and slapd.url in err
    assert READER_PASSWORD not in out + err
    monkeypatch.delenv("MIGRATOR_TEST_WRONG")
    code, _, err = run_cli("discover", "--plan", str(plan))
    assert code == 2 and "MIGRATOR_TEST_WRONG is not set" in err


def test_a_directory_that_never_answers_stops_discovery_within_its_timeout(tmp_path: Path) -> None:
    with silent_listener() as port:
        plan = write_plan(tmp_path, f"ldap://127.0.0.1:{port}", "")
        plan.write_text(plan.read_text().replace("page_size = 200", "page_size = 200\ntimeout = 2"))
        started = time.monotonic()
        code, _, err = run_cli("discover", "--plan", str(plan))
        elapsed = time.monotonic() - started
    assert code == 2, err
    assert elapsed < 15, elapsed  # bounded by [directory] timeout, not by the server
    assert f"ldap://127.0.0.1:{port}: no answer within 2 s" in " ".join(err.split()) and "hint:" in err


def test_an_unreachable_directory_and_a_broken_plan_exit_2(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, "ldap://127.0.0.1:9", "")
    code, _, err = run_cli("discover", "--plan", str(plan))
    assert code == 2 and "ldap://127.0.0.1:9" in err and "hint:" in err
    broken = tmp_path / "broken.toml"
    broken.write_text(plan.read_text().replace('kind = "maildir"', 'kind = "maildri"'))
    code, _, err = run_cli("discover", "--plan", str(broken))
    assert code == 2 and "source.kind" in err and "did you mean 'maildir'" in err
