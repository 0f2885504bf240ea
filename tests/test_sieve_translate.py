"""Sieve scripts as Exchange sees them: parsing with sievelib (statement text, rule names) and
the translation into inbox rules, automatic replies and refusals (engine/filters.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrator.adapters.sieve.parse import MAX_SCRIPT_BYTES, parse_script
from migrator.adapters.targets.naming import FolderNaming
from migrator.engine.filters import FilterOptions, translate
from migrator.model.mail import FolderRole
from migrator.model.sieve import RuleFolder, SieveScript, Translation

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
OPTIONS = FilterOptions(internal_domains=frozenset({"example.org"}))


def script(text: str, name: str = "main") -> SieveScript:
    return SieveScript(name=name, origin="test", text=text, size=len(text.encode()))


def carry(
    text: str, options: FilterOptions = OPTIONS, naming: FolderNaming | None = None
) -> Translation:
    return translate(parse_script(script(text)), naming or FolderNaming(), options, NOW)


def test_statements_keep_their_text_line_and_client_name() -> None:
    parsed = parse_script(
        script(
            'require ["fileinto"];\n'
            "# rule:[Lists {braces}; and semicolons]\n"
            'if header :contains "subject" ["a;b", "c}"] {\n  fileinto "X"; # } not the end\n}\n'
            "keep;\n"
        )
    )
    assert parsed.error is None
    assert parsed.requires == ("fileinto",)
    first, second = parsed.statements
    assert first.label == "Lists {braces}; and semicolons"
    assert first.line == 3
    assert first.text.startswith('if header :contains "subject" ["a;b", "c}"] {')
    assert first.text.endswith("# } not the end\n}")
    assert second.text == "keep;" and second.line == 6


def test_a_script_that_does_not_parse_is_refused_whole_with_the_parsers_message() -> None:
    t = carry('if header :contains "subject" "x" { fileinto "y"; }')
    assert t.rules == () and t.statements == 0
    (refusal,) = t.refusals
    assert refusal.statement is None
    assert "does not parse" in refusal.reason and "fileinto" in refusal.reason


def test_a_script_over_dovecots_size_limit_is_not_parsed() -> None:
    big = script("keep;\n", name="huge")
    big = SieveScript(big.name, big.origin, big.text, MAX_SCRIPT_BYTES + 1)
    parsed = parse_script(big)
    assert parsed.error is not None and "sieve_max_script_size" in parsed.error


def test_list_filing_with_stop_becomes_a_move_and_stop_rule() -> None:
    t = carry(
        'require "fileinto";\n'
        "# rule:[Lists]\n"
        'if header :contains "list-id" "dev.lists.example.org" { fileinto "INBOX.Lists"; stop; }\n'
    )
    (rule,) = t.rules
    assert rule.name == "Lists"
    assert rule.conditions.contains_header == ("dev.lists.example.org",)
    assert rule.actions.move_to == RuleFolder(FolderRole.INBOX, ("Lists",), source="INBOX.Lists")
    assert rule.actions.stop
    assert "not only in List-Id" in rule.notes[0]
    assert (t.statements, t.translated, t.approximate, t.refused) == (1, 1, 1, 0)


def test_fileinto_follows_the_mails_folder_mapping() -> None:
    naming = FolderNaming(folder_map={"Projects": "Work/Projects"}, exclude_folders=["Old*"])
    t = carry(
        'require "fileinto";\n'
        'if header :contains "subject" "p" { fileinto "Projects.2026"; }\n'
        'if header :contains "subject" "s" { fileinto "Spam"; }\n'
        'if header :contains "subject" "o" { fileinto "Old.stuff"; }\n',
        naming=naming,
    )
    moves = [r.actions.move_to for r in t.rules]
    assert moves[0] == RuleFolder(None, ("Work", "Projects", "2026"), source="Projects.2026")
    assert moves[1] is not None and moves[1].anchor is FolderRole.JUNK
    (refusal,) = t.refusals
    assert "excluded from the migration" in refusal.reason


def test_anyof_without_stop_splits_into_rules_that_exclude_each_other() -> None:
    t = carry(
        'require ["fileinto", "copy"];\n'
        'if anyof (address :is "from" "boss@example.org", header :contains "subject" "urgent") '
        '{ fileinto :copy "Important"; }\n'
    )
    first, second = t.rules
    assert first.conditions.from_addresses == ("boss@example.org",)
    assert second.conditions.contains_subject == ("urgent",)
    assert second.exceptions.from_addresses == ("boss@example.org",)  # not copied twice
    assert first.actions.copy_to == second.actions.copy_to and first.actions.move_to is None


def test_elsif_and_else_exclude_the_branches_before_them() -> None:
    t = carry(
        'require "fileinto";\n'
        'if header :contains "subject" "a" { fileinto "A"; }\n'
        'elsif header :contains "from" "b@x.org" { fileinto "B"; }\n'
        'else { fileinto "C"; }\n'
    )
    a, b, c = t.rules
    assert a.conditions.contains_subject == ("a",)
    assert b.conditions.contains_sender == ("b@x.org",) and b.exceptions.contains_subject == ("a",)
    assert c.conditions.is_empty()
    assert c.exceptions.contains_subject == ("a",) and c.exceptions.contains_sender == ("b@x.org",)
    assert t.statements == 1 and t.translated == 1


def test_negation_size_and_flags() -> None:
    t = carry(
        'require ["fileinto", "imap4flags"];\n'
        'if allof (not header :contains "subject" "keep", size :over 500K, not size :over 10M) '
        '{ addflag "\\\\Seen"; addflag "$label1"; fileinto "Big"; }\n'
    )
    (rule,) = t.rules
    assert rule.exceptions.contains_subject == ("keep",)
    assert (rule.conditions.min_size_kb, rule.conditions.max_size_kb) == (500, 10240)
    assert rule.actions.mark_as_read and rule.actions.categories == ("Important",)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('require "regex"; if header :regex "subject" "^x" { discard; }', "regular expressions"),
        ('require "envelope"; if envelope :is "to" "a@b.c" { discard; }', "envelope"),
        ('require ["imap4flags"]; if true { addflag "\\\\Flagged"; }', "follow-up"),
        (
            'require "fileinto"; if header :contains "subject" "x" { fileinto "A"; if true { stop; } }',
            "mix actions and conditions",
        ),
        ('require "variables"; set "a" "b";', "variables"),
        ('require "include"; include :personal "other";', "included scripts"),
        ('require "enotify"; notify "mailto:a@example.org";', "notifications"),
        (
            'require "reject"; if header :contains "subject" "x" { reject "no"; }',
            "refuse a message",
        ),
        ('redirect "someone@elsewhere.net";', "outside the organisation"),
        ('if header :is "subject" "exact" { discard; }', "deletes messages"),
        (
            'if allof (header :contains "subject" "a", header :contains "subject" "b") { discard; }',
            "two different texts",
        ),
    ],
)
def test_what_exchange_cannot_express_is_refused_whole(text: str, reason: str) -> None:
    t = carry(text)
    assert t.rules == ()
    (refusal,) = t.refusals
    assert reason in refusal.reason
    assert refusal.text.strip().endswith((";", "}"))  # the whole original statement


def test_redirect_inside_the_organisation_and_forwarding_when_allowed() -> None:
    inside = carry(
        'require "copy"; if header :contains "subject" "fw" { redirect :copy "desk@example.org"; }'
    )
    (rule,) = inside.rules
    assert rule.actions.redirect_to == ("desk@example.org",) and not rule.actions.delete
    outside = carry('redirect "me@elsewhere.net";', FilterOptions(forwarding=True))
    (rule,) = outside.rules
    assert rule.actions.redirect_to == ("me@elsewhere.net",)
    assert rule.actions.delete  # Sieve kept no copy: Exchange's copy goes to Deleted Items
    assert rule.conditions.is_empty()


def test_vacation_with_a_date_range_is_a_scheduled_reply() -> None:
    t = carry(
        'require ["vacation", "date", "relational"];\n'
        'if allof (currentdate :zone "+0200" :value "ge" "iso8601" "2026-12-20T08:00:00", '
        'currentdate :value "le" "date" "2027-01-06") {\n'
        '  vacation :days 5 :subject "Away" text:\nBack on the 7th.\n..dotted\n.\n;\n}\n'
    )
    reply = t.auto_reply
    assert reply is not None and not reply.expired
    assert reply.message == "Back on the 7th.\n.dotted\n"
    assert reply.start == datetime(2026, 12, 20, 6, 0, tzinfo=UTC)
    assert reply.end == datetime(2027, 1, 7, 0, 0, tzinfo=UTC)
    assert any("Automatic reply" in n for n in reply.notes)


def test_a_vacation_that_ended_stays_off_and_a_second_one_is_refused() -> None:
    t = carry(
        'require ["vacation", "date", "relational"];\n'
        'if currentdate :value "le" "date" "2020-01-31" { vacation "old"; }\n'
        'vacation "again";\n'
    )
    assert t.auto_reply is not None and t.auto_reply.expired
    (refusal,) = t.refusals
    assert "one automatic reply" in refusal.reason


def test_plan_switches_leave_rules_or_replies_out() -> None:
    text = 'require ["fileinto", "vacation"]; if header :contains "subject" "x" { fileinto "X"; } vacation "away";'
    no_rules = carry(text, FilterOptions(rules=False))
    assert no_rules.rules == () and no_rules.auto_reply is not None
    assert "rules are off" in no_rules.refusals[0].reason
    no_reply = carry(text, FilterOptions(vacation=False))
    assert no_reply.auto_reply is None and len(no_reply.rules) == 1


def test_no_script_and_an_empty_script() -> None:
    assert translate(None, FolderNaming(), OPTIONS, NOW) == Translation(script=None)
    empty = carry("")
    assert (empty.script, empty.statements, empty.rules, empty.refusals) == ("main", 0, (), ())


def test_a_vacation_kept_from_mailing_lists_is_carried_with_a_note() -> None:
    """Horde Ingo wraps every vacation in a test for list and bulk mail (found in the corpus)."""
    t = carry((Path(__file__).parent / "data" / "sieve" / "horde-ingo.sieve").read_text())
    reply = t.auto_reply
    assert reply is not None and (reply.start, reply.end) == (None, None)
    assert reply.message.startswith("Estoy de vacaciones")
    assert any("List-* headers" in n for n in reply.notes)
    # a vacation under any other condition is still refused
    other = carry('require "vacation"; if header :contains "subject" "x" { vacation "no"; }')
    assert other.auto_reply is None and "date range only" in other.refusals[0].reason


def test_redirect_to_a_named_address_inside_the_organisation() -> None:
    """Pigeonhole's examples redirect to "Name <address>" (found in the corpus)."""
    t = carry('redirect "Ana Ruiz <ana@example.org>";')
    (rule,) = t.rules
    assert rule.actions.redirect_to == ("Ana Ruiz <ana@example.org>",)


