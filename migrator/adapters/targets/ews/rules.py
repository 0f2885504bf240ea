"""Inbox rules and automatic replies in an Exchange mailbox over EWS (exchangelib's rule API).

Migrator's rules are named with MARKER in front ("[Sieve] Lists"): a new set replaces exactly
the rules so named (and those whose ids the state recorded), never a rule the user made in
Outlook. The old rules are deleted and the new ones created in ONE UpdateInboxRules request,
which Exchange applies as a whole (one save of the mailbox's rule table; a request that fails
validation or the rules quota changes nothing): a kill at any instant leaves the old set or the
new one. The new rules come after the user's own, in the script's order.

exchangelib writes WithinSizeRange with an extra SizeRange element the schema does not have;
the classes below write it as types.xsd says (RulePredicateSizeRangeType, both bounds optional).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchangelib import Account
from exchangelib.errors import ResponseMessageError
from exchangelib.fields import EWSElementField, IntegerField
from exchangelib.properties import (
    Actions,
    Conditions,
    CreateRuleOperation,
    DeleteRuleOperation,
    Exceptions,
    Fields,
    Rule,
    WithinSizeRange,
)
from exchangelib.services.inbox_rules import GetInboxRules, UpdateInboxRules
from exchangelib.settings import OofSettings
from exchangelib.util import MNS, TNS, add_xml_child, create_element, set_xml_value

from migrator.model.errors import PermanentError
from migrator.model.sieve import RULE_MARKER, AutoReply, InboxRule, RuleFolder, RulePredicates

from ..reply import reply_html
from .folders import MailboxFolders

MARKER = RULE_MARKER
RULES_QUOTA_HINT = (
    "the mailbox's rules are over Exchange's rules quota (64 KB by default): raise it with "
    "Set-Mailbox <user> -RulesQuota 256KB, or trim the user's Sieve script"
)


class OpenSizeRange(WithinSizeRange):
    """t:WithinSizeRange with MinimumSize/MaximumSize directly inside, each optional."""

    ELEMENT_NAME = "WithinSizeRange"
    NAMESPACE = TNS
    FIELDS = Fields(
        IntegerField("minimum_size", field_uri="MinimumSize"),
        IntegerField("maximum_size", field_uri="MaximumSize"),
    )


def _with_open_size(cls: Any) -> Any:
    fields = Fields(
        *[
            EWSElementField("within_size_range", value_cls=OpenSizeRange)
            if f.name == "within_size_range"
            else f
            for f in cls.FIELDS
        ]
    )
    return type(cls.__name__, (cls,), {"FIELDS": fields, "__module__": __name__})


RuleConditions = _with_open_size(Conditions)
RuleExceptions = _with_open_size(Exceptions)


class RuleRefused(PermanentError):
    """Exchange refused the new rule set; nothing changed. `problems` name rule and field."""

    def __init__(
        self, message: str, problems: Sequence[str] = (), *, reason: str, hint: str | None = None
    ):
        super().__init__(message, reason=reason, hint=hint)
        self.problems = list(problems)


class UpdateRules(UpdateInboxRules):
    """UpdateInboxRules with several operations in one request (exchangelib sends one)."""

    def call(self, operations: Sequence[Any], remove_outlook_rule_blob: bool = False) -> Any:  # type: ignore[override]
        self.problems: list[tuple[int, str, str, str]] = []
        return self._get_elements(payload=self.payload(operations, remove_outlook_rule_blob))

    def payload(self, operations: Sequence[Any], remove_outlook_rule_blob: bool = False) -> Any:
        # RemoveOutlookRuleBlob false: Outlook's client-side rules (kept only in that blob)
        # must survive; EWS would delete them by default
        payload = create_element(f"m:{self.SERVICE_NAME}")
        add_xml_child(payload, "m:RemoveOutlookRuleBlob", remove_outlook_rule_blob)
        ops = create_element("m:Operations")
        for op in operations:
            set_xml_value(ops, op, version=self.account.version)
        payload.append(ops)
        return payload

    def _get_element_container(self, message: Any, name: Any = None) -> Any:
        errors_elem = message.find(f"{{{MNS}}}RuleOperationErrors")
        if errors_elem is not None:
            for op_error in errors_elem:
                index = int(op_error.findtext(f"{{{TNS}}}OperationIndex") or -1)
                for err in op_error.iter(f"{{{TNS}}}Error"):
                    self.problems.append(
                        (
                            index,
                            err.findtext(f"{{{TNS}}}FieldURI") or "",
                            err.findtext(f"{{{TNS}}}ErrorCode") or "",
                            err.findtext(f"{{{TNS}}}FieldValue") or "",
                        )
                    )
        return super()._get_element_container(message, name)


@dataclass(frozen=True)
class AppliedRules:
    rule_ids: tuple[str, ...]  # the new rules' ids, in order
    replaced: int  # migrator's rules deleted
    kept: int  # the user's own rules, untouched


def is_ours(rule: Rule, known_ids: Collection[str]) -> bool:
    return bool((rule.display_name or "").startswith(MARKER) or (rule.id and rule.id in known_ids))


class RuleWriter:
    """Rules and automatic replies of one mailbox; built by EwsTarget.rules()."""

    def __init__(
        self,
        account: Account,
        folders: MailboxFolders,
        where: str,
        call: Any,
        remove_outlook_blob: bool = False,
    ) -> None:
        self.account = account
        self.remove_outlook_blob = remove_outlook_blob
        self.folders = folders
        self.where = where
        self._call = call

    def current(self) -> list[Rule]:
        return self._call(
            self.where,
            lambda: [
                r
                for r in GetInboxRules(account=self.account).call(
                    mailbox=self.account.primary_smtp_address
                )
                if not isinstance(r, Exception)
            ],
        )

    def replace(self, rules: Sequence[InboxRule], known_ids: Collection[str] = ()) -> AppliedRules:
        existing = self.current()
        ours = [r for r in existing if is_ours(r, known_ids)]
        others = [r for r in existing if not is_ours(r, known_ids)]
        built = [self._rule(rule, len(others) + n) for n, rule in enumerate(rules, 1)]
        operations: list[Any] = [DeleteRuleOperation(id=r.id) for r in ours]
        operations += [CreateRuleOperation(rule=r) for r in built]
        if operations:
            self._update(operations, rules, len(ours))
        if not built:
            return AppliedRules((), len(ours), len(others))
        after = self.current()
        names = {MARKER + r.name for r in rules}
        created = [
            r for r in after if r.display_name in names and r.id not in {o.id for o in others}
        ]
        created.sort(key=lambda r: r.priority or 0)
        return AppliedRules(tuple(r.id for r in created), len(ours), len(others))

    def _update(self, operations: list[Any], rules: Sequence[InboxRule], deleted: int) -> None:
        service = UpdateRules(account=self.account)

        def send() -> None:
            for answer in service.call(operations, self.remove_outlook_blob):
                if isinstance(answer, Exception):
                    raise answer

        try:
            self._call(self.where, send)
        except PermanentError as exc:
            cause = exc.__cause__
            code = type(cause).__name__ if isinstance(cause, ResponseMessageError) else ""
            if code == "ErrorOutlookRuleBlobExists":
                raise RuleRefused(
                    f"{self.where}: Outlook keeps client-side rules in this mailbox; updating the "
                    "rules over EWS would delete them",
                    reason="outlook-rules",
                    hint="create the rules from the report (--out, PowerShell), or set [settings] "
                    "remove_outlook_rules = true to let Exchange drop Outlook's client-side rules",
                ) from exc
            if code == "ErrorRulesOverQuota":
                raise RuleRefused(
                    f"{self.where}: Exchange refused the rules: {cause}",
                    reason="rules-quota",
                    hint=RULES_QUOTA_HINT,
                ) from exc
            if service.problems:
                described = []
                for index, field, error, value in service.problems:
                    rule = (
                        rules[index - deleted].name
                        if 0 <= index - deleted < len(rules)
                        else f"operation {index}"
                    )
                    described.append(f"{rule}: {field} {error}" + (f" ({value})" if value else ""))
                raise RuleRefused(
                    f"{self.where}: Exchange refused the rules: " + "; ".join(described),
                    described,
                    reason="rules-invalid",
                    hint="see the rule named; the old rules are unchanged",
                ) from exc
            raise

    def _rule(self, rule: InboxRule, priority: int) -> Rule:
        actions = rule.actions
        return Rule(
            display_name=(MARKER + rule.name)[:255],
            priority=priority,
            is_enabled=True,
            conditions=_predicates(RuleConditions, rule.conditions),
            exceptions=_predicates(RuleExceptions, rule.exceptions),
            actions=Actions(
                assign_categories=list(actions.categories) or None,
                copy_to_folder=self._folder(actions.copy_to),
                delete=True if actions.delete else None,
                mark_as_read=True if actions.mark_as_read else None,
                move_to_folder=self._folder(actions.move_to),
                redirect_to_recipients=list(actions.redirect_to) or None,
                stop_processing_rules=True if actions.stop else None,
            ),
        )

    def _folder(self, folder: RuleFolder | None) -> Any:
        if folder is None:
            return None

        def ensure() -> Any:
            anchor = self.folders.anchor(folder.anchor)
            folder_found, _empty, _names = self.folders.ensure_path(anchor, folder.names)
            return folder_found

        return self._call(f"{self.where}, folder {folder.display()!r}", ensure)

    # --- automatic replies ----------------------------------------------------------------

    def auto_reply(self) -> OofSettings:
        return self._call(self.where, lambda: self.account.oof_settings)

    def set_auto_reply(self, reply: AutoReply) -> None:
        body = reply_html(reply.message)
        if reply.start is not None or reply.end is not None:
            start = reply.start or datetime.now(UTC)
            end = reply.end or datetime(
                start.year + 10, start.month, min(start.day, 28), tzinfo=UTC
            )
            settings = OofSettings(
                state=OofSettings.SCHEDULED,
                external_audience="All",
                start=start,
                end=end,
                internal_reply=body,
                external_reply=body,
            )
        else:
            settings = OofSettings(
                state=OofSettings.ENABLED,
                external_audience="All",
                internal_reply=body,
                external_reply=body,
            )

        def send() -> None:
            self.account.oof_settings = settings

        self._call(self.where, send)

    def disable_auto_reply(self) -> None:
        def send() -> None:
            self.account.oof_settings = OofSettings(state=OofSettings.DISABLED)

        self._call(self.where, send)


def _predicates(cls: Any, p: RulePredicates) -> Any:
    if p.is_empty():
        return None
    size = None
    if p.min_size_kb is not None or p.max_size_kb is not None:
        size = OpenSizeRange(minimum_size=p.min_size_kb, maximum_size=p.max_size_kb)
    return cls(
        contains_body_strings=list(p.contains_body) or None,
        contains_header_strings=list(p.contains_header) or None,
        contains_recipient_strings=list(p.contains_recipient) or None,
        contains_sender_strings=list(p.contains_sender) or None,
        contains_subject_strings=list(p.contains_subject) or None,
        from_addresses=list(p.from_addresses) or None,
        sent_to_addresses=list(p.sent_to_addresses) or None,
        within_size_range=size,
    )


def rule_writer(target: Any, mailbox: str, *, remove_outlook_blob: bool = False) -> RuleWriter:
    """The rules and automatic replies of `mailbox` through an EwsTarget's connection."""
    return RuleWriter(
        target._account(mailbox),
        target._mailbox_folders(mailbox),
        f"mailbox {mailbox}",
        target._call,
        remove_outlook_blob,
    )
