"""`retry` and `reset`: give failed accounts another chance, or forget an account's progress."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from migrator.commands.state import check_selection, plan_store
from migrator.model.errors import UsageError
from migrator.model.plan import Plan
from migrator.model.scope import Scope
from migrator.model.status import Status
from migrator.store import Store, ledger
from migrator.store.claims import reset_account, reset_attempts, worker_name
from migrator.store.reporting.queries import find_account


def _account(store: Store, plan_id: int, plan: Plan, address: str) -> dict[str, Any]:
    row = find_account(store, plan_id, address)
    if row is None:
        raise UsageError(
            f"no account {address!r} in plan {plan.name!r}", hint="check `migrator accounts`"
        )
    return row


def prepare_retry(
    plan: Plan,
    *,
    state_url: str | None = None,
    addresses: Sequence[str] = (),
    skipped: bool = False,
) -> list[str]:
    """Reset the attempt counters of failed accounts (all, or the named ones) and, with
    `skipped`, forget their skipped messages so the next pass tries them again. Returns the
    addresses made eligible."""
    with plan_store(plan, state_url, access="write") as (store, plan_id):
        ids: list[int] | None = None
        names: list[str] = []
        if addresses:
            check_selection(store, plan_id, plan, addresses=addresses)
            ids = []
            for address in addresses:
                row = _account(store, plan_id, plan, address)
                ids.append(int(row["id"]))
                names.append(row["address"] or row["key"])
        reset_attempts(store, plan_id, ids)
        if skipped:
            for account_id in ids or [
                r.id for r in store.list_accounts(plan_id) if r.scope == Scope.IN_SCOPE
            ]:
                ledger.forget_skipped(store, account_id)
        if not names:
            names = [r.address or r.key for r in store.list_accounts(plan_id, state=Status.FAILED)]
        return names


def reset(plan: Plan, address: str, *, state_url: str | None = None) -> str:
    with plan_store(plan, state_url, access="write") as (store, plan_id):
        row = _account(store, plan_id, plan, address)
        reset_account(store, plan_id, int(row["id"]), worker=worker_name())
        return str(row["address"] or row["key"])
