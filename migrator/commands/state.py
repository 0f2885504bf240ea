"""Which state database a command uses, and opening it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from migrator.model.errors import UsageError
from migrator.model.plan import Plan
from migrator.store import AccountRow, Store, open_store

DEFAULT_STATE_URL = "sqlite:///state/migrator.db"


def state_url_for(plan: Plan | None, explicit: str | None = None) -> str:
    """--state wins, then $MIGRATOR_STATE, then the plan's [state] url, then the default."""
    if explicit:
        return explicit
    env = os.environ.get("MIGRATOR_STATE")
    if env:
        return env
    if plan is not None and plan.state_url:
        return plan.state_url
    return DEFAULT_STATE_URL


def open_state(plan: Plan | None, explicit: str | None = None) -> Store:
    return open_store(state_url_for(plan, explicit))


@contextmanager
def plan_store(plan: Plan, state_url: str | None) -> Iterator[tuple[Store, int]]:
    """The plan's state database and the plan's id in it; a clear error when never discovered."""
    store = open_state(plan, state_url)
    try:
        plan_id = store.plan_id(plan.name)
        if plan_id is None:
            raise UsageError(
                f"plan {plan.name!r} is not in {store.url} yet",
                hint=f"run `migrator discover --plan {plan.file}` first",
            )
        yield store, plan_id
    finally:
        store.close()


def in_scope_accounts(
    store: Store, plan_id: int, *, batches: Sequence[str] = (), addresses: Sequence[str] = ()
) -> list[AccountRow]:
    """The plan's accounts in scope, narrowed to some batches and/or some (source or target)
    addresses when given."""
    wanted = {a.strip().lower() for a in addresses}
    return [
        r
        for r in store.list_accounts(plan_id)
        if r.scope == "in_scope"
        and (not batches or r.batch in batches)
        and (not wanted or r.address in wanted or r.target_address in wanted)
    ]
