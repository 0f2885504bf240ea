"""What discovery relies on from a directory search, checked on a real slapd and on `ldif:`.

Both backends hold the same generated directory (5,200 people, 332 offices, hostile cases);
slapd enforces a size limit of 500 on the reader account, so only paging gets everything.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from migrator.adapters.directory import DirectoryReader, escape_filter_value, open_directory
from migrator.model.errors import DirectoryError
from migrator.model.plan import DirectorySettings
from migrator.samples.directory import (
    CASE_LONG_VALUES,
    CASE_MULTI_MAIL,
    CASE_NO_OU,
    CASE_UNSAFE_UID,
    DEFAULT_FILTER,
    LONG_VALUE_LENGTH,
    POPULATION_FILTER,
    PersonSpec,
    case_index,
    selected_uids,
)

if TYPE_CHECKING:
    from tests.fixtures.slapd import SlapdServer


ATTRIBUTES = ["mail", "uid", "cn", "sn", "givenName", "employeeType", "ou"]


@pytest.fixture(scope="module", params=["slapd", "ldif"])
def backend(request: pytest.FixtureRequest) -> tuple[DirectorySettings, str | None]:
    """Settings and password for each backend holding the session's people."""
    if request.param == "slapd":
        server: SlapdServer = request.getfixturevalue("slapd")
        return server.settings(), server.password
    path = request.getfixturevalue("people_ldif")
    return DirectorySettings(url=f"ldif:{path}", base="dc=ife,dc=org,dc=mx", page_size=200), None


@pytest.fixture(scope="module")
def reader(backend: tuple[DirectorySettings, str | None]) -> Iterator[DirectoryReader]:
    """An open reader shared by the module (loading the LDIF into the mock takes a second)."""
    with open_directory(*backend) as opened:
        yield opened


@pytest.fixture(scope="module")
def people(session_people: list[PersonSpec]) -> dict[str, PersonSpec]:
    return {p.uid: p for p in session_people}


def test_paged_search_returns_exactly_what_the_filter_selects(
    reader: DirectoryReader, people: dict[str, PersonSpec]
) -> None:
    found = [e.first("uid") for e in reader.search(DEFAULT_FILTER, ATTRIBUTES)]
    expected = selected_uids(people.values())
    assert len(expected) == 2100 > 500  # more than the server's size limit
    assert len(found) == len(expected)  # no entry twice
    assert set(found) == expected
    assert reader.paging_used
    assert reader.pages_fetched == math.ceil(len(expected) / reader.settings.page_size)


def test_population_filter_returns_every_person_and_nothing_else(
    reader: DirectoryReader, people: dict[str, PersonSpec]
) -> None:
    entries = list(reader.search(POPULATION_FILTER, ["uid"]))
    assert sorted(e.first("uid") or "" for e in entries) == sorted(people)
    assert not any(e.dn.startswith(("cn=reader", "ou=")) for e in entries)


def test_values_come_back_exactly_as_stored(
    reader: DirectoryReader, people: dict[str, PersonSpec]
) -> None:
    """UTF-8 names, multi-valued mail in order, hostile and long values: all intact."""
    entries = list(reader.search(POPULATION_FILTER, ATTRIBUTES))
    assert len(entries) == len(people)
    for entry in entries:
        spec = people[entry.values("uid")[0]]
        assert entry.attributes == {
            "mail": list(spec.mails),
            "uid": [spec.uid],
            "cn": [spec.cn],
            "sn": [spec.sn],
            "givenName": [spec.given_name],
            "employeeType": [spec.employee_type] if spec.employee_type else [],
            "ou": [spec.office] if spec.has_ou_attribute else [],
        }, spec.uid
        assert f",ou={spec.office},ou=people,dc=ife,dc=org,dc=mx" in entry.dn
    cases = case_index(people.values())
    by_uid = {e.values("uid")[0]: e for e in entries}
    assert any("ñ" in e.values("cn")[0].lower() for e in entries)
    for uid in cases[CASE_MULTI_MAIL]:
        assert len(by_uid[uid].values("mail")) >= 2
        assert by_uid[uid].first("mail") == people[uid].mails[0]
    for uid in cases[CASE_LONG_VALUES]:
        assert len(by_uid[uid].values("cn")[0]) == LONG_VALUE_LENGTH
    for uid in cases[CASE_NO_OU]:
        assert by_uid[uid].values("ou") == []


def test_hostile_uids_are_found_as_data_with_escaped_filters(
    reader: DirectoryReader, people: dict[str, PersonSpec]
) -> None:
    unsafe = case_index(people.values())[CASE_UNSAFE_UID]
    assert {"close)(uid=*", "star*", "../../etc/passwd", "line\nbreak"} <= unsafe
    for uid in unsafe:
        found = list(reader.search(f"(uid={escape_filter_value(uid)})", ["uid", "mail"]))
        assert [e.values("uid") for e in found] == [[uid]]
        assert found[0].values("mail") == list(people[uid].mails)


def test_attribute_names_are_the_callers_spelling(reader: DirectoryReader) -> None:
    requested = ["MAIL", "Uid", "employeetype", "telephoneNumber"]
    entry = next(iter(reader.search("(uid=juan.perez.a)", requested)))
    assert list(entry.attributes) == requested
    assert entry.attributes["MAIL"] == ["juan.perez.comun@ife.org.mx"]
    assert entry.attributes["telephoneNumber"] == []  # asked for, absent: an empty list


def test_search_streams_page_by_page(reader: DirectoryReader) -> None:
    results = reader.search(DEFAULT_FILTER, ["uid"])
    first = next(results)
    assert first.first("uid")
    assert reader.pages_fetched == 1  # the rest is fetched only as the caller goes on
    assert sum(1 for _ in results) == 2099
    assert reader.pages_fetched == 11


def test_missing_base_is_a_directory_error_naming_the_base(
    backend: tuple[DirectorySettings, str | None],
) -> None:
    settings = replace(backend[0], base="ou=nowhere,dc=ife,dc=org,dc=mx")
    with open_directory(settings, backend[1]) as reader, pytest.raises(DirectoryError) as caught:
        list(reader.search(DEFAULT_FILTER, ["uid"]))
    assert "ou=nowhere,dc=ife,dc=org,dc=mx" in str(caught.value)
    assert settings.url in str(caught.value)
    assert "[directory] base" in (caught.value.hint or "")


def test_malformed_filter_is_refused_before_any_request(reader: DirectoryReader) -> None:
    for bad in ("(&(uid=x)", "uid=x", "(uid=a)(uid=b)", ""):
        with pytest.raises(DirectoryError) as caught:
            reader.search(bad, ["uid"])  # raises at call time, not at first iteration
        assert reader.settings.url in str(caught.value)
        assert "filter" in str(caught.value)
        assert "RFC 4515" in (caught.value.hint or "")
