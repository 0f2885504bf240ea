"""`migrator discover` end to end: a real slapd (size limit 500, 5,200 people, hostile values)
and the same directory as an LDIF file, each into a SQLite file and a PostgreSQL database (which,
unlike SQLite, enforces what the schema declares); every entry ends in exactly one outcome with
the right reason, re-runs are idempotent and never reset progress; oversized and hostile values
(100,000-character names, NUL, bytes that are not UTF-8, 3,000-character DNs and batch names)
are stored or refused with a reason, never stopping the discovery; CLI output and exit codes."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from migrator.adapters.directory import DirectoryReader, open_directory
from migrator.cli.main import cli
from migrator.commands.classify import Classifier
from migrator.commands.discover import read_directory
from migrator.plan import load_plan
from migrator.samples.directory import (
    DEFAULT_BASE,
    DEFAULT_FILTER,
    PersonSpec,
    format_ldif_record,
    write_ldif,
)
from migrator.samples.plans import SAMPLE_ATTRIBUTES, SamplePlan, maildir_source
from migrator.store import open_store
from tests.fixtures.dead_servers import silent_listener
from tests.fixtures.slapd import READER_PASSWORD, SlapdServer
from tests.fixtures.store import postgres_database


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
    excluded = Counter(
        "not-selected" if p.mails else "no-address" for p in people if not p.selected
    )
    batches = Counter(p.office for p in selected if p.uid in in_scope)
    return {
        "in_scope": in_scope,
        "invalid": invalid,
        "excluded": dict(excluded),
        "batches": dict(batches),
    }


def write_plan(
    tmp_path: Path, url: str, bind: dict[str, str] | None = None, state: str | None = None
) -> Path:
    """A plan discovering from `url` (with `bind`: bind_dn and password_env), pages of 200."""
    return SamplePlan(
        "ife-test",
        directory={
            "url": url,
            **(bind or {}),
            "base": "ou=people,dc=ife,dc=org,dc=mx",
            "filter": DEFAULT_FILTER,
            "page_size": 200,
            "attributes": SAMPLE_ATTRIBUTES,
        },
        source=maildir_source(tmp_path / "vmail", path="{root}/{domain}/{uid}/Maildir"),
        target={"kind": "ews"},
        state={"url": state or f"sqlite:///{tmp_path / 'state.db'}"},
    ).write(tmp_path / "plan.toml")


def query(state_url: str, sql: str) -> list[Any]:
    """Rows of a query on the state database, either backend."""
    store = open_store(state_url)
    try:
        with store.engine.begin() as conn:
            result = conn.execute(text(sql))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        store.close()


def as_json(value: Any) -> Any:
    """A JSON column's value: jsonb arrives decoded from PostgreSQL, text from SQLite."""
    return json.loads(value) if isinstance(value, str) else value


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test: a SQLite file, or a PostgreSQL database named in the plan
    with its user (no password: trust auth here, PGPASSWORD or ~/.pgpass elsewhere)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with postgres_database("discover") as url:
        yield url


@pytest.fixture(params=["slapd", "ldif"])
def plan_file(
    request: pytest.FixtureRequest, tmp_path: Path, reader_password: str, state_url: str
) -> Path:
    if request.param == "slapd":
        server: SlapdServer = request.getfixturevalue("slapd")
        bind = {"bind_dn": server.bind_dn, "password_env": "MIGRATOR_TEST_LDAP_PASSWORD"}
        return write_plan(tmp_path, server.url, bind, state_url)
    ldif: Path = request.getfixturevalue("people_ldif")
    return write_plan(tmp_path, f"ldif:{ldif}", state=state_url)


