"""The states an account, a message and a command's run go through.

The values are what the state database stores (its CHECK constraints name them) and what JSON
outputs and the event log show: never change one, add a member and a migration instead.
Members are strings, so a value read back from the database compares equal to its member.
"""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """`accounts.status`: how far the migration of an account has come. Kept when discovery
    takes the account out of scope (then `accounts.scope` says so)."""

    PENDING = "pending"  # no pass completed yet, none at work
    RUNNING = "running"  # a worker holds its lease (or held it: an expired lease is taken over)
    SYNCED = "synced"  # the last pass completed
    FAILED = "failed"  # the last pass gave up; last_error and last_error_reason say why
    VERIFIED = "verified"  # synced, and verify found the target holding what the source does


# The last pass completed. Not the "migrated" of "N of M accounts migrated": that also counts an
# account whose later delta pass is at work or failed (store/reporting/aggregates.py, MIGRATED_SQL).
# (Groups are tuples: an SQL IN list built from one keeps its order.)
PASS_COMPLETED = (Status.SYNCED, Status.VERIFIED)


class PassOutcome(enum.StrEnum):
    """How one pass over an account ended, as the engine reports it to the live view, the run
    summary, the JSON log and metrics. Not stored (the account's Status is)."""

    RUNNING = "running"  # not ended yet
    SYNCED = "synced"  # completed (the account is synced, or stays verified)
    FAILED = "failed"  # gave up; the account is failed and charged an attempt
    INTERRUPTED = "interrupted"  # stopped on request or by the circuit breaker; resumes next run
    DEFERRED = "deferred"  # a server was down: given back unchanged, no attempt charged
    LOST = "lost"  # the lease was lost to another worker, which carries on


class MessageState(enum.StrEnum):
    """`messages.state`: where one source message stands in the ledger."""

    INFLIGHT = "inflight"  # written before the upload; after a crash, the target is asked
    DONE = "done"  # the target holds it (target_id)
    SKIPPED = "skipped"  # not sent, for a reason; `retry --skipped` tries again
    FAILED = "failed"  # the target refused it for good, for a reason


# a message that will not be sent again unless the operator asks (`retry --skipped`)
NOT_SENT = (MessageState.SKIPPED, MessageState.FAILED)


class RunStatus(enum.StrEnum):
    """`runs.status`: how a command's run (run, discover, verify ...) ended."""

    RUNNING = "running"  # its process is at work (and beats the row, see commands/heartbeat.py)
    DONE = "done"  # finished with everything done
    PARTIAL = "partial"  # finished; some accounts failed or were skipped
    FAILED = "failed"  # the command itself failed
    INTERRUPTED = "interrupted"  # stopped on request, or its process died


class WorkerState(enum.StrEnum):
    """A `migrator run` process as its `workers` row shows it (store/fleet.py); not stored,
    judged from the row's heartbeat."""

    RUNNING = "running"
    STALE = "stale"  # no heartbeat for three beats: it hangs, is frozen or lost the database
    GONE = "gone"  # none for longer than the lease (or its process is gone): its leases expired
    STOPPED = "stopped"  # it ended


# workers that may still hold leases and write: counted as live
LIVE_WORKERS = (WorkerState.RUNNING, WorkerState.STALE)
