"""Inbox rules and automatic replies of an Exchange Online mailbox through Microsoft Graph, for
an IMAP target (IMAP cannot take rules) whose plan has app-only credentials.

Graph v1.0: `/users/{id}/mailFolders/inbox/messageRules` (messageRule),
`/users/{id}/mailboxSettings`
(automaticRepliesSetting), `/users/{id}/mailFolders/...` for the rules' folders. The
application needs MailboxSettings.ReadWrite and Mail.ReadWrite (application permissions). The
token is fetched with the client-credentials flow (the IMAP target's TokenSource, Graph scope).

Unlike EWS's UpdateInboxRules, Graph has no request that replaces several rules as one change:
migrator's rules are deleted, then the new ones created; a kill in between leaves some of them,
and the next pass (which deletes every `[Sieve] ...` rule and the ids it recorded) repairs it.
"""

from __future__ import annotations

import email.utils
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from migrator.adapters.network import endpoint_of, network_outage
from migrator.model.errors import PermanentError, TransientError
from migrator.model.mail import FolderRole
from migrator.model.reasons import Reason
from migrator.model.sieve import RULE_MARKER, AutoReply, InboxRule, RuleFolder, RulePredicates

from ..imap.oauth import TokenSource
from ..reply import reply_html

GRAPH_URL = "https://graph.microsoft.com/v1.0"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
WELL_KNOWN = {
    None: "msgfolderroot",
    FolderRole.INBOX: "inbox",
    FolderRole.SENT: "sentitems",
    FolderRole.DRAFTS: "drafts",
    FolderRole.TRASH: "deleteditems",
    FolderRole.JUNK: "junkemail",
}
STATES = {"disabled": "Disabled", "alwaysEnabled": "Enabled", "scheduled": "Scheduled"}


@dataclass(frozen=True)
class AppliedRules:
    rule_ids: tuple[str, ...]
    replaced: int
    kept: int


@dataclass(frozen=True)
class CurrentReply:
    state: str  # Disabled | Enabled | Scheduled (EWS's words, as the EWS writer answers)
    internal_reply: str


