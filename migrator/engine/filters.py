"""Sieve -> Exchange inbox rules and automatic replies: a pure translation, easy to test.

What Exchange can express (docs/sieve.md has the full table):
- A rule's conditions are AND-ed across kinds (subject, sender, header, size ...), a kind's list
  of texts is OR-ed, and its exceptions are OR-ed: "applies if all conditions hold and no
  exception does". A Sieve test is brought into that shape (negations pushed inward, then an OR
  of ANDs); an OR becomes several rules, which is exact when the block stops, or when each
  earlier part can be written as an exception of the later rules.
- Rules run in the script's order; `stop` is "stop processing more rules"; an `elsif` is a rule
  that excludes the branches before it (unless those stop).
- Actions: fileinto -> move (or copy with :copy, or when the message also stays in the inbox),
  discard -> delete, redirect -> redirect (outside the organisation only where the plan allows
  forwarding), addflag \\Seen -> mark as read, keywords -> categories, stop -> stop.
- vacation -> automatic replies, scheduled when the vacation sits in a currentdate range.

Everything else is refused whole, with the reason: a rule is carried completely or not at all.
Where Exchange matches a little more (or less) than Sieve did - e.g. it looks for a List-Id's
text in the whole header - the rule is carried with a note, but only when its actions move, copy,
flag or stop: a rule that deletes or forwards is never carried on a condition that is not exact.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

from migrator.adapters.sources import utf7
from migrator.adapters.sources.roles import folder_role
from migrator.adapters.targets.naming import FolderNaming
from migrator.model.mail import FolderRole
from migrator.model.sieve import (
    AutoReply,
    InboxRule,
    ParsedScript,
    Refusal,
    RuleActions,
    RuleFolder,
    RulePredicates,
    SieveNode,
    SieveStatement,
    Translation,
)

MAX_RULES_PER_STATEMENT = 16  # an OR of ORs can multiply; past this the statement is refused
MAX_NAME = 200
THUNDERBIRD_LABELS = {
    "$label1": "Important",
    "$label2": "Work",
    "$label3": "Personal",
    "$label4": "To Do",
    "$label5": "Later",
}


@dataclass(frozen=True)
class FilterOptions:
    """The plan's choices ([settings]) and how the source names folders."""

    rules: bool = True
    vacation: bool = True
    forwarding: bool = False  # redirect to addresses outside internal_domains
    internal_domains: frozenset[str] = frozenset()
    separator: str = "."  # the IMAP hierarchy separator of Dovecot's namespace
    prefix: str = ""  # a namespace prefix the scripts write and the mail does not ("INBOX.")


class Refused(Exception):
    """A statement Exchange cannot express; the message is the reason a report shows."""


# --- conditions ----------------------------------------------------------------------------

# kinds of predicate, named after the EWS elements they become
SUBJECT = "ContainsSubjectStrings"
BODY = "ContainsBodyStrings"
HEADER = "ContainsHeaderStrings"
SENDER = "ContainsSenderStrings"
RECIPIENT = "ContainsRecipientStrings"
FROM = "FromAddresses"
SENT_TO = "SentToAddresses"
SIZE_MIN = "MinimumSize"
SIZE_MAX = "MaximumSize"
_TEXT_KINDS = (SUBJECT, BODY, HEADER, SENDER, RECIPIENT, FROM, SENT_TO)
_KIND_WORDS = {
    SUBJECT: "subject",
    BODY: "body",
    HEADER: "message header",
    SENDER: "sender",
    RECIPIENT: "recipients",
    FROM: "sender address",
    SENT_TO: "recipient addresses",
}


@dataclass(frozen=True)
class Pred:
    kind: str
    values: tuple[str, ...] = ()
    size_kb: int = 0


@dataclass(frozen=True)
class Literal:
    """An atomic test (true when any of `alternatives` holds), maybe negated."""

    positive: bool
    alternatives: tuple[Pred, ...]
    note: str | None = None  # set when Exchange matches a little differently


# formulas: ("atom", Literal) | ("and", [f]) | ("or", [f]) | ("not", f) | ("true",) | ("false",)
Formula = tuple


def _formula(node: SieveNode) -> Formula:
    name = node.name
    if name == "true":
        return ("true",)
    if name == "false":
        return ("false",)
    if name == "not":
        return ("not", _formula(node.tests[0]))
    if name == "allof":
        return ("and", [_formula(t) for t in node.tests])
    if name == "anyof":
        return ("or", [_formula(t) for t in node.tests])
    literal = _atom(node)
    if len(literal.alternatives) > 1:
        return (
            "or",
            [("atom", replace(literal, alternatives=(alt,))) for alt in literal.alternatives],
        )
    return ("atom", literal)


def _negate(f: Formula) -> Formula:
    kind = f[0]
    if kind == "true":
        return ("false",)
    if kind == "false":
        return ("true",)
    if kind == "not":
        return f[1]
    if kind == "and":
        return ("or", [_negate(x) for x in f[1]])
    if kind == "or":
        return ("and", [_negate(x) for x in f[1]])
    lit: Literal = f[1]
    if lit.positive and len(lit.alternatives) > 1:
        raise AssertionError("split before negation")
    return ("atom", replace(lit, positive=not lit.positive))


