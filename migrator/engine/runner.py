"""Run a plan: a pool of workers claims accounts, migrates them, and releases them.

Each worker thread loops: claim the next account (a lease with an epoch), run the account's
job, record the outcome. A heartbeat thread renews the leases of the accounts in progress; a
worker whose lease was taken over stops writing (the ledger refuses its epoch). A stop
request (first Ctrl-C, SIGTERM) lets every worker finish or abandon its current chunk.

The process is one member of a fleet (docs/multihost.md): it keeps a `workers` row fresh with
the same heartbeat, takes its share of the target's shared ceiling from it, and rides out a
PostgreSQL restart: sessions wait for the server, and an account whose transaction broke off
is resumed from the ledger (its in-flight rows are checked against the target, as after a
crash), so nothing is lost or sent twice.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from migrator.adapters.sources import Source, open_account_source
from migrator.adapters.targets.base import HoldsMailboxes, Target
from migrator.engine.breaker import Breaker, WaitNotices, guard, outage_of
from migrator.engine.limiter import AdaptiveLimiter, LimiterWatch
from migrator.engine.mailbox import AccountJob, Context, Stopped, target_mailbox
from migrator.engine.progress import AccountOutcome, NullProgress, Progress
from migrator.model.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    MigratorError,
    Outage,
    PermanentError,
    StateError,
    TransientError,
)
from migrator.model.heartbeat import beat_seconds, renew_seconds
from migrator.model.plan import Plan
from migrator.model.scope import Scope
from migrator.model.status import PassOutcome, Status
from migrator.retry import RetryPolicy, call_with_retry
from migrator.store import Store
from migrator.store.claims import (
    Claim,
    ClaimFilter,
    LeaseLost,
    abandon,
    claim_next,
    release,
    release_committed,
    release_orphans,
    renew,
)
from migrator.store.fleet import (
    Share,
    ensure_ceiling,
    register_worker,
    stop_worker,
    take_share,
    target_key,
    worker_heartbeat,
)
from migrator.store.owners import Identity, identify
from migrator.store.reporting import aggregates
from migrator.store.store import StateUnavailable
from migrator.store.types import utcnow

T = TypeVar("T")
RATE_WINDOW_S = 60.0  # messages/s shown by `migrator workers`: over the last minute


class _CountingProgress:
    """Passes everything on, and counts the messages this process moved (for its workers row)."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner
        self.messages = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def run_started(self, total_accounts: int, migrated_before: int) -> None:
        self.inner.run_started(total_accounts, migrated_before)

    def account_started(self, address: str) -> None:
        self.inner.account_started(address)

    def messages_done(self, address: str, count: int, nbytes: int) -> None:
        with self._lock:
            self.messages += count
            self.bytes += nbytes
        self.inner.messages_done(address, count, nbytes)

    def account_finished(self, outcome: AccountOutcome) -> None:
        self.inner.account_finished(outcome)

    def note(self, message: str) -> None:
        self.inner.note(message)

    def waiting(self, message: str) -> None:
        self.inner.waiting(message)


@dataclass
class RunOptions:
    workers: int = 4
    batches: Sequence[str] = ()
    addresses: Sequence[str] = ()
    limit: int | None = None  # at most this many accounts in this run
    include_synced: bool = True
    only_failed: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    allow_deletions: bool = False  # past [run] deletion_limit (the operator said so)


# failures a run's summary keeps whole (error, hint); `accounts --status failed` lists them all
FAILURES_KEPT = 1000


