"""`accounts`: list the accounts the state knows for a plan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from migrator.commands.state import check_selection, plan_store
from migrator.model.errors import UsageError
from migrator.model.plan import Plan
from migrator.store.rows import ALL_STATES

STATES = ALL_STATES  # a progress status for accounts in scope, else the discovery scope


def _check_state(state: str | None) -> None:
    if state is not None and state not in STATES:
        raise UsageError(
            f"unknown account state {state!r}", hint="use one of: " + ", ".join(STATES)
        )


def list_accounts(
    plan: Plan, *, state_url: str | None = None, state: str | None = None, batch: str | None = None
) -> list[Any]:
    return list(iter_accounts(plan, state_url=state_url, state=state, batch=batch))


def iter_accounts(
    plan: Plan, *, state_url: str | None = None, state: str | None = None, batch: str | None = None
) -> Iterator[Any]:
    """The accounts ordered by key, one at a time: a plan of 100,000 accounts is listed in
    constant memory and its first lines print before the last are read. The database is opened
    (and a wrong --batch refused) at the first next(); it stays open until the iterator ends or
    is closed."""
    _check_state(state)
    with plan_store(plan, state_url, access="read") as (store, plan_id):
        if batch is not None:
            check_selection(store, plan_id, plan, batches=[batch], in_scope_only=False)
        yield from store.iter_accounts(plan_id, state=state, batch=batch)
