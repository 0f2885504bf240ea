"""The sample people directory: campaign-shaped, deterministic, and honest about its traps."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.adapters.directory.ldif import read_ldif
from migrator.samples.directory import (
    CASE_BAD_MAIL,
    CASE_LONG_VALUES,
    CASE_NO_MAIL,
    CASE_NON_ASCII_UID,
    CASE_SLASH_UID,
    CASE_TYPE_CASE,
    CASE_UNSAFE_UID,
    CASE_UPPER_MAIL,
    DEFAULT_BASE,
    HOSTILE_CASES,
    LONG_VALUE_LENGTH,
    PersonSpec,
    case_index,
    generate_people,
    ldif_entries,
    selected_uids,
    shared_mail_groups,
    write_ldif,
)


@pytest.fixture(scope="module")
def campaign() -> list[PersonSpec]:
    return generate_people(9000, in_scope=3592, offices=332, seed=2012)


def filter_selects(person: PersonSpec) -> bool:
    """The default filter, spelled out independently of the generator."""
    return (person.employee_type or "").lower() in {"mando medio", "vocal"} and bool(person.mails)


def test_campaign_shape(campaign: list[PersonSpec]) -> None:
    assert len(campaign) == 9000
    assert len(selected_uids(campaign)) == 3592
    assert len({p.office for p in campaign}) == 332
    assert len({p.uid.lower() for p in campaign}) == 9000  # uids unique, as LDAP compares them
    assert all(p.selected == filter_selects(p) for p in campaign)
    other_types = {p.employee_type for p in campaign if not p.selected}
    assert {"operativo", "honorarios"} <= other_types
    assert any("ñ" in p.cn or "á" in p.cn for p in campaign)


def test_same_seed_same_directory_other_seed_other_directory() -> None:
    first = generate_people(600, in_scope=200, offices=7, seed=5)
    assert generate_people(600, in_scope=200, offices=7, seed=5) == first
    assert generate_people(600, in_scope=200, offices=7, seed=6) != first


def test_every_hostile_case_is_present_and_classified(campaign: list[PersonSpec]) -> None:
    cases = case_index(campaign)
    by_uid = {p.uid: p for p in campaign}
    assert set(cases) == set(HOSTILE_CASES)
    assert all(cases[case] for case in HOSTILE_CASES)
    assert not any(by_uid[u].selected for u in cases[CASE_NO_MAIL])
    assert all(by_uid[u].employee_type in ("mando medio", "vocal") for u in cases[CASE_NO_MAIL])
    for case in set(HOSTILE_CASES) - {CASE_NO_MAIL}:
        assert all(by_uid[u].selected for u in cases[case]), case
    upper = [by_uid[u].mails[0] for u in cases[CASE_UPPER_MAIL]]
    assert all(m == m.upper() for m in upper)
    unsafe = "".join(cases[CASE_UNSAFE_UID])
    for fragment in ("../", "*", ")(", "\t", "\n", "\x1b"):
        assert fragment in unsafe
    assert all("/" in u for u in cases[CASE_SLASH_UID])
    assert all(not u.isascii() for u in cases[CASE_NON_ASCII_UID])
    assert {"not-an-address", "a@@b"} <= {by_uid[u].mails[0] for u in cases[CASE_BAD_MAIL]}
    assert all(len(by_uid[u].cn) == LONG_VALUE_LENGTH for u in cases[CASE_LONG_VALUES])
    assert {by_uid[u].employee_type for u in cases[CASE_TYPE_CASE]} == {"Mando Medio", "VOCAL"}
    everything = "".join(p.uid + p.cn + "".join(p.mails) for p in campaign)
    assert "\x00" not in everything


def test_shared_addresses_are_two_people_each(campaign: list[PersonSpec]) -> None:
    groups = shared_mail_groups(campaign)
    assert len(groups) == 2
    assert all(len(uids) == 2 for uids in groups.values())
    by_uid = {p.uid: p for p in campaign}
    spellings = {by_uid[u].mails[0] for uids in groups.values() for u in uids}
    assert len(spellings) == 3  # one pair writes its address in two cases


def test_hostile_false_is_plain(campaign: list[PersonSpec]) -> None:
    plain = generate_people(300, in_scope=100, offices=3, hostile=False)
    assert not any(p.cases for p in plain)
    assert len(selected_uids(plain)) == 100


def test_impossible_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot exceed"):
        generate_people(10, in_scope=11, offices=1)
    with pytest.raises(ValueError, match="hostile=False"):
        generate_people(20, in_scope=5, offices=1)


def test_ldif_round_trip_keeps_every_value(tmp_path: Path, campaign: list[PersonSpec]) -> None:
    path = write_ldif(tmp_path / "people.ldif", DEFAULT_BASE, campaign)
    text = path.read_text(encoding="utf-8")
    assert max(len(line) for line in text.splitlines()) <= 76  # folded, as RFC 2849 suggests
    records = {r.dn: r for r in read_ldif(path)}
    expected = dict(ldif_entries(DEFAULT_BASE, campaign))
    assert list(records) == list(expected)  # parents before children, nothing lost
    for person in campaign:
        record = records[person.dn()]
        decoded = {k: [v.decode("utf-8") for v in vs] for k, vs in record.attributes.items()}
        assert decoded == person.attributes()
    assert len([dn for dn in records if dn.startswith("ou=Office")]) == 332
