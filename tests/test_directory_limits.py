"""Reading a directory behind a stock size limit (issue 19), against real slapd servers: split
by subtree first, a subtree still over the limit by prefix, paged results up to what the server
allows (`size.prtotal`), and sorting with a virtual list view only where the rootDSE offers it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from migrator.adapters.directory import open_directory
from migrator.samples.directory import POPULATION_FILTER, generate_people
from tests.fixtures.slapd import start_slapd

if TYPE_CHECKING:
    from tests.fixtures.slapd import SlapdServer

pytestmark = pytest.mark.slapd

SORT_OID, VLV_OID = "1.2.840.113556.1.4.473", "2.16.840.1.113730.3.4.9"


def _server(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    people: int,
    offices: int,
    **options: object,
) -> Iterator[SlapdServer]:
    generated = generate_people(people, in_scope=people * 2 // 5, offices=offices, seed=19)
    try:
        server = start_slapd(
            tmp_path_factory.mktemp(name), generated, tls=False, stock_limits=True, **options
        )  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - the message says what is missing
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def crowded_offices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    """2,400 people in three offices of 800: each office is itself over the limit."""
    yield from _server(tmp_path_factory, "crowded", 2400, 3)


@pytest.fixture(scope="module")
def flat_with_vlv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    """1,500 people in one office, with the sssvlv overlay (sorting and VLV offered)."""
    yield from _server(tmp_path_factory, "flat-vlv", 1500, 1, sort_vlv=True)


@pytest.fixture(scope="module")
def paged_past_the_limit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    """2,400 people in one office; plain searches stop at 500, paged ones at 1,000."""
    yield from _server(tmp_path_factory, "prtotal", 2400, 1, prtotal=1000)


def _ldapsearch(server: SlapdServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ldapsearch", "-x", "-LLL", "-H", server.url, "-D", server.bind_dn, "-w", server.password, *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _dns(answer: subprocess.CompletedProcess[str]) -> int:
    return sum(
        1 for line in answer.stdout.splitlines() if line.startswith("dn:")
    )  # "dn::" is base64


def _root_controls(server: SlapdServer) -> set[str]:
    answer = _ldapsearch(server, "-b", "", "-s", "base", "(objectClass=*)", "supportedControl")
    assert answer.returncode == 0, answer.stderr
    return {
        line.split(": ", 1)[1]
        for line in answer.stdout.splitlines()
        if line.startswith("supportedControl: ")
    }


def _read_everyone(server: SlapdServer, **overrides: object) -> tuple[list[str], object]:
    with open_directory(server.settings(**overrides), server.password) as reader:
        uids = [e.first("uid") or "" for e in reader.search(POPULATION_FILTER, ["uid"])]
        stats = (
            reader.size_limit,
            reader.subtree_searches,
            reader.split_parts,
            reader.vlv_windows,
            reader.capabilities.vlv,
        )
    return uids, stats


def test_a_subtree_still_over_the_limit_is_split_further_by_prefix(
    crowded_offices: SlapdServer,
) -> None:
    assert VLV_OID not in _root_controls(crowded_offices)
    uids, (limit, subtrees, parts, windows, vlv) = _read_everyone(crowded_offices)
    assert len(uids) == len(set(uids)) and set(uids) == {p.uid for p in crowded_offices.people}
    assert limit == 500 and not vlv and windows == 0
    assert subtrees >= 3  # an office at a time ...
    assert parts >= 3 * 2  # ... and each of the three by prefix, in at least two parts
    assert "../../etc/passwd" in uids and "close)(uid=*" in uids  # hostile values read as they are


def test_vlv_is_used_where_the_root_dse_offers_it(flat_with_vlv: SlapdServer) -> None:
    assert {SORT_OID, VLV_OID} <= _root_controls(flat_with_vlv)
    uids, (limit, _subtrees, parts, windows, vlv) = _read_everyone(flat_with_vlv, page_size=200)
    assert len(uids) == len(set(uids)) and set(uids) == {p.uid for p in flat_with_vlv.people}
    assert vlv and limit == 500 and parts == 0
    assert windows == -(-len(uids) // 200)  # windows of the page size, each under the limit


def test_without_vlv_on_offer_a_flat_office_is_read_by_prefix(
    paged_past_the_limit: SlapdServer,
) -> None:
    assert VLV_OID not in _root_controls(paged_past_the_limit)
    uids, (_limit, _subtrees, parts, windows, vlv) = _read_everyone(paged_past_the_limit)
    assert len(uids) == len(set(uids)) and set(uids) == {p.uid for p in paged_past_the_limit.people}
    assert not vlv and windows == 0 and parts >= 3


def test_paged_results_go_as_far_as_the_server_allows(paged_past_the_limit: SlapdServer) -> None:
    # an independent client: a plain search stops at 500, a paged one at 1,000 (size.prtotal)
    base = ["-b", paged_past_the_limit.base, "(objectClass=inetOrgPerson)", "1.1"]
    plain = _ldapsearch(paged_past_the_limit, *base)
    paged = _ldapsearch(paged_past_the_limit, "-E", "pr=250/noprompt", *base)
    assert plain.returncode == paged.returncode == 4  # sizeLimitExceeded
    assert _dns(plain) == 500 and _dns(paged) == 1000
    with open_directory(
        paged_past_the_limit.settings(page_size=250), paged_past_the_limit.password
    ) as reader:
        uids = [e.first("uid") for e in reader.search(POPULATION_FILTER, ["uid"])]
        assert reader.paging_used and reader.size_limit == 1000  # parts are sized by that
    assert len(uids) == len(paged_past_the_limit.people)
