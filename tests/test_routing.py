"""`routing --format postfix-transport`: transport_maps lines for migrated accounts only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.fixtures.reports import Reported, invoke, synthetic_state


def _entries(text: str) -> list[tuple[str, str]]:
    return [
        tuple(line.split("\t"))
        for line in text.splitlines()
        if "\t" in line and not line.startswith("#")
    ]  # type: ignore[misc]


def test_routing_lists_migrated_accounts_sorted(reported_campaign: Reported) -> None:
    result = invoke(
        "routing", "--plan", str(reported_campaign.plan_path), "--format", "postfix-transport"
    )
    assert result.exit_code == 0, result.output
    host = reported_campaign.campaign.sim.url.split("//")[1].split(":")[0].split("/")[0]
    assert _entries(result.output) == [
        (a, f"smtp:[{host}]:25") for a in sorted(reported_campaign.migrated)
    ]
    assert result.output.startswith("# migrator routing")


def test_routing_by_batch_and_nexthop(tmp_path: Path) -> None:
    data = synthetic_state(tmp_path / "s", 60)
    plan = str(data.plan_path)
    everyone = _entries(invoke("routing", "--plan", plan).output)
    synced = sorted(a for a, s in data.statuses.items() if s == "synced")
    assert everyone == [
        (a, "smtp:[exchange.ife.org.mx]:25") for a in synced
    ]  # host of [target] url

    batch = _entries(
        invoke("routing", "--plan", plan, "--batch", "Office001", "--batch", "Office002").output
    )
    want = [a for a in synced if int(a[4:9]) % 12 in (1, 2)]
    assert [a for a, _ in batch] == want and want

    hop = _entries(
        invoke(
            "routing", "--plan", plan, "--batch", "Office001", "--nexthop", "mx.example.org"
        ).output
    )
    assert {n for _, n in hop} == {"smtp:[mx.example.org]:25"}
    hop = _entries(
        invoke(
            "routing", "--plan", plan, "--batch", "Office001", "--nexthop", "smtp:[10.0.0.5]:587"
        ).output
    )
    assert {n for _, n in hop} == {"smtp:[10.0.0.5]:587"}

    # a delta pass running or failed on a migrated account keeps it routed; a first pass does not
    db = sqlite3.connect(data.state_path)
    pending = sorted(a for a, s in data.statuses.items() if s == "pending")
    db.execute(
        "UPDATE accounts SET status = 'running' WHERE address IN (?, ?)", (synced[1], pending[0])
    )
    db.execute("UPDATE accounts SET status = 'failed' WHERE address = ?", (synced[2],))
    db.commit()
    assert _entries(invoke("routing", "--plan", plan).output) == everyone

    # an address that would break the map file is left out, with a warning
    db.execute(
        "UPDATE accounts SET address = 'bad user@ife.org.mx' WHERE address = ?", (synced[0],)
    )
    db.commit()
    db.close()
    result = invoke("routing", "--plan", plan)
    assert [a for a, _ in _entries(result.output)] == synced[1:]
    assert "bad user@ife.org.mx cannot be a transport_maps key" in result.output


@pytest.mark.parametrize(
    ("given", "result"),
    [
        ("exchange.ife.org.mx", "smtp:[exchange.ife.org.mx]:25"),
        ("exchange.ife.org.mx:587", "smtp:[exchange.ife.org.mx]:587"),
        ("[exchange.ife.org.mx]:587", "smtp:[exchange.ife.org.mx]:587"),
        ("10.0.0.5", "smtp:[10.0.0.5]:25"),
        ("2001:db8::25", "smtp:[ipv6:2001:db8::25]:25"),
        ("[2001:db8::25]:2525", "smtp:[ipv6:2001:db8::25]:2525"),
        ("smtp:[10.0.0.5]:587", "smtp:[10.0.0.5]:587"),
        ("smtp:[ipv6:2001:db8::25]", "smtp:[ipv6:2001:db8::25]"),
        ("relay:mx_1.ife.org.mx", "relay:mx_1.ife.org.mx"),
        ("lmtp:unix:private/dovecot-lmtp", "lmtp:unix:private/dovecot-lmtp"),
        ("lmtp:inet:[10.0.0.7]:24", "lmtp:inet:[10.0.0.7]:24"),
    ],
)
def test_next_hops_postfix_reads(tmp_path: Path, given: str, result: str) -> None:
    data = synthetic_state(tmp_path / "s", 6)
    out = invoke("routing", "--plan", str(data.plan_path), "--nexthop", given)
    assert out.exit_code == 0, out.output
    assert {n for _, n in _entries(out.output)} == {result}


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("bad host with spaces", "white space"),
        ("exchange.ife.org.mx:0", "port '0' is not a number from 1 to 65535"),
        ("exchange.ife.org.mx:70000", "port '70000'"),
        ("[exchange.ife.org.mx]:smtp", "port 'smtp'"),
        ("-exchange.ife.org.mx", "is not a host name"),
        ("exchange..ife.org.mx", "is not a host name"),
        ("x" * 64 + ".ife.org.mx", "is not a host name"),
        (("abcdefgh." * 29) + "mx", "longer than 255"),
        ("smtp:10.0.0.5", "written in brackets, [10.0.0.5]"),
        ("smtp:[10.0.0.5", "'[' without ']'"),
        ("smtp:[2001:zz::1]", "not an IPv6 address"),
        ("esmtp:[exchange.ife.org.mx]", "unknown transport 'esmtp'"),
        ("error:gone", "unknown transport 'error'"),
        ("smtp:", "needs a next hop"),
        ("exchange.ife.org.mx#25", "'#'"),
    ],
)
def test_a_next_hop_postfix_would_refuse_is_a_usage_error_naming_it(
    tmp_path: Path, given: str, why: str
) -> None:
    """`routing --nexthop 'bad host with spaces'` wrote a map Postfix cannot read."""
    data = synthetic_state(tmp_path / "s", 6)
    out = invoke("routing", "--plan", str(data.plan_path), "--nexthop", given)
    assert out.exit_code == 2, out.output
    said = "".join(out.output.split())  # rich wraps long words: compare without white space
    assert "".join(f"--nexthop {given!r} is not a Postfix next hop".split()) in said
    assert "".join(why.split()) in said, out.output
    assert "\t" not in out.output  # no line of the map was written
