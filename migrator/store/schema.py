"""The tables of the state database as typed SQLAlchemy models.

The Alembic migrations in migrations/versions/ are the source of truth for what is in a
database; these models must match them (a test compares the two on both backends).
docs/state.md documents every table and column for operators.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from migrator.model.cutover import CutoverState
from migrator.model.scope import Scope
from migrator.model.status import MessageState, RunStatus, Status
from migrator.store.types import BigId, JSONType, UTCDateTime, unbounded, utcnow

# Stable constraint names, so later migrations can address them on both backends.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# plain strings: the CHECK constraints spell them out as SQL literals
SCOPES = tuple(s.value for s in Scope)
STATUSES = tuple(s.value for s in Status)
MESSAGE_STATES = tuple(s.value for s in MessageState)
# accounts.cutover (NULL: not switched); written by `migrator cutover` only (migration 0008)
CUTOVER_STATES = tuple(s.value for s in CutoverState)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PlanRow(Base):
    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source_kind: Mapped[str] = mapped_column(String(40))
    target_kind: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_discovery_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_discovery_run_id: Mapped[int | None] = mapped_column(Integer)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_plan_started", "plan_id", "started_at"),
        # the plan's runs still "running", looked at every few seconds by every `run` (0009)
        Index("ix_runs_plan_status", "plan_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    command: Mapped[str] = mapped_column(String(40))
    host: Mapped[str] = mapped_column(unbounded(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.RUNNING.value)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # the unique id of the process that runs it, how the kernel knows that process
    # (store/owners.py), and until when it counts as alive without a new heartbeat: a
    # "running" run past it was killed (migration 0009)
    worker: Mapped[str | None] = mapped_column(unbounded(255))
    process: Mapped[str | None] = mapped_column(unbounded(255))
    alive_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AccountDbRow(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("plan_id", "key", name="uq_accounts_plan_key"),
        # counts by scope/status/discovery reason come from the index alone (`status`)
        Index("ix_accounts_plan_scope_status_reason", "plan_id", "scope", "status", "reason"),
        # the few accounts with skipped messages, without scanning the table (migration 0003)
        Index("ix_accounts_plan_skipped", "plan_id", "messages_skipped", "id"),
        # scope/status ride along so per-batch progress is answered from the index alone
        Index("ix_accounts_plan_batch", "plan_id", "batch", "scope", "status"),
        # each query of a claim starts at the first eligible account: pending ones in (batch,
        # id) order, synced ones by the end of their last pass; done ones are never read (0011,
        # which drops 0004's (plan_id, scope, batch, id): PostgreSQL took it for the pending
        # accounts when its statistics said most were pending, and walked the done ones)
        Index("ix_accounts_claim_status", "plan_id", "scope", "status", "batch", "id"),
        Index("ix_accounts_claim_pass", "plan_id", "scope", "status", "last_pass_at", "id"),
        Index(
            "ix_accounts_claim_batch_pass",
            "plan_id",
            "scope",
            "status",
            "batch",
            "last_pass_at",
            "id",
        ),
        # `show ADDR` and selections by address: the plan leads, so that SQLite (which keeps no
        # statistics unless ANALYZE runs) prefers them to an index on plan_id alone (0011)
        Index("ix_accounts_plan_address", "plan_id", "address"),
        Index("ix_accounts_plan_target_address", "plan_id", "target_address"),
        # per-batch cut-over counts read only the switched accounts (0008)
        Index("ix_accounts_plan_cutover", "plan_id", "cutover", "batch"),
        CheckConstraint(_one_of("scope", SCOPES), name="scope"),
        CheckConstraint(_one_of("status", STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    # directory values have no length the schema may assume: unbounded (0006)
    key: Mapped[str] = mapped_column(unbounded(500))
    # --- written by discovery only
    dn: Mapped[str] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(unbounded(320))
    target_address: Mapped[str | None] = mapped_column(unbounded(320))
    uid: Mapped[str | None] = mapped_column(unbounded(255))
    name: Mapped[str | None] = mapped_column(unbounded(500))
    batch: Mapped[str | None] = mapped_column(unbounded(255))
    aliases: Mapped[list[str]] = mapped_column(JSONType, default=list)
    source_path: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    scope: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(80))
    detail: Mapped[str | None] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(32))
    discovered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    vanished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # --- migration progress: never written by discovery (except the initial "pending")
    status: Mapped[str] = mapped_column(String(20), default=Status.PENDING.value)
    passes: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_reason: Mapped[str | None] = mapped_column(String(80))
    first_pass_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_pass_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    messages_done: Mapped[int] = mapped_column(BigInteger, default=0)
    messages_skipped: Mapped[int] = mapped_column(BigInteger, default=0)
    messages_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # --- lease held by the worker migrating the account
    lease_owner: Mapped[str | None] = mapped_column(unbounded(255))
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # --- cut-over: written by `migrator cutover` only (0008)
    cutover: Mapped[str | None] = mapped_column(String(20))
    switched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cutover_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cutover_wave: Mapped[int | None] = mapped_column(Integer)


class FolderRow(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("account_id", "native", name="uq_folders_account_native"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    native: Mapped[str] = mapped_column(Text)
    display: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(20), default="none")
    target_folder_id: Mapped[str | None] = mapped_column(Text)
    target_path: Mapped[str | None] = mapped_column(Text)
    source_count: Mapped[int | None] = mapped_column(Integer)
    source_bytes: Mapped[int | None] = mapped_column(BigInteger)
    done_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verify_source: Mapped[int | None] = mapped_column(Integer)
    verify_ledger: Mapped[int | None] = mapped_column(Integer)
    verify_target: Mapped[int | None] = mapped_column(Integer)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verify_ok: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the source's change mark at the last pass (IMAP UIDVALIDITY and HIGHESTMODSEQ) (0010)
    mark: Mapped[str | None] = mapped_column(Text)


class MessageRow(Base):
    """The ledger: one row per source message the engine has claimed. Kept narrow on purpose."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("folder_id", "source_key", name="uq_messages_folder_key"),
        Index("ix_messages_account_state", "account_id", "state"),
        CheckConstraint(_one_of("state", MESSAGE_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    source_key: Mapped[str] = mapped_column(unbounded(500))
    state: Mapped[str] = mapped_column(String(10))
    chunk_id: Mapped[str | None] = mapped_column(String(64))
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int | None] = mapped_column(BigInteger)
    target_id: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(80))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Message-ID + size + date where the source gives it (IMAP): re-keys a renumbered folder
    fingerprint: Mapped[str | None] = mapped_column(unbounded(600))
    # the key the target's copy is tagged with, when a re-keying changed source_key since
    tag_key: Mapped[str | None] = mapped_column(unbounded(500))
    # the source's flags as the target was last given them (Flags.token) (0010)
    flags: Mapped[str | None] = mapped_column(Text)
    # a move or deletion announced and not yet recorded as done (JSON) (0010)
    pending: Mapped[str | None] = mapped_column(Text)
    # the source no longer holds it; its target copy is kept (deletions = "keep") (0010)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_plan_at", "plan_id", "at"),
        Index("ix_events_account_at", "account_id", "at"),
        # an account's newest events (`events --account`, `show`), and the events of a run
        # that `prune` deletes (0011)
        Index("ix_events_account_id", "account_id", "id"),
        Index("ix_events_run_id", "run_id"),
        # the report's timeline: each account's first release as synced, read from the
        # index alone, already grouped by account (0012)
        Index("ix_events_plan_kind_state", "plan_id", "kind", "to_state", "account_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    worker: Mapped[str | None] = mapped_column(unbounded(255))
    kind: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class WorkerRow(Base):
    __tablename__ = "workers"
    __table_args__ = (
        # the live workers of a target, and the recent ones of a plan, among thousands of rows
        # (every process start adds one; migration 0009)
        Index("ix_workers_target", "target", "heartbeat_at"),
        Index("ix_workers_plan_id", "plan_id", "heartbeat_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(unbounded(255), unique=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    host: Mapped[str] = mapped_column(unbounded(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL")
    )
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # the target server it sends to: workers of every plan and host that share it count
    # each other to split that target's ceiling (migration 0004)
    target: Mapped[str | None] = mapped_column(unbounded(500))
    # `name` is a unique id per process (migration 0009); `label` is what it is shown as
    # (--worker-name, else host:pid), `process` how the kernel knows it (store/owners.py),
    # `share` the part of the target's ceiling it may use now
    label: Mapped[str | None] = mapped_column(unbounded(255))
    process: Mapped[str | None] = mapped_column(unbounded(255))
    share: Mapped[int | None] = mapped_column(Integer)


class TargetLimitRow(Base):
    """Per target server, the requests in flight all workers together keep to (0004)."""

    __tablename__ = "target_limits"
    __table_args__ = (CheckConstraint("ceiling >= 1", name="ceiling"),)

    target: Mapped[str] = mapped_column(unbounded(500), primary_key=True)
    ceiling: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SieveFilterRow(Base):
    """Per account, what the last `migrator filters` made of the user's Sieve script (0007)."""

    __tablename__ = "sieve_filters"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    outcome: Mapped[str] = mapped_column(String(20))  # applied|reported|none|checked|broken|failed
    script: Mapped[str | None] = mapped_column(Text)
    script_sha256: Mapped[str | None] = mapped_column(String(64))
    statements: Mapped[int] = mapped_column(Integer, default=0)
    translated: Mapped[int] = mapped_column(Integer, default=0)
    approximate: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    rules: Mapped[int] = mapped_column(Integer, default=0)
    rule_ids: Mapped[list[str] | None] = mapped_column(JSONType)
    auto_reply: Mapped[str | None] = mapped_column(String(20))  # on | scheduled | expired | off
    auto_reply_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SieveRefusalRow(Base):
    """A Sieve statement the last `migrator filters` could not carry, with its text (0007)."""

    __tablename__ = "sieve_refusals"
    __table_args__ = (Index("ix_sieve_refusals_account", "account_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    statement: Mapped[int | None] = mapped_column(Integer)
    line: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)


class CutoverWaveRow(Base):
    """One `migrator cutover` (kind "switch") or `cutover --rollback` ("rollback") of a
    selection of batches and accounts, resumed by running the same command again (0008)."""

    __tablename__ = "cutover_waves"
    __table_args__ = (Index("ix_cutover_waves_plan_started", "plan_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    selection: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    selection_key: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    step: Mapped[str | None] = mapped_column(String(40))
    accounts: Mapped[int] = mapped_column(Integer, default=0)
    nexthop: Mapped[str | None] = mapped_column(Text)
    transport_map: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str] = mapped_column(unbounded(255))
    pid: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    switched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CutoverStepRow(Base):
    """One step of a wave (preconditions, last-delta, route, verify, final-delta, ...) with
    its times and what it found (0008)."""

    __tablename__ = "cutover_steps"
    __table_args__ = (Index("ix_cutover_steps_wave", "wave_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wave_id: Mapped[int] = mapped_column(ForeignKey("cutover_waves.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
