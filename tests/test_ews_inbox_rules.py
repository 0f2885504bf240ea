"""Inbox rules and automatic replies on the EWS simulator: what exchangelib and migrator's EWS
target send is valid against Microsoft's schema, the simulator answers as Exchange documents
(validation errors per operation, the rules quota, the Outlook rules blob), a refused update
changes nothing, and migrator's rules replace only migrator's rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from exchangelib import Account
from exchangelib.properties import (
    Actions,
    Conditions,
    CreateRuleOperation,
    DeleteRuleOperation,
    Mailbox,
    Rule,
)
from exchangelib.services import GetUserOofSettings, SetUserOofSettings
from exchangelib.services.inbox_rules import GetInboxRules
from exchangelib.settings import OofSettings
from exchangelib.util import create_element
from lxml import etree

from migrator.adapters.sieve.parse import parse_script
from migrator.adapters.targets.ews.folders import MailboxFolders
from migrator.adapters.targets.ews.rules import (
    MARKER,
    RuleRefused,
    RuleWriter,
    UpdateRules,
    reply_html,
)
from migrator.adapters.targets.naming import FolderNaming
from migrator.engine.filters import FilterOptions, translate
from migrator.model.sieve import AutoReply, SieveScript
from migrator.simulator.ews import EwsSimulator
from tests.fixtures.ews import SIM_MAILBOX, SIM_PASSWORD, SIM_USER, make_account, start_simulator
from tests.fixtures.ews_schema import assert_valid

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"

SCRIPT = """require ["fileinto", "imap4flags", "copy"];
# rule:[Lists]
if header :contains "list-id" "dev.lists.example.org" { fileinto "INBOX.Lists"; stop; }
# rule:[Boss]
if anyof (address :is "from" "boss@example.org", header :contains "subject" ["urgent", "asap"]) {
  addflag "\\\\Seen"; fileinto :copy "Important";
}
# rule:[Big]
if allof (size :over 1M, not header :contains "subject" "keep") { fileinto "Big"; }
# rule:[Desk]
if header :contains "subject" "ticket" { redirect "desk@example.com"; }
"""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[EwsSimulator]:
    with start_simulator(tmp_path / "ews") as server:
        server.add_mailbox(SIM_MAILBOX)
        yield server


def _call(where: str, fn: Any) -> Any:
    # the EwsTarget's error translation is tested elsewhere; here what exchangelib raises shows
    from migrator.adapters.targets.ews.errors import translate as translate_error

    try:
        return fn()
    except Exception as exc:
        translated = translate_error(exc, where=where)
        if translated is exc:
            raise
        raise translated from exc


def _writer(account: Account) -> RuleWriter:
    return RuleWriter(
        account, MailboxFolders(account), f"mailbox {account.primary_smtp_address}", _call
    )


def _translation() -> Any:
    parsed = parse_script(SieveScript("main", "test", SCRIPT, len(SCRIPT)))
    return translate(
        parsed, FolderNaming(), FilterOptions(internal_domains=frozenset({"example.com"}))
    )


def _soap(sim: EwsSimulator, payload: etree._Element, mailbox: str = SIM_MAILBOX) -> etree._Element:
    """POST one operation as exchangelib would frame it; the operation's answer element."""
    envelope = (
        (
            f'<s:Envelope xmlns:s="{SOAP}" xmlns:t="{T}" xmlns:m="{M}"><s:Header>'
            '<t:RequestServerVersion Version="Exchange2016"/>'
            f"<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{mailbox}"
            "</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
            "</s:Header><s:Body>"
        ).encode()
        + etree.tostring(payload)
        + b"</s:Body></s:Envelope>"
    )
    answer = requests.post(
        sim.url,
        data=envelope,
        auth=(SIM_USER, SIM_PASSWORD),
        timeout=30,
        headers={"Content-Type": "text/xml; charset=utf-8"},
    )
    root = etree.fromstring(answer.content)
    body = root.find(f"{{{SOAP}}}Body")
    assert body is not None and len(body) == 1, answer.text
    return body[0]