def test_every_entry_ends_in_exactly_one_outcome_with_its_reason(
    plan_file: Path, state_url: str, session_people: list[PersonSpec]
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
    assert query(state_url, "select count(*) from accounts") == [(len(session_people),)]
    rows = query(
        state_url,
        "select uid, scope, reason, address, aliases, name, source_path from accounts where scope != 'excluded'",
    )
    by_uid = {p.uid: p for p in session_people}
    assert len(rows) == len(want["in_scope"]) + len(want["invalid"])  # type: ignore[arg-type]
    for uid, scope, reason, address, aliases, name, source_path in rows:
        person = by_uid[uid]
        if person.uid in want["in_scope"]:  # type: ignore[operator]
            assert scope == "in_scope", (person.uid, reason)
            assert address == (person.primary_mail or "").lower()
            assert as_json(aliases) == [m.lower() for m in person.mails[1:]]
            assert name == person.cn  # UTF-8 (and 2,000-character names) intact
            assert source_path.startswith(str(plan_file.parent / "vmail"))
        elif person.uid in want["invalid"]:  # type: ignore[operator]
            assert (scope, reason) == ("invalid", want["invalid"][person.uid]), person.uid  # type: ignore[index]
            assert source_path is None
        else:
            raise AssertionError(f"{person.uid!r} should have been excluded, is {scope}/{reason}")


def test_rediscovery_is_idempotent_and_never_resets_progress(
    plan_file: Path, state_url: str
) -> None:
    assert run_cli("discover", "--plan", str(plan_file))[0] == 0
    query(
        state_url,
        "update accounts set status = 'synced', passes = 3, messages_done = 42 "
        "where id = (select min(id) from accounts where scope = 'in_scope')",
    )
    code, out, _ = run_cli("discover", "--plan", str(plan_file), "--json")
    assert code == 0
    again = json.loads(out)
    assert again["changes"]["new"] == 0 and again["changes"]["updated"] == 0
    synced = "select count(*) from accounts where status = 'synced' and passes = 3 and messages_done = 42"
    assert query(state_url, synced) == [(1,)]


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
    plan = write_plan(
        tmp_path, slapd.url, {"bind_dn": slapd.bind_dn, "password_env": "MIGRATOR_TEST_WRONG"}
    )
    monkeypatch.setenv("MIGRATOR_TEST_WRONG", "not-" + READER_PASSWORD)
    code, out, err = run_cli("discover", "--plan", str(plan))
    assert code == 2
    assert "error:" in err and slapd.url in err
    assert READER_PASSWORD not in out + err
    monkeypatch.delenv("MIGRATOR_TEST_WRONG")
    code, _, err = run_cli("discover", "--plan", str(plan))
    assert (
        code == 2
        and "the environment variable named by [directory] password_env is not set"
        in " ".join(err.split())
    )


def test_a_password_written_in_place_of_the_variable_name_is_never_shown(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """password_env = "s3cret" (the password itself, a valid variable name): neither the
    error about the unset variable nor the bind failure may print it."""
    plan = write_plan(
        tmp_path, slapd.url, {"bind_dn": slapd.bind_dn, "password_env": "Zq7secretWord"}
    )
    monkeypatch.delenv("Zq7secretWord", raising=False)
    code, out, err = run_cli("discover", "--plan", str(plan))
    assert code == 2 and "[directory] password_env" in " ".join(err.split())
    assert "Zq7secretWord" not in out + err
    monkeypatch.setenv(
        "Zq7secretWord", "wrong"
    )  # set: the bind is refused, and its hint names the key
    code, out, err = run_cli("discover", "--plan", str(plan))
    assert (
        code == 2
        and "invalid credentials" in err
        and "[directory] password_env" in " ".join(err.split())
    )
    assert "Zq7secretWord" not in out + err


def test_a_directory_that_never_answers_stops_discovery_within_its_timeout(tmp_path: Path) -> None:
    with silent_listener() as port:
        plan = write_plan(tmp_path, f"ldap://127.0.0.1:{port}")
        plan.write_text(plan.read_text().replace("page_size = 200", "page_size = 200\ntimeout = 2"))
        started = time.monotonic()
        code, _, err = run_cli("discover", "--plan", str(plan))
        elapsed = time.monotonic() - started
    assert code == 2, err
    assert elapsed < 15, elapsed  # bounded by [directory] timeout, not by the server
    assert (
        f"ldap://127.0.0.1:{port}: no answer within 2 s" in " ".join(err.split()) and "hint:" in err
    )


def test_an_unreachable_directory_and_a_broken_plan_exit_2(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, "ldap://127.0.0.1:9")
    code, _, err = run_cli("discover", "--plan", str(plan))
    assert code == 2 and "ldap://127.0.0.1:9" in err and "hint:" in err
    broken = tmp_path / "broken.toml"
    broken.write_text(plan.read_text().replace('kind = "maildir"', 'kind = "maildri"'))
    code, _, err = run_cli("discover", "--plan", str(broken))
    assert code == 2 and "source.kind" in err and "did you mean 'maildir'" in err


OFFICE_DN = f"ou=Norte,ou=people,{DEFAULT_BASE}"
HUGE_NAME = ("Ñandú Larguísimo " * 6000)[:100_000]
LONG_OU = "Oficina " * 375  # 3,000 characters
LONG_DN_UID = "x" * 3000


def _person(uid: str, **attributes: list[str]) -> tuple[str, dict[str, list[str]]]:
    attrs = {
        "objectClass": ["top", "person", "organizationalPerson", "inetOrgPerson"],
        "uid": [uid], "sn": ["Prueba"], "employeeType": ["vocal"], "ou": ["Norte"],
        "cn": [f"Persona {uid[:20]}"], "mail": [f"{uid[:40]}@ife.org.mx"],
    }  # fmt: skip
    attrs.update(attributes)
    return f"uid={uid},{OFFICE_DN}", {k: v for k, v in attrs.items() if v}


def oversized_ldif(path: Path) -> Path:
    """People whose values no schema length may be assumed for, and a few that are hostile."""
    extra = [
        (OFFICE_DN, {"objectClass": ["top", "organizationalUnit"], "ou": ["Norte"]}),
        _person("enorme", cn=[HUGE_NAME]),  # a 100,000-character display name
        _person("nulo", cn=["Ana\x00Cruz"]),  # NUL: PostgreSQL text cannot hold it
        _person("flechas", cn=["\u202eadnaN\u202c \U0001f4e7 Ñandú"]),  # bidi override, emoji
        _person("oficina.larga", ou=[LONG_OU]),  # a 3,000-character batch name
        _person("correo.largo", mail=["c" * 290 + "@ife.org.mx"]),  # longer than any address
        _person("u" * 5000, mail=["uid.largo@ife.org.mx"]),  # cannot name a folder
        _person(LONG_DN_UID, mail=[]),  # a 3,000-character DN, no address: keyed by its DN
    ]
    write_ldif(path, DEFAULT_BASE, [], extra=extra)
    # cn and sn in Latin-1, not UTF-8, as an old directory may hold them
    dn, attrs = _person("latin1")
    record = format_ldif_record(dn, {k: v for k, v in attrs.items() if k not in ("cn", "sn")})
    latin = "".join(
        f"{name}:: {base64.b64encode(value).decode()}\n"
        for name, value in (("cn", "José Peña".encode("latin-1")), ("sn", "Peña".encode("latin-1")))
    )
    with path.open("a", encoding="utf-8") as out:
        out.write(record.rstrip("\n") + "\n" + latin + "\n")
    return path


def test_oversized_and_hostile_values_are_stored_or_refused_with_a_reason(
    tmp_path: Path, state_url: str
) -> None:
    plan = write_plan(
        tmp_path, f"ldif:{oversized_ldif(tmp_path / 'oversized.ldif')}", state=state_url
    )
    code, out, err = run_cli("discover", "--plan", str(plan), "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["in_scope"] == 4 and got["changes"]["new"] == 8
    assert got["invalid"] == {"too-long": 1, "unparsable-address": 1, "unsafe-path": 1}
    assert got["excluded"] == {"no-address": 1}
    # by the uid in the DN (people outside the filter are stored without their attributes)
    rows = {
        dn.split(",", 1)[0][len("uid=") :]: [scope, reason, name, batch, key, dn]
        for scope, reason, name, batch, key, dn in query(
            state_url, "select scope, reason, name, batch, key, dn from accounts"
        )
    }
    # stored whole, whatever the length; what cannot be stored as is is escaped visibly
    assert rows["enorme"][:3] == ["in_scope", None, HUGE_NAME]
    assert rows["nulo"][:3] == ["in_scope", None, "Ana\\x00Cruz"]
    assert rows["latin1"][:3] == ["in_scope", None, "Jos\\xe9 Pe\\xf1a"]
    assert rows["flechas"][:3] == ["in_scope", None, "\u202eadnaN\u202c \U0001f4e7 Ñandú"]
    # an indexed value too long for an index: refused with a reason, stored cut
    scope, reason, _, batch, _, _ = rows["oficina.larga"]
    assert (scope, reason) == ("invalid", "too-long") and batch == LONG_OU[:254] + "\u2026"
    assert rows["correo.largo"][:2] == ["invalid", "unparsable-address"]
    assert rows["u" * 5000][:2] == ["invalid", "unsafe-path"]
    # the long DN is kept whole; the account is keyed by its digest
    scope, reason, _, _, key, dn = rows.pop(LONG_DN_UID)
    assert (scope, reason) == ("excluded", "no-address") and dn == f"uid={LONG_DN_UID},{OFFICE_DN}"
    assert key.startswith("dn-digest:") and len(key) < 100
    # the same directory again: nothing new, nothing changed (the digest key is stable)
    code, out, err = run_cli("discover", "--plan", str(plan), "--json")
    assert code == 0, err
    assert json.loads(out)["changes"] == {"new": 0, "updated": 0, "unchanged": 8}
    code, out, _ = run_cli("accounts", "--plan", str(plan), "--status", "invalid", "--json")
    assert code == 0 and {row["reason"] for row in json.loads(out)} == {
        "too-long",
        "unparsable-address",
        "unsafe-path",
    }


def _three_searches(directory: DirectoryReader, classifier: Classifier) -> None:
    """How discovery read the directory before the people outside the filter were one search:
    three searches."""
    settings = directory.settings
    address = settings.attributes.address
    scoped = f"(&{settings.population}{settings.filter})"
    for entry in directory.search(scoped, settings.attributes.requested()):
        classifier.selected(entry)
    with_address = f"(&{settings.population}(!{settings.filter})({address}=*))"
    without = f"(&{settings.population}(!({address}=*)))"
    for search_filter, attributes in ((with_address, [address]), (without, ["1.1"])):
        for entry in directory.search(search_filter, attributes):
            classifier.not_selected(entry)


@pytest.mark.parametrize("server", ["slapd", "stock_slapd"])
def test_two_searches_find_what_three_found(
    request: pytest.FixtureRequest, tmp_path: Path, reader_password: str, server: str
) -> None:
    """The people outside the filter in one search (an OR of the two searches they were):
    the same accounts with the same reasons as three searches; also behind a size limit,
    read one subtree at a time."""
    slapd: SlapdServer = request.getfixturevalue(server)
    bind = {"bind_dn": slapd.bind_dn, "password_env": "MIGRATOR_TEST_LDAP_PASSWORD"}
    plan = load_plan(write_plan(tmp_path, slapd.url, bind))

    def accounts(read: Callable[[DirectoryReader, Classifier], None]) -> list[tuple[Any, ...]]:
        classifier = Classifier(plan)
        with open_directory(plan.directory, reader_password) as directory:
            read(directory, classifier)
        return [
            (a.key, a.dn, a.scope, a.reason, a.detail, a.address, a.batch, a.source_path)
            for a in classifier.finish()
        ]

    before = accounts(_three_searches)
    after = accounts(lambda directory, classifier: read_directory(directory, classifier, None))
    # the people outside the filter come in the server's order, with and without an address
    # mixed now: the accounts are the same, in another order
    assert len(after) == len(slapd.people) and sorted(after) == sorted(before)
    assert {a[3] for a in after} >= {"not-selected", "no-address"}
