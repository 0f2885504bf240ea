"""Which state database a command uses, and opening it for what the command does.

Each command opens the state with the access it needs (store/database/access.py): the read commands
(status, accounts, show, events, report, routing, workers, run --dry-run) with "read", which
never creates, writes or upgrades anything; `discover` with "create"; the other commands that
write (run, retry, reset, verify, workers --ceiling) with "write"; `migrator upgrade` with
"upgrade". docs/state.md lists them.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.model.errors import StateError, UsageError
from migrator.model.plan import DEFAULT_STATE_URL, Plan
from migrator.model.scope import Scope
from migrator.model.scope import advice as scope_advice
from migrator.plan import resolve_state_url
from migrator.store.database.access import Access, EmptyStateDatabase, NoStateDatabase, SchemaBehind
from migrator.store.database.raw import Raw
from migrator.store.database.readonly import open_readonly
from migrator.store.database.urls import mask_url
from migrator.store.reporting import aggregates

if TYPE_CHECKING:  # the Store (and SQLAlchemy under it) loads only when a command opens it
    from migrator.store import AccountRow, Store


# Told, in a sentence, when opening the state created or upgraded its schema (the CLI prints it
# as a note on stderr, so that a new database or an upgraded one never goes unnoticed).
on_schema_change: Callable[[str], None] | None = None


@dataclass(frozen=True)
class StateLocation:
    url: str
    origin: str  # where the URL came from and what a relative path is relative to
    options: str  # the options that name this database again, for a hint ("--plan FILE")


def state_location(plan: Plan | None, explicit: str | None = None) -> StateLocation:
    """--state wins, then $MIGRATOR_STATE, then the plan's [state] url, then the default.

    On the command line (--state, $MIGRATOR_STATE) a relative SQLite path starts at the current
    directory, as every command-line path does; in a plan (its URL, or the default when it has
    none) at the plan's folder, as every path in a plan does.
    """
    if explicit:
        return StateLocation(
            explicit, "given with --state; a relative path starts at the current directory",
            f"--state {mask_url(explicit)}",
        )  # fmt: skip
    env = os.environ.get("MIGRATOR_STATE")
    if env:
        return StateLocation(
            env, "given in $MIGRATOR_STATE; a relative path starts at the current directory", ""
        )
    if plan is None:
        return StateLocation(
            DEFAULT_STATE_URL, "the default, relative to the current directory",
            f"--state {DEFAULT_STATE_URL}",
        )  # fmt: skip
    folder = Path(plan.file).resolve().parent
    options = f"--plan {plan.file}"
    if plan.state_url:
        return StateLocation(
            plan.state_url,
            f"the plan's [state] url; a relative path starts at the plan's folder {folder}",
            options,
        )  # fmt: skip
    return StateLocation(
        resolve_state_url(DEFAULT_STATE_URL, folder),
        f"the default {DEFAULT_STATE_URL}, relative to the plan's folder {folder}",
        options,
    )


def state_url_for(plan: Plan | None, explicit: str | None = None) -> str:
    return state_location(plan, explicit).url


def open_state(plan: Plan | None, explicit: str | None = None, *, access: Access) -> Store:
    """The state database for `plan`, opened for `access`; errors say which database was
    looked for, where its name came from, and what to run."""
    from migrator.store import open_store

    location = state_location(plan, explicit)
    try:
        store = open_store(location.url, access)
    except NoStateDatabase as exc:
        raise StateError(
            f"no state database at {exc.path} ({location.origin})",
            hint=_first_discover(plan, "or name the right database with --state"),
        ) from exc
    except EmptyStateDatabase as exc:
        exc.hint = _first_discover(plan, "or check the URL")
        raise
    except SchemaBehind as exc:
        where = f" {location.options}" if location.options else ""
        exc.hint = (
            f"upgrade it with `migrator upgrade{where}`; with several hosts, first stop "
            "`migrator run` on every host (docs/multihost.md)"
        )
        raise
    change = store.schema_change
    if change is not None and access != "upgrade" and on_schema_change is not None:
        if change.before is None:
            on_schema_change(
                f"created state database {store.url} (schema {change.after}; {location.origin})"
            )
        else:
            on_schema_change(
                f"upgraded state database {store.url} from schema {change.before} to {change.after}"
            )
    return store


def _first_discover(plan: Plan | None, otherwise: str) -> str:
    discover = (
        f"`migrator discover --plan {plan.file}`" if plan is not None else "`migrator discover`"
    )
    return f"{discover} creates it; {otherwise}"


@contextmanager
def plan_store(plan: Plan, state_url: str | None, *, access: Access) -> Iterator[tuple[Store, int]]:
    """The plan's state database and the plan's id in it; a clear error when never discovered."""
    store = open_state(plan, state_url, access=access)
    try:
        plan_id = store.plan_id(plan.name)
        if plan_id is None:
            raise _not_discovered(plan, store.url, state_url)
        yield store, plan_id
    finally:
        store.close()


@contextmanager
def plan_reader(plan: Plan, state_url: str | None) -> Iterator[tuple[Raw, int, str]]:
    """For read-only aggregates (`status`): a DBAPI reader, the plan's id and the URL as shown.

    Opened without SQLAlchemy when the database is ready for it (half a second less start-up),
    else through the Store, which explains why it cannot be read.
    """
    quick = open_readonly(state_url_for(plan, state_url))
    if quick is None:
        with plan_store(plan, state_url, access="read") as (store, plan_id), store.reader() as db:
            yield db, plan_id, store.url
        return
    try:
        found = aggregates.plan_id(quick.db, plan.name)
        if found is None:
            raise _not_discovered(plan, quick.url, state_url)
        yield quick.db, found, quick.url
    finally:
        quick.close()


def _not_discovered(plan: Plan, shown_url: str, state_url: str | None) -> UsageError:
    origin = state_location(plan, state_url).origin
    return UsageError(
        f"plan {plan.name!r} is not in {shown_url} yet ({origin})",
        hint=f"run `migrator discover --plan {plan.file}` first, if this is the database you meant",
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
        if r.scope == Scope.IN_SCOPE
        and (not batches or r.batch in batches)
        and (not wanted or r.address in wanted or r.target_address in wanted)
    ]


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
    from migrator.store.reporting import queries

    problems: list[str] = []
    hints: list[str] = []
    for address in addresses:
        row = queries.find_account(store, plan_id, address)
        if row is None:
            problems.append(f"no account {address!r} in plan {plan.name!r}")
            hints.append(f"`migrator accounts --plan {plan.file}` lists the accounts")
        elif in_scope_only and row["scope"] != Scope.IN_SCOPE:
            problems.append(_out_of_scope(address, row))
            hints.append(scope_advice(row["scope"], str(plan.file)) or "")
    if batches:
        known = queries.batch_scopes(store, plan_id)
        for batch in batches:
            scopes = known.get(batch)
            if not scopes:
                problems.append(f"no batch {batch!r} in plan {plan.name!r}")
                hints.append(_batch_hint(batch, known))
            elif in_scope_only and not scopes.get(Scope.IN_SCOPE):
                counts = ", ".join(f"{n:,} {scope}" for scope, n in sorted(scopes.items()))
                problems.append(f"batch {batch!r} has no account in scope ({counts})")
    if problems:
        unique_hints = [h for i, h in enumerate(hints) if h and h not in hints[:i]]
        raise UsageError("; ".join(problems), hint="; ".join(unique_hints) or None)


def _out_of_scope(address: str, row: dict[str, Any]) -> str:
    why = ": ".join(str(part) for part in (row["reason"], row["detail"]) if part)
    return (
        f"account {address!r} is {row['scope']}, not in scope{f' ({why})' if why else ''}; it is "
        "not migrated"
    )


def _batch_hint(batch: str, known: dict[str, dict[str, int]]) -> str:
    names = sorted(known)
    near = difflib.get_close_matches(batch, names, n=1)
    if not names:
        return "the plan's accounts have no batch"
    shown = ", ".join(names[:10]) + (f" ... ({len(names):,} in all)" if len(names) > 10 else "")
    return (f"did you mean {near[0]!r}? " if near else "") + f"batches: {shown}"