def test_subaddress_and_numeric_comparator_parse_and_are_refused_by_name() -> None:
    """sievelib lacked :user/:detail and i;ascii-numeric; Pigeonhole's examples use both."""
    detail = carry(
        'require ["envelope", "subaddress", "fileinto"]; '
        'if address :detail "to" "lists" { fileinto "Lists"; }'
    )
    assert "sub-address" in detail.refusals[0].reason
    numeric = carry(
        'require ["relational", "comparator-i;ascii-numeric", "fileinto"]; '
        'if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "5" { fileinto "Junk"; }'
    )
    assert numeric.refusals and numeric.refusals[0].statement == 0


def test_an_if_inside_an_if_becomes_rules_under_both_conditions() -> None:
    """Hand-written scripts nest conditions (Pigeonhole's examples do)."""
    t = carry(
        'require "fileinto";\n'
        'if header :contains "from" "boss@example.org" {\n'
        '  if header :contains "subject" "urgent" { fileinto "Now"; }\n'
        '  elsif header :contains "subject" "later" { fileinto "Later"; }\n'
        "  stop;\n"
        "}\n"
        'fileinto "Rest";\n'
    )
    now, later, stop, rest = t.rules
    assert now.conditions.contains_sender == (
        "boss@example.org",
    ) and now.conditions.contains_subject == ("urgent",)
    assert later.conditions.contains_subject == (
        "later",
    ) and later.exceptions.contains_subject == ("urgent",)
    assert later.conditions.contains_sender == ("boss@example.org",)
    assert stop.conditions.contains_sender == ("boss@example.org",) and stop.actions.stop
    assert stop.actions.move_to is None
    assert rest.conditions.is_empty() and rest.actions.move_to is not None
    assert [r.name for r in t.rules][:3] == [
        "rule 1 (line 2) (1/3)",
        "rule 1 (line 2) (2/3)",
        "rule 1 (line 2) (3/3)",
    ]
    assert (t.statements, t.translated, t.refused) == (2, 2, 0)