def _dnf(f: Formula) -> list[list[Literal]]:
    """An OR (outer list) of ANDs (inner lists) of literals. [] is false, [[]] is true."""
    kind = f[0]
    if kind == "true":
        return [[]]
    if kind == "false":
        return []
    if kind == "not":
        inner = f[1]
        if inner[0] == "atom":
            lit: Literal = inner[1]
            if len(lit.alternatives) > 1 and lit.positive:
                # not (A or B): one negative literal with both (exceptions are OR-ed)
                return [[replace(lit, positive=False)]]
            return [[replace(lit, positive=not lit.positive)]]
        if inner[0] == "or" and all(x[0] == "atom" and x[1].positive for x in inner[1]):
            # keep "not anyof(atoms)" as one negative literal per atom (AND of exceptions)
            return [[replace(x[1], positive=False) for x in inner[1]]]
        return _dnf(_negate(inner))
    if kind == "atom":
        return [[f[1]]]
    if kind == "or":
        out: list[list[Literal]] = []
        for part in f[1]:
            out.extend(_dnf(part))
            if len(out) > MAX_RULES_PER_STATEMENT:
                raise Refused(
                    f"the test would need more than {MAX_RULES_PER_STATEMENT} Exchange rules"
                )
        return out
    # and
    result: list[list[Literal]] = [[]]
    for part in f[1]:
        options = _dnf(part)
        result = [a + b for a in result for b in options]
        if len(result) > MAX_RULES_PER_STATEMENT:
            raise Refused(f"the test would need more than {MAX_RULES_PER_STATEMENT} Exchange rules")
    return result


def _match(node: SieveNode) -> str:
    for tag in (":is", ":contains", ":matches", ":regex", ":count", ":value"):
        if node.tag(tag):
            return tag
    return ":is"


def _checked_match(node: SieveNode) -> tuple[str, str | None]:
    """(match type, note about case) or Refused."""
    match = _match(node)
    if match == ":regex":
        raise Refused("Exchange rules have no regular expressions (:regex)")
    if match in (":count", ":value"):
        raise Refused(
            f"Exchange rules cannot compare {'how many' if match == ':count' else 'the value of'} "
            f"headers ({match} {node.tags[match]!r})"
        )
    comparator = node.tags.get(":comparator")
    note = None
    if comparator not in (None, "i;ascii-casemap", "i;unicode-casemap"):
        if comparator == "i;octet":
            note = "Exchange ignores case; Sieve compared case-sensitively (i;octet)"
        else:
            raise Refused(f"Exchange has no comparator {comparator!r}")
    return match, note


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return tuple(str(v) for v in value)
    return (str(value),)


_WILD = re.compile(r"(?<!\\)[*?]")


def _pattern(key: str) -> tuple[str, str]:
    """A :matches key as (":is" | ":contains" | "prefix" | "suffix" | "any" | "other", text)."""
    if "?" in key.replace("\\?", ""):
        return "other", key
    inner = key
    lead = inner.startswith("*")
    trail = inner.endswith("*") and not inner.endswith("\\*")
    core = inner[1 if lead else 0 : len(inner) - (1 if trail else 0)]
    if not core and (lead or trail):
        return "any", ""
    if _WILD.search(core):
        return "other", key
    core = core.replace("\\*", "*").replace("\\?", "?").replace("\\\\", "\\")
    if lead and trail:
        return ":contains", core
    if lead:
        return "suffix", core
    if trail:
        return "prefix", core
    return ":is", core


def _keys(
    node: SieveNode, match: str, keys: tuple[str, ...]
) -> tuple[str, tuple[str, ...], str | None]:
    """Normalise :matches keys to :is/:contains ones: (match, keys, note)."""
    if match != ":matches":
        return match, keys, None
    kinds = set()
    texts = []
    for key in keys:
        kind, text = _pattern(key)
        if kind == "other":
            raise Refused(f"Exchange cannot match the pattern {key!r}")
        if kind == "any":
            return "exists", (), None
        kinds.add(kind)
        texts.append(text)
    if kinds == {":is"}:
        return ":is", tuple(texts), None
    if kinds == {":contains"}:
        return ":contains", tuple(texts), None
    return (
        ":contains",
        tuple(texts),
        "Exchange looks for the text anywhere; Sieve's pattern anchored it at the start or end",
    )


