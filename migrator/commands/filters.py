"""`filters`: carry users' Sieve filters and vacation replies into Exchange.

A command of its own rather than a step of `run`: rules and automatic replies belong to the
cut-over (Exchange runs them on mail delivered to it, and an automatic reply switched on in
Exchange while mail still arrives at Dovecot would confuse internal senders), a Sieve problem
must never fail the migration of the mail, and the command can be run again at any time: it
reads the scripts afresh and replaces only migrator's own rules.

Per account: read the active script (files or ManageSieve), parse it, translate it
(engine/filters.py), then, for an EWS target, replace migrator's rules and set the automatic
reply; for an IMAP target (Exchange Online over IMAP cannot take rules) hand the translation to
the caller, which writes a report an administrator applies. The outcome, counts, rule ids and
every refused statement are recorded in the state database.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from migrator.adapters.sieve.commands import register as register_sieve_commands
from migrator.adapters.sieve.files import read_active
from migrator.adapters.sieve.managesieve import ManageSieveReader
from migrator.adapters.sieve.parse import parse_script
from migrator.adapters.targets import open_target
from migrator.adapters.targets.naming import FolderNaming
from migrator.adapters.targets.reply import reply_html
from migrator.commands.classify import _unsafe_path_value
from migrator.commands.secrets import target_secrets
from migrator.commands.state import check_selection, in_scope_accounts, plan_store
from migrator.engine.filters import FilterOptions, translate
from migrator.model.errors import (
    SERVICES,
    MigratorError,
    Outage,
    PermanentError,
    TransientError,
    UsageError,
)
from migrator.model.filters import FILTER_PROBLEMS, LIVE_REPLY, AutoReplyState, FilterOutcome
from migrator.model.plan import FilterSettings, Plan
from migrator.model.sieve import SieveScript, Translation
from migrator.model.status import RunStatus
from migrator.plan.secrets import read_secret
from migrator.plan.templates import Template, TemplateError
from migrator.store import filters as recorded
from migrator.store.database.access import Access

if TYPE_CHECKING:
    from migrator.store import AccountRow


class ServiceDown(MigratorError):
    """The target or the Sieve server is down: the pass stops (exit 2)."""


@dataclass
class FiltersRequest:
    batches: Sequence[str] = ()
    addresses: Sequence[str] = ()
    dry_run: bool = False  # read and translate only; nothing is written to the target
    workers: int | None = None  # accounts at once (default: the plan's [run] workers)


@dataclass
class AccountFilters:
    """One account's outcome."""

    address: str
    target_address: str
    outcome: FilterOutcome
    translation: Translation | None = None
    origin: str | None = None
    error: str | None = None
    error_hint: str | None = None
    rule_ids: list[str] = field(default_factory=list)
    replaced: int = 0
    kept: int = 0
    auto_reply: AutoReplyState | None = None  # None: untouched
    auto_reply_sha256: str | None = None  # of the reply migrator set, to know it again
    script_sha256: str | None = None
    outage: Outage | None = None  # the server as a whole failed, not this account


@dataclass
class FiltersSummary:
    target_kind: str
    accounts: list[AccountFilters] = field(default_factory=list)

    def count(self, outcome: FilterOutcome) -> int:
        return sum(1 for a in self.accounts if a.outcome == outcome)

    def total(self, attr: str) -> int:
        return sum(getattr(a.translation, attr) for a in self.accounts if a.translation is not None)

    @property
    def exit_code(self) -> int:
        return 1 if any(self.count(o) for o in FILTER_PROBLEMS) else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "accounts": len(self.accounts),
            **{o.value: self.count(o) for o in FilterOutcome},
            "statements": self.total("statements"),
            "translated": self.total("translated"),
            "approximate": self.total("approximate"),
            "refused": self.total("refused"),
        }


