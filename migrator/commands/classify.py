"""Decide, for each directory entry, whether the campaign moves it, and why not.

Everything taken from the directory is data: it reaches a path, a login or an address only
through `Template.render`, and each value is checked before it may become part of a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable

from migrator.model.account import DirectoryEntry, DiscoveredAccount, Scope
from migrator.model.plan import Plan
from migrator.model.scope import DiscoveryReason
from migrator.plan.templates import Template, TemplateError

# A practical addr-spec: dot-atom local part (plus UTF-8 for SMTPUTF8 mailboxes) and a
# domain of LDH labels (IDN letters allowed). Quoted local parts are refused on purpose:
# no Maildir layout or Exchange address policy handles them sanely.
_LOCAL = r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
_LABEL = r"(?:[^\W_]|[^\W_][\w-]{0,61}[^\W_])"
_ADDRESS = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})+$")
_MAX_COMPONENT = 255  # bytes in one path component on Linux file systems
_MAX_VALUE = 1024
# Directory values are stored whatever their length, except where the state database indexes
# them: a PostgreSQL B-tree entry holds at most ~2.7 KB. A batch name is indexed (and typed in
# --batch): a longer one makes the entry invalid and is stored cut. An account without an
# address is keyed by its DN: a DN longer than MAX_DN_KEY_BYTES is keyed by its digest.
MAX_BATCH_CHARS = 255
MAX_DN_KEY_BYTES = 1000


def parse_address(value: str | None) -> str | None:
    """The lower-cased address, or None when it is not a usable mailbox address."""
    if value is None:
        return None
    candidate = value.strip().lower()
    if len(candidate) > 254 or not _ADDRESS.match(candidate):
        return None
    return candidate


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def ou_of_dn(dn: str) -> str | None:
    """The nearest ou= above the entry itself (the office in uid=x,ou=Office,ou=people,...)."""
    for rdn in _split_dn(dn)[1:]:
        name, _, value = rdn.partition("=")
        if name.strip().lower() == "ou" and value:
            return value.strip()
    return None


def _split_dn(dn: str) -> list[str]:
    """Split a DN on unescaped commas (values may hold `\\,`)."""
    if "\\" not in dn:
        return dn.split(
            ","
        )  # nothing escaped: every comma separates (most DNs; 60,000 a discovery)
    parts, current, escaped = [], [], False
    for ch in dn:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


class Classifier:
    """Classifies entries of one discovery; call `selected`/`not_selected`, then `finish`."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.attrs = plan.directory.attributes
        source = plan.source
        self.path_template = Template.parse(source.path) if source.path else None
        self.folders_template = Template.parse(source.folders_path) if source.folders_path else None
        self.login_template = Template.parse(source.login) if source.kind == "imap" else None
        self.target_template = Template.parse(plan.target.address)
        self.root = os.path.realpath(source.root) if source.root else None
        self._resolver = PathResolver()
        self._accounts: list[DiscoveredAccount] = []
        self._selected_dns: set[str] = set()

    # --- selected by the plan's filter -------------------------------------------------
    def selected(self, entry: DirectoryEntry) -> None:
        self._selected_dns.add(entry.dn.lower())
        self._accounts.append(self._classify(entry))

    def _classify(self, entry: DirectoryEntry) -> DiscoveredAccount:
        raw_addresses = [v for v in entry.values(self.attrs.address) if v.strip()]
        uid = entry.first(self.attrs.uid)
        name = entry.first(self.attrs.name)
        batch = entry.first(self.attrs.batch) or ou_of_dn(entry.dn) or "(none)"
        kept = {a: entry.first(a) or "" for a in self.attrs.extra}
        base = dict(dn=entry.dn, uid=uid, name=name, batch=batch, attributes=kept)
        if not raw_addresses:
            return DiscoveredAccount(
                key="dn:" + entry.dn.lower(),
                scope=Scope.EXCLUDED,
                reason=DiscoveryReason.NO_ADDRESS,
                detail=f"no {self.attrs.address} attribute",
                **base,  # type: ignore[arg-type]
            )
        address = parse_address(raw_addresses[0])
        if address is None:
            return DiscoveredAccount(
                key="dn:" + entry.dn.lower(),
                scope=Scope.INVALID,
                reason=DiscoveryReason.UNPARSABLE_ADDRESS,
                detail=f"{self.attrs.address} {_shown(raw_addresses[0])} is not a mail address",
                **base,  # type: ignore[arg-type]
            )
        aliases = []
        for value in raw_addresses[1:]:
            alias = parse_address(value)
            if alias and alias != address and alias not in aliases:
                aliases.append(alias)
        local, _, domain = address.rpartition("@")
        fields: dict[str, str | None] = {
            "address": address,
            "local": local,
            "domain": domain,
            "uid": uid,
            "name": name,
            "batch": batch,
            **kept,
        }
        account = DiscoveredAccount(
            key=address,
            scope=Scope.IN_SCOPE,
            address=address,
            aliases=aliases,
            **base,  # type: ignore[arg-type]
        )
        problem = (
            _batch_too_long(batch)
            or self._target_address(account, fields)
            or self._source_location(account, fields)
        )
        if problem:
            account.scope = Scope.INVALID
            account.reason, account.detail = problem
        return account

    def _target_address(
        self, account: DiscoveredAccount, fields: dict[str, str | None]
    ) -> tuple[str, str] | None:
        try:
            rendered = self.target_template.render(fields)
        except TemplateError as exc:
            return DiscoveryReason.MISSING_ATTRIBUTE, f"target address: {exc}"
        target = parse_address(rendered)
        if target is None:
            return (
                DiscoveryReason.UNPARSABLE_TARGET,
                f"target address {_shown(rendered)} is not a mail address",
            )
        account.target_address = target
        return None

    def _source_location(
        self, account: DiscoveredAccount, fields: dict[str, str | None]
    ) -> tuple[str, str] | None:
        if self.login_template is not None:
            try:
                login = self.login_template.render(fields)
            except TemplateError as exc:
                return DiscoveryReason.MISSING_ATTRIBUTE, f"IMAP login: {exc}"
            if _has_control(login) or len(login) > _MAX_VALUE:
                return (
                    DiscoveryReason.UNSAFE_LOGIN,
                    f"IMAP login {_shown(login)} holds control characters or is too long",
                )
            account.source_path = None
            account.attributes = {**account.attributes, "login": login}
            return None
        if self.path_template is None or self.root is None:
            return None
        path_or_problem = self._safe_path(self.path_template, fields)
        if isinstance(path_or_problem, tuple):
            return path_or_problem
        account.source_path = path_or_problem
        if self.folders_template is not None:
            folders_or_problem = self._safe_path(self.folders_template, fields)
            if isinstance(folders_or_problem, tuple):
                return folders_or_problem
            account.attributes = {**account.attributes, "folders_path": folders_or_problem}
        return None

    def _safe_path(
        self, template: Template, fields: dict[str, str | None]
    ) -> str | tuple[str, str]:
        """The resolved path, or (reason, detail) when a value or the path is unsafe."""
        assert self.root is not None
        for name in template.fields:
            if name == "root":
                continue
            value = fields.get(name)
            if value is None or value == "":
                return (
                    DiscoveryReason.MISSING_ATTRIBUTE,
                    f"mailbox path needs {{{name}}}, which this entry lacks",
                )
            problem = _unsafe_path_value(value)
            if problem:
                return DiscoveryReason.UNSAFE_PATH, f"{{{name}}} = {_shown(value)} {problem}"
        path = template.render({**fields, "root": self.root})
        resolved = self._resolver.realpath(os.path.normpath(path))
        if os.path.commonpath([self.root, resolved]) != self.root or resolved == self.root:
            return (
                DiscoveryReason.UNSAFE_PATH,
                f"mailbox path {_shown(path)} leaves the source root {self.root}",
            )
        if resolved != os.path.normpath(path):
            # A link below the (resolved) root: a user who owns a step of the path (a home
            # directory) could point it at a colleague's mailbox, still inside root. The run
            # never follows links, so the account could not be read anyway: say why now.
            return DiscoveryReason.UNSAFE_PATH, (
                f"mailbox path {_shown(path)} passes through a symbolic link (to "
                f"{_shown(resolved)}); links are never followed"
            )
        return resolved

    # --- people the filter did not select ----------------------------------------------
    def not_selected(self, entry: DirectoryEntry) -> None:
        if entry.dn.lower() in self._selected_dns:
            return
        has_address = any(v.strip() for v in entry.values(self.attrs.address))
        self._accounts.append(
            DiscoveredAccount(
                key="dn:" + entry.dn.lower(),
                dn=entry.dn,
                scope=Scope.EXCLUDED,
                reason=DiscoveryReason.NOT_SELECTED if has_address else DiscoveryReason.NO_ADDRESS,
                detail="not selected by the plan's filter"
                if has_address
                else f"no {self.attrs.address} attribute",
                address=parse_address(entry.first(self.attrs.address)),
                batch=ou_of_dn(entry.dn) or "(none)",
            )
        )

    # --- whole-directory rules ---------------------------------------------------------
    def finish(self) -> list[DiscoveredAccount]:
        """Apply the rules that need every entry (duplicates) and return all accounts."""
        by_address: dict[str, list[DiscoveredAccount]] = defaultdict(list)
        for account in self._accounts:
            if account.scope is not Scope.IN_SCOPE:
                continue
            by_address[account.address or ""].append(account)
            if account.target_address and account.target_address != account.address:
                by_address[account.target_address].append(account)
        for address, group in by_address.items():
            unique = {id(a): a for a in group}
            if len(unique) < 2:
                continue
            members = sorted(unique.values(), key=lambda a: a.dn.lower())
            for index, account in enumerate(members):
                others = [m.dn for m in members if m is not account]
                account.scope = Scope.INVALID
                account.reason = DiscoveryReason.DUPLICATE_ADDRESS
                account.source_path = None  # nothing of an invalid account is to be opened
                shown = ", ".join(others[:3]) + (
                    f" and {len(others) - 3} more" if len(others) > 3 else ""
                )
                account.detail = f"{address} is also the address of {shown}"
                # one of them keeps the address as its key so its history stays attached
                if index > 0:
                    account.key = "dn:" + account.dn.lower()
        # An excluded person whose address nobody else uses is keyed by that address, so a
        # person who leaves or enters the scope keeps one identity (and one history).
        taken = {a.key for a in self._accounts if not a.key.startswith("dn:")}
        excluded_by_address: dict[str, list[DiscoveredAccount]] = defaultdict(list)
        for account in self._accounts:
            if account.scope is Scope.EXCLUDED and account.address and account.address not in taken:
                excluded_by_address[account.address].append(account)
        for address, group in excluded_by_address.items():
            if len(group) == 1:
                group[0].key = address
        for account in self._accounts:
            account.key = _storable_key(account.key)
            if account.batch is not None and len(account.batch) > MAX_BATCH_CHARS:
                account.batch = account.batch[: MAX_BATCH_CHARS - 1] + "\u2026"
        return self._accounts


