"""`accounts`: list the accounts the state knows for a plan."""

from __future__ import annotations

from typing import Any

from migrator.commands.state import check_selection, plan_store
from migrator.model.errors import UsageError
from migrator.model.plan import Plan
from migrator.store.rows import ALL_STATES

STATES = ALL_STATES  # a progress status for accounts in scope, else the discovery scope


def list_accounts(
    plan: Plan, *, state_url: str | None = None, state: str | None = None, batch: str | None = None
) -> list[Any]:
    if state is not None and state not in STATES:
        raise UsageError(
            f"unknown account state {state!r}", hint="use one of: " + ", ".join(STATES)
        )
    with plan_store(plan, state_url, access="read") as (store, plan_id):
        if batch is not None:
            check_selection(store, plan_id, plan, batches=[batch], in_scope_only=False)
        return list(store.list_accounts(plan_id, state=state, batch=batch))