def filters(
    plan: Plan,
    request: FiltersRequest,
    *,
    state_url: str | None = None,
    now: datetime | None = None,
    on_account: Callable[[AccountFilters], None] | None = None,
) -> FiltersSummary:
    settings = plan.filters
    if settings.sieve == "off":
        raise UsageError(
            f'plan {plan.name!r} does not read Sieve filters ([settings] sieve = "off")',
            hint='set [settings] sieve = "file" or "managesieve" (docs/sieve.md)',
        )
    now = now or datetime.now(UTC)
    reader = _reader(plan)
    naming = FolderNaming(
        archive_folder=plan.target.archive_folder,
        folder_map=plan.target.folder_map,
        exclude_folders=plan.target.exclude_folders,
        plan_file=plan.file,
    )
    ews = plan.target.kind == "ews" and not request.dry_run
    summary = FiltersSummary(target_kind=plan.target.kind)
    # a dry run is a read command: it records nothing (what was applied stays on record)
    access: Access = "read" if request.dry_run else "write"
    with plan_store(plan, state_url, access=access) as (store, plan_id):
        check_selection(store, plan_id, plan, batches=request.batches, addresses=request.addresses)
        accounts = in_scope_accounts(
            store, plan_id, batches=request.batches, addresses=request.addresses
        )
        target = None
        writers: Callable[[str], Any] | None = None
        if ews:
            from migrator.adapters.targets.ews.rules import rule_writer

            target = open_target(
                plan.target,
                secrets=target_secrets(plan),
                max_connections=plan.run.target_concurrency,
                plan_file=plan.file,
            )

            def writers(mailbox: str) -> Any:
                return rule_writer(
                    target, mailbox, remove_outlook_blob=settings.remove_outlook_rules
                )
        elif settings.graph and not request.dry_run:
            from migrator.adapters.targets.graph.rules import GraphRules, token_source

            tokens = token_source(plan.target, target_secrets(plan))  # one token for all accounts

            def writers(mailbox: str) -> Any:
                return GraphRules(settings.graph_url, tokens, mailbox, timeout=plan.target.timeout)

        run_id = None if request.dry_run else store.start_run(plan_id, "filters")
        try:
            register_sieve_commands()  # once, before the threads parse
            down = threading.Event()
            lock = threading.Lock()
            results: list[AccountFilters | None] = [None] * len(accounts)

            def one(position: int) -> None:
                if down.is_set():
                    return  # the server is down: accounts not begun are left for the next pass
                result = _account(
                    plan, settings, accounts[position], reader, naming, writers, store, request, now
                )
                results[position] = result
                if result.outage is not None and result.outage.confirmed:
                    down.set()
                if on_account is not None:
                    with lock:
                        on_account(result)

            workers = max(1, min(request.workers or plan.run.workers, len(accounts) or 1))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="filters") as pool:
                for future in [pool.submit(one, n) for n in range(len(accounts))]:
                    future.result()
            summary.accounts = [r for r in results if r is not None]
            outage = next(
                (r.outage for r in summary.accounts if r.outage and r.outage.confirmed), None
            )
            if outage is not None:
                # every next account would wait for the same dead server: stop here
                raise ServiceDown(
                    f"{SERVICES.get(outage.service, outage.service)} does not answer "
                    f"({outage.cause}); stopped after {len(summary.accounts)} of {len(accounts)} "
                    "accounts",
                    hint="run `migrator filters` again when it is back (each pass replaces "
                    "migrator's rules, so the accounts done are simply done again)",
                )
        except BaseException as exc:
            if run_id is not None:
                store.finish_run(run_id, RunStatus.FAILED, {"error": type(exc).__name__})
            raise
        finally:
            if target is not None:
                target.close()
        if run_id is not None:
            store.finish_run(
                run_id,
                RunStatus.PARTIAL if summary.exit_code else RunStatus.DONE,
                summary.as_json(),
            )
    return summary


# --- reading -------------------------------------------------------------------------------


Reader = Callable[[dict[str, str | None]], SieveScript | None]


