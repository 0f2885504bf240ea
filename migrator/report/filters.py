"""What `migrator filters` shows and writes: the summary on the terminal, and per account a
JSON file and a text file with every rule, the automatic reply, what was not carried and why,
and the Exchange Online PowerShell lines (New-InboxRule, Set-MailboxAutoReplyConfiguration)
that create the same rules where EWS cannot (an IMAP target)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.commands.filters import AccountFilters, FiltersSummary
from migrator.model.filters import FILTER_PROBLEMS
from migrator.model.sieve import (
    RULE_MARKER,
    AutoReply,
    InboxRule,
    RuleFolder,
    RulePredicates,
    Translation,
)
from migrator.report.console import safe

MARKER = RULE_MARKER

# RulePredicates field -> (EWS element, New-InboxRule parameter, Except parameter)
_PREDICATES = (
    (
        "contains_subject",
        "ContainsSubjectStrings",
        "SubjectContainsWords",
        "ExceptIfSubjectContainsWords",
    ),
    ("contains_body", "ContainsBodyStrings", "BodyContainsWords", "ExceptIfBodyContainsWords"),
    (
        "contains_header",
        "ContainsHeaderStrings",
        "HeaderContainsWords",
        "ExceptIfHeaderContainsWords",
    ),
    (
        "contains_sender",
        "ContainsSenderStrings",
        "FromAddressContainsWords",
        "ExceptIfFromAddressContainsWords",
    ),
    (
        "contains_recipient",
        "ContainsRecipientStrings",
        "RecipientAddressContainsWords",
        "ExceptIfRecipientAddressContainsWords",
    ),
    ("from_addresses", "FromAddresses", "From", "ExceptIfFrom"),
    ("sent_to_addresses", "SentToAddresses", "SentTo", "ExceptIfSentTo"),
)


TABLE_ROWS = 50  # a campaign's thousands of accounts: the table shows those that need a look


def render_summary(console: Console, summary: FiltersSummary) -> None:
    shown = summary.accounts
    if len(shown) > TABLE_ROWS:
        shown = [
            a
            for a in summary.accounts
            if a.outcome in FILTER_PROBLEMS or (a.translation and a.translation.refused)
        ][:TABLE_ROWS]
    table = Table(
        title="Sieve filters"
        + (
            ""
            if shown is summary.accounts
            else f" (accounts with something not carried or failed, at most {TABLE_ROWS})"
        ),
        show_lines=False,
    )
    for column in (
        "account",
        "outcome",
        "statements",
        "carried",
        "with a note",
        "not carried",
        "rules",
        "reply",
    ):
        table.add_column(
            column,
            justify="right"
            if column in ("statements", "carried", "with a note", "not carried", "rules")
            else "left",
        )
    for a in shown:
        t = a.translation
        table.add_row(
            safe(a.address),
            a.outcome,
            *(
                str(getattr(t, f)) if t else "-"
                for f in ("statements", "translated", "approximate", "refused")
            ),
            str(len(t.rules)) if t else "-",
            a.auto_reply or "-",
        )
    if shown:
        console.print(table)
    totals = summary.as_json()
    console.print(
        f"{totals['accounts']:,} accounts: {totals['applied']:,} applied, {totals['reported']:,} "
        f"reported, {totals['none']:,} without Sieve, {totals['checked']:,} checked, "
        f"{totals['broken']:,} with a script that does not parse, {totals['failed']:,} failed; "
        f"{totals['translated']:,} of {totals['statements']:,} statements carried "
        f"({totals['approximate']:,} with a note), {totals['refused']:,} not carried"
    )
    for a in [a for a in summary.accounts if a.error][:TABLE_ROWS]:
        if a.error:
            console.print(
                f"[red]{safe(a.address)}[/red]: {safe(a.error, 400)}"
                + (f"\n  hint: {safe(a.error_hint, 400)}" if a.error_hint else "")
            )


def account_report(a: AccountFilters) -> dict[str, Any]:
    """The JSON report of one account."""
    t = a.translation
    out: dict[str, Any] = {
        "account": a.address,
        "mailbox": a.target_address,
        "outcome": a.outcome,
        "origin": a.origin,
        "error": a.error,
    }
    if t is None:
        return out
    out.update(
        {
            "script": t.script,
            "statements": t.statements,
            "translated": t.translated,
            "approximate": t.approximate,
            "refused": t.refused,
            "rules": [_rule_json(r, n) for n, r in enumerate(t.rules, 1)],
            "auto_reply": _reply_json(t.auto_reply),
            "not_carried": [
                {"statement": r.statement, "line": r.line, "reason": r.reason, "sieve": r.text}
                for r in t.refusals
            ],
            "powershell": powershell(a.target_address, t),
        }
    )
    return out


def _predicates_json(p: RulePredicates) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, element, _, _ in _PREDICATES:
        values = getattr(p, attr)
        if values:
            out[element] = list(values)
    if p.min_size_kb is not None or p.max_size_kb is not None:
        out["WithinSizeRange"] = {"MinimumSize": p.min_size_kb, "MaximumSize": p.max_size_kb}
    return out


def _rule_json(rule: InboxRule, priority: int) -> dict[str, Any]:
    a = rule.actions
    actions: dict[str, Any] = {}
    if a.move_to:
        actions["MoveToFolder"] = a.move_to.display()
    if a.copy_to:
        actions["CopyToFolder"] = a.copy_to.display()
    if a.delete:
        actions["Delete"] = True
    if a.mark_as_read:
        actions["MarkAsRead"] = True
    if a.categories:
        actions["AssignCategories"] = list(a.categories)
    if a.redirect_to:
        actions["RedirectToRecipients"] = list(a.redirect_to)
    if a.stop:
        actions["StopProcessingRules"] = True
    return {
        "name": MARKER + rule.name,
        "priority": priority,
        "statement": rule.statement,
        "conditions": _predicates_json(rule.conditions),
        "exceptions": _predicates_json(rule.exceptions),
        "actions": actions,
        "notes": list(rule.notes),
    }


def _reply_json(reply: AutoReply | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {
        "state": "expired"
        if reply.expired
        else ("scheduled" if reply.start or reply.end else "enabled"),
        "start": reply.start.isoformat() if reply.start else None,
        "end": reply.end.isoformat() if reply.end else None,
        "message": reply.message,
        "notes": list(reply.notes),
    }


# --- PowerShell ------------------------------------------------------------------------------


def _ps(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ps_list(values: tuple[str, ...]) -> str:
    return ",".join(_ps(v) for v in values)


_WELL_KNOWN = {
    "inbox": "Inbox",
    "sent": "Sent Items",
    "drafts": "Drafts",
    "trash": "Deleted Items",
    "junk": "Junk Email",
    "archive": "Archive",
}


def _ps_folder(mailbox: str, folder: RuleFolder) -> str:
    parts = (
        [_WELL_KNOWN.get(folder.anchor.value, folder.anchor.value)] if folder.anchor else []
    ) + list(folder.names)
    return _ps(f"{mailbox}:\\" + "\\".join(parts))


def powershell(mailbox: str, t: Translation) -> list[str]:
    """Exchange Online PowerShell that creates the same rules and automatic reply."""
    lines: list[str] = []
    for n, rule in enumerate(t.rules, 1):
        parts = [
            f"New-InboxRule -Mailbox {_ps(mailbox)} -Name {_ps(MARKER + rule.name)} -Priority {n}"
        ]
        for p, prefix in ((rule.conditions, 2), (rule.exceptions, 3)):
            for entry in _PREDICATES:
                values = getattr(p, entry[0])
                if values:
                    parts.append(f"-{entry[prefix]} {_ps_list(values)}")
            size = "WithinSizeRange" if prefix == 2 else "ExceptIfWithinSizeRange"
            if p.min_size_kb is not None:
                parts.append(f"-{size}Minimum {p.min_size_kb}KB")
            if p.max_size_kb is not None:
                parts.append(f"-{size}Maximum {p.max_size_kb}KB")
        a = rule.actions
        if a.move_to:
            parts.append(f"-MoveToFolder {_ps_folder(mailbox, a.move_to)}")
        if a.copy_to:
            parts.append(f"-CopyToFolder {_ps_folder(mailbox, a.copy_to)}")
        if a.delete:
            parts.append("-DeleteMessage $true")
        if a.mark_as_read:
            parts.append("-MarkAsRead $true")
        if a.categories:
            parts.append(f"-ApplyCategory {_ps_list(a.categories)}")
        if a.redirect_to:
            parts.append(f"-RedirectTo {_ps_list(a.redirect_to)}")
        parts.append(f"-StopProcessingRules ${'true' if a.stop else 'false'}")
        lines.append(" ".join(parts))
    reply = t.auto_reply
    if reply is not None and not reply.expired:
        message = _ps(reply.message.rstrip("\n"))
        state = "Scheduled" if reply.start or reply.end else "Enabled"
        line = (
            f"Set-MailboxAutoReplyConfiguration -Identity {_ps(mailbox)} -AutoReplyState {state} "
            f"-ExternalAudience All -InternalMessage {message} -ExternalMessage {message}"
        )
        if reply.start:
            line += f" -StartTime {_ps(reply.start.strftime('%Y-%m-%dT%H:%M:%SZ'))}"
        if reply.end:
            line += f" -EndTime {_ps(reply.end.strftime('%Y-%m-%dT%H:%M:%SZ'))}"
        lines.append(line)
    return lines


# --- files ---------------------------------------------------------------------------------


def account_text(a: AccountFilters) -> str:
    """The human-readable report of one account."""
    t = a.translation
    out = [f"Sieve filters of {a.address} (Exchange mailbox {a.target_address}): {a.outcome}"]
    if a.origin:
        out.append(f"script: {a.origin}")
    if a.error:
        out.append(f"error: {a.error}")
    if t is None:
        return "\n".join(out) + "\n"
    out.append(
        f"{t.translated} of {t.statements} statements carried ({t.approximate} with a note), "
        f"{t.refused} not carried; {len(t.rules)} Exchange rules"
    )
    for n, rule in enumerate(t.rules, 1):
        data = _rule_json(rule, n)
        out.append("")
        out.append(f"Rule {n}: {data['name']}")
        for key in ("conditions", "exceptions", "actions"):
            for name, value in data[key].items():
                out.append(f"  {key[:-1] if key != 'actions' else 'action'}: {name} = {value}")
        for note in rule.notes:
            out.append(f"  note: {note}")
    if t.auto_reply is not None:
        r = _reply_json(t.auto_reply)
        assert r is not None
        out.append("")
        out.append(
            f"Automatic reply: {r['state']}"
            + (f" from {r['start']}" if r["start"] else "")
            + (f" until {r['end']}" if r["end"] else "")
        )
        out.extend(f"  | {line}" for line in t.auto_reply.message.rstrip("\n").split("\n"))
        out.extend(f"  note: {note}" for note in r["notes"])
    if t.refusals:
        out.append("")
        out.append("Not carried:")
        for refusal in t.refusals:
            where = f"line {refusal.line}" if refusal.line else "the whole script"
            out.append(f"- {where}: {refusal.reason}")
            out.extend(f"    {line}" for line in refusal.text.split("\n"))
    lines = powershell(a.target_address, t)
    if lines:
        out.append("")
        out.append("Exchange Online PowerShell (Connect-ExchangeOnline first):")
        out.extend(lines)
    return "\n".join(out) + "\n"


def _file_name(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", address)[:200] or "_"


def write_reports(directory: Path, summary: FiltersSummary) -> list[Path]:
    """One ADDRESS.json and ADDRESS.txt per account, and summary.json; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for a in summary.accounts:
        base = directory / _file_name(a.address)
        json_path = base.with_name(base.name + ".json")
        text_path = base.with_name(base.name + ".txt")
        json_path.write_text(
            json.dumps(account_report(a), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        text_path.write_text(account_text(a), encoding="utf-8")
        written += [json_path, text_path]
    total = directory / "summary.json"
    total.write_text(json.dumps(summary.as_json(), indent=2) + "\n", encoding="utf-8")
    written.append(total)
    return written
