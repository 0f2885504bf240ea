"""Each branch of the upload loop (engine/mailbox.py `AccountJob._upload`), driven through a
whole `AccountJob` with scripted answers (tests/fixtures/fakes.py): deterministic, and each
test well under a second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from migrator.adapters.sources.base import Source
from migrator.adapters.targets.base import (
    FindsByContent,
    GroupsIdentical,
    HoldsMailboxes,
    ListsByKey,
    Target,
    TargetFolder,
    Withdraws,
)
from migrator.model.errors import MigratorError, TransientError
from migrator.model.mail import UploadItem, UploadResult
from migrator.retry import RetryPolicy
from migrator.store import ledger
from migrator.store.claims import LeaseLost
from tests.fixtures.fakes import (
    FakeSource,
    FakeTarget,
    WithdrawingTarget,
    failing,
    fake_account,
    store_all,
)


def mail(n: int) -> bytes:
    return f"Subject: message {n}\r\nMessage-ID: <m{n}@example.org>\r\n\r\nbody {n}\r\n".encode()


INBOX: dict[tuple[str, ...], list[tuple[str, bytes]]] = {
    ("INBOX",): [("k1", mail(1)), ("k2", mail(2)), ("k3", mail(3))]
}


def test_a_chunk_is_recorded_done_with_the_ids_the_target_gave(tmp_path: Path) -> None:
    target = FakeTarget()
    with fake_account(tmp_path, FakeSource(INBOX), target) as a:
        a.job().execute()
        held = dict(target.stored["INBOX"])
        assert target.uploads == [["k1", "k2", "k3"]]
        assert a.ledger() == {("INBOX", key): ("done", tid) for tid, (key, _) in held.items()}


# --- same key, another message ---------------------------------------------------------------


def test_an_answer_with_the_id_of_a_namesake_from_another_folder_is_not_taken(
    tmp_path: Path,
) -> None:
    """ "Sent" and "Elementos enviados" both land in the target's Sent, and each holds a message
    with key k1 (keys are unique per source folder only). When the target answers the second
    upload with the id of the first folder's copy (a search by tag after an ambiguous failure
    finds it), that id is not taken: the message is looked for without it, not found, and
    sent again, so each folder's message ends in the target once, under its own id."""

    def namesake(
        target: FakeTarget, folder: TargetFolder, items: list[UploadItem]
    ) -> list[UploadResult]:
        [(first_id, _)] = list(target.stored[folder.id].items())
        return [UploadResult(item.key, first_id) for item in items]

    source = FakeSource({("Sent",): [("k1", mail(1))], ("Elementos enviados",): [("k1", mail(2))]})
    target = FakeTarget(
        folders={("Sent",): "sent", ("Elementos enviados",): "sent"},
        answers=[store_all, namesake],
    )
    with fake_account(tmp_path, source, target) as a:
        a.job().execute()
        assert target.uploads == [["k1"], ["k1"], ["k1"]]
        assert sorted(data for _, data in target.held("sent")) == [mail(1), mail(2)]
        rows = a.ledger()
        assert rows[("Sent", "k1")][0] == rows[("Elementos enviados", "k1")][0] == "done"
        ids = {rows[("Sent", "k1")][1], rows[("Elementos enviados", "k1")][1]}
        assert ids == set(target.stored["sent"])  # two ids, one per message


def test_two_answers_with_one_id_settle_one_message_only(tmp_path: Path) -> None:
    """A target that answers two items of a chunk with the same id stored one of them at
    most: the other is confirmed by a search that leaves that id out, and sent again."""

    def same_id(
        target: FakeTarget, folder: TargetFolder, items: list[UploadItem]
    ) -> list[UploadResult]:
        first = target.put(folder.id, items[0])
        return [UploadResult(item.key, first) for item in items]

    source = FakeSource({("INBOX",): [("k1", mail(1)), ("k2", mail(2))]})
    target = FakeTarget(answers=[same_id])
    with fake_account(tmp_path, source, target) as a:
        a.job().execute()
        assert target.uploads == [["k1", "k2"], ["k2"]]
        assert target.held("INBOX") == [("k1", mail(1)), ("k2", mail(2))]
        rows = a.ledger()
        assert rows[("INBOX", "k1")] != rows[("INBOX", "k2")]
        assert {tid for _, tid in rows.values()} == set(target.stored["INBOX"])


def test_a_message_stored_before_a_failure_is_found_not_sent_again(tmp_path: Path) -> None:
    """The server stored k2 but the answer was lost: before sending again, the job asks the
    target, finds k2 and records it; only k3 goes out again."""

    def lost_answer(
        target: FakeTarget, folder: TargetFolder, items: list[UploadItem]
    ) -> list[UploadResult]:
        stored = store_all(target, folder, items[:2])
        return [stored[0], *(UploadResult(i.key, error=TransientError("reset")) for i in items[1:])]

    target = FakeTarget(answers=[lost_answer])
    with fake_account(tmp_path, FakeSource(INBOX), target) as a:
        a.job().execute()
        assert target.uploads == [["k1", "k2", "k3"], ["k3"]]
        assert [key for key, _ in target.held("INBOX")] == ["k1", "k2", "k3"]
        assert {state for state, _ in a.ledger().values()} == {"done"}