@dataclass
class RunSummary:
    accounts: int = 0
    synced: int = 0
    failed: int = 0
    interrupted: int = 0
    lost: int = 0
    deferred: int = 0  # given back unchanged because a server was down (no attempt charged)
    deferred_because: str = ""
    messages_done: int = 0
    messages_adopted: int = 0  # of messages_done: found in the target already, not sent
    bytes_done: int = 0
    messages_skipped: int = 0
    # users' changes carried by the pass: "read", "flagged", "moved", "deleted" ... -> messages
    changes: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    # (account, folder, reason) -> messages, all of them (`skipped` lists the first 200 only)
    skipped_by_folder: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # the first FAILURES_KEPT failures with their error and hint; every one counted by reason (a
    # run of 100,000 accounts against a target that is down must not hold 100,000 errors)
    failures: list[dict[str, str]] = field(default_factory=list)
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False
    throttled: int = 0

    def add_failure(self, account: str, reason: str, error: str, hint: str) -> None:
        self.failed_by_reason[reason] = self.failed_by_reason.get(reason, 0) + 1
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append(
                {"account": account, "reason": reason, "error": error, "hint": hint}
            )

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if (self.failed or self.deferred or self.messages_skipped) else EXIT_OK

    def as_json(self) -> dict[str, Any]:
        return {
            "accounts": {
                "processed": self.accounts,
                PassOutcome.SYNCED: self.synced,
                PassOutcome.FAILED: self.failed,
                PassOutcome.INTERRUPTED: self.interrupted,
                PassOutcome.LOST: self.lost,
                PassOutcome.DEFERRED: self.deferred,
            },
            "messages": {
                "done": self.messages_done,
                "adopted": self.messages_adopted,
                "skipped": self.messages_skipped,
                "changes": self.changes,
                "skipped_by_reason": self.skipped_by_reason,
                # the biggest 500 (a run over thousands of mailboxes could list thousands)
                "skipped_by_folder": [
                    {"account": account, "folder": folder, "reason": reason, "messages": n}
                    for (account, folder, reason), n in sorted(
                        self.skipped_by_folder.items(), key=lambda kv: (-kv[1], kv[0])
                    )[:500]
                ],
            },
            "bytes_done": self.bytes_done,
            "failures": self.failures,  # the first FAILURES_KEPT
            "failed_by_reason": self.failed_by_reason,  # all of them
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "throttled": self.throttled,
        }


