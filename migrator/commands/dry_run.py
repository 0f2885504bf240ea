"""`run --dry-run`: connect, preflight and count, writing nothing to the target or ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from migrator.adapters.sources import open_source
from migrator.adapters.targets import open_target
from migrator.commands.secrets import source_password, target_secrets
from migrator.commands.state import open_state
from migrator.model.errors import EXIT_OK, EXIT_PARTIAL, MigratorError, UsageError
from migrator.model.mail import MessageRecord
from migrator.model.plan import Plan
from migrator.store import ledger


@dataclass
class DryRunAccount:
    address: str
    ok: bool
    folders: int = 0
    messages: int = 0
    bytes: int = 0
    new_messages: int = 0
    too_large: int = 0
    unreadable: int = 0
    error: str | None = None
    hint: str | None = None


@dataclass
class DryRunReport:
    accounts: list[DryRunAccount] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if all(a.ok for a in self.accounts) else EXIT_PARTIAL

    def as_json(self) -> dict[str, Any]:
        return {
            "accounts": [a.__dict__ for a in self.accounts],
            "totals": {
                "accounts": len(self.accounts),
                "ok": sum(a.ok for a in self.accounts),
                "messages": sum(a.messages for a in self.accounts),
                "new_messages": sum(a.new_messages for a in self.accounts),
                "bytes": sum(a.bytes for a in self.accounts),
            },
        }


def dry_run_plan(
    plan: Plan,
    *,
    state_url: str | None = None,
    batches: Sequence[str] = (),
    addresses: Sequence[str] = (),
    limit: int | None = None,
) -> DryRunReport:
    secrets = target_secrets(plan)
    password = source_password(plan)
    store = open_state(plan, state_url)
    report = DryRunReport()
    try:
        plan_id = store.plan_id(plan.name)
        if plan_id is None:
            raise UsageError(f"plan {plan.name!r} has no accounts yet", hint=f"run `migrator discover --plan {plan.file}` first")
        wanted = {a.lower() for a in addresses}
        rows = [
            r
            for r in store.list_accounts(plan_id)
            if r.scope == "in_scope"
            and (not batches or r.batch in batches)
            and (not wanted or (r.address in wanted or r.target_address in wanted))
        ]
        if limit is not None:
            rows = rows[:limit]
        target = open_target(plan.target, secrets=secrets, max_connections=plan.run.target_concurrency, plan_file=plan.file)
        try:
            for row in rows:
                report.accounts.append(_one(plan, store, target, row, password))
        finally:
            target.close()
        return report
    finally:
        store.close()


def _one(plan: Plan, store: Any, target: Any, row: Any, password: str | None) -> DryRunAccount:
    result = DryRunAccount(address=row.address or row.key, ok=True)
    try:
        target.preflight(row.target_address or row.address)
        known_folders = {f.native: f.id for f in ledger.folders(store, row.id)}
        with open_source(
            plan.source,
            mailbox_path=row.source_path,
            login=row.attributes.get("login"),
            password=password,
            folders_path=row.attributes.get("folders_path"),
        ) as source:
            for folder in source.folders():
                if target.is_excluded(folder.path):
                    continue
                result.folders += 1
                folder_id = known_folders.get(folder.native)
                known = ledger.known_keys(store, folder_id) if folder_id is not None else set()
                for record in source.messages(folder):
                    result.messages += 1
                    if record.key not in known:
                        result.new_messages += 1
                    if isinstance(record, MessageRecord):
                        result.bytes += record.size
                        if record.size > target.max_message_size:
                            result.too_large += 1
                    else:
                        result.unreadable += 1
    except MigratorError as exc:
        result.ok = False
        result.error = exc.message
        result.hint = exc.hint
    return result