# --- a lease lost during the upload -----------------------------------------------------------


def test_copies_sent_after_the_lease_was_taken_over_are_withdrawn(tmp_path: Path) -> None:
    """While this worker's upload was on its way, another worker took the account over: it
    did not find k1 in the target and sent its own copy, and it found our k2. Recording the
    chunk fails (the lease is lost), and our k1, a duplicate now, is withdrawn; k2 stays."""
    target = WithdrawingTarget()
    with fake_account(tmp_path, FakeSource({("INBOX",): INBOX[("INBOX",)][:2]}), target) as a:

        def taken_over(
            t: FakeTarget, folder: TargetFolder, items: list[UploadItem]
        ) -> list[UploadResult]:
            ours = store_all(t, folder, items)
            theirs = t.put(folder.id, items[0])  # the new owner's copy of k1
            claim = a.take_over()
            ledger.resolve_inflight(
                a.store, claim, a.folder_id("INBOX"), ["k1", "k2"],
                {"k1": theirs, "k2": ours[1].target_id or ""},
            )  # fmt: skip
            return ours

        target.answers.append(taken_over)
        with pytest.raises(LeaseLost):
            a.job().execute()
        assert target.withdrawn == ["t1"]
        assert target.held("INBOX") == [("k2", mail(2)), ("k1", mail(1))]
        assert a.ledger() == {("INBOX", "k1"): ("done", "t3"), ("INBOX", "k2"): ("done", "t2")}


# --- attempts and back-off --------------------------------------------------------------------


def test_attempts_are_counted_without_progress_only(tmp_path: Path) -> None:
    """With 3 attempts allowed, a chunk that settles one more message on each of its first
    two requests, then fails once more, still gets a fourth request: progress starts the
    count again."""
    policy = RetryPolicy(attempts=3, deadline=30.0, base=0.001, cap=0.001, jitter=0.0)
    target = FakeTarget(answers=[failing("k2", "k3"), failing("k3"), failing("k3")])
    with fake_account(tmp_path, FakeSource(INBOX), target, retry=policy) as a:
        a.job().execute()
        assert target.uploads == [["k1", "k2", "k3"], ["k2", "k3"], ["k3"], ["k3"]]
        assert {state for state, _ in a.ledger().values()} == {"done"}


def test_attempts_without_progress_are_bounded(tmp_path: Path) -> None:
    """Three failures in a row with 3 attempts allowed: the chunk is given up, its messages
    left in flight for the next attempt to look for in the target before sending."""
    policy = RetryPolicy(attempts=3, deadline=30.0, base=0.001, cap=0.001, jitter=0.0)
    target = FakeTarget(answers=[failing(), failing(), failing()])
    with fake_account(tmp_path, FakeSource(INBOX), target, retry=policy) as a:
        with pytest.raises(TransientError, match="after 3 attempt"):
            a.job().execute()
        assert len(target.uploads) == 3
        assert {state for state, _ in a.ledger().values()} == {"inflight"}


def test_a_stop_during_a_back_off_ends_the_wait_at_once(tmp_path: Path) -> None:
    """The run is asked to stop while the job waits 30 s before sending again: it stops
    waiting at once, sends nothing more, and leaves the chunk in flight (the next run looks
    for it in the target first)."""
    policy = RetryPolicy(attempts=5, deadline=600.0, base=30.0, cap=30.0, jitter=0.0)
    target = FakeTarget(answers=[failing()])
    with fake_account(tmp_path, FakeSource(INBOX), target, retry=policy, stop_on_wait=True) as a:
        started = time.monotonic()
        with pytest.raises(MigratorError):
            a.job().execute()
        assert time.monotonic() - started < 5  # not the 30 s back-off
        assert a.waits == [30.0]
        assert target.uploads == [["k1", "k2", "k3"]]
        assert {state for state, _ in a.ledger().values()} == {"inflight"}


def test_the_fakes_declare_what_they_can_do_as_the_adapters_do() -> None:
    """The engine chooses its recovery by the Protocols a target declares: the plain fake
    offers the contract only, so a test of it reaches the search by key, never by content."""
    plain, withdrawing = FakeTarget(), WithdrawingTarget()
    assert isinstance(FakeSource({}), Source)
    assert isinstance(plain, Target) and isinstance(withdrawing, Target)
    assert isinstance(withdrawing, Withdraws) and not isinstance(plain, Withdraws)
    for capability in (ListsByKey, FindsByContent, GroupsIdentical, HoldsMailboxes):
        assert not isinstance(plain, capability) and not isinstance(withdrawing, capability)
