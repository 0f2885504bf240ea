"""The simulator's answers are shaped like Exchange's, element by element, for every operation
migrator uses: what public EWS clients recorded from real servers and keep in their tests
(exchangelib's CreateItem answer of an Exchange 2013 V2_23 server, otris/ews-cpp's GetItem
answer of Exchange 2013 15.0.847.31, the ErrorSchemaValidation and ErrorExceededConnectionCount
faults in Thunderbird's ews-rs tests) and what the schema fixes. The facts are restated here in
our own words and checked on our own answers; docs/targets.md lists them with their sources."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from lxml import etree

from migrator.samples.kinds import kind_messages
from migrator.simulator.ews import EwsSimulator, ids
from migrator.simulator.ews.soap import M_NS, SOAP_NS, T_NS
from tests.fixtures.ews import (
    SIM_MAILBOX,
    SIM_PASSWORD,
    SIM_USER,
    running_simulator,
)

E_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS = {"s": SOAP_NS, "m": M_NS, "t": T_NS, "e": E_NS}
IMPERSONATE = (
    f"<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{SIM_MAILBOX}"
    "</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EwsSimulator]:
    with running_simulator(Path(tmp_path_factory.mktemp("shapes"))) as simulator:
        simulator.add_mailbox(SIM_MAILBOX)
        yield simulator


def call(
    sim: EwsSimulator, body: str, header: str = IMPERSONATE
) -> tuple[requests.Response, etree._Element]:
    envelope = (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP_NS}" xmlns:m="{M_NS}" '
        f'xmlns:t="{T_NS}"><s:Header><t:RequestServerVersion Version="Exchange2016"/>{header}'
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
    answer = requests.post(
        sim.url,
        data=envelope.encode(),
        auth=(SIM_USER, SIM_PASSWORD),
        timeout=30,
        headers={"Content-Type": "text/xml; charset=utf-8"},
    )
    return answer, etree.fromstring(answer.content)


def local(elem: etree._Element) -> str:
    return etree.QName(elem).localname


def declared(elem: etree._Element) -> dict[str | None, str]:
    """The namespaces an element declares itself (lxml's nsmap includes its ancestors')."""
    parent = elem.getparent()
    inherited = parent.nsmap if parent is not None else {}
    return {k: v for k, v in elem.nsmap.items() if inherited.get(k) != v}


def children(elem: etree._Element) -> list[str]:
    return [local(c) for c in elem if isinstance(c.tag, str)]


def envelope_of(root: etree._Element, operation: str) -> list[etree._Element]:
    """Check the envelope Exchange writes around a successful answer; return its messages."""
    assert root.tag == f"{{{SOAP_NS}}}Envelope" and root.nsmap == {"s": SOAP_NS}
    header, body = list(root)
    info = header[0]
    assert local(header) == "Header" and info.tag == f"{{{T_NS}}}ServerVersionInfo"
    assert list(info.attrib) == [
        "MajorVersion",
        "MinorVersion",
        "MajorBuildNumber",
        "MinorBuildNumber",
        "Version",
    ]
    assert declared(info) == {"h": T_NS, None: T_NS, "xsd": XSD, "xsi": XSI}
    assert local(body) == "Body" and declared(body) == {"xsi": XSI, "xsd": XSD}
    (response,) = body
    assert response.tag == f"{{{M_NS}}}{operation}Response"
    assert declared(response) == {"m": M_NS, "t": T_NS}
    (messages,) = response
    assert local(messages) == "ResponseMessages"
    for message in messages:
        assert message.tag == f"{{{M_NS}}}{operation}ResponseMessage"
        names = children(message)
        if message.get("ResponseClass") == "Success":
            assert names[0] == "ResponseCode" and message[0].text == "NoError"
        else:
            # MessageText, ResponseCode, DescriptiveLinkKey, then MessageXml, then the container
            assert message.get("ResponseClass") == "Error"
            assert names[:3] == ["MessageText", "ResponseCode", "DescriptiveLinkKey"]
            assert message[2].text == "0"
    return list(messages)


def test_folder_operations(sim: EwsSimulator) -> None:
    gone = ids.encode(ids.FOLDER, 1, 999_999)
    _, root = call(
        sim,
        "<m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>"
        f'<m:FolderIds><t:DistinguishedFolderId Id="inbox"/><t:FolderId Id="{gone}"/>'
        "</m:FolderIds></m:GetFolder>",
    )
    ok, missing = envelope_of(root, "GetFolder")
    (folder,) = ok.find("m:Folders", NS)
    assert local(folder) == "Folder"
    assert children(folder) == [
        "FolderId",
        "DisplayName",
        "TotalCount",
        "ChildFolderCount",
        "UnreadCount",
    ]
    assert list(folder[0].attrib) == ["Id", "ChangeKey"]
    assert missing.findtext("m:ResponseCode", namespaces=NS) == "ErrorFolderNotFound"

    _, root = call(
        sim,
        '<m:FindFolder Traversal="Shallow"><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape>'
        '</m:FolderShape><m:IndexedPageFolderView MaxEntriesReturned="100" Offset="0" '
        'BasePoint="Beginning"/><m:ParentFolderIds><t:DistinguishedFolderId Id="msgfolderroot"/>'
        "</m:ParentFolderIds></m:FindFolder>",
    )
    (found,) = envelope_of(root, "FindFolder")
    page = found.find("m:RootFolder", NS)
    assert list(page.attrib) == [
        "IndexedPagingOffset",
        "TotalItemsInView",
        "IncludesLastItemInRange",
    ]
    calendar = [
        f
        for f in page.find("t:Folders", NS)
        if f.findtext("t:FolderClass", namespaces=NS) == "IPF.Appointment"
    ]
    assert [local(c) for c in calendar] == ["CalendarFolder"]  # its own element, no UnreadCount
    assert "UnreadCount" not in children(calendar[0])

    _, root = call(
        sim,
        '<m:CreateFolder><m:ParentFolderId><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderId>'
        "<m:Folders><t:Folder><t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>Formas"
        "</t:DisplayName></t:Folder></m:Folders></m:CreateFolder>",
    )
    (created,) = envelope_of(root, "CreateFolder")
    assert children(created) == ["ResponseCode", "Folders"]
    assert [children(f) for f in created.find("m:Folders", NS)] == [["FolderId"]]


def test_item_operations(sim: EwsSimulator) -> None:
    ndr = next(k for k in kind_messages() if k.message.name == "ndr").message.raw
    request = next(k for k in kind_messages() if k.message.name == "meeting-request").message.raw
    items = "".join(
        f"<t:Message><t:MimeContent>{base64.b64encode(m).decode()}</t:MimeContent>"
        "<t:IsRead>false</t:IsRead></t:Message>"
        for m in (ndr, request)
    )
    _, root = call(
        sim,
        '<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId>'
        f'<t:DistinguishedFolderId Id="inbox"/></m:SavedItemFolderId><m:Items>{items}</m:Items>'
        "</m:CreateItem>",
    )
    made = envelope_of(root, "CreateItem")
    # each answered as what the MIME became, with only its id
    assert [[local(i) for i in m.find("m:Items", NS)] for m in made] == [
        ["Message"],
        ["MeetingRequest"],
    ]
    ids = [m.find("m:Items", NS)[0][0] for m in made]
    assert [list(i.attrib) for i in ids] == [["Id", "ChangeKey"]] * 2

    _, root = call(
        sim,
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>Default</t:BaseShape>'
        '</m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="10" Offset="0" '
        'BasePoint="Beginning"/><m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/>'
        "</m:ParentFolderIds></m:FindItem>",
    )
    (found,) = envelope_of(root, "FindItem")
    page = found.find("m:RootFolder", NS)
    assert list(page.attrib) == [
        "IndexedPagingOffset",
        "TotalItemsInView",
        "IncludesLastItemInRange",
    ]
    listed = list(page.find("t:Items", NS))
    assert sorted(local(i) for i in listed) == ["MeetingRequest", "Message"]
    for item in listed:
        # the schema's order; Categories only when the item has some
        assert children(item) == [
            "ItemId",
            "ParentFolderId",
            "ItemClass",
            "Subject",
            "DateTimeReceived",
            "Size",
            "IsDraft",
            "DateTimeSent",
            "DateTimeCreated",
            "HasAttachments",
            "IsRead",
        ]

    ndr_id = ids[0].get("Id")
    _, root = call(
        sim,
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
        "<t:IncludeMimeContent>true</t:IncludeMimeContent><t:AdditionalProperties>"
        '<t:FieldURI FieldURI="item:ItemClass"/><t:FieldURI FieldURI="item:Size"/>'
        f'</t:AdditionalProperties></m:ItemShape><m:ItemIds><t:ItemId Id="{ndr_id}"/>'
        "</m:ItemIds></m:GetItem>",
    )
    (got,) = envelope_of(root, "GetItem")
    (message,) = got.find("m:Items", NS)
    # a delivery report is a t:Message of class REPORT.IPM.Note.NDR; MimeContent comes first
    assert (
        local(message) == "Message"
        and message.findtext("t:ItemClass", namespaces=NS) == "REPORT.IPM.Note.NDR"
    )
    assert children(message) == ["MimeContent", "ItemId", "ItemClass", "Size"]
    assert message[0].attrib == {"CharacterSet": "UTF-8"}
    mime = base64.b64decode(message[0].text or "")
    head = mime.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[-1] == b"MIME-Version: 1.0" and b"X-MS-Has-Attach:" in head and mime != ndr
    assert int(message.findtext("t:Size", namespaces=NS) or 0) != len(ndr)

    delete = (
        f'<m:DeleteItem DeleteType="HardDelete"><m:ItemIds><t:ItemId Id="{ndr_id}"/></m:ItemIds>'
        "</m:DeleteItem>"
    )
    (deleted,) = envelope_of(call(sim, delete)[1], "DeleteItem")
    assert children(deleted) == ["ResponseCode"]
    (again,) = envelope_of(call(sim, delete)[1], "DeleteItem")
    assert again.findtext("m:ResponseCode", namespaces=NS) == "ErrorItemNotFound"


def test_convert_id_of_the_version_probe(sim: EwsSimulator) -> None:
    # exchangelib's version guess: only the header matters; the id is refused as malformed
    _, root = call(
        sim,
        '<m:ConvertId DestinationFormat="EwsId"><m:SourceIds><t:AlternateId Format="EwsId" '
        'Id="DUMMY" Mailbox="DUMMY"/></m:SourceIds></m:ConvertId>',
        header="",
    )
    (probe,) = envelope_of(root, "ConvertId")
    assert probe.findtext("m:ResponseCode", namespaces=NS) == "ErrorInvalidIdMalformed"


def test_a_fault_is_laid_out_as_exchange_lays_it_out(sim: EwsSimulator) -> None:
    answer, root = call(
        sim,
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>"
        '<m:FolderIds><t:DistinguishedFolderId Id="nosuchfolder"/></m:FolderIds></m:GetFolder>',
    )
    assert answer.status_code == 500 and answer.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert children(root) == ["Body"]  # no header on a fault
    (fault,) = root[0]
    assert fault.tag == f"{{{SOAP_NS}}}Fault"
    assert children(fault) == ["faultcode", "faultstring", "detail"]  # no faultactor
    code, text, detail = fault
    assert code.text == "a:ErrorSchemaValidation" and code.nsmap["a"] == T_NS
    assert text.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-US"
    assert (text.text or "").startswith("The request failed schema validation: ")
    assert [c.tag for c in detail] == [
        f"{{{E_NS}}}ResponseCode",
        f"{{{E_NS}}}Message",
        f"{{{T_NS}}}MessageXml",
    ]
    assert detail[1].text == "The request failed schema validation."
    assert children(detail[2]) == ["LineNumber", "LinePosition", "Violation"]
