"""Classification of directory entries: in scope, excluded or invalid, each with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from migrator.commands import classify
from migrator.commands.classify import PathResolver, classify_all, parse_address
from migrator.model.account import DirectoryEntry, DiscoveredAccount, Scope
from migrator.plan import parse_plan

PLAN = """
[plan]
name = "t"
[directory]
url = "ldif:x.ldif"
base = "ou=people,dc=ife,dc=org,dc=mx"
filter = "(mail=*)"
[source]
kind = "maildir"
root = "ROOT"
path = "{root}/{domain}/{uid}/Maildir"
[target]
kind = "ews"
address = "{local}@exchange.ife.org.mx"
"""


def person(
    uid: str, mail: list[str] | None, ou: str = "Office001", **extra: list[str]
) -> DirectoryEntry:
    attrs: dict[str, list[str]] = {"uid": [uid], "cn": [f"Person {uid}"]}
    if mail is not None:
        attrs["mail"] = mail
    attrs.update(extra)
    return DirectoryEntry(dn=f"uid={uid},ou={ou},ou=people,dc=ife,dc=org,dc=mx", attributes=attrs)


def run(
    tmp_path: Path, selected: list[DirectoryEntry], others: list[DirectoryEntry] = ()
) -> dict[str, DiscoveredAccount]:  # type: ignore[assignment]
    plan = parse_plan(PLAN.replace("ROOT", str(tmp_path)), "t.toml")
    accounts = classify_all(plan, selected, list(selected) + list(others))
    assert len(accounts) == len(selected) + len(others), "every entry ends in exactly one outcome"
    return {a.dn.split(",")[0][4:]: a for a in accounts}


def test_in_scope_entry_gets_address_target_path_and_batch(tmp_path: Path) -> None:
    got = run(
        tmp_path, [person("jnunez", ["José.Núñez@IFE.org.mx", "jn@ife.org.mx", "JN@ife.org.mx"])]
    )["jnunez"]
    assert got.scope is Scope.IN_SCOPE
    assert got.address == "josé.núñez@ife.org.mx"
    assert got.aliases == ["jn@ife.org.mx"]
    assert got.target_address == "josé.núñez@exchange.ife.org.mx"
    assert got.batch == "Office001"  # no ou attribute: the nearest ou= of the DN
    assert got.source_path == str(tmp_path.resolve() / "ife.org.mx" / "jnunez" / "Maildir")
    assert got.key == "josé.núñez@ife.org.mx"


@pytest.mark.parametrize(
    "uid",
    ["../../etc", "a/b", "..", "x\x01y", "tab\there", "a" * 300, "new\nline"],
)
def test_unsafe_uids_never_become_paths(tmp_path: Path, uid: str) -> None:
    got = run(tmp_path, [person(uid, ["x@ife.org.mx"])])
    account = next(iter(got.values()))
    assert account.scope is Scope.INVALID
    assert account.reason == "unsafe-path"
    assert account.source_path is None


@pytest.mark.parametrize("uid", ["*", ")(uid=*", "{root}", "jose$(rm -rf)"])
def test_filter_and_template_syntax_in_values_is_only_data(tmp_path: Path, uid: str) -> None:
    account = next(iter(run(tmp_path, [person(uid, ["x@ife.org.mx"])]).values()))
    assert account.scope is Scope.IN_SCOPE
    assert account.source_path == str(tmp_path.resolve() / "ife.org.mx" / uid / "Maildir")


def test_symlink_that_leaves_the_root_is_unsafe(tmp_path: Path) -> None:
    root = tmp_path / "vmail"
    (root / "ife.org.mx").mkdir(parents=True)
    (root / "ife.org.mx" / "evil").symlink_to("/etc")
    plan = parse_plan(PLAN.replace("ROOT", str(root)), "t.toml")
    [account] = classify_all(plan, [person("evil", ["e@ife.org.mx"])], [])
    assert account.scope is Scope.INVALID and account.reason == "unsafe-path"
    assert "leaves the source root" in (account.detail or "")


def test_a_link_to_a_colleagues_mailbox_inside_the_root_is_unsafe(tmp_path: Path) -> None:
    """A user who owns a step of the path (a home directory) links it to another user's
    mailbox: still inside root, but migrating it would copy the colleague's mail into the
    user's Exchange mailbox. The colleague's own entry stays in scope; a root that is itself
    reached through a link is fine."""
    real = tmp_path / "srv-vmail"
    (real / "ife.org.mx" / "luis" / "Maildir").mkdir(parents=True)
    (real / "ife.org.mx" / "ana").mkdir()
    (real / "ife.org.mx" / "ana" / "Maildir").symlink_to(real / "ife.org.mx" / "luis" / "Maildir")
    root = tmp_path / "vmail"
    root.symlink_to(real)
    plan = parse_plan(PLAN.replace("ROOT", str(root)), "t.toml")
    accounts = {
        a.dn.split(",")[0][4:]: a
        for a in classify_all(
            plan, [person("ana", ["ana@ife.org.mx"]), person("luis", ["luis@ife.org.mx"])], []
        )
    }
    assert accounts["ana"].scope is Scope.INVALID and accounts["ana"].reason == "unsafe-path"
    assert "symbolic link" in (accounts["ana"].detail or "") and accounts["ana"].source_path is None
    assert accounts["luis"].scope is Scope.IN_SCOPE
    assert accounts["luis"].source_path == str(real / "ife.org.mx" / "luis" / "Maildir")


def test_duplicate_addresses_are_invalid_on_both_sides(tmp_path: Path) -> None:
    got = run(
        tmp_path,
        [
            person("a1", ["Same@ife.org.mx"]),
            person("a2", ["same@IFE.org.mx"]),
            person("b", ["b@ife.org.mx"]),
        ],
    )
    assert got["a1"].scope is got["a2"].scope is Scope.INVALID
    assert got["a1"].reason == got["a2"].reason == "duplicate-address"
    assert "uid=a2" in (got["a1"].detail or "")
    assert {got["a1"].key, got["a2"].key} == {
        "same@ife.org.mx",
        "dn:uid=a2,ou=office001,ou=people,dc=ife,dc=org,dc=mx",
    }
    assert got["b"].scope is Scope.IN_SCOPE


def test_same_target_address_from_different_domains_is_a_duplicate(tmp_path: Path) -> None:
    got = run(tmp_path, [person("a", ["pat@ife.org.mx"]), person("b", ["pat@old.ife.org.mx"])])
    assert got["a"].reason == got["b"].reason == "duplicate-address"


@pytest.mark.parametrize(
    "mail", ["not-an-address", "a@@b.mx", "a b@c.mx", "x@localhost", "@ife.org.mx", "a@b.mx\n"]
)
def test_unparsable_address(tmp_path: Path, mail: str) -> None:
    account = next(iter(run(tmp_path, [person("u", [mail])]).values()))
    if mail == "a@b.mx\n":  # surrounding white space is trimmed, not an error
        assert account.scope is Scope.IN_SCOPE
        return
    assert account.scope is Scope.INVALID and account.reason == "unparsable-address"


def test_not_selected_and_no_address_are_excluded_with_reasons(tmp_path: Path) -> None:
    got = run(
        tmp_path,
        [person("in", ["in@ife.org.mx"])],
        [person("op", ["op@ife.org.mx"]), person("nomail", None)],
    )
    assert got["op"].scope is Scope.EXCLUDED and got["op"].reason == "not-selected"
    assert got["op"].key == "op@ife.org.mx"  # keeps its identity should it enter the scope later
    assert got["nomail"].scope is Scope.EXCLUDED and got["nomail"].reason == "no-address"
    assert got["in"].scope is Scope.IN_SCOPE


def test_missing_template_attribute_is_invalid(tmp_path: Path) -> None:
    entry = DirectoryEntry(
        dn="cn=x,ou=people,dc=ife,dc=org,dc=mx", attributes={"mail": ["x@ife.org.mx"]}
    )
    plan = parse_plan(PLAN.replace("ROOT", str(tmp_path)), "t.toml")
    [account] = classify_all(plan, [entry], [])
    assert account.scope is Scope.INVALID and account.reason == "missing-attribute"
    assert "{uid}" in (account.detail or "")


def test_parse_address() -> None:
    assert parse_address("  A.B@Ife.Org.MX ") == "a.b@ife.org.mx"
    assert parse_address("müller@bücher.de") == "müller@bücher.de"
    assert parse_address("x" * 250 + "@a.mx") is None


@pytest.mark.parametrize("kept", [4096, 2])
def test_mailbox_paths_resolve_as_realpath_resolves_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    """Discovery resolves each directory once (100,000 paths under a few directories): the
    answer is realpath's for links to directories, files, parents, loops and dangling links,
    also when it has forgotten what it resolved (it keeps a bounded number)."""
    monkeypatch.setattr(classify, "_RESOLVED_KEPT", kept)
    root = tmp_path / "vmail"
    (root / "ife.org.mx" / "ana" / "Maildir").mkdir(parents=True)
    (root / "ife.org.mx" / "plain.txt").write_text("x")
    (tmp_path / "elsewhere").mkdir()
    links = {
        "alias.mx": "ife.org.mx",  # a domain directory that is a link
        "out": str(tmp_path / "elsewhere"),  # out of the root
        "up": "..",
        "dangling": "nowhere/at/all",
        "loop": "loop",
    }
    for name, to in links.items():
        (root / name).symlink_to(to)
    (root / "ife.org.mx" / "bea").symlink_to("ana")  # a colleague's mailbox
    resolver = PathResolver()
    paths = [
        f"{root}/{domain}/{uid}/{leaf}"
        for domain in ("ife.org.mx", *links, "missing")
        for uid in ("ana", "bea", "carla", "plain.txt")
        for leaf in ("Maildir", "cur")
    ]
    for path in paths * 2:  # the second time from what was learnt the first
        assert resolver.realpath(path) == os.path.realpath(path), path
    assert resolver.realpath(str(root)) == os.path.realpath(root)


def test_the_batch_of_a_dn_is_its_nearest_ou_escaped_commas_included() -> None:
    assert classify.ou_of_dn("uid=ana,ou=Office 7,ou=people,dc=ife,dc=org") == "Office 7"
    assert classify.ou_of_dn("uid=ana,dc=ife,dc=org") is None
    # an escaped comma is part of a value, never a separator
    assert classify.ou_of_dn("cn=Cruz\\, Ana\\,ou=fake,ou=Real,dc=ife") == "Real"
    assert classify.ou_of_dn("uid=ana,ou=Norte\\, Sur,dc=ife") == "Norte\\, Sur"