_RESOLVED_KEPT = 4096  # directories PathResolver remembers at most


class PathResolver:
    """os.path.realpath of many paths in the same directories: a discovery resolves one
    mailbox path per person (100,000), most under a few directories. Each directory is
    resolved once; the last component costs one lstat, and a link there is resolved by
    realpath itself. The same answer as realpath (which resolves a path one component after
    the other), as long as the directories do not change during the discovery."""

    def __init__(self) -> None:
        self._directories: dict[str, str] = {}

    def realpath(self, path: str) -> str:
        head, tail = os.path.split(path)
        if not os.path.isabs(path) or tail in ("", ".", ".."):
            return os.path.realpath(path)
        parent = self._directories.get(head)
        if parent is None:
            parent = self.realpath(head)
            if len(self._directories) >= _RESOLVED_KEPT:
                # most are one person's own directory, never asked for again; the few shared
                # ones (the root, a domain) are resolved again at the next path
                self._directories.clear()
            self._directories[head] = parent
        candidate = os.path.join(parent, tail)
        return os.path.realpath(candidate) if os.path.islink(candidate) else candidate


def _batch_too_long(batch: str) -> tuple[str, str] | None:
    if len(batch) <= MAX_BATCH_CHARS:
        return None
    return (
        DiscoveryReason.TOO_LONG,
        f"batch {_shown(batch)} is {len(batch):,} characters long (a batch name has at most "
        f"{MAX_BATCH_CHARS})",
    )


def _storable_key(key: str) -> str:
    """The key itself, or for a DN too long to be indexed, a digest of it (stable: the same
    DN always gets the same key)."""
    if not key.startswith("dn:") or len(key.encode("utf-8", "surrogateescape")) <= MAX_DN_KEY_BYTES:
        return key
    return (
        "dn-digest:"
        + hashlib.blake2b(key[3:].encode("utf-8", "surrogateescape"), digest_size=20).hexdigest()
    )


def _unsafe_path_value(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    if _has_control(value):
        return "contains control characters"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if value == "." or ".." in value:
        return "contains '..' or is '.'"
    if len(value.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT:
        return f"is longer than {_MAX_COMPONENT} bytes"
    return None


def _shown(value: str, limit: int = 80) -> str:
    """A value as it may appear in a message: escaped, bounded, never raw control bytes."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def classify_all(
    plan: Plan, selected: Iterable[DirectoryEntry], population: Iterable[DirectoryEntry]
) -> list[DiscoveredAccount]:
    classifier = Classifier(plan)
    for entry in selected:
        classifier.selected(entry)
    for entry in population:
        classifier.not_selected(entry)
    return classifier.finish()
