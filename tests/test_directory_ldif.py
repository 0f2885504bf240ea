"""`ldif:PATH` directories: what a well-formed file gives, and how a broken one is reported."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from migrator.adapters.directory import decode_value, escape_filter_value, open_directory
from migrator.model.errors import DirectoryError
from migrator.model.plan import DirectorySettings

BASE = "dc=example,dc=mx"

GOOD = f"""\
version: 1
# a comment that is folded
 over two lines

dn: {BASE}
objectClass: top
objectClass: dcObject
objectClass: organization
dc: example
o: example

dn: ou=people,{BASE}
objectClass: organizationalUnit
ou: people

dn: uid=ana,ou=people,{BASE}
changetype: add
objectClass: inetOrgPerson
uid: ana
cn:: {base64.b64encode("Ana Núñez".encode()).decode()}
sn: Núñez
mail: ana@example.mx
mail: ANA.ALIAS@example.mx
description: a value folded
  across lines
"""


def settings_for(path: Path, **overrides: object) -> DirectorySettings:
    values: dict[str, object] = {"url": f"ldif:{path}", "base": BASE, "page_size": 2}
    values.update(overrides)
    return DirectorySettings(**values)  # type: ignore[arg-type]


def read_all(
    path: Path,
    search_filter: str = "(objectClass=*)",
    attrs: list[str] | None = None,
    **overrides: object,
) -> list:
    with open_directory(settings_for(path, **overrides), None) as reader:
        return list(reader.search(search_filter, attrs or ["uid", "cn", "mail", "description"]))


def write(tmp_path: Path, text: str | bytes, name: str = "dir.ldif") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def test_a_well_formed_file_reads_like_a_server(tmp_path: Path) -> None:
    entries = read_all(write(tmp_path, GOOD), "(uid=ana)")
    assert len(entries) == 1
    ana = entries[0]
    assert ana.dn == f"uid=ana,ou=people,{BASE}"
    assert ana.attributes == {
        "uid": ["ana"],
        "cn": ["Ana Núñez"],
        "mail": ["ana@example.mx", "ANA.ALIAS@example.mx"],
        "description": ["a value folded across lines"],
    }


def test_crlf_line_endings_are_accepted(tmp_path: Path) -> None:
    entries = read_all(write(tmp_path, GOOD.replace("\n", "\r\n")), "(uid=ana)")
    assert entries[0].values("mail") == ["ana@example.mx", "ANA.ALIAS@example.mx"]


def test_paging_on_the_mock_visits_every_entry(tmp_path: Path) -> None:
    with open_directory(settings_for(write(tmp_path, GOOD)), None) as reader:
        dns = [e.dn for e in reader.search("(objectClass=*)", ["objectClass"])]
        assert reader.pages_fetched == 2  # three entries, two per page
    assert len(dns) == len(set(dns)) == 3


def test_bind_settings_are_ignored_for_a_file(tmp_path: Path) -> None:
    entries = read_all(write(tmp_path, GOOD), "(uid=ana)", bind_dn="cn=admin," + BASE)
    assert [e.first("uid") for e in entries] == ["ana"]


def test_values_that_are_not_utf8_are_backslash_escaped(tmp_path: Path) -> None:
    raw = b"caf\xe9 \xff"  # Latin-1 bytes, as an old import might have stored them
    text = (
        GOOD + f"\ndn: uid=old,ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: old\n"
        f"cn:: {base64.b64encode(raw).decode()}\n"
    )
    [entry] = read_all(write(tmp_path, text), "(uid=old)")
    assert entry.values("cn") == ["caf\\xe9 \\xff"]
    assert decode_value(raw) == "caf\\xe9 \\xff"
    assert decode_value("José".encode()) == "José"


def test_star_requests_every_attribute_under_the_servers_names(tmp_path: Path) -> None:
    [entry] = read_all(write(tmp_path, GOOD), "(uid=ana)", ["*"])
    assert entry.values("sn") == ["Núñez"]
    assert "inetOrgPerson" in entry.values("objectClass")


def test_value_from_a_file_url(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("leída de un archivo", encoding="utf-8")
    text = (
        GOOD + f"\ndn: uid=url,ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: url\n"
        f"description:< file://{tmp_path / 'note.txt'}\n"
    )
    [entry] = read_all(write(tmp_path, text), "(uid=url)")
    assert entry.values("description") == ["leída de un archivo"]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ldif"
    with pytest.raises(DirectoryError) as caught:
        open_directory(settings_for(missing), None)
    assert str(missing) in str(caught.value)
    assert "not found" in str(caught.value)
    assert "ldif:PATH" in (caught.value.hint or "")
    # load_plan resolves a relative ldif: path from the plan's folder; the hint must say so
    assert "folder of the plan file" in (caught.value.hint or "")
    assert "current directory" not in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            GOOD + "\ndn: uid=x,ou=people," + BASE + "\nthis line has no colon\n",
            28,
            "attribute: value",
        ),
        (GOOD + "\ndn: uid=x,ou=people," + BASE + "\ncn:: %%%not-base64\n", 28, "base64"),
        (GOOD + "\ndn: uid=ana,ou=people," + BASE + "\nobjectClass: inetOrgPerson\n", 27, "twice"),
        (
            GOOD + "\ndn: uid=ana,ou=people," + BASE + "\nchangetype: modify\nreplace: cn\n",
            28,
            "change record",
        ),
        (GOOD + "\nuid: orphan\n", 27, "must start with 'dn:'"),
        (" leading continuation\n" + GOOD, 1, "continuation"),
        ("version: 2\n" + GOOD, 1, "version"),
        (GOOD + "\ndn: uid=x,ou=people," + BASE + "\ncn:< http://example.mx/x\n", 28, "file://"),
    ],
)
def test_unparsable_file_names_the_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DirectoryError) as caught:
        open_directory(settings_for(path), None)
    message = str(caught.value)
    assert f"ldif:{path}" in message
    assert f"line {line}:" in message
    assert words in message
    assert "LDIF" in (caught.value.hint or "")


def test_invalid_dn_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "\ndn: this is not a dn\nobjectClass: top\n")
    with pytest.raises(DirectoryError, match="line 27: invalid entry"):
        open_directory(settings_for(path), None)


def test_an_empty_file_has_no_base(tmp_path: Path) -> None:
    with (
        open_directory(settings_for(write(tmp_path, "")), None) as reader,
        pytest.raises(DirectoryError, match="does not exist"),
    ):
        list(reader.search("(objectClass=*)", ["uid"]))


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ("close)(uid=*", "close\\29\\28uid=\\2a"),
        ("back\\slash", "back\\5cslash"),
        ("nul\x00byte", "nul\\00byte"),
        ("José Núñez", "José Núñez"),
    ],
)
def test_escape_filter_value_follows_rfc_4515(value: str, escaped: str) -> None:
    assert escape_filter_value(value) == escaped


def test_escaped_values_match_literally_on_the_mock(tmp_path: Path) -> None:
    text = (
        GOOD + f"\ndn: uid=star,ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: star\n"
        "cn: a*b(c)\\d\n"
    )
    path = write(tmp_path, text)
    # equality only: ldap3's mock rebuilds substring filters without their escapes, so a
    # substring value holding a parenthesis cannot be searched in an LDIF file
    exact = "(cn=" + escape_filter_value("a*b(c)\\d") + ")"
    assert [e.first("uid") for e in read_all(path, exact)] == ["star"]
    assert read_all(path, f"(cn={escape_filter_value('a*')})") == []
