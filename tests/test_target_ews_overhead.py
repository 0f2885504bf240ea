"""What a small mailbox costs the EWS target (issue 19): the well-known folder lookup sends
exactly the request exchangelib would, answers are parsed from their bytes, and the target
keeps nothing of a mailbox once the engine is done with it; its HTTP sessions read the proxy
settings of the environment once per origin, not per request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from exchangelib import DELEGATE, Account, Build, Configuration, Credentials, Version
from exchangelib.fields import FieldPath
from exchangelib.folders import FolderCollection, Inbox, MsgFolderRoot, SentItems
from exchangelib.folders.base import BaseFolder
from exchangelib.folders.collections import ID_ONLY
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import BaseProtocol
from exchangelib.services import GetFolder
from exchangelib.util import BytesGeneratorIO, xml_to_str

from migrator.adapters.targets.base import HoldsMailboxes
from migrator.adapters.targets.ews.connection import remember_environment_per_session
from migrator.adapters.targets.ews.folders import MailboxFolders, _WellKnownGetFolder
from migrator.adapters.targets.ews.target import EwsTarget
from migrator.model.mail import Flags, FolderRole, UploadItem
from migrator.simulator.ews import EwsSimulator
from tests.fixtures.targets import *  # noqa: F403
from tests.fixtures.targets import TargetHarness, ews_harness

CONFIG = Configuration(
    server="127.0.0.1", credentials=Credentials("svc", "unused"), version=Version(Build(15, 1))
)


def _wanted(account: Account) -> list[BaseFolder]:
    return [
        cls(
            _distinguished_id=DistinguishedFolderId(
                id=cls.DISTINGUISHED_FOLDER_ID,
                mailbox=Mailbox(email_address=account.primary_smtp_address),
            ),
            root=account.root,
        )
        for cls in (MsgFolderRoot, Inbox, SentItems)
    ]


def _fields() -> set[FieldPath]:
    names = ("total_count", *FolderCollection.REQUIRED_FOLDER_FIELDS)
    return {FieldPath(field=BaseFolder.get_field_by_fieldname(n)) for n in names}


def test_well_known_lookup_sends_exchangelibs_request() -> None:
    # the first mailbox builds the template, the next ones copy it with their own address
    for address in ("ana@example.org", "bruno@example.org", "Çelik <&>@example.org"):
        account = Account(address, config=CONFIG, autodiscover=False, access_type=DELEGATE)
        account.__dict__["root"] = None  # no GetFolder of the root: it is not in the request
        ours = _WellKnownGetFolder(account=account).get_payload(
            folders=_wanted(account), additional_fields=_fields(), shape=ID_ONLY
        )
        theirs = GetFolder(account=account).get_payload(
            folders=_wanted(account), additional_fields=_fields(), shape=ID_ONLY
        )
        assert xml_to_str(ours) == xml_to_str(theirs)


@pytest.fixture
def harness(ews_simulator: EwsSimulator) -> Iterator[TargetHarness]:
    h = ews_harness(ews_simulator)
    try:
        yield h
    finally:
        h.close_all()


def test_answers_are_parsed_from_their_bytes(
    harness: TargetHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """exchangelib's own path reads requests' one-byte chunks through BytesGeneratorIO."""
    reads: list[int] = []
    original = BytesGeneratorIO.read

    def counting(self: BytesGeneratorIO, size: int = -1) -> bytes:
        reads.append(size)
        return bytes(original(self, size))

    monkeypatch.setattr(BytesGeneratorIO, "read", counting)
    target = EwsTarget(harness.settings, secrets=harness.secrets)
    try:
        mailbox = harness.new_mailbox()
        target.preflight(mailbox)
        inbox = target.ensure_folder(mailbox, ("INBOX",), FolderRole.INBOX)
        raw = b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n"
        [result] = target.upload(mailbox, inbox, [UploadItem("k1", raw, Flags(seen=True), None)])
        assert result.ok
        assert target.find(mailbox, inbox, ["k1"]) == {"k1": result.target_id}
    finally:
        target.close()
    assert reads == []


def test_a_forgotten_mailbox_is_looked_up_again(harness: TargetHarness) -> None:
    target = EwsTarget(harness.settings, secrets=harness.secrets)
    assert isinstance(target, HoldsMailboxes)
    try:
        mailbox = harness.new_mailbox()
        target.preflight(mailbox)
        folder = target.ensure_folder(mailbox, ("Projects",), FolderRole.NONE)
        held: MailboxFolders = target._mailbox_folders(mailbox)
        target.forget_mailbox(mailbox.upper())  # Exchange addresses are case-insensitive
        assert target._accounts == {} and target._folders == {}
        # everything is asked of the server again: the same folder, not a second one
        again = target.ensure_folder(mailbox, ("Projects",), FolderRole.NONE)
        assert again.id == folder.id
        assert target._mailbox_folders(mailbox) is not held
    finally:
        target.close()


def test_sessions_read_the_environment_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests reads the proxy variables for every request; a session of the EWS target reads
    them once per origin (scheme, host, port) and gives each what requests would: here the EWS
    server is exempt by NO_PROXY and the OAuth2 token endpoint goes through the proxy. A new
    session reads the environment afresh."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.org:3128")
    monkeypatch.setenv("NO_PROXY", "mail.example.org")
    remember_environment_per_session()
    asked: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counting(url: str, no_proxy: str | None = None) -> dict[str, str]:
        asked.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    ews = "https://mail.example.org/EWS/Exchange.asmx"
    token = "https://login.example.net/tenant/oauth2/v2.0/token"
    session = BaseProtocol.raw_session(ews)
    urls = [ews, token, ews, ews + "?again", token]
    ours = [session.merge_environment_settings(u, {}, None, None, None) for u in urls]
    assert asked == [ews, token]  # once per origin
    theirs = [requests.Session().merge_environment_settings(u, {}, None, None, None) for u in urls]
    assert ours == theirs
    proxy = "http://proxy.example.org:3128"
    assert "https" not in ours[0]["proxies"] and ours[1]["proxies"]["https"] == proxy
    # a copy per request: what one request does with its settings never reaches the next
    ours[0]["proxies"]["https"] = "changed"
    assert "https" not in session.merge_environment_settings(ews, {}, None, None, None)["proxies"]

    monkeypatch.setenv("NO_PROXY", "")
    renewed = BaseProtocol.raw_session(ews)
    assert (
        renewed.merge_environment_settings(ews, {}, None, None, None)["proxies"]["https"] == proxy
    )
