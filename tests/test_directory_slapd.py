"""The directory adapter against real OpenLDAP servers: limits, binds, TLS and failures."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from migrator.adapters.directory import open_directory
from migrator.model.errors import DirectoryError
from migrator.samples.directory import DEFAULT_FILTER, POPULATION_FILTER, selected_uids

if TYPE_CHECKING:
    from tests.fixtures.slapd import SlapdServer

pytestmark = pytest.mark.slapd


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def _ldapsearch(server: SlapdServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ldapsearch",
            "-x",
            "-LLL",
            "-H",
            server.url,
            "-D",
            server.bind_dn,
            "-w",
            server.password,
            "-b",
            server.base,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_size_limit_is_real_without_paging(slapd: SlapdServer) -> None:
    # an independent client (OpenLDAP's ldapsearch) asks without paging and is cut at 500
    plain = _ldapsearch(slapd, DEFAULT_FILTER, "dn")
    assert plain.returncode == 4, plain.stderr  # sizeLimitExceeded
    assert plain.stdout.count("\ndn: ") + plain.stdout.startswith("dn: ") == 500
    # the same filter with paging is not cut, and neither is our reader
    paged = _ldapsearch(slapd, "-E", "pr=200/noprompt", DEFAULT_FILTER, "dn")
    assert paged.returncode == 0, paged.stderr
    with open_directory(slapd.settings(), slapd.password) as reader:
        uids = {e.first("uid") for e in reader.search(DEFAULT_FILTER, ["uid"])}
    assert uids == selected_uids(slapd.people)
    assert len(uids) == 2100


def test_page_size_above_the_limit_still_returns_everything(slapd: SlapdServer) -> None:
    with open_directory(slapd.settings(page_size=1000), slapd.password) as reader:
        entries = list(reader.search(POPULATION_FILTER, ["uid"]))
    assert len(entries) == len(slapd.people) == 5200


def test_anonymous_bind_pages_too(slapd: SlapdServer) -> None:
    with open_directory(slapd.settings(bind_dn=None), None) as reader:
        found = {e.first("uid") for e in reader.search(DEFAULT_FILTER, ["uid"])}
    assert found == selected_uids(slapd.people)


def test_wrong_password_names_the_url_and_the_dn_never_the_password(slapd: SlapdServer) -> None:
    wrong = "Wr0ng-pa55word-zq"
    with pytest.raises(DirectoryError) as caught:
        open_directory(slapd.settings(), wrong)
    text = f"{caught.value} {caught.value.hint}"
    assert slapd.url in str(caught.value)
    assert "invalid credentials" in str(caught.value)
    assert slapd.bind_dn in str(caught.value)
    assert "[directory] password_env" in (caught.value.hint or "")
    assert wrong not in text and slapd.password not in text


@pytest.mark.parametrize("wrong", ["o", "r", "reader", "127.0.0.1", "ou=system", ","])
def test_a_wrong_password_found_in_the_dn_or_url_garbles_nothing(
    slapd: SlapdServer, wrong: str
) -> None:
    """A wrong password "o" printed the bind DN as cn=n***b***dy,dc=***rg: masking the
    password inside the finished message garbled it and spelled the password out. Messages
    are now built from what may be shown, and left whole."""
    with pytest.raises(DirectoryError) as caught:
        open_directory(slapd.settings(), wrong)
    assert str(caught.value) == f"{slapd.url}: bind as {slapd.bind_dn} refused: invalid credentials"
    assert caught.value.hint == (
        "check [directory] bind_dn and the password in the environment variable named by "
        "[directory] password_env"
    )


def test_server_words_that_hold_the_password_are_not_shown() -> None:
    """No server at hand echoes a password; when one does, its words are left out whole (not
    masked) and the result code's name, which is ldap3's own, still says what happened."""
    from migrator.adapters.directory.errors import bind_error
    from migrator.model.plan import DirectorySettings

    settings = DirectorySettings(
        url="ldap://ldap.ife.org.mx",
        base="dc=ife,dc=org,dc=mx",
        bind_dn="cn=nobody,dc=ife,dc=org",
        password_env="MIGRATOR_LDAP_PASSWORD",
    )
    result = {
        "result": 53,
        "description": "unwillingToPerform",
        "message": "bind with password s3cr3t refused",
    }
    err = bind_error(settings, result, "s3cr3t")
    assert "s3cr3t" not in f"{err} {err.hint}" and "***" not in str(err)
    assert str(err).startswith(
        "ldap://ldap.ife.org.mx: bind as cn=nobody,dc=ife,dc=org failed: unwillingToPerform: "
    )
    assert "not shown" in str(err)
    shown = bind_error(settings, result, "other")  # without the password in them, they are shown
    assert "bind with password s3cr3t refused" in str(shown)


def test_bind_dn_without_password_is_refused_before_connecting(slapd: SlapdServer) -> None:
    with pytest.raises(DirectoryError, match="no password"):
        open_directory(slapd.settings(), None)


def test_unreachable_server_fails_fast(slapd: SlapdServer) -> None:
    url = f"ldap://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(DirectoryError) as caught:
        open_directory(slapd.settings(url=url), slapd.password)
    assert time.monotonic() - started < 3
    assert url in str(caught.value)
    assert "cannot connect" in str(caught.value)
    assert "host and port" in (caught.value.hint or "")


def test_ldaps_port_spoken_to_in_clear_text_is_reported(slapd: SlapdServer) -> None:
    assert slapd.ldaps_url is not None
    url = slapd.ldaps_url.replace("ldaps://", "ldap://")
    with pytest.raises(DirectoryError) as caught:
        open_directory(slapd.settings(url=url, timeout=3), slapd.password)
    assert url in str(caught.value)


# ---- TLS ------------------------------------------------------------------------------------


def test_ldaps_with_the_right_ca_verifies_and_reads(slapd: SlapdServer) -> None:
    assert slapd.ldaps_url and slapd.ca_file
    with open_directory(slapd.settings(url=slapd.ldaps_url), slapd.password) as reader:
        assert len(list(reader.search(DEFAULT_FILTER, ["uid"]))) == 2100


def test_ldaps_without_the_ca_fails_the_certificate_check(slapd: SlapdServer) -> None:
    assert slapd.ldaps_url
    with pytest.raises(DirectoryError) as caught:
        open_directory(slapd.settings(url=slapd.ldaps_url, ca_file=None), slapd.password)
    assert slapd.ldaps_url in str(caught.value)
    assert "certificate" in str(caught.value).lower()
    assert "ca_file" in (caught.value.hint or "")
    assert slapd.password not in f"{caught.value} {caught.value.hint}"


def test_tls_verify_off_accepts_an_unknown_ca(slapd: SlapdServer) -> None:
    assert slapd.ldaps_url
    settings = slapd.settings(url=slapd.ldaps_url, ca_file=None, tls_verify=False)
    with open_directory(settings, slapd.password) as reader:
        assert (
            next(iter(reader.search("(uid=juan.perez.a)", ["uid"]))).first("uid") == "juan.perez.a"
        )


def test_start_tls_with_the_right_ca(slapd: SlapdServer) -> None:
    with open_directory(slapd.settings(start_tls=True), slapd.password) as reader:
        assert len(list(reader.search(DEFAULT_FILTER, ["uid"]))) == 2100


def test_start_tls_checks_the_certificate_too(slapd: SlapdServer) -> None:
    with pytest.raises(DirectoryError) as caught:
        open_directory(slapd.settings(start_tls=True, ca_file=None), slapd.password)
    assert "certificate" in str(caught.value).lower()


def test_missing_ca_file_is_named(slapd: SlapdServer) -> None:
    with pytest.raises(DirectoryError) as caught:
        open_directory(
            slapd.settings(start_tls=True, ca_file="/nonexistent/ca.pem"), slapd.password
        )
    assert "/nonexistent/ca.pem" in str(caught.value)


def test_start_tls_against_a_server_without_tls(legacy_slapd: SlapdServer) -> None:
    with pytest.raises(DirectoryError) as caught:
        open_directory(legacy_slapd.settings(start_tls=True), legacy_slapd.password)
    assert legacy_slapd.url in str(caught.value)
    assert "StartTLS" in str(caught.value)
    assert "start_tls" in (caught.value.hint or "")


# ---- a server that does not page -----------------------------------------------------------


def test_server_refusing_paging_and_over_its_limit_is_read_in_parts(
    legacy_slapd: SlapdServer,
) -> None:
    expected = selected_uids(legacy_slapd.people)
    assert len(expected) > legacy_slapd.size_limit  # one plain search is cut (checked below)
    assert _ldapsearch(legacy_slapd, DEFAULT_FILTER, "dn").returncode == 4
    with open_directory(legacy_slapd.settings(), legacy_slapd.password) as reader:
        found = [e.first("uid") for e in reader.search(DEFAULT_FILTER, ["uid"])]
        # five offices of 140 people: one search per office, no prefix parts
        assert not reader.paging_used and reader.size_limit == 500
        assert reader.subtree_searches >= 5 and reader.split_parts == 0
    assert sorted(found) == sorted(expected)  # every entry, each once


def test_server_refusing_paging_still_answers_small_searches(legacy_slapd: SlapdServer) -> None:
    office = legacy_slapd.people[0].office
    expected = {p.uid for p in legacy_slapd.people if p.office == office}
    assert 0 < len(expected) < 500
    with open_directory(legacy_slapd.settings(), legacy_slapd.password) as reader:
        found = {
            e.first("uid")
            for e in reader.search(f"(&(objectClass=inetOrgPerson)(ou={office}))", ["uid"])
        }
        assert not reader.paging_used
    assert found == expected


# ---- a stock size limit that caps paged searches too (Debian's default slapd) --------------


def test_a_stock_size_limit_is_read_in_parts_every_entry_once(stock_slapd: SlapdServer) -> None:
    # an independent client shows the cap: even a paged search stops at the limit
    paged = _ldapsearch(stock_slapd, "-E", "pr=100/noprompt", "(objectClass=inetOrgPerson)", "dn")
    assert paged.returncode == 4, paged.stderr
    expected = selected_uids(stock_slapd.people)
    assert len(expected) > 4 * stock_slapd.size_limit
    offices = {p.office for p in stock_slapd.people}
    with open_directory(stock_slapd.settings(page_size=100), stock_slapd.password) as reader:
        found = [e.first("uid") for e in reader.search(DEFAULT_FILTER, ["uid", "mail"])]
        # split by subtree: one search per office (each under the limit), none by prefix
        assert reader.paging_used and reader.size_limit == 500
        assert reader.subtree_searches >= len(offices) and reader.split_parts == 0
    assert len(found) == len(set(found)) and set(found) == expected
    everyone = {p.uid for p in stock_slapd.people}
    with open_directory(stock_slapd.settings(), stock_slapd.password) as reader:
        people = [e.first("uid") for e in reader.search("(objectClass=inetOrgPerson)", ["uid"])]
    assert len(people) == len(set(people)) and set(people) == everyone
    assert "../../etc/passwd" in everyone  # a hostile uid, found in its office


def _add(server: SlapdServer, ldif: list[str]) -> None:
    added = subprocess.run(
        ["ldapadd", "-x", "-c", "-H", server.url, "-D", server.root_dn, "-w", server.root_password],
        input="\n".join(ldif), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert added.returncode in (0, 68), added.stderr  # 68: already there (the test ran before)


def test_names_that_start_with_no_ascii_letter_are_split_too(stock_slapd: SlapdServer) -> None:
    # 600 roles in one flat OU named by cn values that all start with "Ñandú ": the split
    # follows the values the cut search returned, not a fixed alphabet
    base = f"ou=roles,{stock_slapd.base}"
    ldif = [f"dn: {base}", "objectClass: organizationalUnit", "ou: roles", ""]
    for n in range(600):
        ldif += [
            f"dn: cn=Ñandú {n},{base}",
            "objectClass: organizationalRole",
            f"cn: Ñandú {n}",
            "",
        ]
    _add(stock_slapd, ldif)
    settings = stock_slapd.settings(base=base, filter="(objectClass=organizationalRole)")
    with open_directory(settings, stock_slapd.password) as reader:
        names = [e.first("cn") for e in reader.search(settings.filter, ["cn"])]
        assert reader.size_limit == 500 and reader.split_parts >= 2
    assert len(names) == len(set(names)) == 600


def test_a_part_that_cannot_be_split_is_an_error_not_a_short_list(stock_slapd: SlapdServer) -> None:
    # 600 people in one OU named "cn=Ana+uid=...": the naming attribute (cn) has one value
    # for all of them, so no prefix of it tells them apart
    base = f"ou=anas,{stock_slapd.base}"
    ldif = [f"dn: {base}", "objectClass: organizationalUnit", "ou: anas", ""]
    for n in range(600):
        ldif += [
            f"dn: cn=Ana+uid=ana{n},{base}",
            "objectClass: inetOrgPerson",
            "cn: Ana",
            "sn: Ana",
            f"uid: ana{n}",
            "",
        ]
    _add(stock_slapd, ldif)
    settings = stock_slapd.settings(base=base, filter="(objectClass=inetOrgPerson)")
    with (
        open_directory(settings, stock_slapd.password) as reader,
        pytest.raises(DirectoryError) as caught,
    ):
        list(reader.search(settings.filter, ["cn"]))
    message = str(caught.value)
    assert stock_slapd.url in message and "size limit exceeded" in message
    assert "cn=ana*" in message
    assert "narrow [directory] filter" in (caught.value.hint or "")


def test_a_closed_reader_says_so(slapd: SlapdServer) -> None:
    reader = open_directory(slapd.settings(), slapd.password)
    reader.close()
    reader.close()  # twice is harmless
    with pytest.raises(DirectoryError, match="closed"):
        reader.search(DEFAULT_FILTER, ["uid"])


def test_settings_helper_matches_the_server(slapd: SlapdServer) -> None:
    # guards the fixture itself: tests bind as a limited reader, not as the unlimited rootdn
    assert replace(slapd.settings(), page_size=200).bind_dn == slapd.bind_dn != slapd.root_dn
    assert slapd.size_limit == 500 and slapd.paging
