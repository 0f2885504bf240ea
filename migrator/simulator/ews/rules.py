"""Inbox rules and automatic replies: GetInboxRules, UpdateInboxRules, GetUserOofSettings and
SetUserOofSettings, as Microsoft documents them (docs/ews-simulator.md cites the pages).

- UpdateInboxRules applies its operations as one change: every operation is checked first and,
  if any fails, the answer is ErrorInboxRulesValidationError with one RuleOperationError per
  failed operation (OperationIndex, then FieldURI / ErrorCode / ErrorMessage / FieldValue for
  each problem) and no rule changes. A rule set over the mailbox's rules quota (64 KB by default,
  Exchange's default RulesQuota) is refused whole with ErrorRulesOverQuota.
- Priorities: a rule created or set at priority p takes place p; the others move down; the
  simulator keeps them numbered 1..n, as GetInboxRules shows them in Exchange.
- The quota counts the UTF-8 size of each rule's XML: Exchange counts its own (MAPI) form of a
  rule, which is not documented; the order of magnitude is what matters for tests.
- Rules are stored, never run: migrated messages arrive by CreateItem, not by delivery.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lxml import etree

from . import ids, soap
from .soap import M_NS, T_NS, EwsError

if TYPE_CHECKING:
    from .operations import Operations, RequestContext
    from .store import MailboxRow, Store

_T = f"{{{T_NS}}}"
_M = f"{{{M_NS}}}"

DEFAULT_RULES_QUOTA = (
    64 * 1024
)  # Exchange's default RulesQuota (Set-Mailbox -RulesQuota, max 256 KB)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),
    position INTEGER NOT NULL,
    body TEXT NOT NULL  -- the t:Rule element without RuleId and Priority
);
-- mailboxes whose Outlook keeps client-side rules in the rules blob (a test sets it)
CREATE TABLE IF NOT EXISTS outlook_rule_blobs (
    mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes(id)
);
CREATE TABLE IF NOT EXISTS oof_settings (
    mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes(id),
    state TEXT NOT NULL,
    audience TEXT NOT NULL,
    start TEXT,
    end TEXT,
    internal TEXT NOT NULL,
    external TEXT NOT NULL
);
"""

_PREDICATE_ORDER = (
    "Categories",
    "ContainsBodyStrings",
    "ContainsHeaderStrings",
    "ContainsRecipientStrings",
    "ContainsSenderStrings",
    "ContainsSubjectOrBodyStrings",
    "ContainsSubjectStrings",
    "FlaggedForAction",
    "FromAddresses",
    "FromConnectedAccounts",
    "HasAttachments",
    "Importance",
    "IsApprovalRequest",
    "IsAutomaticForward",
    "IsAutomaticReply",
    "IsEncrypted",
    "IsMeetingRequest",
    "IsMeetingResponse",
    "IsNDR",
    "IsPermissionControlled",
    "IsReadReceipt",
    "IsSigned",
    "IsVoicemail",
    "ItemClasses",
    "MessageClassifications",
    "NotSentToMe",
    "SentCcMe",
    "SentOnlyToMe",
    "SentToAddresses",
    "SentToMe",
    "SentToOrCcMe",
    "Sensitivity",
    "WithinDateRange",
    "WithinSizeRange",
)
_STRING_LISTS = {
    "Categories",
    "ContainsBodyStrings",
    "ContainsHeaderStrings",
    "ContainsRecipientStrings",
    "ContainsSenderStrings",
    "ContainsSubjectOrBodyStrings",
    "ContainsSubjectStrings",
    "ItemClasses",
    "MessageClassifications",
    "FromConnectedAccounts",
}
_ADDRESS_LISTS = {"FromAddresses", "SentToAddresses"}
_ACTION_ADDRESS_LISTS = {
    "ForwardAsAttachmentToRecipients",
    "ForwardToRecipients",
    "RedirectToRecipients",
    "SendSMSAlertToRecipients",
}
_BOOLEANS = {
    "IsEnabled",
    "Delete",
    "MarkAsRead",
    "PermanentDelete",
    "StopProcessingRules",
    "HasAttachments",
    "IsApprovalRequest",
    "IsAutomaticForward",
    "IsAutomaticReply",
    "IsEncrypted",
    "IsMeetingRequest",
    "IsMeetingResponse",
    "IsNDR",
    "IsPermissionControlled",
    "IsReadReceipt",
    "IsSigned",
    "IsVoicemail",
    "NotSentToMe",
    "SentCcMe",
    "SentOnlyToMe",
    "SentToMe",
    "SentToOrCcMe",
}
MAX_RULE_STRING = 255  # Outlook's and Exchange's limit for one text of a rule condition


