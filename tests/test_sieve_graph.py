"""Exchange Online over IMAP takes no rules; with app-only credentials `migrator filters`
applies them through Microsoft Graph. Tested against a local stand-in that checks every request
body against Microsoft's published Graph types (tests/fixtures/graph_standin.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.graph_standin import GraphStandIn

DATA = Path(__file__).parent / "data" / "sieve"
SECRET = "standin-Secret-9"


@pytest.fixture
def graph_campaign(tmp_path: Path) -> Iterator[tuple[Campaign, GraphStandIn]]:
    standin = GraphStandIn(client_id="app-1", client_secret=SECRET, tenant_id="tenant-1").start()
    c = build_campaign(tmp_path / "c", accounts=2, messages_per_folder=0)
    plan = c.plan_path.read_text()
    head, _, rest = plan.partition("[target]")
    _, _, tail = rest.partition("[run]")
    c.plan_path.write_text(
        head + '[target]\nkind = "imap"\nhost = "outlook.office365.com"\nauth = "xoauth2"\n'
        'client_id = "app-1"\ntenant_id = "tenant-1"\nclient_secret_env = "MIGRATOR_TEST_GRAPH_SECRET"\n'
        f'token_url = "{standin.token_url}"\n[run]'
        + tail
        + f'\n[settings]\nsieve = "file"\ngraph = true\ngraph_url = "{standin.graph_url}"\n'
    )
    for address in c.accounts:
        standin.add_mailbox(address)
    try:
        yield c, standin
    finally:
        standin.stop()
        c.sim.stop()


def _filters(c: Campaign, *args: str) -> dict:  # type: ignore[type-arg]
    env = {**c.env, "MIGRATOR_TEST_GRAPH_SECRET": SECRET}
    done = c.cli("filters", "--plan", str(c.plan_path), "--json", *args, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_rules_and_the_automatic_reply_go_through_graph(
    graph_campaign: tuple[Campaign, GraphStandIn],
) -> None:
    c, standin = graph_campaign
    user = c.accounts[0]
    home = c.maildir(user).parent
    (home / "sieve").mkdir()
    (home / "sieve" / "roundcube.sieve").write_text((DATA / "roundcube.sieve").read_text())
    os.symlink("sieve/roundcube.sieve", home / ".dovecot.sieve")
    own = {
        "id": "RULE-USER",
        "displayName": "Mine",
        "sequence": 1,
        "isEnabled": True,
        "actions": {"markAsRead": True},
    }
    standin.mailboxes[user].rules.append(own)
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0

    summary = _filters(c)
    assert (summary["applied"], summary["none"]) == (1, 1)
    assert standin.rejected == []  # every body matched Microsoft's Graph types
    rules = sorted(standin.mailboxes[user].rules, key=lambda r: r["sequence"])
    assert [r["displayName"] for r in rules] == [
        "Mine",
        "[Sieve] Mailing lists",
        "[Sieve] Boss (1/2)",
        "[Sieve] Boss (2/2)",
        "[Sieve] Big mail",
        "[Sieve] Spam",
    ]
    lists = rules[1]
    assert lists["conditions"] == {"headerContains": ["dev.lists.example.org"]}
    assert standin.folder_path(user, lists["actions"]["moveToFolder"]) == ("inbox", "Lists")
    assert lists["actions"]["stopProcessingRules"] is True
    boss2 = rules[3]
    assert boss2["exceptions"] == {
        "fromAddresses": [{"emailAddress": {"address": "boss@example.org"}}]
    }
    assert rules[4]["conditions"] == {"withinSizeRange": {"minimumSize": 2048}}
    assert standin.folder_path(user, rules[5]["actions"]["moveToFolder"]) == ("junkemail",)
    reply = standin.mailboxes[user].settings["automaticRepliesSetting"]
    assert reply["status"] == "scheduled" and reply["externalAudience"] == "all"
    assert reply["scheduledEndDateTime"] == {
        "dateTime": "2100-01-01T00:00:00.0000000",
        "timeZone": "UTC",
    }
    assert "I am away until the end of the century.<br>" in reply["internalReplyMessage"]
    assert standin.tokens_issued == 1  # one app token for the whole pass

    # again: migrator's rules replaced, the user's kept, no folder made twice
    folders = len(standin.mailboxes[user].folders)
    _filters(c)
    again = sorted(standin.mailboxes[user].rules, key=lambda r: r["sequence"])
    assert [r["displayName"] for r in again] == [r["displayName"] for r in rules]
    assert {r["id"] for r in again[1:]}.isdisjoint({r["id"] for r in rules[1:]})
    assert len(standin.mailboxes[user].folders) == folders

    # the vacation is dropped from the script: migrator's reply goes off
    (home / "sieve" / "roundcube.sieve").write_text(
        'require "fileinto"; if header :contains "subject" "x" { fileinto "X"; }'
    )
    _filters(c, "--account", user)
    assert standin.mailboxes[user].settings["automaticRepliesSetting"]["status"] == "disabled"
    assert [
        r["displayName"] for r in sorted(standin.mailboxes[user].rules, key=lambda r: r["sequence"])
    ] == ["Mine", "[Sieve] rule 1 (line 1)"]
    assert standin.rejected == []


def test_the_plan_needs_the_apps_credentials_for_graph(tmp_path: Path) -> None:
    from migrator.model.errors import PlanError
    from migrator.plan.loader import parse_plan

    text = """
[plan]
name = "g"
[directory]
url = "ldif:/dev/null"
base = "dc=x"
[source]
kind = "maildir"
root = "/var/vmail"
[target]
kind = "imap"
host = "outlook.office365.com"
username = "svc@example.org"
password_env = "X"
[settings]
sieve = "file"
graph = true
"""
    with pytest.raises(PlanError, match="client_id, tenant_id and client_secret"):
        parse_plan(text)
    with pytest.raises(PlanError, match="for an IMAP target"):
        parse_plan(
            text.replace(
                'kind = "imap"\nhost = "outlook.office365.com"',
                'kind = "ews"\nurl = "https://x/EWS/Exchange.asmx"',
            )
        )
