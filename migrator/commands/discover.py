"""`discover`: read the directory, classify every person, record the outcome in the state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrator.adapters.directory import DirectoryReader, open_directory
from migrator.commands.classify import Classifier
from migrator.commands.heartbeat import keep_run_alive
from migrator.commands.state import open_state
from migrator.model.account import DiscoveredAccount, Scope
from migrator.model.plan import DirectorySettings, Plan
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


def _others_filter(settings: DirectorySettings) -> tuple[str, list[str]]:
    """The people the campaign filter does not select, in one search (with their address,
    if any): those with an address the filter rejects, and those without an address, OR-ed.
    These were two searches (3 x 2,000 searches of an OU for a directory of 2,000 OUs
    behind a size limit, with the selected people); the server evaluates each side as it
    did alone, so the union holds the same entries (a person the filter says neither yes nor
    no to, Undefined, is in neither), and nothing is decided by evaluating a filter here.
    Which side an entry came from is told by its address, as the classifier always did."""
    address = settings.attributes.address
    if settings.is_ldif:
        # ldap3's in-process server evaluates (!...) unreliably: list everyone (the
        # classifier skips the people already selected)
        return settings.population, [address]
    with_address = f"(&(!{settings.filter})({address}=*))"
    return f"(&{settings.population}(|{with_address}(!({address}=*))))", [address]


def read_directory(
    directory: DirectoryReader,
    classifier: Classifier,
    progress: Callable[[str, int], None] | None,
) -> None:
    """Everyone in the population, in two searches: the people the filter selects (every
    attribute the plan uses), then everyone else (their address only: the people selected
    are not fetched and decoded twice). Behind a size limit each is read one subtree at a
    time, and the subtrees are listed once for both (the reader keeps the list)."""
    settings = directory.settings
    scoped = f"(&{settings.population}{settings.filter})"
    for count, entry in enumerate(directory.search(scoped, settings.attributes.requested()), 1):
        classifier.selected(entry)
        if progress and count % 1000 == 0:
            progress("selected", count)
    others_filter, others_attributes = _others_filter(settings)
    for count, entry in enumerate(directory.search(others_filter, others_attributes), 1):
        classifier.not_selected(entry)
        if progress and count % 1000 == 0:
            progress("directory", count)


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
                read_directory(directory, classifier, progress)
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