RULE = b"R"  # the kind byte of rule ids (ids.py issues folder and item ids the same way)


@dataclass(eq=False)
class _Rule:
    row_id: int | None  # None: created by the request being checked
    body: etree._Element  # t:Rule without RuleId/Priority


@dataclass
class _Problem:
    field: str
    code: str
    message: str
    value: str


class InboxRules:
    """The rule and OOF operations, installed into the simulator's dispatch table."""

    def __init__(self, operations: Operations, store: Store) -> None:
        self._ops = operations
        self._store = store
        self._lock = threading.Lock()
        self.quota = DEFAULT_RULES_QUOTA
        with store._lock:
            store._db.executescript(_SCHEMA)

    def install(self) -> None:
        handlers = self._ops._handlers
        handlers["GetInboxRules"] = self.get_inbox_rules
        handlers["UpdateInboxRules"] = self.update_inbox_rules
        handlers["GetUserOofSettingsRequest"] = self.get_oof
        handlers["SetUserOofSettingsRequest"] = self.set_oof

    # --- the mailbox --------------------------------------------------------------------------

    def _mailbox(
        self, request: etree._Element, ctx: RequestContext, address: str | None
    ) -> MailboxRow:
        if address:
            return self._ops._mailbox_by_address(address.strip(), ctx)
        return self._ops._default_mailbox(ctx)

    def _rules(self, mailbox_id: int) -> list[_Rule]:
        with self._store._lock:
            rows = self._store._db.execute(
                "SELECT id, body FROM inbox_rules WHERE mailbox_id = ? ORDER BY position, id",
                (mailbox_id,),
            ).fetchall()
        return [_Rule(int(r[0]), etree.fromstring(r[1].encode("utf-8"))) for r in rows]

    def _blob(self, mailbox_id: int) -> bool:
        with self._store._lock:
            return (
                self._store._db.execute(
                    "SELECT 1 FROM outlook_rule_blobs WHERE mailbox_id = ?", (mailbox_id,)
                ).fetchone()
                is not None
            )

    def set_outlook_rule_blob(self, address: str, exists: bool) -> None:
        mailbox = self._store.mailbox_by_address(address)
        if mailbox is None:
            raise KeyError(address)
        with self._store._tx() as db:
            if exists:
                db.execute(
                    "INSERT OR IGNORE INTO outlook_rule_blobs(mailbox_id) VALUES (?)", (mailbox.id,)
                )
            else:
                db.execute("DELETE FROM outlook_rule_blobs WHERE mailbox_id = ?", (mailbox.id,))

    # --- GetInboxRules ------------------------------------------------------------------------

    def get_inbox_rules(self, request: etree._Element, ctx: RequestContext) -> str:
        mailbox = self._mailbox(request, ctx, request.findtext(f"{_M}MailboxSmtpAddress"))
        rules = self._rules(mailbox.id)
        body = "".join(
            _render(rule.body, ids.encode(RULE, mailbox.id, rule.row_id or 0), n)
            for n, rule in enumerate(rules, 1)
        )
        inbox = f"<m:InboxRules>{body}</m:InboxRules>" if rules else ""
        return (
            f'<m:GetInboxRulesResponse xmlns:m="{M_NS}" xmlns:t="{T_NS}" ResponseClass="Success">'
            "<m:ResponseCode>NoError</m:ResponseCode>"
            f"<m:OutlookRuleBlobExists>{'true' if self._blob(mailbox.id) else 'false'}"
            f"</m:OutlookRuleBlobExists>{inbox}"
            "</m:GetInboxRulesResponse>"
        )

    # --- UpdateInboxRules ---------------------------------------------------------------------

    def update_inbox_rules(self, request: etree._Element, ctx: RequestContext) -> str:
        mailbox = self._mailbox(request, ctx, request.findtext(f"{_M}MailboxSmtpAddress"))
        operations = request.find(f"{_M}Operations")
        if operations is None or len(operations) == 0:
            raise EwsError(
                "ErrorSchemaValidation", "The request has no rule operations.", fault=True
            )
        remove_blob = (request.findtext(f"{_M}RemoveOutlookRuleBlob") or "").strip() in (
            "true",
            "1",
        )
        with self._lock:
            if self._blob(mailbox.id) and not remove_blob:
                return _update_response(
                    "Error",
                    "ErrorOutlookRuleBlobExists",
                    "The Outlook rules blob exists; set RemoveOutlookRuleBlob to true to update "
                    "the rules.",
                )
            rules = self._rules(mailbox.id)
            by_id = {ids.encode(RULE, mailbox.id, r.row_id or 0): r for r in rules}
            errors: list[tuple[int, list[_Problem]]] = []
            touched: set[str] = set()
            for index, op in enumerate(o for o in operations if isinstance(o.tag, str)):
                problems = self._apply(op, rules, by_id, touched, ctx)
                if problems:
                    errors.append((index, problems))
            if errors:
                return _update_error(errors)
            size = sum(len(etree.tostring(r.body)) for r in rules)
            if size > self.quota:
                return _update_response(
                    "Error",
                    "ErrorRulesOverQuota",
                    f"The rules quota is exceeded: {size:,} bytes of rules, the mailbox allows "
                    f"{self.quota:,}.",
                )
            self._save(mailbox.id, rules)
            if remove_blob:
                self.set_outlook_rule_blob(mailbox.address, False)
        return _update_response("Success", "NoError")

    def _apply(
        self,
        op: etree._Element,
        rules: list[_Rule],
        by_id: dict[str, _Rule],
        touched: set[str],
        ctx: RequestContext,
    ) -> list[_Problem]:
        kind = etree.QName(op).localname
        if kind == "DeleteRuleOperation":
            rule_id = (op.findtext(f"{_T}RuleId") or "").strip()
            found = by_id.get(rule_id)
            if found is None or found not in rules:
                return [_Problem("RuleId", "RuleNotFound", "The rule was not found.", rule_id)]
            if rule_id in touched:
                return [
                    _Problem(
                        "RuleId",
                        "DuplicatedOperationOnTheSameRule",
                        "The request holds more than one operation on this rule.",
                        rule_id,
                    )
                ]
            touched.add(rule_id)
            rules.remove(found)
            return []
        rule = op.find(f"{_T}Rule")
        if rule is None:
            raise EwsError("ErrorSchemaValidation", f"{kind} has no Rule.", fault=True)
        rule_id = (rule.findtext(f"{_T}RuleId") or "").strip()
        problems = self._check(rule, ctx)
        if kind == "CreateRuleOperation":
            if rule_id:
                problems.insert(
                    0,
                    _Problem(
                        "RuleId",
                        "CreateWithRuleId",
                        "A rule being created cannot have a rule ID.",
                        rule_id,
                    ),
                )
            if problems:
                return problems
            _place(rules, _Rule(None, self._resolved(_stripped(rule), ctx)), _priority(rule))
            return []
        # SetRuleOperation
        target = by_id.get(rule_id)
        if not rule_id or target is None or target not in rules:
            problems.insert(
                0, _Problem("RuleId", "RuleNotFound", "The rule was not found.", rule_id)
            )
        elif rule_id in touched:
            problems.insert(
                0,
                _Problem(
                    "RuleId",
                    "DuplicatedOperationOnTheSameRule",
                    "The request holds more than one operation on this rule.",
                    rule_id,
                ),
            )
        if problems:
            return problems
        assert target is not None
        touched.add(rule_id)
        rules.remove(target)
        _place(rules, _Rule(target.row_id, self._resolved(_stripped(rule), ctx)), _priority(rule))
        return []

    def _resolved(self, body: etree._Element, ctx: RequestContext) -> etree._Element:
        """Folders named by DistinguishedFolderId are kept as the FolderId they resolve to:
        GetInboxRules shows a FolderId (Microsoft's UpdateInboxRules/GetInboxRules examples)."""
        for action in body.iter(f"{_T}MoveToFolder", f"{_T}CopyToFolder"):
            for target in [c for c in action if isinstance(c.tag, str)]:
                folder = self._ops._folder(target, ctx)
                action.remove(target)
                resolved = etree.SubElement(action, f"{_T}FolderId")
                resolved.set("Id", ids.encode(ids.FOLDER, folder.mailbox_id, folder.id))
                resolved.set("ChangeKey", ids.change_key(folder.version))
        return body

    def _check(self, rule: etree._Element, ctx: RequestContext) -> list[_Problem]:
        problems: list[_Problem] = []
        name = rule.findtext(f"{_T}DisplayName") or ""
        if not name.strip():
            problems.append(
                _Problem("DisplayName", "EmptyValueFound", "The display name is empty.", name)
            )
        priority = rule.findtext(f"{_T}Priority") or ""
        if not priority.strip().lstrip("-").isdigit() or int(priority) < 1:
            problems.append(
                _Problem("Priority", "InvalidValue", "The priority must be 1 or more.", priority)
            )
        for part, prefix in (("Conditions", "Condition"), ("Exceptions", "Exception")):
            predicates = rule.find(f"{_T}{part}")
            if predicates is not None:
                problems.extend(self._check_predicates(predicates, prefix))
        actions = rule.find(f"{_T}Actions")
        if actions is None or not any(isinstance(a.tag, str) for a in actions):
            problems.append(_Problem("Actions", "MissingAction", "The rule has no action.", ""))
        else:
            problems.extend(self._check_actions(actions, ctx))
        return problems

    def _check_predicates(self, predicates: etree._Element, prefix: str) -> list[_Problem]:
        problems = []
        for elem in predicates:
            if not isinstance(elem.tag, str):
                continue
            local = etree.QName(elem).localname
            where = f"{prefix}:{local}"
            if local in _STRING_LISTS:
                strings = [s.text or "" for s in elem]
                if not strings or any(not s.strip() for s in strings):
                    problems.append(
                        _Problem(where, "EmptyValueFound", "A text of the condition is empty.", "")
                    )
                for s in strings:
                    if len(s) > MAX_RULE_STRING:
                        problems.append(
                            _Problem(
                                where,
                                "StringValueTooBig",
                                f"A text of the condition is longer than {MAX_RULE_STRING} "
                                "characters.",
                                s[:MAX_RULE_STRING],
                            )
                        )
            elif local in _ADDRESS_LISTS:
                problems.extend(_check_addresses(elem, where))
            elif local == "WithinSizeRange":
                low = elem.findtext(f"{_T}MinimumSize")
                high = elem.findtext(f"{_T}MaximumSize")
                if low is None and high is None:
                    problems.append(
                        _Problem(where, "MissingRangeValue", "The size range has no bound.", "")
                    )
                values = [int(v) for v in (low, high) if v is not None]
                if any(v < 0 for v in values):
                    problems.append(
                        _Problem(
                            where, "SizeLessThanZero", "A size is below zero.", str(min(values))
                        )
                    )
                elif low is not None and high is not None and int(low) > int(high):
                    problems.append(
                        _Problem(
                            where,
                            "InvalidSizeRange",
                            "The minimum size is above the maximum size.",
                            f"{low}-{high}",
                        )
                    )
            elif local == "WithinDateRange":
                start = elem.findtext(f"{_T}StartDateTime")
                end = elem.findtext(f"{_T}EndDateTime")
                if start and end and _time(start) >= _time(end):
                    problems.append(
                        _Problem(
                            where,
                            "InvalidDateRange",
                            "The start of the date range is not before its end.",
                            f"{start}-{end}",
                        )
                    )
        return problems

    def _check_actions(self, actions: etree._Element, ctx: RequestContext) -> list[_Problem]:
        problems = []
        for elem in actions:
            if not isinstance(elem.tag, str):
                continue
            local = etree.QName(elem).localname
            where = f"Action:{local}"
            if local in ("MoveToFolder", "CopyToFolder"):
                target = next((c for c in elem if isinstance(c.tag, str)), None)
                if target is None:
                    problems.append(
                        _Problem(where, "MissingParameter", "The folder is missing.", "")
                    )
                    continue
                try:
                    self._ops._folder(target, ctx)
                except EwsError as exc:
                    code = (
                        "InvalidFolderId"
                        if exc.code == "ErrorInvalidIdMalformed"
                        else "FolderDoesNotExist"
                    )
                    problems.append(
                        _Problem(where, code, "The folder does not exist.", target.get("Id", ""))
                    )
            elif local in _ACTION_ADDRESS_LISTS:
                problems.extend(_check_addresses(elem, where))
            elif local == "AssignCategories" and (
                len(elem) == 0 or any(not (s.text or "").strip() for s in elem)
            ):
                problems.append(_Problem(where, "EmptyValueFound", "A category is empty.", ""))
        return problems

    def _save(self, mailbox_id: int, rules: list[_Rule]) -> None:
        with self._store._tx() as db:
            keep = {r.row_id for r in rules if r.row_id is not None}
            existing = {
                int(r[0])
                for r in db.execute(
                    "SELECT id FROM inbox_rules WHERE mailbox_id = ?", (mailbox_id,)
                )
            }
            for gone in existing - keep:
                db.execute("DELETE FROM inbox_rules WHERE id = ?", (gone,))
            for position, rule in enumerate(rules, 1):
                text = etree.tostring(rule.body, encoding="unicode")
                if rule.row_id is None:
                    db.execute(
                        "INSERT INTO inbox_rules(mailbox_id, position, body) VALUES (?, ?, ?)",
                        (mailbox_id, position, text),
                    )
                else:
                    db.execute(
                        "UPDATE inbox_rules SET position = ?, body = ? WHERE id = ?",
                        (position, text, rule.row_id),
                    )

    # --- automatic replies --------------------------------------------------------------------

    def _oof_mailbox(self, request: etree._Element, ctx: RequestContext) -> MailboxRow:
        address = request.findtext(f"{_T}Mailbox/{_T}Address")
        if not address:
            raise EwsError("ErrorInvalidRequest", "The request names no mailbox.", fault=True)
        return self._ops._mailbox_by_address(address, ctx)

    def get_oof(self, request: etree._Element, ctx: RequestContext) -> str:
        try:
            mailbox = self._oof_mailbox(request, ctx)
        except EwsError as exc:
            if exc.fault:
                raise
            return _oof_answer("GetUserOofSettingsResponse", exc)
        with self._store._lock:
            row = self._store._db.execute(
                "SELECT state, audience, start, end, internal, external FROM oof_settings "
                "WHERE mailbox_id = ?",
                (mailbox.id,),
            ).fetchone()
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        state, audience, start, end, internal, external = row or (
            "Disabled",
            "All",
            None,
            None,
            "",
            "",
        )
        # Exchange always shows a duration; without a schedule it is a day from the current hour
        start = start or _iso(now)
        end = end or _iso(now + timedelta(days=1))
        settings = (
            f"<t:OofSettings><t:OofState>{state}</t:OofState>"
            f"<t:ExternalAudience>{audience}</t:ExternalAudience>"
            f"<t:Duration><t:StartTime>{start}</t:StartTime><t:EndTime>{end}</t:EndTime></t:Duration>"
            f"<t:InternalReply><t:Message>{soap.esc(internal)}</t:Message></t:InternalReply>"
            f"<t:ExternalReply><t:Message>{soap.esc(external)}</t:Message></t:ExternalReply>"
            "</t:OofSettings>"
        )
        return (
            f'<GetUserOofSettingsResponse xmlns="{M_NS}" xmlns:m="{M_NS}" xmlns:t="{T_NS}">'
            '<ResponseMessage ResponseClass="Success"><ResponseCode>NoError</ResponseCode>'
            f"</ResponseMessage>{settings}<AllowExternalOof>All</AllowExternalOof>"
            "</GetUserOofSettingsResponse>"
        )

    def set_oof(self, request: etree._Element, ctx: RequestContext) -> str:
        try:
            mailbox = self._oof_mailbox(request, ctx)
        except EwsError as exc:
            if exc.fault:
                raise
            return _oof_answer("SetUserOofSettingsResponse", exc)
        settings = request.find(f"{_T}UserOofSettings")
        if settings is None:
            raise EwsError(
                "ErrorSchemaValidation", "The request has no UserOofSettings.", fault=True
            )
        state = settings.findtext(f"{_T}OofState") or ""
        audience = settings.findtext(f"{_T}ExternalAudience") or "All"
        start = settings.findtext(f"{_T}Duration/{_T}StartTime")
        end = settings.findtext(f"{_T}Duration/{_T}EndTime")
        internal = settings.findtext(f"{_T}InternalReply/{_T}Message") or ""
        external = settings.findtext(f"{_T}ExternalReply/{_T}Message") or ""
        if state == "Scheduled":
            if not start or not end:
                return _oof_answer(
                    "SetUserOofSettingsResponse",
                    EwsError(
                        "ErrorInvalidUserOofSettings",
                        "A scheduled automatic reply needs a duration.",
                    ),
                )
            if _time(start) >= _time(end):
                return _oof_answer(
                    "SetUserOofSettingsResponse",
                    EwsError(
                        "ErrorInvalidUserOofSettings",
                        "The end of the duration is not after its start.",
                    ),
                )
        with self._store._tx() as db:
            db.execute(
                "INSERT INTO oof_settings(mailbox_id, state, audience, start, end, internal, "
                "external) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(mailbox_id) DO UPDATE SET "
                "state = excluded.state, audience = excluded.audience, start = excluded.start, "
                "end = excluded.end, internal = excluded.internal, external = excluded.external",
                (
                    mailbox.id,
                    state,
                    audience,
                    _iso(_time(start)) if start and state == "Scheduled" else None,
                    _iso(_time(end)) if end and state == "Scheduled" else None,
                    internal,
                    external,
                ),
            )
        return _oof_answer("SetUserOofSettingsResponse", None)


