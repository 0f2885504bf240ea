"""`retry --skipped` forgets skipped and failed messages so the next pass tries them again; the
counts `status`, `show` and reports print must drop by exactly what was forgotten."""

from __future__ import annotations

from migrator.model.account import DiscoveredAccount, Scope
from migrator.model.mail import FolderInfo, FolderRole
from migrator.store import Store, ledger
from migrator.store.claims import Claim, claim_next
from migrator.store.ledger import Outcome
from migrator.store.types import utcnow
from tests.fixtures.store import *  # noqa: F403

ADDRESS = "ana@example.org"


def _account_with_skips(store: Store, plan_name: str) -> tuple[Claim, dict[str, int]]:
    """One account, two folders: Inbox with 1 done, 2 too-large, 1 unreadable, 1 rejected
    (failed); Sent with 1 unreadable."""
    plan_id = store.ensure_plan(plan_name, "maildir", "ews")
    store.record_discovery(plan_id, None, [DiscoveredAccount(key=ADDRESS, dn="uid=ana", scope=Scope.IN_SCOPE,
                                                             address=ADDRESS)])  # fmt: skip
    claim = claim_next(store, plan_id, worker="w1", lease_seconds=300, run_started=utcnow())
    assert claim is not None
    folders = {}
    for name, role in (("Inbox", FolderRole.INBOX), ("Sent", FolderRole.SENT)):
        folders[name] = ledger.ensure_folder(
            store, claim, FolderInfo(path=(name,), role=role, native=name)
        )
    ledger.finish_chunk(store, claim, folders["Inbox"], [
        Outcome("d1", "done", size=100, target_id="t1"),
        Outcome("big1", "skipped", size=10, reason="too-large"),
        Outcome("big2", "skipped", size=10, reason="too-large"),
        Outcome("unr1", "skipped", reason="unreadable"),
        Outcome("rej1", "failed", reason="rejected"),
    ], in_flight=False)  # fmt: skip
    ledger.finish_chunk(
        store,
        claim,
        folders["Sent"],
        [Outcome("unr2", "skipped", reason="unreadable")],
        in_flight=False,
    )
    return claim, folders


def _counts(
    store: Store, claim: Claim
) -> tuple[tuple[int, int, int], dict[str, tuple[int, int, int]]]:
    [row] = store.list_accounts(claim.plan_id)
    account = (row.messages_done, row.messages_skipped, row.messages_failed)
    folders = {
        f.native: (f.done_count, f.skipped_count, f.failed_count)
        for f in ledger.folders(store, claim.account_id)
    }
    return account, folders


def test_forgetting_some_reasons_lowers_the_counts_by_what_was_forgotten(
    store: Store, plan_name: str
) -> None:
    claim, _folders = _account_with_skips(store, plan_name)
    assert _counts(store, claim) == ((1, 4, 1), {"Inbox": (1, 3, 1), "Sent": (0, 1, 0)})

    assert ledger.forget_skipped(store, claim.account_id, reasons=["unreadable"]) == 2

    # the two too-large skips and the rejected message are still recorded, and still counted
    assert _counts(store, claim) == ((1, 2, 1), {"Inbox": (1, 2, 1), "Sent": (0, 0, 0)})

    assert ledger.forget_skipped(store, claim.account_id, reasons=["rejected"]) == 1
    assert _counts(store, claim) == ((1, 2, 0), {"Inbox": (1, 2, 0), "Sent": (0, 0, 0)})


def test_forgetting_every_reason_clears_the_counts(store: Store, plan_name: str) -> None:
    claim, _folders = _account_with_skips(store, plan_name)
    assert ledger.forget_skipped(store, claim.account_id) == 5
    assert _counts(store, claim) == ((1, 0, 0), {"Inbox": (1, 0, 0), "Sent": (0, 0, 0)})