class Runner:
    def __init__(
        self,
        plan: Plan,
        store: Store,
        target: Target,
        *,
        plan_id: int,
        run_id: int,
        options: RunOptions,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        source_password: str | None = None,
        source_factory: Callable[..., Source] = open_account_source,
        identity: Identity | None = None,
        limiter_watch: LimiterWatch | None = None,
    ) -> None:
        self.plan = plan
        self.store = store
        self.plan_id = plan_id
        self.run_id = run_id
        self.options = options
        self.stop = stop or threading.Event()
        self.counter = _CountingProgress(progress or NullProgress())
        self.progress: Progress = self.counter
        self.limiter = AdaptiveLimiter(plan.run.target_concurrency, watch=limiter_watch)
        # a target, source server or directory that is down stops the run (engine/breaker.py)
        self.breaker = Breaker(self._fail_run)
        # what the target keeps per mailbox is dropped when its last account here ends
        self._holds_mailboxes = target if isinstance(target, HoldsMailboxes) else None
        self.waits = WaitNotices(self.progress.waiting)
        self.ctx = Context(
            store=store,
            plan=plan,
            target=guard(target, self.breaker),
            limiter=self.limiter,
            retry=options.retry,
            stop=self.stop,
            progress=self.progress,
            source_password=source_password,
            run_id=run_id,
            source_factory=source_factory,
            on_wait=self._on_wait,
            allow_deletions=options.allow_deletions,
            check_lease=self._check_lease,
        )
        self.summary = RunSummary()
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._claims: dict[int, Claim] = {}
        self._claimed = 0
        self._done = threading.Event()
        self._run_started: datetime = utcnow()
        self.me = identity or identify()
        self._worker = self.me.id
        self._target = target_key(plan)
        self._worker_id: int | None = None
        self._share_note: tuple[int, int] | None = None
        self._rate_samples: deque[tuple[float, int]] = deque()
        # account id -> monotonic time its lease was last confirmed (claim or renewal)
        self._renewed: dict[int, float] = {}
        self._local = threading.local()  # the claim each worker thread is migrating
        self._filters = ClaimFilter(
            batches=tuple(options.batches),
            addresses=tuple(a.lower() for a in options.addresses),
            include_synced=options.include_synced,
            retry_failed=True,
            max_attempts=plan.run.max_account_attempts,
            only_failed=options.only_failed,
            pass_interval=plan.run.pass_interval,
        )

    # --- public --------------------------------------------------------------------------
    def run(self) -> RunSummary:
        started = time.monotonic()
        self.store.on_reconnect_wait = self.progress.note
        counts = self.store.discovery_counts(self.plan_id)
        with self.store.reader() as db:  # counted as `status` counts them
            migrated = aggregates.progress_counts(db, self.plan_id)["migrated"]
        self.progress.run_started(counts[Scope.IN_SCOPE], migrated)
        self._join_fleet()
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        workers = [
            threading.Thread(target=self._work, name=f"worker-{n}", daemon=True)
            for n in range(max(1, self.options.workers))
        ]
        try:
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
        finally:
            self._done.set()
            heartbeat.join(timeout=5)
            self._leave_fleet()
        self.summary.seconds = time.monotonic() - started
        self.summary.stopped = self.stop.is_set()
        self.summary.throttled = self.limiter.throttle_count
        if self.fatal is None and self.summary.deferred:
            # accounts were given back because a server was down, and it has not answered
            # since: that is the run's outcome, not "N accounts to do later"
            self.fatal = self.breaker.trip_now()
        if self.fatal is not None:
            raise self.fatal
        return self.summary

    # --- workers -------------------------------------------------------------------------
    def _next_claim(self) -> Claim | None:
        with self._lock:
            if self.options.limit is not None and self._claimed >= self.options.limit:
                return None
            tries = 0

            def attempt() -> Claim | None:
                nonlocal tries
                tries += 1
                if tries > 1:
                    # the broken attempt's COMMIT may have gone through: an account leased to
                    # us that no thread knows about goes back (claims of this process queue
                    # on self._lock, so none is half-way now)
                    release_orphans(
                        self.store,
                        self.plan_id,
                        self._worker,
                        list(self._claims),
                        run_id=self.run_id,
                    )
                return claim_next(
                    self.store,
                    self.plan_id,
                    worker=self._worker,
                    lease_seconds=self.plan.run.lease_seconds,
                    run_started=self._run_started,
                    run_id=self.run_id,
                    filters=self._filters,
                )

            claim = self._patiently("claiming the next account", attempt)
            if claim is not None:
                self._claimed += 1
                self._claims[claim.account_id] = claim
                self._renewed[claim.account_id] = time.monotonic()
            return claim

    def _work(self) -> None:
        deferred = 0  # accounts in a row this worker gave back because a server was down
        while not self.stop.is_set() and self.fatal is None:
            try:
                claim = self._next_claim()
            except StateError as exc:
                self._fail_run(exc)
                return
            if claim is None:
                return
            self._local.claim = claim
            try:
                outcome = self._one(claim)
            except StateError as exc:
                self._fail_run(exc)
                return
            finally:
                self._local.claim = None
                mailbox = target_mailbox(claim).casefold()
                with self._lock:
                    self._claims.pop(claim.account_id, None)
                    self._renewed.pop(claim.account_id, None)
                    in_use = any(
                        target_mailbox(c).casefold() == mailbox for c in self._claims.values()
                    )
                if self._holds_mailboxes is not None and not in_use:
                    self._holds_mailboxes.forget_mailbox(mailbox)
            deferred = deferred + 1 if outcome.status == PassOutcome.DEFERRED else 0
            if deferred:
                self._pause(deferred)

    def _fail_run(self, exc: BaseException) -> None:
        with self._lock:
            if self.fatal is None:
                self.fatal = exc
        self.stop.set()

    def _one(self, claim: Claim) -> AccountOutcome:
        address = claim.address or claim.key
        self.progress.account_started(address)
        jobs = [AccountJob(self.ctx, claim)]  # more than one when the database connection broke
        outcome: AccountOutcome
        try:
            outcome = self._execute(claim, jobs)
            self.breaker.succeeded("source")
            with self._lock:
                self._claims.pop(claim.account_id, None)
            # a pass that found nothing new leaves a verified account verified: the target
            # still holds what verify checked, and `verify --unverified` can skip it
            unchanged = not any(
                job.outcome.messages_new or job.new_folders or job.outcome.changes for job in jobs
            )
            self._release(
                claim,
                status=Status.VERIFIED
                if claim.previous_status == Status.VERIFIED and unchanged
                else Status.SYNCED,
                completed_pass=True,
                folders=jobs[-1].synced_folders,
                detail={
                    "messages_done": outcome.messages_done,
                    "bytes_done": outcome.bytes_done,
                    "skipped": len(outcome.skipped),
                    "folders": outcome.folders,
                    **({"changes": dict(outcome.changes)} if outcome.changes else {}),
                },
            )
        except Stopped:
            outcome = jobs[-1].outcome
            outcome.status = PassOutcome.INTERRUPTED
            self._abandon(claim)
        except LeaseLost as exc:
            outcome = jobs[-1].outcome
            outcome.status = PassOutcome.LOST
            outcome.error = exc.message
        except (PermanentError, TransientError) as exc:
            outage = self._outage(exc)
            if outage is not None:
                # the server is down, not this account: give it back unchanged (no attempt)
                outcome = jobs[-1].outcome
                outcome.status = (
                    PassOutcome.DEFERRED
                    if self.breaker.tripped is None
                    else PassOutcome.INTERRUPTED
                )
                outcome.error = exc.message
                outcome.reason = outage.kind
                self._abandon(claim)
                if outage.service != "target":  # the target's failures were counted as they came
                    self.breaker.failed(outage)
            elif self.breaker.tripped is not None or (
                self.stop.is_set() and isinstance(exc, TransientError)
            ):
                outcome = jobs[-1].outcome
                outcome.status = PassOutcome.INTERRUPTED
                self._abandon(claim)
            else:
                hint = exc.hint
                if hint is None and isinstance(exc, TransientError):
                    # what was sent is in the ledger; nothing is lost or sent twice by trying again
                    hint = (
                        "a temporary problem (throttling, network, server restart): the next "
                        "`migrator run` resumes this account where it stopped; if it keeps "
                        "failing, lower [run] target_concurrency or check the target server"
                    )
                outcome = self._failed(
                    claim, jobs[-1], exc.message, getattr(exc, "reason", "transient"), hint
                )
        except StateError:
            raise
        except MigratorError as exc:
            outcome = self._failed(claim, jobs[-1], exc.message, "error", exc.hint)
        except Exception as exc:  # a bug must not take the other accounts down with it
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            outcome = self._failed(
                claim,
                jobs[-1],
                f"internal error: {detail}",
                "internal",
                "report this as a bug in migrator",
            )
        outcome.took_over = claim.took_over
        self._record(outcome)
        self.progress.account_finished(outcome)
        return outcome

    # --- a server that is down ---------------------------------------------------------------
    def _outage(self, exc: MigratorError) -> Outage | None:
        """The outage an account ended on: one its error names for sure, or, for an error that
        may be its own (a timeout), the target's when the target has failed since it last
        answered."""
        outage = outage_of(exc)
        if outage is not None and outage.confirmed:
            return outage
        return self.breaker.down("target") if isinstance(exc, TransientError) else None

    def _pause(self, deferred: int) -> None:
        """After `deferred` accounts in a row were given back for an outage: a back-off before
        the next claim, so that a dead server trips the breaker rather than every account
        being claimed and given back in a second."""
        outage = self.breaker.down()
        if outage is None or self.stop.is_set():
            return
        seconds = self.options.retry.backoff(deferred, None)
        self.waits.waiting(
            outage.what,
            outage.kind,
            f"{outage.cause}; the run stops if it does not come back",
            seconds,
        )
        self.stop.wait(seconds)

    def _on_wait(self, exc: TransientError, seconds: float) -> None:
        """A worker backs off before retrying a target request: say what it waits for."""
        self.limiter.backing_off(seconds)
        outage = outage_of(exc)
        if outage is None or not outage.confirmed:
            outage = self.breaker.down("target") or outage
        if outage is not None:
            self.waits.waiting(outage.what, outage.kind, outage.cause, seconds)
        elif exc.retry_after is not None:
            self.waits.waiting(
                "the target server", "throttled", f"it asks us to slow down: {exc.message}", seconds
            )
        else:
            self.waits.waiting("the target server", "trouble", exc.message, seconds)

    def _failed(
        self, claim: Claim, job: AccountJob, message: str, reason: str, hint: str | None
    ) -> AccountOutcome:
        outcome = job.outcome
        outcome.status = PassOutcome.FAILED
        outcome.error = message
        outcome.reason = reason
        outcome.hint = hint
        try:
            self._release(
                claim,
                status=Status.FAILED,
                completed_pass=False,
                error=message[:4000],
                error_reason=reason,
                count_attempt=True,
            )
        except LeaseLost:
            outcome.status = PassOutcome.LOST
        return outcome

    # --- riding out a lost database connection --------------------------------------------
    def _state_policy(self) -> RetryPolicy:
        """Retries while the state database is away: bounded by the store's reconnect_seconds,
        not by attempts; short waits, as each attempt's own connect waits for the server."""
        return RetryPolicy(
            attempts=sys.maxsize, deadline=self.store.reconnect_seconds, base=0.1, cap=5.0
        )

    def _patiently(self, what: str, action: Callable[[], T]) -> T:
        """Run a store action; when the connection to the database breaks off, wait for the
        server to come back and run it again (bounded by the store's reconnect_seconds)."""

        def on_retry(exc: Exception, seconds: float, attempt: int) -> None:
            assert isinstance(exc, StateUnavailable)
            self.progress.note(f"{what}: {exc.message}; waiting for the database")

        return call_with_retry(
            action,
            self._state_policy(),
            on_retry=on_retry,
            retry_if=lambda exc: isinstance(exc, StateUnavailable),
        )

    def _execute(self, claim: Claim, jobs: list[AccountJob]) -> AccountOutcome:
        """Run the account's job; when the database connection breaks off mid-way, run it again
        once the database is back. The new job resumes from the ledger: rows a broken COMMIT
        may or may not have written are in-flight rows, checked against the target first.
        A stop request ends it instead."""

        def on_retry(exc: Exception, seconds: float, attempt: int) -> None:
            assert isinstance(exc, StateUnavailable)
            job = jobs[-1]
            self.progress.note(
                f"{job.outcome.address}: {exc.message}; resuming the account from the ledger once "
                "it is back"
            )
            again = AccountJob(self.ctx, claim)
            # what the broken attempt moved is in the ledger; keep it in this run's summary
            again.outcome.messages_done += job.outcome.messages_done
            again.outcome.messages_adopted += job.outcome.messages_adopted
            again.outcome.bytes_done += job.outcome.bytes_done
            again.outcome.skipped.extend(job.outcome.skipped)
            again.outcome.changes.update(job.outcome.changes)
            jobs.append(again)

        return call_with_retry(
            lambda: jobs[-1].execute(),
            self._state_policy(),
            on_retry=on_retry,
            # a stop request is asked here, when deciding to try again, not with `stop=`:
            # that would end a wait with a TransientError, and the account must end on this
            # StateError (the run fails on a database that stays away)
            retry_if=lambda exc: isinstance(exc, StateUnavailable) and not self.stop.is_set(),
        )

    def _release(self, claim: Claim, **kwargs: Any) -> None:
        attempts = 0

        def action() -> None:
            nonlocal attempts
            attempts += 1
            try:
                release(self.store, claim, run_id=self.run_id, **kwargs)
            except LeaseLost:
                # a retry after a broken COMMIT finds its own release already done
                if attempts > 1 and release_committed(self.store, claim):
                    return
                raise

        self._patiently(f"{claim.address or claim.key}: recording the outcome", action)

    def _abandon(self, claim: Claim) -> None:
        try:
            self._patiently(
                f"{claim.address or claim.key}: giving the account back",
                lambda: abandon(self.store, claim, run_id=self.run_id),
            )
        except StateUnavailable as exc:
            # the lease expires on its own and the account is taken over then
            self.progress.note(
                f"{claim.address or claim.key}: {exc.message}; its lease will expire"
            )

    def _record(self, outcome: AccountOutcome) -> None:
        with self._lock:
            s = self.summary
            s.accounts += 1
            if outcome.status == PassOutcome.SYNCED:
                s.synced += 1
            elif outcome.status == PassOutcome.FAILED:
                s.failed += 1
                s.add_failure(
                    outcome.address, outcome.reason or "", outcome.error or "", outcome.hint or ""
                )
            elif outcome.status == PassOutcome.INTERRUPTED:
                s.interrupted += 1
            elif outcome.status == PassOutcome.DEFERRED:
                s.deferred += 1
                s.deferred_because = outcome.error or ""
            elif outcome.status == PassOutcome.LOST:
                s.lost += 1
            s.messages_done += outcome.messages_done
            s.messages_adopted += outcome.messages_adopted
            s.bytes_done += outcome.bytes_done
            s.messages_skipped += len(outcome.skipped)
            if outcome.changes:
                s.changes = dict(Counter(s.changes) + outcome.changes)
            reasons = Counter(s.skipped_by_reason)
            reasons.update(skip.reason for skip in outcome.skipped)
            s.skipped_by_reason = dict(reasons)
            for skip in outcome.skipped:
                where = (outcome.address, skip.folder, skip.reason)
                s.skipped_by_folder[where] = s.skipped_by_folder.get(where, 0) + 1
            for skip in outcome.skipped[: max(0, 200 - len(s.skipped))]:
                s.skipped.append(
                    {
                        "account": outcome.address,
                        "folder": skip.folder,
                        "key": skip.key,
                        "reason": skip.reason,
                        "detail": skip.detail,
                    }
                )

    # --- leases --------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        """Every beat (at most 5 s) the fleet row, this process's share and a look for runs
        whose process died; every third of the lease the leases of the accounts in hand."""
        lease = self.plan.run.lease_seconds
        last_renewal = time.monotonic()
        while not self._done.wait(beat_seconds(lease)):
            self._fleet_heartbeat()
            self._close_lapsed_runs()
            if time.monotonic() - last_renewal < renew_seconds(lease) - beat_seconds(lease) / 2:
                continue
            last_renewal = time.monotonic()
            with self._lock:
                claims = list(self._claims.values())
            for claim in claims:
                try:
                    asked = time.monotonic()
                    renewed = renew(self.store, claim, self.plan.run.lease_seconds)
                    if renewed:
                        with self._lock:
                            if claim.account_id in self._renewed:
                                self._renewed[claim.account_id] = asked
                    with self._lock:
                        still_held = claim.account_id in self._claims
                    # a claim released between the copy above and the renewal is not "lost"
                    if not renewed and still_held:
                        self.progress.note(
                            f"{claim.address}: lease lost to another worker; stopping work on it"
                        )
                except StateError as exc:
                    self.progress.note(f"heartbeat failed: {exc.message}")

    def _check_lease(self) -> None:
        """Before a request to the target: when the heartbeat is late (this process was
        paused, e.g. SIGSTOP or a VM freeze, or the database is slow), confirm the lease
        first. The ledger refuses a stale epoch, but the target cannot: a worker that slept
        past its lease must not upload what the worker that took over is sending too."""
        claim: Claim | None = getattr(self._local, "claim", None)
        if claim is None:
            return
        with self._lock:
            confirmed = self._renewed.get(claim.account_id)
        if confirmed is None or time.monotonic() - confirmed < self.plan.run.lease_seconds / 2:
            return
        asked = time.monotonic()
        if not renew(self.store, claim, self.plan.run.lease_seconds):
            raise LeaseLost(
                f"the lease on account {claim.address or claim.key} (epoch {claim.epoch}) ran out "
                "while this worker was not heard from; another worker has taken it over",
                hint="nothing to do: the other worker resumes from the ledger",
            )
        with self._lock:
            self._renewed[claim.account_id] = asked

    # --- the fleet -----------------------------------------------------------------------
    def _join_fleet(self) -> None:
        self._worker_id = register_worker(
            self.store,
            self.me,
            plan_id=self.plan_id,
            run_id=self.run_id,
            target=self._target,
            threads=max(1, self.options.workers),
        )
        ensure_ceiling(self.store, self._target, self.plan.run.target_concurrency)
        self._rate_samples.append((time.monotonic(), 0))
        # a newcomer takes only what the others leave free: they lower their shares at their
        # next beat, so wait for that (two beats at most; then it takes one request anyway)
        beat = beat_seconds(self.plan.run.lease_seconds)
        deadline = time.monotonic() + 2 * beat
        while not self._adopt_share(waiting=time.monotonic() < deadline).share:
            if self.stop.wait(beat / 4):
                return

    def _adopt_share(self, *, waiting: bool = False) -> Share:
        assert self._worker_id is not None
        share = take_share(
            self.store,
            self._target,
            self._worker_id,
            default=self.plan.run.target_concurrency,
            lease_seconds=self.plan.run.lease_seconds,
            in_flight=self.limiter.in_flight,
            waiting=waiting,
        )
        if share.share:
            self.limiter.set_ceiling(share.share)
        if self._share_note != (share.share, share.live) and share.share:
            self._share_note = (share.share, share.live)
            if share.live > 1:
                self.progress.note(
                    f"{share.live} workers send to {self._target}: this one takes {share.share} "
                    f"of its {share.ceiling} concurrent requests"
                    + (
                        f" ({share.due} once the others have given theirs back)"
                        if share.due > share.share
                        else ""
                    )
                )
        return share

    def _close_lapsed_runs(self) -> None:
        try:
            self.store.close_dead_runs(self.plan_id)
        except StateError as exc:
            self.progress.note(f"could not look for interrupted runs: {exc.message}")

    def _stats(self) -> dict[str, Any]:
        now = time.monotonic()
        messages = self.counter.messages
        self._rate_samples.append((now, messages))
        while len(self._rate_samples) > 2 and now - self._rate_samples[1][0] >= RATE_WINDOW_S:
            self._rate_samples.popleft()
        first_t, first_m = self._rate_samples[0]
        rate = (messages - first_m) / (now - first_t) if now > first_t else 0.0
        with self._lock:
            accounts = [c.address or c.key for c in self._claims.values()]
        return {
            "accounts": accounts,
            "messages_done": messages,
            "bytes_done": self.counter.bytes,
            "rate": round(rate, 2),
            "threads": max(1, self.options.workers),
            "share": self.limiter.ceiling,
            "throttled": self.limiter.throttle_count,
            "label": self.me.label,
        }

    def _current_account(self) -> int | None:
        with self._lock:
            return next(iter(self._claims), None)

    def _fleet_heartbeat(self) -> None:
        if self._worker_id is None:
            return
        try:
            worker_heartbeat(
                self.store,
                self._worker_id,
                current_account_id=self._current_account(),
                stats=self._stats(),
            )
            self._adopt_share()
        except StateError as exc:
            self.progress.note(f"fleet heartbeat failed: {exc.message}")

    def _leave_fleet(self) -> None:
        if self._worker_id is None:
            return
        try:
            stop_worker(self.store, self._worker_id, stats=self._stats())
        except StateError as exc:  # the row goes stale on its own
            self.progress.note(f"could not mark this worker stopped: {exc.message}")