def _oof_answer(element: str, error: EwsError | None) -> str:
    if error is None:
        message = (
            "<ResponseMessage "
            'ResponseClass="Success"><ResponseCode>NoError</ResponseCode></ResponseMessage>'
        )
    else:
        message = (
            '<ResponseMessage ResponseClass="Error">'
            f"<MessageText>{soap.esc(error.text)}</MessageText><ResponseCode>{error.code}</ResponseCode>"
            "<DescriptiveLinkKey>0</DescriptiveLinkKey></ResponseMessage>"
        )
    return f'<{element} xmlns="{M_NS}">{message}</{element}>'


def _check_addresses(elem: etree._Element, where: str) -> list[_Problem]:
    problems = []
    addresses = [a.findtext(f"{_T}EmailAddress") or "" for a in elem if isinstance(a.tag, str)]
    if not addresses:
        problems.append(_Problem(where, "EmptyValueFound", "The address list is empty.", ""))
    for address in addresses:
        local, at, domain = address.strip().rpartition("@")
        if not at or not local or not domain or " " in address.strip():
            problems.append(_Problem(where, "InvalidAddress", "The address is not valid.", address))
    return problems


def _priority(rule: etree._Element) -> int:
    text = (rule.findtext(f"{_T}Priority") or "1").strip()
    return int(text) if text.lstrip("-").isdigit() else 1


