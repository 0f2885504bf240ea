"""`routing`: Postfix transport_maps lines sending migrated accounts' new mail to Exchange."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from migrator.adapters.postfix.map_file import map_key_problem
from migrator.commands.nexthop import host_result, nexthop_result
from migrator.commands.state import check_selection, plan_store
from migrator.model.errors import UsageError
from migrator.model.plan import Plan
from migrator.store.reporting import queries


def nexthop_for(plan: Plan, nexthop: str | None) -> str:
    """A transport_maps result: --nexthop checked as Postfix reads it (a full transport, or a
    host that becomes smtp:[HOST]:25), else smtp:[HOST]:25 for the host of the plan's target."""
    if nexthop is not None:
        return nexthop_result(nexthop)
    hostname = urlparse(plan.target.url or "").hostname or plan.target.host
    if not hostname:
        raise UsageError(
            "the plan's [target] has no url or host to take the next hop from",
            hint="give it with --nexthop, e.g. --nexthop exchange.example.org",
        )
    return host_result(hostname)


@dataclass
class Routing:
    lines: list[str]  # `address<TAB>nexthop`, sorted by address
    unsafe: list[str]  # migrated addresses that cannot be a transport_maps key (left out)


def routing_lines(
    plan: Plan,
    *,
    state_url: str | None = None,
    batches: Sequence[str] = (),
    nexthop: str | None = None,
) -> Routing:
    """One line per synced or verified account (of these batches), sorted by address."""
    result = nexthop_for(plan, nexthop)
    with plan_store(plan, state_url, access="read") as (store, plan_id):
        check_selection(store, plan_id, plan, batches=batches, in_scope_only=False)
        rows = queries.routable_accounts(store, plan_id, batches)
    addresses = sorted({str(r["address"]).lower() for r in rows if r["address"]})
    unsafe = [a for a in addresses if map_key_problem(a)]
    return Routing([f"{a}\t{result}" for a in addresses if not map_key_problem(a)], unsafe)
