"""`discover`: read the directory, classify every person, record the outcome in the state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrator.adapters.directory import open_directory
from migrator.commands.classify import Classifier
from migrator.commands.heartbeat import keep_run_alive
from migrator.commands.state import open_state
from migrator.model.account import DiscoveredAccount, Scope
from migrator.model.plan import Plan
from migrator.model.status import RunStatus
from migrator.plan.secrets import read_secret
from migrator.store.owners import identify

# At most this many example entries per reason are kept for the operator to look at.
_EXAMPLES_PER_REASON = 5


@dataclass
class DiscoveryReport:
    plan: str
    directory: str
    in_scope: int
    excluded: dict[str, int]
    invalid: dict[str, int]
    vanished: int
    batches: dict[str, int]
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "directory": self.directory,
            Scope.IN_SCOPE: self.in_scope,
            Scope.EXCLUDED: self.excluded,
            Scope.INVALID: self.invalid,
            Scope.VANISHED: self.vanished,
            "batches": self.batches,
            "changes": {"new": self.new, "updated": self.updated, "unchanged": self.unchanged},
            "seconds": round(self.seconds, 3),
            "examples": self.examples,
        }


def _examples(accounts: list[DiscoveredAccount]) -> dict[str, list[dict[str, str]]]:
    shown: dict[str, list[dict[str, str]]] = {}
    for account in accounts:
        if account.scope is not Scope.INVALID or not account.reason:
            continue
        bucket = shown.setdefault(account.reason, [])
        if len(bucket) < _EXAMPLES_PER_REASON:
            bucket.append({"dn": account.dn, "detail": account.detail or ""})
    return shown


def discover(
    plan: Plan,
    *,
    state_url: str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> DiscoveryReport:
    """Search the directory (paged), classify every entry and store the accounts.

    Re-running is idempotent and never resets the migration progress of an account.
    """
    started = time.monotonic()
    settings = plan.directory
    password = read_secret(
        "directory password",
        env=settings.password_env,
        file=settings.password_file,
        key="[directory] password_env",
    )
    store = open_state(plan, state_url, access="create")
    try:
        plan_id = store.ensure_plan(plan.name, plan.source.kind, plan.target.kind)
        run_id = store.start_run(
            plan_id, "discover", worker=identify(), lease_seconds=plan.run.lease_seconds
        )
        classifier = Classifier(plan)
        try:
            with (
                keep_run_alive(store, run_id, plan.run.lease_seconds),
                open_directory(settings, password) as directory,
            ):
                scoped = f"(&{settings.population}{settings.filter})"
                for count, entry in enumerate(
                    directory.search(scoped, settings.attributes.requested()), 1
                ):
                    classifier.selected(entry)
                    if progress and count % 1000 == 0:
                        progress("selected", count)
                # Everyone else, in two lean searches (the people selected above are not
                # fetched and decoded twice): with an address, then without one (DN only).
                address = settings.attributes.address
                others = [
                    (f"(&{settings.population}(!{settings.filter})({address}=*))", [address]),
                    (f"(&{settings.population}(!({address}=*)))", ["1.1"]),
                ]
                if settings.is_ldif:
                    # ldap3's in-process server evaluates (!...) unreliably: list everyone
                    # (the classifier skips the people already selected)
                    others = [(settings.population, [address])]
                count = 0
                for search_filter, attributes in others:
                    for entry in directory.search(search_filter, attributes):
                        classifier.not_selected(entry)
                        count += 1
                        if progress and count % 1000 == 0:
                            progress("directory", count)
            accounts = classifier.finish()
            summary = store.record_discovery(plan_id, run_id, accounts)
        except BaseException as exc:
            store.finish_run(run_id, RunStatus.FAILED, {"error": type(exc).__name__})
            raise
        counts = store.discovery_counts(plan_id)
        report = DiscoveryReport(
            plan=plan.name,
            directory=settings.url,
            in_scope=counts[Scope.IN_SCOPE],
            excluded=dict(counts[Scope.EXCLUDED]),
            invalid=dict(counts[Scope.INVALID]),
            vanished=counts[Scope.VANISHED],
            batches=dict(counts["batches"]),
            new=summary.new,
            updated=summary.updated,
            unchanged=summary.unchanged,
            seconds=time.monotonic() - started,
            examples=_examples(accounts),
        )
        store.finish_run(run_id, RunStatus.DONE, report.as_json())
        return report
    finally:
        store.close()
