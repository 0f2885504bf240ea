"""The simulator refuses what Exchange 2013/2016/2019 refuses: requests nested past WCF's read
depth, requests and answers outside Microsoft's schema, RequestServerVersion values the build
does not speak, more requests in flight than EWSMaxConcurrency, more find results than
EWSFindCountLimit, items over a mailbox's MaxReceiveSize or into a full mailbox. Strings in
restrictions compare ignoring case. Sources are cited in docs/targets.md (compatibility table)."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from exchangelib import Q
from exchangelib.errors import (
    ErrorExceededConnectionCount,
    ErrorSchemaValidation,
    ErrorServerBusy,
)
from lxml import etree

from migrator.simulator.ews import (
    EXCHANGE_BUILDS,
    SCHEMA_ENV,
    EwsSimulator,
    ExchangeLimits,
    Faults,
    SchemaNotFound,
    SchemaViolations,
)
from migrator.simulator.ews.soap import M_NS, SOAP_NS, T_NS
from tests.fixtures.ews import (
    EXCHANGE_2016,
    SIM_MAILBOX,
    SIM_PASSWORD,
    SIM_USER,
    forget_protocols,
    make_account,
    running_simulator,
    start_simulator,
)

NS = {
    "s": SOAP_NS,
    "m": M_NS,
    "t": T_NS,
    "e": "http://schemas.microsoft.com/exchange/services/2006/errors",
}
OTHER_USER, OTHER_PASSWORD = "svc-other", "0ther-Passw0rd!"


IMPERSONATE = (
    f"<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{SIM_MAILBOX}"
    "</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
)


def post(
    sim: EwsSimulator,
    body: str,
    *,
    version: str = "Exchange2016",
    user: str = SIM_USER,
    password: str = SIM_PASSWORD,
    extra_header: str = IMPERSONATE,
) -> requests.Response:
    envelope = (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP_NS}" xmlns:m="{M_NS}" '
        f'xmlns:t="{T_NS}"><s:Header><t:RequestServerVersion Version="{version}"/>{extra_header}'
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
    return requests.post(
        sim.url,
        data=envelope.encode(),
        auth=(user, password),
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=30,
    )


def parsed(response: requests.Response) -> etree._Element:
    return etree.fromstring(response.content)


def fault_code(response: requests.Response) -> str:
    return parsed(response).findtext("s:Body/s:Fault/detail/e:ResponseCode", namespaces=NS) or ""


def find_item(
    folder: str = '<t:DistinguishedFolderId Id="inbox"/>',
    *,
    max_entries: int = 100,
    offset: int = 0,
    restriction: str = "",
) -> str:
    return (
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>'
        f'<m:IndexedPageItemView MaxEntriesReturned="{max_entries}" Offset="{offset}" BasePoint="Beginning"/>'
        f"{restriction}<m:ParentFolderIds>{folder}</m:ParentFolderIds></m:FindItem>"
    )


def create_items(
    count: int, *, subject: str = "m", size: int = 10, folder: str = "inbox", key: str | None = None
) -> str:
    items = []
    for n in range(count):
        mime = f"Subject: {subject}{n}\r\n\r\n{'x' * size}\r\n".encode()
        prop = ""
        if key is not None:
            prop = (
                '<t:ExtendedProperty><t:ExtendedFieldURI PropertySetId="8f0c5b1e-3d2a-4f6b-9a7e-6d4c2b1a0e93" '
                f'PropertyName="MigratorSourceKey" PropertyType="String"/><t:Value>{key}{n}</t:Value>'
                "</t:ExtendedProperty>"
            )
        items.append(
            f"<t:Message><t:MimeContent>{base64.b64encode(mime).decode()}</t:MimeContent>{prop}</t:Message>"
        )
    return (
        '<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId>'
        f'<t:DistinguishedFolderId Id="{folder}"/></m:SavedItemFolderId><m:Items>{"".join(items)}</m:Items>'
        "</m:CreateItem>"
    )


def root_folders(response: requests.Response) -> list[etree._Element]:
    assert response.status_code == 200, response.text
    return parsed(response).findall(".//m:RootFolder", namespaces=NS)


# --- read depth ------------------------------------------------------------------------------


def test_a_request_nested_past_32_levels_is_refused_with_exchanges_words(
    ews_sim: EwsSimulator,
) -> None:
    inbox = make_account(ews_sim, version=EXCHANGE_2016).inbox

    def chained(n: int) -> Q:  # how find() built its restriction: one more <t:Or> per key
        query = Q(subject="s0")
        for i in range(1, n):
            query |= Q(subject=f"s{i}")
        return query

    # n keys nest n + 6 elements from the Envelope (Body, FindItem, Restriction, n-1 Or,
    # IsEqualTo, FieldURIOrConstant, Constant): 26 keys are 32 levels, 27 are one too many
    assert list(inbox.filter(chained(26))) == []
    assert ews_sim.stats().max_request_depth == 32
    with pytest.raises(ErrorSchemaValidation) as refused:
        list(inbox.filter(chained(27)))
    assert "The maximum read depth (32) has been exceeded" in str(refused.value)
    assert re.search(r"\(line: \d+ position: \d+\)$", str(refused.value))
    # a flat Or of the same keys is three levels whatever the number of keys
    assert list(inbox.filter(subject__in=[f"s{i}" for i in range(500)])) == []
    assert ews_sim.stats().refused == {"max_depth": 1}


def test_the_depth_refusal_is_a_fault_as_exchange_sends_it(ews_sim: EwsSimulator) -> None:
    ews_sim.set_limits(ExchangeLimits(max_read_depth=8))
    nested = (
        "<t:Or>" * 3 + '<t:Exists><t:FieldURI FieldURI="item:Subject"/></t:Exists>' + "</t:Or>" * 3
    )
    answer = post(ews_sim, find_item(restriction=f"<m:Restriction>{nested}</m:Restriction>"))
    assert answer.status_code == 500
    root = parsed(answer)
    assert root.find("s:Header", NS) is None  # Exchange's faults carry no ServerVersionInfo
    fault = root.find("s:Body/s:Fault", NS)
    assert fault is not None
    assert fault.findtext("faultcode") == "a:ErrorSchemaValidation"
    assert fault.findtext("faultstring", "").startswith(
        "The request failed schema validation: The maximum read depth (8) has been exceeded because "
        "XML data being read has more levels of nesting than is allowed by the quota."
    )
    assert (
        fault.findtext("detail/e:Message", namespaces=NS) == "The request failed schema validation."
    )
    xml = fault.find("detail/t:MessageXml", NS)
    assert xml is not None
    # Envelope, Body, FindItem, Restriction, three Or, Exists: the ninth level is the FieldURI;
    # the position is that of its name on the one line of the request (1-based)
    position = answer.request.body.index(b"<t:FieldURI") + 2  # type: ignore[union-attr]
    assert (
        xml.findtext("t:LineNumber", namespaces=NS),
        xml.findtext("t:LinePosition", namespaces=NS),
    ) == ("1", str(position))


# --- schema ------------------------------------------------------------------------------------


def test_a_request_outside_the_schema_gets_error_schema_validation(ews_sim: EwsSimulator) -> None:
    # FindItem without its ItemShape: the schema's first required child
    answer = post(
        ews_sim,
        '<m:FindItem Traversal="Shallow"><m:ParentFolderIds>'
        '<t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem>',
    )
    assert (answer.status_code, fault_code(answer)) == (500, "ErrorSchemaValidation")
    fault = parsed(answer).find("s:Body/s:Fault", NS)
    assert fault is not None
    violation = fault.findtext("detail/t:MessageXml/t:Violation", namespaces=NS) or ""
    assert "ParentFolderIds" in violation and "ItemShape" in violation
    assert fault.findtext("faultstring") == f"The request failed schema validation: {violation}"
    # an unknown distinguished folder name is outside the schema's enumeration too
    answer = post(ews_sim, find_item('<t:DistinguishedFolderId Id="workingset"/>'))
    assert fault_code(answer) == "ErrorSchemaValidation"
    assert "workingset" in (parsed(answer).findtext(".//t:Violation", namespaces=NS) or "")
    # as are header elements: an impersonation header naming nobody
    answer = post(
        ews_sim,
        find_item(),
        extra_header="<t:ExchangeImpersonation><t:ConnectingSID/></t:ExchangeImpersonation>",
    )
    assert fault_code(answer) == "ErrorSchemaValidation"
    assert ews_sim.stats().refused == {"schema_validation": 3}


def test_an_answer_outside_the_schema_fails_the_test_at_stop(tmp_path: Path) -> None:
    sim = start_simulator(tmp_path / "ews")
    try:
        # what a bug in the simulator's answer writing would produce: IsRead before ItemId
        sim._answer(
            f'<m:GetItemResponse xmlns:m="{M_NS}" xmlns:t="{T_NS}"><m:ResponseMessages>'
            '<m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            '<m:Items><t:Message><t:IsRead>true</t:IsRead><t:ItemId Id="x"/></t:Message></m:Items>'
            "</m:GetItemResponseMessage></m:ResponseMessages></m:GetItemResponse>",
            fault=False,
        )
    finally:
        with pytest.raises(SchemaViolations, match="GetItemResponse: Element 'ItemId'"):
            sim.stop()


def test_without_the_schema_a_validating_simulator_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SCHEMA_ENV, str(tmp_path))  # a directory without the .xsd files
    with pytest.raises(
        SchemaNotFound, match=f"{SCHEMA_ENV}=.* does not hold messages.xsd and types.xsd"
    ):
        EwsSimulator(tmp_path / "ews")
    lenient = EwsSimulator(tmp_path / "ews2", validate=False)
    assert not lenient.validates and lenient.limits is not None  # still strict otherwise


# --- server versions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "build", "api_version"),
    [
        ("2013", (15, 0, 1497, 2), "Exchange2013_SP1"),
        ("2016", (15, 1, 2507, 6), "Exchange2016"),
        ("2019", (15, 2, 1544, 4), "Exchange2016"),
    ],
)
def test_each_exchange_build_is_recognised_by_exchangelib(
    tmp_path: Path, exchange: str, build: tuple[int, ...], api_version: str
) -> None:
    with running_simulator(tmp_path / "ews", exchange=exchange) as sim:
        sim.add_mailbox(SIM_MAILBOX)
        account = make_account(sim)  # version=None: exchangelib guesses it, as from a real server
        version = account.version
        build_of = version.build
        assert (
            build_of.major_version,
            build_of.minor_version,
            build_of.major_build,
            build_of.minor_build,
        ) == build
        assert version.api_version == api_version
        assert account.inbox.name == "Inbox"
        assert EXCHANGE_BUILDS[exchange].product.startswith("Exchange Server")


def test_a_version_the_build_does_not_speak_is_refused(tmp_path: Path) -> None:
    with start_simulator(tmp_path / "ews", exchange="2013") as sim:
        sim.add_mailbox(SIM_MAILBOX)
        newer = post(sim, find_item(), version="Exchange2016")
        assert (newer.status_code, fault_code(newer)) == (500, "ErrorInvalidServerVersion")
        unknown = post(sim, find_item(), version="Exchange2019")
        assert fault_code(unknown) == "ErrorInvalidRequest"  # as Exchange 2019 itself answers it
        ok = post(sim, find_item(), version="Exchange2013_SP1")
        assert ok.status_code == 200
        header = parsed(ok).find("s:Header/t:ServerVersionInfo", NS)
        assert header is not None and header.get("Version") == "V2_23"
        assert sim.stats().refused == {"server_version": 2}


# --- EWSMaxConcurrency ---------------------------------------------------------------------------


@pytest.fixture
def two_callers(tmp_path: Path) -> Iterator[EwsSimulator]:
    sim = start_simulator(
        tmp_path / "ews", users={SIM_USER: SIM_PASSWORD, OTHER_USER: OTHER_PASSWORD}
    )
    sim.add_mailbox(SIM_MAILBOX)
    try:
        yield sim
    finally:
        sim.stop()


def test_past_ews_max_concurrency_a_caller_gets_exceeded_connection_count(
    two_callers: EwsSimulator,
) -> None:
    sim = two_callers
    sim.set_limits(ExchangeLimits(max_concurrency=2))
    sim.set_faults(Faults(delay_s=0.6))  # every request is held: all of them are in flight at once
    answers: dict[str, list[requests.Response]] = {SIM_USER: [], OTHER_USER: []}
    lock = threading.Lock()
    barrier = threading.Barrier(5)

    def send(user: str, password: str) -> None:
        barrier.wait(timeout=10)
        answer = post(sim, find_item(), user=user, password=password)
        with lock:
            answers[user].append(answer)

    threads = [threading.Thread(target=send, args=(SIM_USER, SIM_PASSWORD)) for _ in range(4)]
    threads.append(threading.Thread(target=send, args=(OTHER_USER, OTHER_PASSWORD)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    mine = sorted(a.status_code for a in answers[SIM_USER])
    assert mine == [200, 200, 500, 500]
    refused = [a for a in answers[SIM_USER] if a.status_code == 500]
    for answer in refused:
        assert fault_code(answer) == "ErrorExceededConnectionCount"
        values = {
            v.get("Name"): v.text for v in parsed(answer).iterfind(".//t:MessageXml/t:Value", NS)
        }
        assert values["Policy"] == "MaxConcurrency" and values["MaxConcurrencyLimit"] == "2"
        assert (
            "BackOffMilliseconds" not in values
        )  # no back-off hint: "Suggested backoff time 0 ms"
    # the budget is the caller's: another service account is not refused meanwhile
    assert [a.status_code for a in answers[OTHER_USER]] == [200]
    assert sim.stats().refused == {"connection_count": 2}


def test_exchangelib_raises_exceeded_connection_count(ews_sim: EwsSimulator) -> None:
    account = make_account(ews_sim, version=EXCHANGE_2016)
    inbox = account.inbox
    ews_sim.set_limits(ExchangeLimits(max_concurrency=1))
    ews_sim.set_faults(Faults(delay_s=0.5))
    held = threading.Thread(target=lambda: post(ews_sim, find_item()))
    held.start()
    try:
        while ews_sim._budgets.in_flight(SIM_USER) == 0:
            threading.Event().wait(0.01)
        with pytest.raises(
            ErrorExceededConnectionCount, match="exceeded the available concurrent connections"
        ):
            inbox.refresh()
    finally:
        held.join(timeout=10)


# --- HTTP 200 ErrorInternalServerError / ErrorServerBusy ------------------------------------


def test_internal_server_error_with_inner_server_busy(ews_sim: EwsSimulator) -> None:
    ews_sim.set_faults(
        Faults(internal_busy_rate=1.0, operations=frozenset({"FindItem", "GetFolder"}))
    )
    answer = post(ews_sim, find_item())
    assert answer.status_code == 200  # not a fault: a response message with an error code
    message = parsed(answer).find(".//m:FindItemResponseMessage", NS)
    assert message is not None and message.get("ResponseClass") == "Error"
    assert message.findtext("m:ResponseCode", namespaces=NS) == "ErrorInternalServerError"
    values = {v.get("Name"): v.text for v in message.iterfind("m:MessageXml/t:Value", NS)}
    assert values["InnerErrorResponseCode"] == "ErrorServerBusy"
    assert "BackOffMilliseconds" not in values
    forget_protocols(ews_sim.url)
    account = make_account(ews_sim, version=EXCHANGE_2016)
    with pytest.raises(ErrorServerBusy, match="raised from: ErrorInternalServerError"):
        account.inbox.refresh()


def test_internal_server_busy_strikes_a_create_item_part_way(ews_sim: EwsSimulator) -> None:
    ews_sim.set_faults(Faults(internal_busy_rate=1.0, operations=frozenset({"CreateItem"}), seed=3))
    answer = post(ews_sim, create_items(10))
    codes = [
        m.findtext("m:ResponseCode", namespaces=NS)
        for m in parsed(answer).iterfind(".//m:CreateItemResponseMessage", NS)
    ]
    stored = codes.count("NoError")
    assert 0 < stored < 10, codes  # seed 3 strikes after some of the items
    assert codes == ["NoError"] * stored + ["ErrorInternalServerError"] * (10 - stored)
    assert len(ews_sim.items(SIM_MAILBOX)) == stored


# --- EWSFindCountLimit ---------------------------------------------------------------------------


def test_find_item_pages_stop_at_1000_and_250_with_a_restriction(ews_sim: EwsSimulator) -> None:
    assert post(ews_sim, create_items(600)).status_code == 200
    assert post(ews_sim, create_items(600, subject="n")).status_code == 200
    (page,) = root_folders(post(ews_sim, find_item(max_entries=5000)))
    assert (
        len(page.find("t:Items", NS)),
        page.get("IncludesLastItemInRange"),
        page.get("IndexedPagingOffset"),
        page.get("TotalItemsInView"),
    ) == (1000, "false", "1000", "1200")
    (rest,) = root_folders(post(ews_sim, find_item(max_entries=5000, offset=1000)))
    assert (len(rest.find("t:Items", NS)), rest.get("IncludesLastItemInRange")) == (200, "true")
    restriction = (
        '<m:Restriction><t:Exists><t:FieldURI FieldURI="item:Subject"/></t:Exists></m:Restriction>'
    )
    (restricted,) = root_folders(
        post(ews_sim, find_item(max_entries=1000, restriction=restriction))
    )
    assert (len(restricted.find("t:Items", NS)), restricted.get("IncludesLastItemInRange")) == (
        250,
        "false",
    )


def test_the_find_budget_is_shared_by_the_folders_of_a_request(ews_sim: EwsSimulator) -> None:
    ews_sim.set_limits(ExchangeLimits(find_count_limit=10))
    assert post(ews_sim, create_items(8)).status_code == 200
    assert post(ews_sim, create_items(8, folder="sentitems")).status_code == 200
    both = '<t:DistinguishedFolderId Id="inbox"/><t:DistinguishedFolderId Id="sentitems"/>'
    inbox, sent = root_folders(post(ews_sim, find_item(both, max_entries=100)))
    assert (len(inbox.find("t:Items", NS)), inbox.get("IncludesLastItemInRange")) == (8, "true")
    # the second folder gets what is left of the caller's budget: a partial page
    assert (
        len(sent.find("t:Items", NS)),
        sent.get("IncludesLastItemInRange"),
        sent.get("IndexedPagingOffset"),
    ) == (2, "false", "2")
    # the budget is released once answered: the next request has all of it again
    (again,) = root_folders(post(ews_sim, find_item('<t:DistinguishedFolderId Id="sentitems"/>')))
    assert len(again.find("t:Items", NS)) == 8


def test_budgets_refuse_a_caller_whose_finds_hold_it_all() -> None:
    from migrator.simulator.ews.limits import Budgets

    budgets = Budgets()
    assert budgets.charge_find("svc", 800, 1000) == 800
    assert budgets.charge_find("svc", 800, 1000) == 200  # the rest: a partial page
    assert budgets.charge_find("svc", 5, 1000) == 0  # spent: ErrorExceededFindCountLimit
    assert budgets.charge_find("other", 5, 1000) == 5  # per caller
    budgets.release_find("svc", 1000)
    assert budgets.charge_find("svc", 5, 1000) == 5


def test_short_pages_come_before_the_end_of_the_view(ews_sim: EwsSimulator) -> None:
    assert post(ews_sim, create_items(50)).status_code == 200
    ews_sim.set_faults(Faults(short_page_rate=1.0, seed=1))
    seen, offset, pages = 0, 0, 0
    while True:
        (page,) = root_folders(post(ews_sim, find_item(max_entries=20, offset=offset)))
        count = len(page.find("t:Items", NS))
        assert 0 < count < 20 or page.get("IncludesLastItemInRange") == "true"
        seen, pages = seen + count, pages + 1
        offset = int(page.get("IndexedPagingOffset") or 0)
        if page.get("IncludesLastItemInRange") == "true":
            break
    assert seen == 50 and pages > 3
    assert ews_sim.stats().faults["short_page"] >= 3


# --- mailbox limits ------------------------------------------------------------------------------


def test_max_receive_size_and_quota_of_one_mailbox(ews_sim: EwsSimulator) -> None:
    assert post(ews_sim, create_items(1, size=10)).status_code == 200
    # the quota counts items as Exchange measures them (their size in the store, which is not
    # the length of their MIME), MaxReceiveSize the message as it came
    (first,) = ews_sim.items(SIM_MAILBOX)
    assert first.size > len(first.mime)
    ews_sim.set_mailbox_limits(
        SIM_MAILBOX, max_receive_bytes=100, prohibit_send_receive_bytes=9 * first.size
    )
    answer = post(ews_sim, create_items(1, size=500))
    assert [
        m.findtext("m:ResponseCode", namespaces=NS)
        for m in parsed(answer).iterfind(".//m:CreateItemResponseMessage", NS)
    ] == ["ErrorMessageSizeExceeded"]
    # each 27-byte message fits; the mailbox takes them until it holds nine
    answer = post(ews_sim, create_items(10, size=10))
    codes = [
        m.findtext("m:ResponseCode", namespaces=NS)
        for m in parsed(answer).iterfind(".//m:CreateItemResponseMessage", NS)
    ]
    assert codes == ["NoError"] * 8 + ["ErrorQuotaExceeded"] * 2
    texts = {
        m.findtext("m:MessageText", namespaces=NS)
        for m in parsed(answer).iterfind(
            ".//m:CreateItemResponseMessage[@ResponseClass='Error']", NS
        )
    }
    assert texts == {"Mailbox has exceeded maximum mailbox size."}
    assert ews_sim.stats().refused == {"quota": 2}


# --- case-insensitive strings --------------------------------------------------------------------


def test_string_restrictions_ignore_case(ews_sim: EwsSimulator) -> None:
    assert post(ews_sim, create_items(1, subject="Größe Ärger ", key="KeY-Ä")).status_code == 200
    prop = (
        '<t:ExtendedFieldURI PropertySetId="8f0c5b1e-3d2a-4f6b-9a7e-6d4c2b1a0e93" '
        'PropertyName="MigratorSourceKey" PropertyType="String"/>'
    )

    def hits(restriction: str) -> int:
        (page,) = root_folders(
            post(ews_sim, find_item(restriction=f"<m:Restriction>{restriction}</m:Restriction>"))
        )
        return int(page.get("TotalItemsInView") or 0)

    def equal(path: str, value: str) -> str:
        return (
            f'<t:IsEqualTo>{path}<t:FieldURIOrConstant><t:Constant Value="{value}"/>'
            "</t:FieldURIOrConstant></t:IsEqualTo>"
        )

    assert hits(equal(prop, "key-ä0")) == 1
    assert hits(equal(prop, "KEY-Ä0")) == 1
    assert hits(equal(prop, "key-a0")) == 0
    assert hits(equal('<t:FieldURI FieldURI="item:Subject"/>', "GRÖSSE ÄRGER 0")) == 1

    def contains(value: str, comparison: str) -> str:
        return (
            f'<t:Contains ContainmentMode="Substring" ContainmentComparison="{comparison}">'
            f'<t:FieldURI FieldURI="item:Subject"/><t:Constant Value="{value}"/></t:Contains>'
        )

    assert hits(contains("ärger", "IgnoreCase")) == 1
    assert hits(contains("ärger", "Exact")) == 0
    assert hits(contains("Ärger", "Exact")) == 1