def _reader(plan: Plan) -> Reader:
    settings = plan.filters
    if settings.sieve == "file":
        root = os.path.realpath(settings.root or "/")
        path_t = Template.parse(settings.path or "")
        scripts_t = Template.parse(settings.scripts) if settings.scripts else None

        def read_file(fields: dict[str, str | None]) -> SieveScript | None:
            path = _safe_path(path_t, fields, root, "Sieve script path")
            scripts = (
                _safe_path(scripts_t, fields, root, "Sieve scripts folder") if scripts_t else None
            )
            return read_active(path, scripts)

        return read_file
    password = read_secret(
        "ManageSieve password",
        env=settings.password_env,
        file=settings.password_file,
        key="[settings] sieve_password_env",
    )
    login_t = Template.parse(settings.login or "{address}")
    client = ManageSieveReader(settings, password or "")

    def read_managesieve(fields: dict[str, str | None]) -> SieveScript | None:
        try:
            login = login_t.render(fields)
        except TemplateError as exc:
            raise PermanentError(f"ManageSieve login: {exc}", reason="sieve-unreadable") from exc
        return client.read_active(login)

    return read_managesieve


def _safe_path(template: Template, fields: dict[str, str | None], root: str, what: str) -> str:
    """The rendered path; its folder (links resolved) must stay inside `root` (the last name
    may be Pigeonhole's link to the active script, read by the adapter without following)."""
    for name in template.fields:
        if name == "root":
            continue
        value = fields.get(name)
        if not value:
            raise PermanentError(
                f"{what} needs {{{name}}}, which this account lacks", reason="sieve-unreadable"
            )
        problem = _unsafe_path_value(value)
        if problem:
            raise PermanentError(f"{what}: {{{name}}} = {value!r} {problem}", reason="unsafe-path")
    path = os.path.normpath(template.render({**fields, "root": root}))
    folder = os.path.realpath(os.path.dirname(path))
    if os.path.commonpath([root, folder]) != root:
        raise PermanentError(
            f"{what} {path} leaves the root {root}",
            reason="unsafe-path",
            hint="[settings] sieve_root (default: [source] root) bounds where scripts are read",
        )
    return os.path.join(folder, os.path.basename(path))


def _fields(account: AccountRow) -> dict[str, str | None]:
    address = account.address or ""
    local, _, domain = address.rpartition("@")
    fields: dict[str, str | None] = {
        "address": address,
        "local": local,
        "domain": domain,
        "uid": account.uid,
        "name": account.name,
        "batch": account.batch,
    }
    for key, value in (account.attributes or {}).items():
        if isinstance(value, str) and key not in fields:
            fields[key] = value
    return fields


# --- one account -----------------------------------------------------------------------------


def _options(settings: FilterSettings, account: AccountRow) -> FilterOptions:
    own = {
        a.rpartition("@")[2].lower()
        for a in (account.address, account.target_address, *account.aliases)
        if a
    }
    return FilterOptions(
        rules=settings.rules,
        vacation=settings.vacation,
        forwarding=settings.forwarding,
        internal_domains=frozenset(own | set(settings.internal_domains)),
        separator=settings.separator,
        prefix=settings.prefix,
    )


