"""Which state database a command uses, and opening it."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

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


# what to do about an account discovery left out of scope, by scope
_OUT_OF_SCOPE_ADVICE = {
    "excluded": "the plan's [directory] filter leaves it out: change the filter (or the entry), "
    "then `migrator discover --plan {plan}`",
    "invalid": "fix its directory entry (the reason says what is wrong), then "
    "`migrator discover --plan {plan}`",
    "vanished": "it is no longer found in the directory; `migrator discover --plan {plan}` "
    "brings it back once it is",
}


def check_selection(
    store: Store,
    plan_id: int,
    plan: Plan,
    *,
    batches: Sequence[str] = (),
    addresses: Sequence[str] = (),
    in_scope_only: bool = True,
) -> None:
    """Refuse a selection naming an account or a batch the plan does not have (a typo must not
    end in "0 accounts", exit 0), or, with `in_scope_only`, one whose accounts are not in scope;
    one UsageError names every such name and why."""
    from migrator.store import queries

    problems: list[str] = []
    hints: list[str] = []
    for address in addresses:
        row = queries.find_account(store, plan_id, address)
        if row is None:
            problems.append(f"no account {address!r} in plan {plan.name!r}")
            hints.append(f"`migrator accounts --plan {plan.file}` lists the accounts")
        elif in_scope_only and row["scope"] != "in_scope":
            problems.append(_out_of_scope(address, row))
            hints.append(scope_advice(row["scope"], plan.file) or "")
    if batches:
        known = queries.batch_scopes(store, plan_id)
        for batch in batches:
            scopes = known.get(batch)
            if not scopes:
                problems.append(f"no batch {batch!r} in plan {plan.name!r}")
                hints.append(_batch_hint(batch, known))
            elif in_scope_only and not scopes.get("in_scope"):
                counts = ", ".join(f"{n:,} {scope}" for scope, n in sorted(scopes.items()))
                problems.append(f"batch {batch!r} has no account in scope ({counts})")
    if problems:
        unique_hints = [h for i, h in enumerate(hints) if h and h not in hints[:i]]
        raise UsageError("; ".join(problems), hint="; ".join(unique_hints) or None)


def scope_advice(scope: str, plan_file: str) -> str | None:
    """What to do about an account that is not in scope (None for one that is)."""
    text = _OUT_OF_SCOPE_ADVICE.get(scope)
    return text.format(plan=plan_file) if text else None


def _out_of_scope(address: str, row: dict[str, Any]) -> str:
    why = ": ".join(str(part) for part in (row["reason"], row["detail"]) if part)
    return f"account {address!r} is {row['scope']}, not in scope{f' ({why})' if why else ''}; it is not migrated"


def _batch_hint(batch: str, known: dict[str, dict[str, int]]) -> str:
    names = sorted(known)
    near = difflib.get_close_matches(batch, names, n=1)
    if not names:
        return "the plan's accounts have no batch"
    shown = ", ".join(names[:10]) + (f" ... ({len(names):,} in all)" if len(names) > 10 else "")
    return (f"did you mean {near[0]!r}? " if near else "") + f"batches: {shown}"
