"""Users' Sieve filters and what Exchange makes of them: plain data, no behaviour.

A script read from Dovecot (file or ManageSieve) is parsed by the adapter into `SieveNode`s, a
neutral tree that does not depend on the parser library. The translation (engine/filters.py)
turns it into `InboxRule`s and an `AutoReply`, and a `Refusal` for every statement Exchange
cannot express, with the statement's original text and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from migrator.model.mail import FolderRole

# The name prefix of the inbox rules migrator makes: a later pass replaces exactly these (and the
# ones whose ids it recorded), never a rule the user made.
RULE_MARKER = "[Sieve] "

# A tag's value: None for a plain tag (":contains"), else its argument (":days 7" -> "7",
# ":comparator "i;octet"" -> "i;octet", ":value "ge"" -> "ge").
TagValue = str | tuple[str, ...] | None
# A positional argument: a string, a string list, or a number as written ("100K").
Argument = str | tuple[str, ...]


@dataclass(frozen=True)
class SieveNode:
    """One command of a script (control, test or action) with its arguments."""

    name: str  # lower case: "if", "header", "fileinto", "anyof", ...
    tags: dict[str, TagValue] = field(default_factory=dict)  # ":contains" -> None
    args: tuple[Argument, ...] = ()  # positional arguments, strings unquoted
    tests: tuple[SieveNode, ...] = ()  # the test of if/elsif/not, the tests of anyof/allof
    block: tuple[SieveNode, ...] = ()  # the commands inside { }

    def tag(self, name: str) -> bool:
        return name in self.tags


@dataclass(frozen=True)
class SieveStatement:
    """A top-level command with the text it was written as (what a report quotes)."""

    node: SieveNode
    text: str
    line: int
    label: str | None = None  # a client's name for the rule ("# rule:[Name]" of Roundcube)


@dataclass(frozen=True)
class SieveScript:
    """A script as read from the server: its name, where it came from and its text."""

    name: str
    origin: str  # "file /var/vmail/x/.dovecot.sieve" or "managesieve host:4190"
    text: str
    size: int  # bytes as stored


@dataclass(frozen=True)
class ParsedScript:
    script: SieveScript
    statements: tuple[SieveStatement, ...] = ()
    requires: tuple[str, ...] = ()
    error: str | None = None  # the parser's message when the script does not parse


@dataclass(frozen=True)
class RuleFolder:
    """Where a fileinto lands: `names` below `anchor`, the same place the mail went."""

    anchor: FolderRole | None  # a well-known folder, or None for the top of the mailbox
    names: tuple[str, ...] = ()
    source: str = ""  # the Sieve mailbox name, for reports

    def display(self) -> str:
        return "/".join(((self.anchor.value,) if self.anchor else ()) + self.names)


@dataclass(frozen=True)
class RulePredicates:
    """EWS RulePredicatesType (the subset Sieve maps to). Lists are OR-ed by Exchange."""

    contains_subject: tuple[str, ...] = ()
    contains_body: tuple[str, ...] = ()
    contains_header: tuple[str, ...] = ()
    contains_sender: tuple[str, ...] = ()
    contains_recipient: tuple[str, ...] = ()
    from_addresses: tuple[str, ...] = ()
    sent_to_addresses: tuple[str, ...] = ()
    min_size_kb: int | None = None
    max_size_kb: int | None = None

    def is_empty(self) -> bool:
        return self == RulePredicates()


@dataclass(frozen=True)
class RuleActions:
    """EWS RuleActionsType (the subset Sieve maps to)."""

    move_to: RuleFolder | None = None
    copy_to: RuleFolder | None = None
    delete: bool = False
    mark_as_read: bool = False
    categories: tuple[str, ...] = ()
    redirect_to: tuple[str, ...] = ()
    stop: bool = False

    def is_empty(self) -> bool:
        return self == RuleActions()


@dataclass(frozen=True)
class InboxRule:
    """One Exchange inbox rule made from (part of) a Sieve statement."""

    name: str  # display name without migrator's marker
    statement: int  # index of the Sieve statement it comes from (script order)
    conditions: RulePredicates
    exceptions: RulePredicates
    actions: RuleActions
    notes: tuple[str, ...] = ()  # where Exchange matches a little more or less than Sieve did


@dataclass(frozen=True)
class AutoReply:
    """Exchange automatic replies (OOF) from a Sieve vacation action."""

    message: str
    start: datetime | None = None  # a schedule from the vacation's currentdate/date range
    end: datetime | None = None
    subject: str | None = None  # Sieve's :subject; Exchange writes its own subject
    days: int | None = None
    statement: int = 0
    expired: bool = False  # the scheduled period has ended: replies stay off
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """A statement (or the whole script) Exchange cannot express: left out, never half-done."""

    statement: int | None  # None: the script as a whole (does not parse, too large)
    text: str  # the original Sieve text
    reason: str
    line: int | None = None


@dataclass(frozen=True)
class Translation:
    """What one account's Sieve becomes."""

    script: str | None  # the active script's name, None when the account has none
    rules: tuple[InboxRule, ...] = ()
    auto_reply: AutoReply | None = None
    refusals: tuple[Refusal, ...] = ()
    statements: int = 0  # top-level statements that do something (require and comments not counted)
    translated: int = 0  # statements carried whole
    approximate: int = 0  # of those, carried with a note (Exchange matches a little differently)

    @property
    def refused(self) -> int:
        return len(self.refusals)