def _atom(node: SieveNode) -> Literal:
    name = node.name
    if name == "header":
        return _header(node)
    if name == "address":
        return _address(node)
    if name == "exists":
        names = _strings(node.args[0]) if node.args else ()
        if len(names) != 1:
            # exists ["a", "b"] is an AND of two header tests: one condition kind cannot do it
            return Literal(True, (Pred(HEADER, tuple(f"{n}:" for n in names)),), note="exists-many")
        return Literal(
            True,
            (Pred(HEADER, (f"{names[0]}:",)),),
            note=f"Exchange looks for {names[0]}: anywhere in the header",
        )
    if name == "size":
        limit = _size(str(node.args[0])) if node.args else 0
        kb, exact = divmod(limit, 1024)
        note = (
            None
            if exact == 0
            else f"Exchange counts sizes in whole KB ({limit:,} bytes taken as {kb:,} KB)"
        )
        if node.tag(":over"):
            return Literal(True, (Pred(SIZE_MIN, size_kb=kb),), note=note)
        return Literal(True, (Pred(SIZE_MAX, size_kb=kb),), note=note)
    if name == "body":
        transform = next((t for t in (":raw", ":content", ":text") if node.tag(t)), ":text")
        if transform != ":text":
            raise Refused(f"Exchange searches a message's text only, not its {transform[1:]} body")
        match, case = _checked_match(node)
        match, keys, pattern_note = _keys(node, match, _strings(node.args[-1]))
        if match == "exists":
            return Literal(True, ())
        note = case or pattern_note
        if match == ":is":
            note = (
                "Exchange looks for the text in the body; Sieve required the whole body to equal it"
            )
        return Literal(True, (Pred(BODY, keys),), note=note)
    if name == "envelope":
        raise Refused(
            "Exchange rules see a message's header, not its SMTP envelope (envelope test)"
        )
    if name in ("date", "currentdate"):
        raise Refused(f"Exchange rules have no condition on dates ({name})")
    if name == "hasflag":
        raise Refused("Exchange rules cannot test a message's flags (hasflag)")
    if name in ("spamtest", "virustest"):
        raise Refused(
            f"Exchange rules cannot read the source server's {name[:-4]} score ({name}); "
            "Exchange filters junk mail itself"
        )
    if name in (
        "duplicate",
        "string",
        "environment",
        "mailboxexists",
        "ihave",
        "metadata",
        "metadataexists",
        "servermetadata",
        "servermetadataexists",
        "valid_notify_method",
        "notify_method_capability",
        "specialuse_exists",
    ):
        raise Refused(f"Exchange rules have no condition like {name}")
    raise Refused(f"Exchange rules have no condition like {name}")


def _size(text: str) -> int:
    text = text.strip()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale != 1 else text
    return int(digits) * scale


def _header(node: SieveNode) -> Literal:
    match, case = _checked_match(node)
    names = tuple(n.strip().lower() for n in _strings(node.args[0]))
    match, keys, pattern_note = _keys(node, match, _strings(node.args[1]))
    if match == "exists":
        return _exists(names)
    alternatives: list[Pred] = []
    notes = [n for n in (case, pattern_note) if n]
    rest = set(names)
    if "subject" in rest:
        rest.discard("subject")
        alternatives.append(Pred(SUBJECT, keys))
        if match == ":is":
            notes.append(
                "Exchange looks for the text in the subject; Sieve required the whole subject to "
                "equal it"
            )
    if "from" in rest:
        rest.discard("from")
        alternatives.append(Pred(SENDER, keys))
        if match == ":is":
            notes.append(
                "Exchange looks for the text in the sender; Sieve required the whole From header "
                "to equal it"
            )
    recipients = rest & {"to", "cc"}
    if recipients:
        rest -= recipients
        alternatives.append(Pred(RECIPIENT, keys))
        if recipients != {"to", "cc"}:
            notes.append(
                f"Exchange looks in To and Cc; Sieve looked in {', '.join(sorted(recipients))} only"
            )
        if match == ":is":
            notes.append(
                "Exchange looks for the text in the recipients; Sieve required a whole header to "
                "equal it"
            )
    if rest:
        ordered = [n for n in names if n in rest]
        if match == ":is":
            strings = tuple(f"{_header_name(n)}: {k}" for n in ordered for k in keys)
            notes.append(
                "Exchange looks for the header line as text; it also matches a longer value"
            )
        else:
            strings = keys
            notes.append(
                f"Exchange looks for the text anywhere in the message header, not only in "
                f"{', '.join(_header_name(n) for n in ordered)}"
            )
        alternatives.append(Pred(HEADER, strings))
    return Literal(True, tuple(alternatives), note="; ".join(dict.fromkeys(notes)) or None)


def _exists(names: tuple[str, ...]) -> Literal:
    return Literal(
        True,
        (Pred(HEADER, tuple(f"{_header_name(n)}:" for n in names)),),
        note="Exchange looks for the header's name as text anywhere in the header",
    )