def _place(rules: list[_Rule], rule: _Rule, priority: int) -> None:
    rules.insert(max(0, min(priority - 1, len(rules))), rule)


def _stripped(rule: etree._Element) -> etree._Element:
    """The rule as stored: without RuleId, Priority and the read-only flags, booleans written
    as Exchange answers them ("true"/"false"; a request may say "1"/"0")."""
    body = etree.Element(f"{_T}Rule", nsmap={"t": T_NS})
    for child in rule:
        if not isinstance(child.tag, str):
            continue
        if etree.QName(child).localname in ("RuleId", "Priority", "IsNotSupported", "IsInError"):
            continue
        body.append(copy.deepcopy(child))
    for elem in body.iter():
        if (
            isinstance(elem.tag, str)
            and len(elem) == 0
            and etree.QName(elem).localname in _BOOLEANS
        ):
            text = (elem.text or "").strip()
            elem.text = {"1": "true", "0": "false"}.get(text, text)
    return body


def _render(body: etree._Element, rule_id: str, priority: int) -> str:
    """A stored rule as GetInboxRules shows it, elements in the schema's order."""
    parts = {etree.QName(c).localname: c for c in body if isinstance(c.tag, str)}

    def xml(local: str) -> str:
        elem = parts.get(local)
        return "" if elem is None else etree.tostring(elem, encoding="unicode")

    enabled = parts.get("IsEnabled")
    return (
        f'<t:Rule xmlns:t="{T_NS}"><t:RuleId>{soap.esc(rule_id)}</t:RuleId>{xml("DisplayName")}'
        f"<t:Priority>{priority}</t:Priority>"
        "<t:IsEnabled>"
        f"{(enabled.text or 'true').strip() if enabled is not None else 'true'}"
        "</t:IsEnabled>"
        "<t:IsNotSupported>false</t:IsNotSupported><t:IsInError>false</t:IsInError>"
        f"{xml('Conditions')}{xml('Exceptions')}{xml('Actions')}</t:Rule>"
    )


