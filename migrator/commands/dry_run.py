"""`run --dry-run`: connect, preflight and count, writing nothing to the target or ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from migrator.adapters.sources import open_account_source
from migrator.adapters.targets import open_target
from migrator.commands.secrets import source_password, target_secrets
from migrator.commands.state import check_selection, in_scope_accounts, plan_store
from migrator.engine.mailbox import too_large
from migrator.model.errors import EXIT_OK, EXIT_PARTIAL, MigratorError
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
    report = DryRunReport()
    with plan_store(plan, state_url, access="read") as (store, plan_id):
        check_selection(store, plan_id, plan, batches=batches, addresses=addresses)
        rows = in_scope_accounts(store, plan_id, batches=batches, addresses=addresses)
        if limit is not None:
            rows = rows[:limit]
        target = open_target(
            plan.target,
            secrets=secrets,
            max_connections=plan.run.target_concurrency,
            plan_file=plan.file,
        )
        try:
            for row in rows:
                report.accounts.append(_one(plan, store, target, row, password))
        finally:
            target.close()
        return report


def _one(plan: Plan, store: Any, target: Any, row: Any, password: str | None) -> DryRunAccount:
    result = DryRunAccount(address=row.address or row.key, ok=True)
    try:
        target.preflight(row.target_address or row.address)
        known_folders = {f.native: f.id for f in ledger.folders(store, row.id)}
        with open_account_source(plan.source, row.source_path, row.attributes, password) as source:
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
                        if too_large(record.size, target) is not None:
                            result.too_large += 1
                    else:
                        result.unreadable += 1
    except MigratorError as exc:
        result.ok = False
        result.error = exc.message
        result.hint = exc.hint
    return result