def _account(
    plan: Plan,
    settings: FilterSettings,
    account: AccountRow,
    reader: Reader,
    naming: FolderNaming,
    writers: Callable[[str], Any] | None,
    store: Any,
    request: FiltersRequest,
    now: datetime,
) -> AccountFilters:
    address = account.address or account.key
    mailbox = account.target_address or address
    result = AccountFilters(address=address, target_address=mailbox, outcome=FilterOutcome.FAILED)
    previous = recorded.recorded(store, account.id)
    try:
        script = reader(_fields(account))
        result.origin = script.origin if script else None
        result.script_sha256 = _sha(script.text) if script else None
        parsed = parse_script(script) if script is not None else None
        translation = translate(parsed, naming, _options(settings, account), now)
        result.translation = translation
        if parsed is not None and parsed.error is not None:
            # Pigeonhole runs no filter from a script it cannot compile; what migrator applied
            # earlier stays until the script is fixed (nothing is lost meanwhile)
            result.outcome = FilterOutcome.BROKEN
            result.error = f"the script {parsed.script.name!r} does not parse: {parsed.error}"
            result.error_hint = (
                "fix the script (the line is named); then run `migrator filters` again"
            )
            result.rule_ids = list(previous.rule_ids) if previous else []
        elif request.dry_run:
            result.outcome = FilterOutcome.CHECKED
        elif writers is None:
            result.outcome = FilterOutcome.REPORTED if script is not None else FilterOutcome.NONE
        else:
            _apply(writers(mailbox), settings, translation, previous, result)
            result.outcome = FilterOutcome.APPLIED if script is not None else FilterOutcome.NONE
    except (PermanentError, TransientError) as exc:
        result.outcome = FilterOutcome.FAILED
        result.error = str(exc)
        result.error_hint = exc.hint
        result.outage = exc.outage
    if not request.dry_run:
        _record(store, account.id, result, previous)
    return result


def _apply(
    writer: Any,
    settings: FilterSettings,
    translation: Translation,
    previous: recorded.FilterRecord | None,
    result: AccountFilters,
) -> None:
    """Through the EWS writer (adapters/targets/ews/rules.py) or the Graph one (graph/rules.py):
    both replace migrator's rules and set or switch off migrator's automatic reply."""
    if settings.rules:
        known = previous.rule_ids if previous else []
        applied = writer.replace(translation.rules, known)
        result.rule_ids = list(applied.rule_ids)
        result.replaced = applied.replaced
        result.kept = applied.kept
    reply = translation.auto_reply
    if settings.vacation:
        if reply is not None and not reply.expired:
            writer.set_auto_reply(reply)
            result.auto_reply = (
                AutoReplyState.SCHEDULED if (reply.start or reply.end) else AutoReplyState.ON
            )
        else:
            # ours earlier and still what we set: the vacation is gone or over, switch it off;
            # an automatic reply the user set in Outlook is left alone
            if previous and previous.auto_reply in LIVE_REPLY and previous.auto_reply_sha256:
                current = writer.auto_reply()
                if (
                    current.state != "Disabled"
                    and _sha(current.internal_reply or "") == previous.auto_reply_sha256
                ):
                    writer.disable_auto_reply()
                    result.auto_reply = AutoReplyState.OFF
            if reply is not None and reply.expired:
                result.auto_reply = result.auto_reply or AutoReplyState.EXPIRED
        if result.auto_reply in LIVE_REPLY and reply is not None:
            result.auto_reply_sha256 = _sha(reply_html(reply.message))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _record(
    store: Any, account_id: int, result: AccountFilters, previous: recorded.FilterRecord | None
) -> None:
    t = result.translation
    auto_sha = result.auto_reply_sha256
    if result.auto_reply is None and previous is not None and result.outcome in FILTER_PROBLEMS:
        auto_sha = previous.auto_reply_sha256
    rec = recorded.FilterRecord(
        outcome=result.outcome,
        script=t.script if t else None,
        script_sha256=result.script_sha256,
        statements=t.statements if t else 0,
        translated=t.translated if t else 0,
        approximate=t.approximate if t else 0,
        refused=t.refused if t else 0,
        rules=len(t.rules) if t else 0,
        rule_ids=result.rule_ids
        if result.outcome in (FilterOutcome.APPLIED, FilterOutcome.NONE, FilterOutcome.BROKEN)
        else (previous.rule_ids if previous else []),
        auto_reply=result.auto_reply
        or (previous.auto_reply if previous and result.outcome in FILTER_PROBLEMS else None),
        auto_reply_sha256=auto_sha,
        error=result.error,
        refusals=[
            dict(statement=r.statement, line=r.line, reason=r.reason, text=r.text)
            for r in (t.refusals if t else ())
        ],
    )
    recorded.record(store, account_id, rec)