def test_rules_made_from_sieve_round_trip_and_every_message_is_schema_valid(
    sim: EwsSimulator,
) -> None:
    account = make_account(sim)
    writer = _writer(account)
    translation = _translation()
    assert [r.name for r in translation.rules] == [
        "Lists",
        "Boss (1/2)",
        "Boss (2/2)",
        "Big",
        "Desk",
    ]

    # what migrator sends, checked against Microsoft's schema before it is sent
    built = [writer._rule(rule, n) for n, rule in enumerate(translation.rules, 1)]
    update = UpdateRules(account=account).payload([CreateRuleOperation(rule=r) for r in built])
    assert_valid(update)
    answer = _soap(sim, update)
    assert_valid(answer)
    assert answer.get("ResponseClass") == "Success"
    listing = GetInboxRules(account=account).get_payload(mailbox=SIM_MAILBOX)
    assert_valid(listing)
    rules_answer = _soap(sim, listing)
    assert_valid(rules_answer)
    assert len(rules_answer.findall(f"{{{M}}}InboxRules/{{{T}}}Rule")) == 5

    # read back with exchangelib: what the script said
    got = {r.display_name: r for r in account.rules}
    lists = got[MARKER + "Lists"]
    assert lists.conditions.contains_header_strings == ["dev.lists.example.org"]
    assert lists.actions.stop_processing_rules is True
    folders = {f.id: f.path for f in sim.folders(SIM_MAILBOX)}
    assert folders[lists.actions.move_to_folder.folder_id.id] == ("Inbox", "Lists")
    boss2 = got[MARKER + "Boss (2/2)"]
    assert boss2.conditions.contains_subject_strings == ["urgent", "asap"]
    assert [a.email_address for a in boss2.exceptions.from_addresses] == ["boss@example.org"]
    assert boss2.actions.mark_as_read is True
    assert folders[boss2.actions.copy_to_folder.folder_id.id] == ("Important",)
    big = got[MARKER + "Big"]
    assert (
        big.conditions.within_size_range.minimum_size,
        big.conditions.within_size_range.maximum_size,
    ) == (1024, None)
    assert big.exceptions.contains_subject_strings == ["keep"]
    desk = got[MARKER + "Desk"]
    assert [a.email_address for a in desk.actions.redirect_to_recipients] == ["desk@example.com"]
    assert desk.actions.delete is True  # Sieve kept no copy of a redirected message
    assert [r.priority for r in account.rules] == [1, 2, 3, 4, 5]


def test_a_new_set_replaces_only_migrators_rules_after_the_users_own(sim: EwsSimulator) -> None:
    account = make_account(sim)
    inbox = account.inbox
    own = Rule(
        account=account,
        display_name="My Outlook rule",
        priority=1,
        is_enabled=True,
        conditions=Conditions(contains_subject_strings=["newsletter"]),
        actions=Actions(move_to_folder=inbox, stop_processing_rules=True),
    )
    own.save()
    writer = _writer(account)
    first = writer.replace(_translation().rules)
    assert (first.replaced, first.kept, len(first.rule_ids)) == (0, 1, 5)
    again = writer.replace(_translation().rules, known_ids=first.rule_ids)
    assert (again.replaced, again.kept, len(again.rule_ids)) == (5, 1, 5)
    names = [(r.display_name, r.priority) for r in account.rules]
    assert names[0] == ("My Outlook rule", 1)
    assert [n for n, _ in names[1:]] == [
        MARKER + n for n in ("Lists", "Boss (1/2)", "Boss (2/2)", "Big", "Desk")
    ]
    # a migrated rule the user renamed is still known by its id and replaced, not duplicated
    renamed = next(r for r in account.rules if r.display_name == MARKER + "Lists")
    renamed.display_name = "Lists (mine now)"
    renamed.save()
    third = writer.replace(_translation().rules, known_ids=again.rule_ids)
    assert third.replaced == 5 and len(account.rules) == 6
    empty = writer.replace([], known_ids=third.rule_ids)
    assert (empty.replaced, empty.kept) == (5, 1)
    assert [r.display_name for r in account.rules] == ["My Outlook rule"]


def test_a_refused_update_names_each_operation_and_changes_nothing(sim: EwsSimulator) -> None:
    account = make_account(sim)
    writer = _writer(account)
    writer.replace(_translation().rules)
    before = [(r.id, r.display_name) for r in account.rules]
    good = writer._rule(_translation().rules[0], 9)
    with_id = writer._rule(_translation().rules[3], 10)
    with_id.id = before[0][0]
    payload = UpdateRules(account=account).payload(
        [
            DeleteRuleOperation(id="U0lNMVIAAAABAAAAAAAAA+c="),
            CreateRuleOperation(rule=good),
            CreateRuleOperation(rule=with_id),
        ]
    )
    assert_valid(payload)
    answer = _soap(sim, payload)
    assert_valid(answer)
    assert answer.get("ResponseClass") == "Error"
    assert answer.findtext(f"{{{M}}}ResponseCode") == "ErrorInboxRulesValidationError"
    errors = {
        int(e.findtext(f"{{{T}}}OperationIndex") or -1): [
            (v.findtext(f"{{{T}}}FieldURI"), v.findtext(f"{{{T}}}ErrorCode"))
            for v in e.iter(f"{{{T}}}Error")
        ]
        for e in answer.iter(f"{{{T}}}RuleOperationError")
    }
    assert errors == {0: [("RuleId", "RuleNotFound")], 2: [("RuleId", "CreateWithRuleId")]}
    assert [(r.id, r.display_name) for r in account.rules] == before


