"""`retry` and `reset`: give failed accounts another chance, or forget an account's progress."""

from __future__ import annotations

from collections.abc import Sequence

from migrator.commands.state import open_state
from migrator.model.errors import UsageError
from migrator.model.plan import Plan
from migrator.store import ledger
from migrator.store.work import find_account, reset_account, reset_attempts, worker_name


def _plan_id(store: object, plan: Plan) -> int:
    plan_id = store.plan_id(plan.name)  # type: ignore[attr-defined]
    if plan_id is None:
        raise UsageError(f"plan {plan.name!r} has no accounts yet", hint=f"run `migrator discover --plan {plan.file}` first")
    return int(plan_id)


def prepare_retry(
    plan: Plan, *, state_url: str | None = None, addresses: Sequence[str] = (), skipped: bool = False
) -> list[str]:
    """Reset the attempt counters of failed accounts (all, or the named ones) and, with
    `skipped`, forget their skipped messages so the next pass tries them again. Returns the
    addresses made eligible."""
    store = open_state(plan, state_url)
    try:
        plan_id = _plan_id(store, plan)
        ids: list[int] | None = None
        names: list[str] = []
        if addresses:
            ids = []
            for address in addresses:
                row = find_account(store, plan_id, address)
                if row is None:
                    raise UsageError(f"no account {address!r} in plan {plan.name!r}", hint="check `migrator accounts`")
                ids.append(int(row["id"]))
                names.append(row["address"] or row["key"])
        reset_attempts(store, plan_id, ids)
        if skipped:
            for account_id in ids or [r.id for r in store.list_accounts(plan_id) if r.scope == "in_scope"]:
                ledger.forget_skipped(store, account_id)
        if not names:
            names = [r.address or r.key for r in store.list_accounts(plan_id, state="failed")]
        return names
    finally:
        store.close()


def reset(plan: Plan, address: str, *, state_url: str | None = None) -> str:
    store = open_state(plan, state_url)
    try:
        plan_id = _plan_id(store, plan)
        row = find_account(store, plan_id, address)
        if row is None:
            raise UsageError(f"no account {address!r} in plan {plan.name!r}", hint="check `migrator accounts`")
        reset_account(store, plan_id, int(row["id"]), worker=worker_name())
        return str(row["address"] or row["key"])
    finally:
        store.close()
