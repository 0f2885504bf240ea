"""Which state database a command uses, and opening it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from migrator.model.errors import UsageError
from migrator.model.plan import Plan
from migrator.store import reporting
from migrator.store.raw import Raw
from migrator.store.readonly import open_readonly

if TYPE_CHECKING:  # the Store (and SQLAlchemy under it) loads only when a command opens it
    from migrator.store import AccountRow, Store

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
    from migrator.store import open_store

    return open_store(state_url_for(plan, explicit))


@contextmanager
def plan_store(plan: Plan, state_url: str | None) -> Iterator[tuple[Store, int]]:
    """The plan's state database and the plan's id in it; a clear error when never discovered."""
    store = open_state(plan, state_url)
    try:
        plan_id = store.plan_id(plan.name)
        if plan_id is None:
            raise _not_discovered(plan, store.url)
        yield store, plan_id
    finally:
        store.close()


@contextmanager
def plan_reader(plan: Plan, state_url: str | None) -> Iterator[tuple[Raw, int, str]]:
    """For read-only aggregates (`status`): a DBAPI reader, the plan's id and the URL as shown.

    Opened without SQLAlchemy when the database is ready for it (half a second less start-up),
    else through the Store, which also upgrades an older schema.
    """
    quick = open_readonly(state_url_for(plan, state_url))
    if quick is None:
        with plan_store(plan, state_url) as (store, plan_id), store.reader() as db:
            yield db, plan_id, store.url
        return
    try:
        found = reporting.plan_id(quick.db, plan.name)
        if found is None:
            raise _not_discovered(plan, quick.url)
        yield quick.db, found, quick.url
    finally:
        quick.close()


def _not_discovered(plan: Plan, shown_url: str) -> UsageError:
    return UsageError(
        f"plan {plan.name!r} is not in {shown_url} yet",
        hint=f"run `migrator discover --plan {plan.file}` first",
    )


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