def test_a_rule_filing_into_a_folder_that_is_gone_is_named_in_the_error(sim: EwsSimulator) -> None:
    account = make_account(sim)
    writer = _writer(account)
    rule = writer._rule(_translation().rules[0], 1)
    from exchangelib.properties import FolderId, MoveToFolder

    # well-formed, but no such folder (deleted meanwhile)
    rule.actions.move_to_folder = MoveToFolder(folder_id=FolderId(id="U0lNMUYAAAABAAAAAAAAA+c="))
    service = UpdateRules(account=account)
    with pytest.raises(Exception, match="ErrorInboxRulesValidationError|Validation"):
        list(service.call([CreateRuleOperation(rule=rule)]))
    assert service.problems == [
        (0, "Action:MoveToFolder", "FolderDoesNotExist", "U0lNMUYAAAABAAAAAAAAA+c=")
    ]
    assert account.rules == []


def test_over_the_rules_quota_nothing_changes_and_the_hint_says_how_to_raise_it(
    sim: EwsSimulator,
) -> None:
    account = make_account(sim)
    writer = _writer(account)
    writer.replace(_translation().rules[:1])
    before = [r.id for r in account.rules]
    sim.set_rules_quota(2000)  # bytes: room for the one rule, not for five
    with pytest.raises(RuleRefused) as refused:
        writer.replace(_translation().rules, known_ids=before)
    assert refused.value.reason == "rules-quota"
    assert "RulesQuota" in (refused.value.hint or "")
    assert [r.id for r in account.rules] == before


def test_outlooks_client_side_rules_are_not_deleted_behind_the_users_back(
    sim: EwsSimulator,
) -> None:
    account = make_account(sim)
    sim.set_outlook_rule_blob(SIM_MAILBOX)
    with pytest.raises(RuleRefused) as refused:
        _writer(account).replace(_translation().rules)
    assert refused.value.reason == "outlook-rules"
    assert account.rules == []
    allowed = RuleWriter(
        account, MailboxFolders(account), "mailbox", _call, remove_outlook_blob=True
    )
    assert len(allowed.replace(_translation().rules).rule_ids) == 5


def test_automatic_replies_round_trip_and_are_schema_valid(sim: EwsSimulator) -> None:
    account = make_account(sim)
    writer = _writer(account)
    start, end = datetime(2030, 7, 1, tzinfo=UTC), datetime(2030, 7, 15, tzinfo=UTC)
    writer.set_auto_reply(
        AutoReply(message="Away <until> July 15.\nAsk desk@example.org.", start=start, end=end)
    )
    oof = account.oof_settings
    assert oof.state == OofSettings.SCHEDULED and (oof.start, oof.end) == (start, end)
    assert (
        oof.internal_reply
        == oof.external_reply
        == reply_html("Away <until> July 15.\nAsk desk@example.org.")
    )
    assert oof.external_audience == "All"
    writer.set_auto_reply(AutoReply(message="Gone fishing."))
    assert account.oof_settings.state == OofSettings.ENABLED
    writer.disable_auto_reply()
    assert account.oof_settings.state == OofSettings.DISABLED

    mailbox = Mailbox(email_address=SIM_MAILBOX)
    get = GetUserOofSettings(account=account).get_payload(mailbox=mailbox)
    assert_valid(get)
    assert_valid(_soap(sim, get))
    bad = OofSettings(
        state=OofSettings.SCHEDULED, start=start, end=end, internal_reply="x", external_reply="x"
    )
    payload = SetUserOofSettings(account=account).get_payload(oof_settings=bad, mailbox=mailbox)
    assert_valid(payload)
    # the schema allows an end before the start; Exchange does not
    duration = payload.find(f"{{{T}}}UserOofSettings/{{{T}}}Duration")
    duration.find(f"{{{T}}}EndTime").text = "2030-06-01T00:00:00Z"
    answer = _soap(sim, payload)
    assert_valid(answer)
    assert (
        answer.findtext(f"{{{M}}}ResponseMessage/{{{M}}}ResponseCode")
        == "ErrorInvalidUserOofSettings"
    )
    assert account.oof_settings.state == OofSettings.DISABLED


def test_unknown_elements_never_reach_the_store(sim: EwsSimulator) -> None:
    """A request without operations is a schema error, as in Exchange."""
    account = make_account(sim)
    payload = create_element("m:UpdateInboxRules")
    payload.append(create_element("m:Operations"))
    answer = _soap(sim, payload)
    assert etree.QName(answer).localname == "Fault"
    assert account.rules == []
