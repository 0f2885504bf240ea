"""`migrator filters` end to end: Sieve scripts in real Maildir homes (Pigeonhole's layout),
the EWS simulator read back with exchangelib, the state database, the per-account reports.

Edge cases each have a defined outcome: no Sieve ("none"), an empty script (applied, no rule),
a broken script ("broken", the parser's message, earlier rules kept), a script including
another (the include refused, the rest carried), a huge script (refused whole), a link out of
the scripts folder (failed, never read)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from exchangelib import Account, Configuration, Credentials
from exchangelib.settings import OofSettings

from tests.fixtures.campaign import Campaign, build_campaign
from tests.fixtures.ews import SIM_PASSWORD, SIM_USER

DATA = Path(__file__).parent / "data" / "sieve"


@pytest.fixture
def campaign(tmp_path: Path) -> Iterator[Campaign]:
    with build_campaign(tmp_path / "c", accounts=4, messages_per_folder=1) as c:
        c.plan_path.write_text(c.plan_path.read_text() + '\n[settings]\nsieve = "file"\n')
        yield c


def _home(c: Campaign, index: int) -> Path:
    return c.maildir(c.accounts[index]).parent


def _install(c: Campaign, index: int, text: str, name: str = "roundcube") -> Path:
    """A script as Pigeonhole keeps it: ~/sieve/NAME.sieve, made active by ~/.dovecot.sieve."""
    home = _home(c, index)
    (home / "sieve").mkdir(exist_ok=True)
    script = home / "sieve" / f"{name}.sieve"
    script.write_text(text)
    link = home / ".dovecot.sieve"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(f"sieve/{name}.sieve", link)
    return script


def _account(c: Campaign, address: str) -> Account:
    config = Configuration(
        service_endpoint=c.sim.url,
        credentials=Credentials(SIM_USER, SIM_PASSWORD),
        auth_type="basic",
    )
    return Account(address, config=config, autodiscover=False, access_type="impersonation")


def _filters(c: Campaign, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = c.cli("filters", "--plan", str(c.plan_path), "--json", *args)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def test_filters_become_rules_and_vacation_an_automatic_reply(campaign: Campaign) -> None:
    c = campaign
    _install(c, 0, (DATA / "roundcube.sieve").read_text())
    _install(c, 2, 'if header :contains "subject" "x" { fileinto "y"; }\n', name="broken")
    (_home(c, 3) / ".dovecot.sieve").write_text("")  # an empty active script, a plain file
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    out = c.root / "reports"
    code, summary = _filters(c, "--out", str(out))
    assert code == 1  # the broken script is listed: exit 1
    assert {k: summary[k] for k in ("accounts", "applied", "none", "broken", "failed")} == {
        "accounts": 4,
        "applied": 2,
        "none": 1,
        "broken": 1,
        "failed": 0,
    }
    assert (summary["statements"], summary["translated"], summary["refused"]) == (6, 5, 2)
    by_account = {a["account"]: a for a in summary["by_account"]}
    assert (by_account[c.accounts[0]]["rules"], by_account[c.accounts[0]]["auto_reply"]) == (
        5,
        "scheduled",
    )

    # the rules match the script, in its order, after the user's own
    user = c.accounts[0]
    account = _account(c, user)
    rules = account.rules
    assert [r.display_name for r in rules] == [
        "[Sieve] Mailing lists",
        "[Sieve] Boss (1/2)",
        "[Sieve] Boss (2/2)",
        "[Sieve] Big mail",
        "[Sieve] Spam",
    ]
    folders = {f.id: f.path for f in c.sim.folders(user)}
    assert folders[rules[0].actions.move_to_folder.folder_id.id] == ("Inbox", "Lists")
    assert folders[rules[4].actions.move_to_folder.folder_id.id] == ("Junk Email",)
    assert rules[4].actions.stop_processing_rules is True
    # the vacation: a scheduled automatic reply with the script's text
    oof = account.oof_settings
    assert oof.state == OofSettings.SCHEDULED
    assert "I am away until the end of the century.<br>" in oof.internal_reply
    assert (oof.start.year, oof.end.year) == (2020, 2100)

    # what was not carried, with the Sieve text, in the report and in the state
    report = json.loads((out / f"{user}.json").read_text())
    (refused,) = report["not_carried"]
    assert (
        "regular expressions" in refused["reason"] and 'header :regex "subject"' in refused["sieve"]
    )
    text = (out / f"{user}.txt").read_text()
    assert (
        "Not carried:" in text
        and "New-InboxRule" in text
        and "Set-MailboxAutoReplyConfiguration" in text
    )
    broken = json.loads((out / f"{c.accounts[2]}.json").read_text())
    assert broken["outcome"] == "broken" and "extension 'fileinto' not loaded" in broken["error"]
    with sqlite3.connect(c.state_path) as db:
        rows = dict(
            db.execute(
                "SELECT a.address, f.outcome || ':' || f.refused FROM sieve_filters f JOIN accounts a ON a.id = f.account_id"
            )
        )
        reasons = [r[0] for r in db.execute("SELECT reason FROM sieve_refusals ORDER BY id")]
    assert rows == {
        c.accounts[0]: "applied:1",
        c.accounts[1]: "none:0",
        c.accounts[2]: "broken:1",
        c.accounts[3]: "applied:0",
    }
    assert any("regular expressions" in r for r in reasons) and any(
        "does not parse" in r for r in reasons
    )

    # the account's page and status count what was not carried
    shown = c.cli("show", "--plan", str(c.plan_path), user)
    assert shown.returncode == 0, shown.stderr
    assert "Sieve" in shown.stdout and "regular expressions" in shown.stdout
    status = c.cli("status", "--plan", str(c.plan_path), "--json")
    filters_status = json.loads(status.stdout)["filters"]
    assert filters_status["refused"] == 2 and filters_status["accounts_with_refusals"] == 2
    assert "2 not carried in 2 accounts" in c.cli("status", "--plan", str(c.plan_path)).stdout
    report = c.cli("report", "--plan", str(c.plan_path), "--format", "json", "-o", "-")
    assert json.loads(report.stdout)["filters"]["broken"] == 1

    # run again: the same set, no duplicates; the user's own rule is never touched
    from exchangelib.properties import Actions, Conditions, Rule

    Rule(
        account=account,
        display_name="Mine",
        priority=1,
        is_enabled=True,
        conditions=Conditions(contains_subject_strings=["x"]),
        actions=Actions(mark_as_read=True),
    ).save()
    _filters(c)
    assert [r.display_name for r in account.rules][0] == "Mine"
    assert len(account.rules) == 6

    # the user dropped the vacation and a rule from the script: migrator's reply goes off,
    # the rule goes away
    _install(
        c,
        0,
        'require "fileinto";\n# rule:[Lists]\nif header :contains "list-id" "x" { fileinto "L"; }\n',
    )
    _filters(c, "--account", user)
    assert [r.display_name for r in account.rules] == ["Mine", "[Sieve] Lists"]
    assert account.oof_settings.state == OofSettings.DISABLED

    # a broken script later leaves what was applied in place
    _install(c, 0, "if true {", name="half-edited")
    code, again = _filters(c, "--account", user)
    assert code == 1 and again["broken"] == 1
    assert [r.display_name for r in account.rules] == ["Mine", "[Sieve] Lists"]


def test_an_automatic_reply_the_user_set_is_not_switched_off(campaign: Campaign) -> None:
    c = campaign
    user = c.accounts[0]
    _install(c, 0, 'require "vacation"; vacation "away";')
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    _filters(c, "--account", user)
    account = _account(c, user)
    assert account.oof_settings.state == OofSettings.ENABLED
    account.oof_settings = OofSettings(
        state=OofSettings.ENABLED, internal_reply="my own words", external_reply="my own words"
    )
    _install(c, 0, "keep;")
    _filters(c, "--account", user)
    assert account.oof_settings.state == OofSettings.ENABLED
    assert account.oof_settings.internal_reply == "my own words"


def test_links_out_of_the_scripts_folder_are_never_read(campaign: Campaign, tmp_path: Path) -> None:
    c = campaign
    secret = tmp_path / "secret.sieve"
    secret.write_text('require "fileinto"; if true { fileinto "Leak"; }')
    for index, target in (
        (0, str(secret)),
        (1, "../../../../secret.sieve"),
        (2, "sieve/../../x.sieve"),
    ):
        link = _home(c, index) / ".dovecot.sieve"
        os.symlink(target, link)
    (_home(c, 3) / "sieve").symlink_to(tmp_path)  # the scripts folder itself is a link
    os.symlink("sieve/secret.sieve", _home(c, 3) / ".dovecot.sieve")
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    code, summary = _filters(c, "--out", str(c.root / "r"))
    assert code == 1 and summary["failed"] == 4
    for address in c.accounts:
        report = json.loads((c.root / "r" / f"{address}.json").read_text())
        assert "link" in report["error"] and "Leak" not in json.dumps(report)
        assert _account(c, address).rules == []


def test_include_huge_script_and_a_dry_run(campaign: Campaign) -> None:
    c = campaign
    _install(
        c,
        0,
        'require ["include", "fileinto"];\ninclude :personal "lists";\n'
        'if header :contains "subject" "x" { fileinto "X"; }\n',
    )
    _install(c, 1, "keep;\n" * 200_000)  # 1.2 MB: over what Dovecot compiles
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    code, summary = _filters(c, "--dry-run", "--out", str(c.root / "r"))
    # the huge script is one Dovecot would not run either: "broken", like a script that does not parse
    assert (summary["checked"], summary["broken"], summary["applied"]) == (3, 1, 0) and code == 1
    assert _account(c, c.accounts[0]).rules == []  # a dry run writes nothing
    with sqlite3.connect(c.state_path) as db:  # ... not even to the state
        assert db.execute("SELECT COUNT(*) FROM sieve_filters").fetchone() == (0,)
    first = json.loads((c.root / "r" / f"{c.accounts[0]}.json").read_text())
    assert [r["name"] for r in first["rules"]] == ["[Sieve] rule 2 (line 3)"]
    assert "included scripts" in first["not_carried"][0]["reason"]
    huge = json.loads((c.root / "r" / f"{c.accounts[1]}.json").read_text())
    assert huge["outcome"] == "broken" and huge["rules"] == []
    assert "sieve_max_script_size" in huge["not_carried"][0]["reason"]
    assert len(huge["not_carried"][0]["sieve"]) < 3000  # an excerpt, not the megabyte


def test_an_imap_target_gets_reports_with_the_powershell_to_apply(campaign: Campaign) -> None:
    c = campaign
    plan = c.plan_path.read_text()
    head, _, rest = plan.partition("[target]")
    _, _, tail = rest.partition("[run]")
    c.plan_path.write_text(
        head + '[target]\nkind = "imap"\nhost = "outlook.office365.com"\n'
        'username = "svc@example.org"\npassword_env = "MIGRATOR_TEST_EWS_PASSWORD"\n'
        "[run]" + tail
    )
    _install(c, 0, (DATA / "roundcube.sieve").read_text())
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    code, summary = _filters(c)
    assert code == 0 and summary["reported"] == 1 and summary["none"] == 3
    folder = c.root / "filters" / "t"
    report = json.loads((folder / f"{c.accounts[0]}.json").read_text())
    assert report["outcome"] == "reported" and len(report["rules"]) == 5
    assert report["powershell"][0].startswith(
        f"New-InboxRule -Mailbox '{c.accounts[0]}' -Name '[Sieve] Mailing lists'"
    )
    assert report["powershell"][-1].startswith("Set-MailboxAutoReplyConfiguration")


def test_a_kill_at_any_instant_leaves_the_old_rules_or_the_new_ones(campaign: Campaign) -> None:
    from migrator.simulator.ews import Faults

    c = campaign
    user = c.accounts[0]
    old = 'require "fileinto";\n' + "".join(
        f'# rule:[old {n}]\nif header :contains "subject" "o{n}" {{ fileinto "Old{n}"; }}\n'
        for n in range(4)
    )
    new = 'require "fileinto";\n' + "".join(
        f'# rule:[new {n}]\nif header :contains "subject" "n{n}" {{ fileinto "New{n}"; }}\n'
        for n in range(6)
    )
    _install(c, 0, old)
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    _filters(c, "--account", user)
    account = _account(c, user)
    old_set = [f"[Sieve] old {n}" for n in range(4)]
    new_set = [f"[Sieve] new {n}" for n in range(6)]
    assert [r.display_name for r in account.rules] == old_set
    _install(c, 0, new)
    c.sim.set_faults(Faults(delay_s=0.15))  # every request takes a while: kills land mid-pass
    for kill_after in (0.4, 0.9, 1.4, 2.0, 2.6):
        process = c.start("filters", "--plan", str(c.plan_path), "--account", user)
        try:
            process.wait(timeout=kill_after)  # the kill instant; most passes are still at work
        except subprocess.TimeoutExpired:
            process.kill()
        process.wait(timeout=30)
        names = [r.display_name for r in account.rules]
        assert names in (old_set, new_set), names
    c.sim.set_faults(Faults())
    _filters(c, "--account", user)
    assert [r.display_name for r in account.rules] == new_set


def test_a_target_that_is_down_stops_the_pass_at_once(campaign: Campaign) -> None:
    c = campaign
    for index in range(4):
        _install(
            c, index, 'require "fileinto"; if header :contains "subject" "x" { fileinto "X"; }'
        )
    assert c.cli("discover", "--plan", str(c.plan_path)).returncode == 0
    c.sim.stop()
    done = c.cli("filters", "--plan", str(c.plan_path), "--workers", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the target server does not answer" in done.stderr
    assert "stopped after 1 of 4 accounts" in done.stderr
    with sqlite3.connect(c.state_path) as db:
        assert db.execute(
            "SELECT outcome, COUNT(*) FROM sieve_filters GROUP BY outcome"
        ).fetchall() == [("failed", 1)]
