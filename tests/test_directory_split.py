"""The pieces of a split behind a size limit that need no server: the parts a cut part splits
into, the values a DN names, and the BER of the sort and VLV controls."""

from __future__ import annotations

import random

from migrator.adapters.directory import ber, split


def _covered_once_or_more(part: split.Part, kids: list[split.Part], values: list[str]) -> bool:
    rest = split.rest(part, kids)
    return all(any(p.selects(v) for p in [*kids, rest]) for v in values if part.selects(v))


def test_children_follow_the_sample_and_the_rest_takes_everything_else() -> None:
    sample = ["jose.nunez", "jose.pena", "jose.cruz", "Jose.Ríos"] * 3 + ["maria.rios"]
    kids = split.children(split.Part(), sample)
    # the "j" values all share "jose." (enough of them): the part jumps straight there; one
    # "m" says nothing beyond its first letter
    assert [k.prefixes for k in kids] == [("jose.",), ("m",)]
    rest = split.rest(split.Part(), kids)
    assert (
        rest.filter("(objectClass=person)", "uid")
        == "(&(objectClass=person)(!(|(uid=jose.*)(uid=m*))))"
    )
    everyone = ["jose.a", "josefa", "juana", "zz", "", "Ñandú", "close)(uid=*", "../../etc/passwd"]
    assert _covered_once_or_more(split.Part(), kids, everyone)


def test_a_rest_part_cut_again_is_split_by_every_letter_too() -> None:
    part = split.Part(("a",), ("ab",))
    kids = split.children(part, ["ac1", "ac2"])
    prefixes = {p for k in kids for p in k.prefixes}
    assert {"aa", "ac", "az", "a9", "a.", "a_"} <= prefixes and "ab" not in prefixes
    assert _covered_once_or_more(part, kids, ["aa", "ab", "ac", "a", "aé", "a z"])


def test_several_prefixes_searched_together_come_apart_first() -> None:
    group = split.union([split.Part(("ab",)), split.Part(("ac",), ("acx",))])
    assert group.filter("(o=*)", "uid") == "(&(o=*)(|(uid=ab*)(uid=ac*))(!(uid=acx*)))"
    assert split.children(group, ["ab1", "ac1"]) == [
        split.Part(("ab",)),
        split.Part(("ac",), ("acx",)),
    ]


def test_a_part_whose_values_all_equal_its_prefix_cannot_be_split() -> None:
    assert split.children(split.Part(("ana",)), ["Ana", "ana", "ANA"]) == []


def test_filter_values_are_escaped() -> None:
    part = split.Part(("close)(uid=*",))
    assert part.filter("(objectClass=*)", "uid") == "(&(objectClass=*)(uid=close\\29\\28uid=\\2a*))"


def test_random_samples_always_give_a_complete_split() -> None:
    rng = random.Random(19)
    alphabet = "abcjoseé.-_ *()\\"
    for _ in range(200):
        values = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(50)
        ]
        part = split.Part((rng.choice(["", "a", "jo"]),) if rng.random() < 0.5 else ())
        kids = split.children(part, rng.sample(values, 20))
        assert _covered_once_or_more(part, kids, values)


def test_rdn_values_are_unescaped() -> None:
    assert split.rdn_value(r"uid=close\29\28uid\3D*,ou=x", "UID") == "close)(uid=*"
    assert split.rdn_value(r"cn=Ana+uid=ana7,ou=x", "uid") == "ana7"
    assert split.rdn_value(r"uid=jos\C3\A9\2C x,ou=x", "uid") == "josé, x"
    assert split.rdn_value("cn=x,ou=y", "uid") is None
    assert split.naming_attribute(["uid=a,ou=x", "UID=b,ou=x", "cn=c,ou=x"]) == "uid"


def test_sort_and_vlv_controls_round_trip() -> None:
    # RFC 2891 sort key: SEQUENCE OF SEQUENCE { "uid", [0] "caseIgnoreOrderingMatch" }
    assert ber.sort_request("uid", "caseIgnoreOrderingMatch") == (
        b"\x30\x20\x30\x1e\x04\x03uid\x80\x17caseIgnoreOrderingMatch"
    )
    request = ber.vlv_request(0, 499, 1, 0, b"ctx")
    assert (
        request
        == b"\x30\x14\x02\x01\x00\x02\x02\x01\xf3\xa0\x06\x02\x01\x01\x02\x01\x00\x04\x03ctx"
    )
    # a response as slapd sends it: position 501 of 100,000, success, a context id
    response = b"\x30\x12\x02\x02\x01\xf5\x02\x03\x01\x86\xa0\x0a\x01\x00\x04\x04\x60\x61\x10\x5c"
    assert ber.vlv_response(response) == ber.VlvResponse(501, 100_000, 0, b"\x60\x61\x10\x5c")
    assert ber.sort_result(b"\x30\x03\x0a\x01\x00") == 0
