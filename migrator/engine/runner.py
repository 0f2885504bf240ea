"""Run a plan: a pool of workers claims accounts, migrates them, and releases them.

Each worker thread loops: claim the next account (a lease with an epoch), run the account's
job, record the outcome. A heartbeat thread renews the leases of the accounts in progress; a
worker whose lease was taken over stops writing (the ledger refuses its epoch). A stop
request (first Ctrl-C, SIGTERM) lets every worker finish or abandon its current chunk.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migrator.adapters.retry import RetryPolicy
from migrator.adapters.sources import Source, open_account_source
from migrator.adapters.targets.base import Target
from migrator.engine.limiter import AdaptiveLimiter
from migrator.engine.mailbox import AccountJob, Context, Stopped
from migrator.engine.progress import AccountOutcome, NullProgress, Progress
from migrator.model.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    MigratorError,
    PermanentError,
    StateError,
    TransientError,
)
from migrator.model.plan import Plan
from migrator.store import Store
from migrator.store.types import utcnow
from migrator.store.work import (
    Claim,
    ClaimFilter,
    LeaseLost,
    abandon,
    claim_next,
    release,
    renew,
    worker_name,
)


@dataclass
class RunOptions:
    workers: int = 4
    batches: Sequence[str] = ()
    addresses: Sequence[str] = ()
    limit: int | None = None  # at most this many accounts in this run
    include_synced: bool = True
    only_failed: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass
class RunSummary:
    accounts: int = 0
    synced: int = 0
    failed: int = 0
    interrupted: int = 0
    lost: int = 0
    messages_done: int = 0
    bytes_done: int = 0
    messages_skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False
    throttled: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if (self.failed or self.messages_skipped) else EXIT_OK

    def as_json(self) -> dict[str, Any]:
        return {
            "accounts": {
                "processed": self.accounts,
                "synced": self.synced,
                "failed": self.failed,
                "interrupted": self.interrupted,
                "lost": self.lost,
            },
            "messages": {
                "done": self.messages_done,
                "skipped": self.messages_skipped,
                "skipped_by_reason": self.skipped_by_reason,
            },
            "bytes_done": self.bytes_done,
            "failures": self.failures,
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
    ) -> None:
        self.plan = plan
        self.store = store
        self.plan_id = plan_id
        self.run_id = run_id
        self.options = options
        self.stop = stop or threading.Event()
        self.progress: Progress = progress or NullProgress()
        self.limiter = AdaptiveLimiter(plan.run.target_concurrency)
        self.ctx = Context(
            store=store,
            plan=plan,
            target=target,
            limiter=self.limiter,
            retry=options.retry,
            stop=self.stop,
            progress=self.progress,
            source_password=source_password,
            run_id=run_id,
            source_factory=source_factory,
        )
        self.summary = RunSummary()
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._claims: dict[int, Claim] = {}
        self._claimed = 0
        self._done = threading.Event()
        self._run_started: datetime = utcnow()
        self._worker = worker_name()
        self._filters = ClaimFilter(
            batches=tuple(options.batches),
            addresses=tuple(a.lower() for a in options.addresses),
            include_synced=options.include_synced,
            retry_failed=True,
            max_attempts=plan.run.max_account_attempts,
            only_failed=options.only_failed,
        )

    # --- public --------------------------------------------------------------------------
    def run(self) -> RunSummary:
        started = time.monotonic()
        counts = self.store.discovery_counts(self.plan_id)
        statuses = counts.get("statuses", {})
        self.progress.run_started(
            counts["in_scope"], statuses.get("synced", 0) + statuses.get("verified", 0)
        )
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        workers = [
            threading.Thread(target=self._work, name=f"worker-{n}", daemon=True)
            for n in range(max(1, self.options.workers))
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        self._done.set()
        heartbeat.join(timeout=5)
        self.summary.seconds = time.monotonic() - started
        self.summary.stopped = self.stop.is_set()
        self.summary.throttled = self.limiter.throttle_count
        if self.fatal is not None:
            raise self.fatal
        return self.summary

    # --- workers -------------------------------------------------------------------------
    def _next_claim(self) -> Claim | None:
        with self._lock:
            if self.options.limit is not None and self._claimed >= self.options.limit:
                return None
            claim = claim_next(
                self.store,
                self.plan_id,
                worker=self._worker,
                lease_seconds=self.plan.run.lease_seconds,
                run_started=self._run_started,
                run_id=self.run_id,
                filters=self._filters,
            )
            if claim is not None:
                self._claimed += 1
                self._claims[claim.account_id] = claim
            return claim

    def _work(self) -> None:
        while not self.stop.is_set() and self.fatal is None:
            try:
                claim = self._next_claim()
            except StateError as exc:
                self._fail_run(exc)
                return
            if claim is None:
                return
            try:
                self._one(claim)
            except StateError as exc:
                self._fail_run(exc)
                return
            finally:
                with self._lock:
                    self._claims.pop(claim.account_id, None)

    def _fail_run(self, exc: BaseException) -> None:
        with self._lock:
            if self.fatal is None:
                self.fatal = exc
        self.stop.set()

    def _one(self, claim: Claim) -> None:
        address = claim.address or claim.key
        self.progress.account_started(address)
        job = AccountJob(self.ctx, claim)
        outcome: AccountOutcome
        try:
            outcome = job.execute()
            with self._lock:
                self._claims.pop(claim.account_id, None)
            release(
                self.store,
                claim,
                status="synced",
                run_id=self.run_id,
                completed_pass=True,
                folders=job.synced_folders,
                detail={
                    "messages_done": outcome.messages_done,
                    "bytes_done": outcome.bytes_done,
                    "skipped": len(outcome.skipped),
                    "folders": outcome.folders,
                },
            )
        except Stopped:
            outcome = job.outcome
            outcome.status = "interrupted"
            abandon(self.store, claim, run_id=self.run_id)
        except LeaseLost as exc:
            outcome = job.outcome
            outcome.status = "lost"
            outcome.error = exc.message
        except (PermanentError, TransientError) as exc:
            if self.stop.is_set() and isinstance(exc, TransientError):
                outcome = job.outcome
                outcome.status = "interrupted"
                abandon(self.store, claim, run_id=self.run_id)
            else:
                outcome = self._failed(claim, job, exc.message, getattr(exc, "reason", "transient"), exc.hint)
        except StateError:
            raise
        except MigratorError as exc:
            outcome = self._failed(claim, job, exc.message, "error", exc.hint)
        except Exception as exc:  # a bug must not take the other accounts down with it
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            outcome = self._failed(
                claim, job, f"internal error: {detail}", "internal", "report this as a bug in migrator"
            )
        self._record(outcome)
        self.progress.account_finished(outcome)

    def _failed(self, claim: Claim, job: AccountJob, message: str, reason: str, hint: str | None) -> AccountOutcome:
        outcome = job.outcome
        outcome.status = "failed"
        outcome.error = message
        outcome.reason = reason
        outcome.hint = hint
        try:
            release(
                self.store,
                claim,
                status="failed",
                run_id=self.run_id,
                completed_pass=False,
                error=message[:4000],
                error_reason=reason,
                count_attempt=True,
            )
        except LeaseLost:
            outcome.status = "lost"
        return outcome

    def _record(self, outcome: AccountOutcome) -> None:
        with self._lock:
            s = self.summary
            s.accounts += 1
            if outcome.status == "synced":
                s.synced += 1
            elif outcome.status == "failed":
                s.failed += 1
                s.failures.append(
                    {"account": outcome.address, "reason": outcome.reason or "", "error": outcome.error or "", "hint": outcome.hint or ""}
                )
            elif outcome.status == "interrupted":
                s.interrupted += 1
            elif outcome.status == "lost":
                s.lost += 1
            s.messages_done += outcome.messages_done
            s.bytes_done += outcome.bytes_done
            s.messages_skipped += len(outcome.skipped)
            reasons = Counter(s.skipped_by_reason)
            reasons.update(skip.reason for skip in outcome.skipped)
            s.skipped_by_reason = dict(reasons)
            for skip in outcome.skipped[: max(0, 200 - len(s.skipped))]:
                s.skipped.append(
                    {"account": outcome.address, "folder": skip.folder, "key": skip.key, "reason": skip.reason, "detail": skip.detail}
                )

    # --- leases --------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        interval = max(1.0, self.plan.run.lease_seconds / 3)
        while not self._done.wait(interval):
            with self._lock:
                claims = list(self._claims.values())
            for claim in claims:
                try:
                    renewed = renew(self.store, claim, self.plan.run.lease_seconds)
                    with self._lock:
                        still_held = claim.account_id in self._claims
                    # a claim released between the copy above and the renewal is not "lost"
                    if not renewed and still_held:
                        self.progress.note(
                            f"{claim.address}: lease lost to another worker; stopping work on it"
                        )
                except StateError as exc:
                    self.progress.note(f"heartbeat failed: {exc.message}")