def _update_response(klass: str, code: str, text: str | None = None, inner: str = "") -> str:
    message = f"<m:MessageText>{soap.esc(text)}</m:MessageText>" if text else ""
    link = "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>" if klass != "Success" else ""
    return (
        f'<m:UpdateInboxRulesResponse xmlns:m="{M_NS}" xmlns:t="{T_NS}" ResponseClass="{klass}">'
        f"{message}<m:ResponseCode>{code}</m:ResponseCode>{link}{inner}</m:UpdateInboxRulesResponse>"
    )


def _update_error(errors: list[tuple[int, list[_Problem]]]) -> str:
    body = "".join(
        f"<t:RuleOperationError><t:OperationIndex>{index}</t:OperationIndex><t:ValidationErrors>"
        + "".join(
            f"<t:Error><t:FieldURI>{p.field}</t:FieldURI><t:ErrorCode>{p.code}</t:ErrorCode>"
            f"<t:ErrorMessage>{soap.esc(p.message)}</t:ErrorMessage>"
            f"<t:FieldValue>{soap.esc(p.value)}</t:FieldValue></t:Error>"
            for p in problems
        )
        + "</t:ValidationErrors></t:RuleOperationError>"
        for index, problems in errors
    )
    return _update_response(
        "Error",
        "ErrorInboxRulesValidationError",
        "Validation error occurred while processing inbox rules.",
        f"<m:RuleOperationErrors>{body}</m:RuleOperationErrors>",
    )


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