def _header_name(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def _address(node: SieveNode) -> Literal:
    match, case = _checked_match(node)
    part = next(
        (p for p in (":all", ":localpart", ":domain", ":user", ":detail") if node.tag(p)), ":all"
    )
    if part in (":user", ":detail"):
        raise Refused(f"Exchange rules cannot look at a sub-address ({part})")
    names = tuple(n.strip().lower() for n in _strings(node.args[0]))
    match, keys, pattern_note = _keys(node, match, _strings(node.args[1]))
    if match == "exists":
        return _exists(names)
    notes = [n for n in (case, pattern_note) if n]
    if part == ":domain":
        keys = tuple(f"@{k}" for k in keys)
        notes.append("Exchange looks for '@domain' in the address; it also matches a longer domain")
        match = ":contains"
    elif part == ":localpart":
        keys = tuple(f"{k}@" for k in keys)
        notes.append("Exchange looks for 'name@' in the address; it also matches a longer name")
        match = ":contains"
    alternatives: list[Pred] = []
    rest = set(names)
    senders = rest & {"from", "sender"}
    if senders:
        rest -= senders
        if match == ":is":
            alternatives.append(Pred(FROM, keys))
        else:
            alternatives.append(Pred(SENDER, keys))
            if not notes:
                notes.append("Exchange also looks in the sender's display name")
    recipients = rest & {"to", "cc"}
    if recipients:
        rest -= recipients
        alternatives.append(Pred(SENT_TO if match == ":is" else RECIPIENT, keys))
        if recipients != {"to", "cc"}:
            notes.append(
                f"Exchange looks in To and Cc; Sieve looked in {', '.join(sorted(recipients))} only"
            )
    if rest:
        raise Refused(
            f"Exchange rules can test the sender and recipient addresses, not "
            f"{', '.join(_header_name(n) for n in sorted(rest))}"
        )
    return Literal(True, tuple(alternatives), note="; ".join(dict.fromkeys(notes)) or None)


def _predicates(literals: Sequence[Literal]) -> tuple[RulePredicates, RulePredicates, list[str]]:
    """(conditions, exceptions, notes) of one AND of literals."""
    cond: dict[str, tuple[str, ...]] = {}
    exc: dict[str, list[str]] = {}
    low: int | None = None
    high: int | None = None
    notes: list[str] = []
    for lit in literals:
        if lit.note == "exists-many" and lit.positive:
            raise Refused("Exchange cannot require several headers to be present at once")
        if lit.note and lit.note != "exists-many":
            notes.append(lit.note)
        if not lit.alternatives:  # e.g. :matches "*": always true
            if lit.positive:
                continue
            raise Refused("the test can never be true")
        (pred,) = lit.alternatives if len(lit.alternatives) == 1 else (None,)
        if pred is None:
            # a negative literal with several alternatives: every one is an exception
            assert not lit.positive
            for alt in lit.alternatives:
                _add_exception(exc, alt)
            continue
        if pred.kind in (SIZE_MIN, SIZE_MAX):
            # not over N is at most N: sizes become a positive range
            is_min = (pred.kind == SIZE_MIN) == lit.positive
            if is_min:
                low = pred.size_kb if low is None else max(low, pred.size_kb)
            else:
                high = pred.size_kb if high is None else min(high, pred.size_kb)
            continue
        if lit.positive:
            known = cond.get(pred.kind)
            if known is not None and set(known) != set(pred.values):
                raise Refused(
                    f"Exchange cannot require two different texts in the {_KIND_WORDS[pred.kind]} "
                    "(a list of texts means any one of them)"
                )
            cond[pred.kind] = pred.values
        else:
            _add_exception(exc, pred)
    if low is not None and high is not None and low > high:
        raise Refused("the size range is empty")
    conditions = _build(cond, low, high)
    exceptions = _build({k: tuple(dict.fromkeys(v)) for k, v in exc.items()}, None, None)
    return conditions, exceptions, notes


def _add_exception(exc: dict[str, list[str]], pred: Pred) -> None:
    if pred.kind in (SIZE_MIN, SIZE_MAX):
        raise Refused("Exchange cannot combine these size tests")
    exc.setdefault(pred.kind, []).extend(pred.values)


def _build(texts: dict[str, tuple[str, ...]], low: int | None, high: int | None) -> RulePredicates:
    for kind, values in texts.items():
        if any(not v for v in values):
            raise Refused(f"Exchange refuses an empty text in the {_KIND_WORDS[kind]}")
    return RulePredicates(
        contains_subject=texts.get(SUBJECT, ()),
        contains_body=texts.get(BODY, ()),
        contains_header=texts.get(HEADER, ()),
        contains_sender=texts.get(SENDER, ()),
        contains_recipient=texts.get(RECIPIENT, ()),
        from_addresses=texts.get(FROM, ()),
        sent_to_addresses=texts.get(SENT_TO, ()),
        min_size_kb=low,
        max_size_kb=high,
    )


# --- actions -------------------------------------------------------------------------------


@dataclass
class _Block:
    folders: list[RuleFolder] = field(default_factory=list)
    copies: list[RuleFolder] = field(default_factory=list)
    keep: bool = False
    discard: bool = False
    redirects: list[str] = field(default_factory=list)
    redirect_copy: bool = True  # every redirect had :copy
    seen: bool = False
    categories: list[str] = field(default_factory=list)
    stop: bool = False
    vacation: SieveNode | None = None


class _Context:
    def __init__(self, naming: FolderNaming, options: FilterOptions, now: datetime) -> None:
        self.naming = naming
        self.options = options
        self.now = now

    def folder(self, mailbox: str) -> RuleFolder | None:
        """The target folder of a fileinto; None for the inbox itself."""
        name = mailbox
        prefix = self.options.prefix
        if prefix and name.casefold().startswith(prefix.casefold()):
            name = name[len(prefix) :]
        if "&" in name:
            with contextlib.suppress(ValueError):
                name = utf7.decode(name)
        path = (
            tuple(p for p in name.split(self.options.separator) if p)
            if self.options.separator
            else (name,)
        )
        if not path or (len(path) == 1 and path[0].upper() == "INBOX"):
            return None
        if path[0].upper() == "INBOX":
            path = ("INBOX", *path[1:])
        if self.naming.is_excluded(path):
            raise Refused(
                f"the folder {mailbox!r} is excluded from the migration ([target] exclude_folders)"
            )
        target = self.naming.target_path(path, folder_role(path))
        if target.anchor is FolderRole.INBOX and not target.names:
            return None
        return RuleFolder(target.anchor, target.names, source=mailbox)

    def is_internal(self, address: str) -> bool:
        parsed = email.utils.parseaddr(address)[1] or address
        domain = parsed.rpartition("@")[2].strip().rstrip(">").lower()
        return bool(domain) and domain in self.options.internal_domains


def _flags(value: object, block: _Block) -> None:
    for flag in _strings(value):
        for word in flag.split():
            lower = word.lower()
            if lower == "\\seen":
                block.seen = True
            elif lower == "\\flagged":
                raise Refused("Exchange rules cannot flag a message for follow-up (\\Flagged)")
            elif word.startswith("\\"):
                raise Refused(f"Exchange rules cannot set the flag {word}")
            else:
                name = THUNDERBIRD_LABELS.get(lower, word)
                if word.startswith("$") and lower not in THUNDERBIRD_LABELS:
                    raise Refused(f"Exchange rules cannot set the client keyword {word}")
                if name not in block.categories:
                    block.categories.append(name)


def _block(commands: Iterable[SieveNode], ctx: _Context) -> _Block:
    block = _Block()
    for cmd in commands:
        name = cmd.name
        if name == "fileinto":
            if ":flags" in cmd.tags:
                _flags(cmd.tags[":flags"], block)
            target = ctx.folder(str(cmd.args[-1]))
            if target is None:
                block.keep = True
            elif cmd.tag(":copy"):
                block.copies.append(target)
            else:
                block.folders.append(target)
        elif name == "keep":
            if ":flags" in cmd.tags:
                _flags(cmd.tags[":flags"], block)
            block.keep = True
        elif name == "discard":
            block.discard = True
        elif name == "redirect":
            address = str(cmd.args[-1]).strip()
            if not ctx.is_internal(address) and not ctx.options.forwarding:
                raise Refused(
                    f"forwarding to {address}, outside the organisation, is off in the plan "
                    "([settings] forwarding = false)"
                )
            block.redirects.append(address)
            if not cmd.tag(":copy"):
                block.redirect_copy = False
        elif name in ("addflag", "setflag"):
            if len(cmd.args) > 1:
                raise Refused(f"Exchange rules have no variables ({name} with a variable name)")
            _flags(cmd.args[-1], block)
        elif name == "removeflag":
            raise Refused("Exchange rules cannot remove flags (removeflag)")
        elif name == "stop":
            block.stop = True
            break  # nothing after stop runs
        elif name == "vacation":
            block.vacation = cmd
        elif name in ("if", "elsif", "else"):
            raise Refused(
                "Exchange rules cannot mix actions and conditions in one block "
                "(an if beside other actions)"
            )
        elif name in ("reject", "ereject"):
            raise Refused(
                f"Exchange rules cannot refuse a message with an error to its sender ({name})"
            )
        elif name == "notify":
            raise Refused("Exchange rules cannot send notifications (notify)")
        elif name in ("set", "global"):
            raise Refused(f"Exchange rules have no variables ({name})")
        elif name == "include":
            raise Refused("Exchange has no included scripts (include)")
        elif name in ("pipe", "filter", "execute"):
            raise Refused(f"Exchange rules cannot run programs ({name})")
        elif name in ("addheader", "deleteheader"):
            raise Refused(f"Exchange rules cannot change a message's header ({name})")
        else:
            raise Refused(f"Exchange rules have no action like {name}")
    return block


def _actions(block: _Block) -> tuple[RuleActions, list[str]]:
    notes: list[str] = []
    cancels_keep = (
        bool(block.folders) or block.discard or (block.redirects and not block.redirect_copy)
    )
    in_inbox = block.keep or not cancels_keep
    folders = list(dict.fromkeys(block.folders + block.copies))
    move = copy = None
    delete = False
    if in_inbox:
        if len(folders) > 1:
            raise Refused("Exchange can copy a message to one folder per rule")
        copy = folders[0] if folders else None
    elif folders:
        if len(folders) > 2:
            raise Refused(
                "Exchange can file a message into two folders per rule at most (one move, one copy)"
            )
        move = folders[0]
        copy = folders[1] if len(folders) > 1 else None
    else:
        delete = True
        if block.redirects:
            notes.append(
                "Exchange keeps the redirected message in Deleted Items; Sieve kept no copy"
            )
        else:
            notes.append("Exchange moves the message to Deleted Items; Sieve discarded it")
    actions = RuleActions(
        move_to=move,
        copy_to=copy,
        delete=delete,
        mark_as_read=block.seen,
        categories=tuple(block.categories),
        redirect_to=tuple(dict.fromkeys(block.redirects)),
        stop=block.stop,
    )
    return actions, notes


# --- statements ----------------------------------------------------------------------------


def translate(
    parsed: ParsedScript | None,
    naming: FolderNaming,
    options: FilterOptions,
    now: datetime | None = None,
) -> Translation:
    """The inbox rules, automatic reply and refusals for one account's active script."""
    if parsed is None:
        return Translation(script=None)
    name = parsed.script.name
    if parsed.error is not None:
        return Translation(
            script=name,
            refusals=(
                Refusal(
                    None, _excerpt(parsed.script.text), f"the script does not parse: {parsed.error}"
                ),
            ),
        )
    ctx = _Context(naming, options, now or datetime.now(UTC))
    rules: list[InboxRule] = []
    refusals: list[Refusal] = []
    reply: AutoReply | None = None
    translated = approximate = units = 0
    for index, chain in _chains(parsed.statements):
        text = "\n".join(s.text for s in chain)
        line = chain[0].line
        units += 1
        try:
            if _is_vacation(chain):
                if not options.vacation:
                    raise Refused(
                        "automatic replies are off in the plan ([settings] vacation = false)"
                    )
                if reply is not None:
                    raise Refused(
                        "Exchange has one automatic reply; an earlier vacation is carried"
                    )
                reply = _vacation(chain, index, ctx)
                notes = list(reply.notes)
            else:
                if not options.rules:
                    raise Refused("rules are off in the plan ([settings] rules = false)")
                made, notes = _chain_rules(chain, index, ctx)
                rules.extend(made)
        except Refused as exc:
            refusals.append(Refusal(index, text, str(exc), line))
            continue
        translated += 1
        if notes:
            approximate += 1
    return Translation(
        script=name,
        rules=tuple(rules),
        auto_reply=reply,
        refusals=tuple(refusals),
        statements=units,
        translated=translated,
        approximate=approximate,
    )


def _excerpt(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + "\n..."


def _chains(statements: Sequence[SieveStatement]) -> Iterable[tuple[int, list[SieveStatement]]]:
    """Top-level statements, an if with its elsif/else branches as one."""
    chain: list[SieveStatement] = []
    start = 0
    for index, statement in enumerate(statements):
        if statement.node.name in ("elsif", "else") and chain and chain[0].node.name == "if":
            chain.append(statement)
            continue
        if chain:
            yield start, chain
        chain, start = [statement], index
    if chain:
        yield start, chain


def _is_vacation(chain: list[SieveStatement]) -> bool:
    first = chain[0].node
    if first.name == "vacation":
        return True
    return any(c.name == "vacation" for s in chain for c in s.node.block)


def _chain_rules(
    chain: list[SieveStatement], index: int, ctx: _Context
) -> tuple[list[InboxRule], list[str]]:
    head = chain[0]
    if head.node.name not in ("if",):
        # an action on its own applies to every message
        rules, notes = _branch_rules(("true",), [], (head.node,), index, ctx)
    else:
        rules, notes = _if_chain([s.node for s in chain], [], index, ctx)
    base = _rule_name(head, index + 1)
    named = [
        replace(r, name=base if len(rules) == 1 else f"{base} ({i}/{len(rules)})")
        for i, r in enumerate(rules, 1)
    ]
    return named, notes


def _if_chain(
    nodes: Sequence[SieveNode], context: list[Formula], index: int, ctx: _Context
) -> tuple[list[InboxRule], list[str]]:
    """The rules of an if/elsif/else chain under `context` (the tests of the ifs around it):
    each branch excludes the branches before it, unless those stop."""
    rules: list[InboxRule] = []
    notes: list[str] = []
    prior: list[tuple[Formula, bool]] = []
    for node in nodes:
        test = _formula(node.tests[0]) if node.tests else ("true",)
        excluded = [("not", f) for f, stops in prior if not stops]
        made, branch_notes = _branch_rules(test, [*context, *excluded], node.block, index, ctx)
        rules.extend(made)
        notes.extend(branch_notes)
        prior.append((test, bool(made) and all(r.actions.stop for r in made)))
    return rules, notes


def _nested(block: Sequence[SieveNode]) -> tuple[list[list[SieveNode]], bool] | None:
    """A block made only of if-chains (and maybe a final stop): its chains and the stop."""
    nodes = list(block)
    stop = bool(nodes) and nodes[-1].name == "stop"
    if stop:
        nodes.pop()
    if (
        not nodes
        or nodes[0].name != "if"
        or any(n.name not in ("if", "elsif", "else") for n in nodes)
    ):
        return None
    chains: list[list[SieveNode]] = []
    for node in nodes:
        if node.name == "if":
            chains.append([node])
        else:
            chains[-1].append(node)
    return chains, stop


def _branch_rules(
    test: Formula,
    excluded: list[Formula],
    block_nodes: Sequence[SieveNode],
    index: int,
    ctx: _Context,
) -> tuple[list[InboxRule], list[str]]:
    nested = _nested(block_nodes)
    if nested is not None:
        # if A { if B {...} elsif C {...} } is the rules of the inner chains, each also under A
        chains, stop = nested
        context = [*excluded, test]
        rules: list[InboxRule] = []
        notes: list[str] = []
        for chain in chains:
            made, chain_notes = _if_chain(chain, context, index, ctx)
            rules.extend(made)
            notes.extend(chain_notes)
        if stop:
            made, chain_notes = _branch_rules(test, excluded, (SieveNode("stop"),), index, ctx)
            rules.extend(made)
            notes.extend(chain_notes)
        if len(rules) > MAX_RULES_PER_STATEMENT:
            raise Refused(
                f"the statement would need more than {MAX_RULES_PER_STATEMENT} Exchange rules"
            )
        return rules, notes
    block = _block(block_nodes, ctx)
    if block.vacation is not None:
        raise Refused("Exchange automatic replies cannot depend on a condition other than dates")
    actions, action_notes = _actions(block)
    if actions.is_empty():
        return [], []
    formula: Formula = ("and", [*excluded, test]) if excluded else test
    disjuncts = _dnf(formula)
    if not disjuncts:
        return [], ["the condition is never true"]
    rules = []
    notes = list(action_notes)
    earlier: list[list[Literal]] = []
    for part in disjuncts:
        conditions, exceptions, cond_notes = _predicates(part)
        if earlier and not actions.stop:
            # the message must not be handled twice: exclude what earlier parts matched
            extra: dict[str, list[str]] = {}
            for previous in earlier:
                if len(previous) != 1 or not previous[0].positive:
                    raise Refused(
                        "Exchange would need to exclude a combined test from the next rule "
                        "(an 'anyof' of 'allof's without stop)"
                    )
                for alt in previous[0].alternatives:
                    if alt.kind in (SIZE_MIN, SIZE_MAX):
                        raise Refused("Exchange cannot exclude a size test from the next rule")
                    extra.setdefault(alt.kind, []).extend(alt.values)
            exceptions = _merge(exceptions, extra)
        earlier.append(part)
        if cond_notes and (actions.delete or actions.redirect_to):
            # a rule that deletes or forwards must match exactly what it did in Sieve
            raise Refused(
                f"not carried: {cond_notes[0]}, and the rule "
                f"{'forwards' if actions.redirect_to else 'deletes'} messages"
            )
        notes.extend(cond_notes)
        rules.append(
            InboxRule(
                name="",
                statement=index,
                conditions=conditions,
                exceptions=exceptions,
                actions=actions,
                notes=tuple(dict.fromkeys(cond_notes + action_notes)),
            )
        )
    return rules, list(dict.fromkeys(notes))


def _merge(exceptions: RulePredicates, extra: dict[str, list[str]]) -> RulePredicates:
    fields_by_kind = {
        SUBJECT: "contains_subject",
        BODY: "contains_body",
        HEADER: "contains_header",
        SENDER: "contains_sender",
        RECIPIENT: "contains_recipient",
        FROM: "from_addresses",
        SENT_TO: "sent_to_addresses",
    }
    changes: dict[str, Any] = {}
    for kind, values in extra.items():
        attr = fields_by_kind[kind]
        changes[attr] = tuple(dict.fromkeys((*getattr(exceptions, attr), *values)))
    return replace(exceptions, **changes)


def _rule_name(statement: SieveStatement, number: int) -> str:
    name = statement.label or f"rule {number} (line {statement.line})"
    name = " ".join(name.split())
    return name[:MAX_NAME]


# --- vacation ------------------------------------------------------------------------------


def _vacation(chain: list[SieveStatement], index: int, ctx: _Context) -> AutoReply:
    head = chain[0].node
    start = end = None
    if head.name == "vacation":
        action = head
    else:
        if len(chain) > 1:
            raise Refused(
                "Exchange automatic replies cannot depend on a condition with elsif/else branches"
            )
        action = _only_vacation(head.block)
    notes: list[str] = []
    if head.name != "vacation":
        start, end = _date_range(head.tests[0] if head.tests else SieveNode("true"), ctx, notes)
    if action.tag(":mime"):
        message = _mime_text(str(action.args[-1]))
        notes.append("the reply was a MIME body; its text part is carried")
    else:
        message = str(action.args[-1])
    if not message.strip():
        raise Refused("the vacation message is empty")
    subject = action.tags.get(":subject")
    days = action.tags.get(":days")
    if subject:
        notes.append(f"Exchange writes its own subject ('Automatic reply: ...'), not {subject!r}")
    if days is not None or action.tag(":seconds"):
        notes.append(
            "Exchange replies once to each sender while the reply is on, not every "
            f"{days or action.tags.get(':seconds')} {'days' if days is not None else 'seconds'}"
        )
    expired = end is not None and end <= ctx.now
    if expired:
        notes.append(f"the vacation ended on {end:%Y-%m-%d %H:%M} UTC: automatic replies stay off")
    return AutoReply(
        message=message,
        start=start,
        end=end,
        subject=str(subject) if subject else None,
        days=int(str(days)) if days is not None and str(days).isdigit() else None,
        statement=index,
        expired=expired,
        notes=tuple(notes),
    )


def _only_vacation(block: Sequence[SieveNode]) -> SieveNode:
    actions = [c for c in block if c.name != "stop"]
    if len(actions) != 1 or actions[0].name != "vacation":
        raise Refused(
            "Exchange automatic replies cannot be combined with other actions under a condition"
        )
    return actions[0]


# Headers a vacation guard tests to stay silent to lists and bulk mail (Horde Ingo writes such a
# guard around every vacation). Exchange has its own, narrower guard: the guard is dropped and the
# difference noted rather than the whole vacation refused.
_LIST_HEADERS = {
    "precedence",
    "mailing-list",
    "auto-submitted",
    "x-auto-response-suppress",
    "to",
    "from",
}


def _is_list_guard(test: SieveNode) -> bool:
    if test.name != "not" or not test.tests:
        return False
    inner = test.tests[0]
    if inner.name == "exists":
        names = {n.lower() for n in _strings(inner.args[0])} if inner.args else set()
        return bool(names) and all(n.startswith("list-") or n in _LIST_HEADERS for n in names)
    if inner.name == "header" and len(inner.args) == 2:
        names = {n.lower() for n in _strings(inner.args[0])}
        return names <= {"precedence", "auto-submitted", "to", "from"} and (
            "precedence" in names
            or "auto-submitted" in names
            or all(
                "multiple recipients" in k.lower()
                or "owner-" in k.lower()
                or "-request" in k.lower()
                for k in _strings(inner.args[1])
            )
        )
    return False


def _date_range(
    test: SieveNode, ctx: _Context, notes: list[str] | None = None
) -> tuple[datetime | None, datetime | None]:
    tests = test.tests if test.name == "allof" else (test,)
    start = end = None
    for t in tests:
        if t.name == "true":
            continue
        if _is_list_guard(t):
            if notes is not None:
                note = (
                    "the script kept the reply from mailing lists and bulk mail; Exchange holds "
                    "it back from mail marked Precedence: bulk/list or X-Auto-Response-Suppress, "
                    "but may answer list mail that carries only List-* headers"
                )
                if note not in notes:
                    notes.append(note)
            continue
        if t.name != "currentdate":
            raise Refused(
                "Exchange automatic replies can depend on a date range only "
                f"(currentdate), not on {t.name}"
            )
        relation = t.tags.get(":value")
        if relation is None or len(t.args) < 2:
            raise Refused(
                'Exchange automatic replies take a date range (currentdate :value "ge"/"le")'
            )
        part, keys = str(t.args[0]).lower(), _strings(t.args[1])
        if len(keys) != 1:
            raise Refused("a vacation date range with several dates")
        moment, whole_day = _moment(part, keys[0], t.tags.get(":zone"))
        if relation in ("ge", "gt"):
            start = moment + (timedelta(days=1) if relation == "gt" and whole_day else timedelta())
        elif relation in ("le", "lt"):
            end = moment + (timedelta(days=1) if relation == "le" and whole_day else timedelta())
        else:
            raise Refused(
                f"Exchange automatic replies take a date range, not currentdate :value {relation!r}"
            )
    if start is not None and end is not None and start >= end:
        raise Refused("the vacation's date range is empty")
    return start, end


def _moment(part: str, text: str, zone: object) -> tuple[datetime, bool]:
    offset = _zone(zone)
    try:
        if part == "date":
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=offset).astimezone(UTC), True
        if part == "iso8601":
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=offset)
            return moment.astimezone(UTC), False
    except ValueError:
        raise Refused(f"the vacation date {text!r} is not a {part}") from None
    raise Refused(f"Exchange automatic replies take whole dates or times, not currentdate {part!r}")


def _zone(zone: object) -> timezone:
    if zone is None:
        return UTC
    text = str(zone)
    found = re.fullmatch(r"([+-])(\d\d)(\d\d)", text)
    if not found:
        raise Refused(f"the time zone {text!r} is not +hhmm/-hhmm")
    sign = 1 if found.group(1) == "+" else -1
    return timezone(sign * timedelta(hours=int(found.group(2)), minutes=int(found.group(3))))


def _mime_text(entity: str) -> str:
    message = email.message_from_string(entity, policy=email.policy.default)
    # the default policy makes an EmailMessage (get_body, get_content); typeshed says Message
    part = (
        message.get_body(preferencelist=("plain",)) if isinstance(message, EmailMessage) else None
    )
    if not isinstance(part, EmailMessage):
        raise Refused("the MIME vacation reply has no text part")
    return str(part.get_content())