class GraphRules:
    """One mailbox's rules and automatic replies through Graph."""

    def __init__(
        self, base_url: str, tokens: TokenSource, mailbox: str, *, timeout: float = 60.0
    ) -> None:
        self.base = base_url.rstrip("/")
        self.tokens = tokens
        self.mailbox = mailbox
        self.timeout = timeout
        self.where = f"mailbox {mailbox} (Graph)"
        self._user = f"/users/{urllib.parse.quote(mailbox)}"
        self._folders: dict[tuple[FolderRole | None, tuple[str, ...]], str] = {}

    # --- HTTP ---------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, *, again: bool = True) -> Any:
        url = path if path.startswith("http") else self.base + path
        token = self.tokens.token().value
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and again:
                self.tokens.invalidate(token)  # expired or revoked early: one fresh try
                return self._call(method, path, body, again=False)
            raise self._http_error(method, path, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            parts = urllib.parse.urlsplit(self.base)
            outage = network_outage(
                reason if isinstance(reason, BaseException) else exc,
                service="target",
                endpoint=endpoint_of(parts.hostname, parts.port or 443),
                timeout=self.timeout,
                connecting=True,
            )
            raise TransientError(
                f"{self.where}: Graph at {self.base} cannot be reached: {reason}", outage=outage
            ) from None
        return json.loads(raw) if raw.strip() else None

    def _http_error(self, method: str, path: str, exc: urllib.error.HTTPError) -> Exception:
        try:
            detail = json.loads(exc.read() or b"{}").get("error", {})
        except (ValueError, AttributeError):
            detail = {}
        code = str(detail.get("code", "")) if isinstance(detail, dict) else ""
        message = str(detail.get("message", ""))[:300] if isinstance(detail, dict) else ""
        what = (
            f"{self.where}: Graph {method} {path.split('?')[0]}: HTTP {exc.code} {code} {message}"
        ).rstrip()
        if exc.code == 429 or exc.code >= 500:
            retry = exc.headers.get("Retry-After") if exc.headers else None
            return TransientError(
                what, retry_after=float(retry) if retry and retry.isdigit() else None
            )
        if exc.code in (401, 403):
            return PermanentError(
                what,
                reason=Reason.AUTH,
                hint="the application needs the Graph application permissions "
                "MailboxSettings.ReadWrite and Mail.ReadWrite, with admin consent",
            )
        if exc.code == 404:
            return PermanentError(
                what, reason=Reason.NO_MAILBOX, hint="create the mailbox, or fix [target] address"
            )
        return PermanentError(what, reason="rules-invalid")

    def _pages(self, path: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        next_url: str | None = path
        while next_url:
            page = self._call("GET", next_url) or {}
            out.extend(page.get("value", []))
            next_url = page.get("@odata.nextLink")
        return out

    # --- rules --------------------------------------------------------------------------------
    def current(self) -> list[dict[str, Any]]:
        return self._pages(f"{self._user}/mailFolders/inbox/messageRules")

    def replace(self, rules: Sequence[InboxRule], known_ids: Collection[str] = ()) -> AppliedRules:
        existing = self.current()
        ours = [
            r
            for r in existing
            if str(r.get("displayName") or "").startswith(RULE_MARKER) or r.get("id") in known_ids
        ]
        others = [r for r in existing if r not in ours]
        bodies = [self._rule(rule) for rule in rules]  # folders first: nothing deleted if one fails
        for rule in ours:
            self._call(
                "DELETE",
                f"{self._user}/mailFolders/inbox/messageRules/{urllib.parse.quote(str(rule['id']))}",
            )
        start = max((int(r.get("sequence") or 0) for r in others), default=0)
        created = []
        for n, body in enumerate(bodies, 1):
            body["sequence"] = start + n
            answer = self._call("POST", f"{self._user}/mailFolders/inbox/messageRules", body) or {}
            created.append(str(answer.get("id", "")))
        return AppliedRules(tuple(created), len(ours), len(others))

    def _rule(self, rule: InboxRule) -> dict[str, Any]:
        a = rule.actions
        actions: dict[str, Any] = {}
        if a.categories:
            actions["assignCategories"] = list(a.categories)
        if a.copy_to:
            actions["copyToFolder"] = self._folder(a.copy_to)
        if a.delete:
            actions["delete"] = True
        if a.mark_as_read:
            actions["markAsRead"] = True
        if a.move_to:
            actions["moveToFolder"] = self._folder(a.move_to)
        if a.redirect_to:
            actions["redirectTo"] = [_recipient(x) for x in a.redirect_to]
        if a.stop:
            actions["stopProcessingRules"] = True
        body: dict[str, Any] = {
            "displayName": (RULE_MARKER + rule.name)[:255],
            "sequence": 1,
            "isEnabled": True,
            "actions": actions,
        }
        if not rule.conditions.is_empty():
            body["conditions"] = _predicates(rule.conditions)
        if not rule.exceptions.is_empty():
            body["exceptions"] = _predicates(rule.exceptions)
        return body

    def _folder(self, folder: RuleFolder) -> str:
        """The id of the folder a rule files into, created when missing (like EWS's writer)."""
        key = (folder.anchor, folder.names)
        if key in self._folders:
            return self._folders[key]
        well_known = WELL_KNOWN.get(folder.anchor)
        if well_known is None:  # the archive role is a path below the top of the mailbox
            well_known = "msgfolderroot"
        current = str((self._call("GET", f"{self._user}/mailFolders/{well_known}") or {})["id"])
        for name in folder.names:
            children = self._pages(
                f"{self._user}/mailFolders/{urllib.parse.quote(current)}/childFolders?$top=100"
            )
            match = next(
                (
                    c
                    for c in children
                    if str(c.get("displayName", "")).casefold() == name.casefold()
                ),
                None,
            )
            if match is None:
                match = (
                    self._call(
                        "POST",
                        f"{self._user}/mailFolders/{urllib.parse.quote(current)}/childFolders",
                        {"displayName": name},
                    )
                    or {}
                )
            current = str(match["id"])
        self._folders[key] = current
        return current

    # --- automatic replies --------------------------------------------------------------------
    def auto_reply(self) -> CurrentReply:
        settings = (self._call("GET", f"{self._user}/mailboxSettings") or {}).get(
            "automaticRepliesSetting"
        ) or {}
        return CurrentReply(
            STATES.get(str(settings.get("status")), "Disabled"),
            str(settings.get("internalReplyMessage") or ""),
        )

    def set_auto_reply(self, reply: AutoReply) -> None:
        body = reply_html(reply.message)
        setting: dict[str, Any] = {
            "status": "alwaysEnabled",
            "externalAudience": "all",
            "internalReplyMessage": body,
            "externalReplyMessage": body,
        }
        if reply.start is not None or reply.end is not None:
            start = reply.start or datetime.now(UTC)
            end = reply.end or datetime(
                start.year + 10, start.month, min(start.day, 28), tzinfo=UTC
            )
            setting.update(
                status="scheduled",
                scheduledStartDateTime=_when(start),
                scheduledEndDateTime=_when(end),
            )
        self._call("PATCH", f"{self._user}/mailboxSettings", {"automaticRepliesSetting": setting})

    def disable_auto_reply(self) -> None:
        self._call(
            "PATCH",
            f"{self._user}/mailboxSettings",
            {"automaticRepliesSetting": {"status": "disabled"}},
        )


def _recipient(address: str) -> dict[str, Any]:
    name, addr = email.utils.parseaddr(address)
    out: dict[str, Any] = {"address": addr or address}
    if name:
        out["name"] = name
    return {"emailAddress": out}


def _predicates(p: RulePredicates) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key in (
        ("contains_body", "bodyContains"),
        ("contains_header", "headerContains"),
        ("contains_recipient", "recipientContains"),
        ("contains_sender", "senderContains"),
        ("contains_subject", "subjectContains"),
    ):
        values = getattr(p, attr)
        if values:
            out[key] = list(values)
    if p.from_addresses:
        out["fromAddresses"] = [_recipient(a) for a in p.from_addresses]
    if p.sent_to_addresses:
        out["sentToAddresses"] = [_recipient(a) for a in p.sent_to_addresses]
    if p.min_size_kb is not None or p.max_size_kb is not None:
        size: dict[str, int] = {}
        if p.min_size_kb is not None:
            size["minimumSize"] = p.min_size_kb
        if p.max_size_kb is not None:
            size["maximumSize"] = p.max_size_kb
        out["withinSizeRange"] = size
    return out


def _when(moment: datetime) -> dict[str, str]:
    return {
        "dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
        "timeZone": "UTC",
    }


def graph_rules(
    settings: Any,
    secrets: dict[str, str],
    mailbox: str,
    *,
    graph_url: str,
    tokens: TokenSource | None = None,
) -> GraphRules:
    """The Graph writer of `mailbox` for the plan's [target] app-only credentials."""
    if tokens is None:
        tokens = token_source(settings, secrets)
    return GraphRules(graph_url, tokens, mailbox, timeout=settings.timeout)


def token_source(settings: Any, secrets: dict[str, str]) -> TokenSource:
    from ..imap.oauth import MICROSOFT_TOKEN_URL

    if not (settings.client_id and settings.tenant_id and secrets.get("client_secret")):
        raise PermanentError(
            "Graph needs [target] client_id, tenant_id and client_secret_env/_file",
            reason=Reason.CONFIG,
            hint="set them, or [settings] graph = false for reports only",
        )
    url = settings.token_url or MICROSOFT_TOKEN_URL.format(tenant_id=settings.tenant_id)
    return TokenSource(
        token_url=url,
        client_id=settings.client_id,
        client_secret=secrets["client_secret"],
        scope=GRAPH_SCOPE,
        timeout=settings.timeout,
    )
