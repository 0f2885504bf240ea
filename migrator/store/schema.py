"""The tables of the state database, declared once as SQLAlchemy Core tables.

The Alembic migrations in migrations/versions/ are the source of truth for what is in a
database; these declarations must match them (tests/test_store_open.py and
test_store_upgrade.py compare the two on both backends). Code builds its statements on these
`Table`s; a column without `nullable=False` may be NULL. docs/state.md documents every table
and column for operators.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

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


metadata = MetaData(naming_convention=NAMING)

plans = Table(
    "plans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("source_kind", String(40), nullable=False),
    Column("target_kind", String(40), nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    Column("last_discovery_at", UTCDateTime),
    Column("last_discovery_run_id", Integer),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("plan_id", Integer, ForeignKey("plans.id", ondelete="CASCADE"), nullable=False),
    Column("command", String(40), nullable=False),
    Column("host", unbounded(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False, default=utcnow),
    Column("finished_at", UTCDateTime),
    Column("status", String(20), nullable=False, default=RunStatus.RUNNING.value),
    Column("summary", JSONType),
    # the unique id of the process that runs it, how the kernel knows that process
    # (store/owners.py), and until when it counts as alive without a new heartbeat: a
    # "running" run past it was killed (migration 0009)
    Column("worker", unbounded(255)),
    Column("process", unbounded(255)),
    Column("alive_until", UTCDateTime),
    Index("ix_runs_plan_started", "plan_id", "started_at"),
    # the plan's runs still "running", looked at every few seconds by every `run` (0009)
    Index("ix_runs_plan_status", "plan_id", "status"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("plan_id", Integer, ForeignKey("plans.id", ondelete="CASCADE"), nullable=False),
    # directory values have no length the schema may assume: unbounded (0006)
    Column("key", unbounded(500), nullable=False),
    # --- written by discovery only
    Column("dn", Text, nullable=False),
    Column("address", unbounded(320)),
    Column("target_address", unbounded(320)),
    Column("uid", unbounded(255)),
    Column("name", unbounded(500)),
    Column("batch", unbounded(255)),
    Column("aliases", JSONType, nullable=False, default=list),
    Column("source_path", Text),
    Column("attributes", JSONType, nullable=False, default=dict),
    Column("scope", String(20), nullable=False),
    Column("reason", String(80)),
    Column("detail", Text),
    Column("fingerprint", String(32), nullable=False),
    Column("discovered_at", UTCDateTime, nullable=False, default=utcnow),
    Column("last_seen_at", UTCDateTime, nullable=False, default=utcnow),
    Column("vanished_at", UTCDateTime),
    # --- migration progress: never written by discovery (except the initial "pending")
    Column("status", String(20), nullable=False, default=Status.PENDING.value),
    Column("passes", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("last_error_reason", String(80)),
    Column("first_pass_at", UTCDateTime),
    Column("last_pass_at", UTCDateTime),
    Column("messages_done", BigInteger, nullable=False, default=0),
    Column("messages_skipped", BigInteger, nullable=False, default=0),
    Column("messages_failed", BigInteger, nullable=False, default=0),
    Column("bytes_done", BigInteger, nullable=False, default=0),
    Column("updated_at", UTCDateTime),
    # --- lease held by the worker migrating the account
    Column("lease_owner", unbounded(255)),
    Column("lease_epoch", Integer, nullable=False, default=0),
    Column("lease_expires_at", UTCDateTime),
    Column("heartbeat_at", UTCDateTime),
    # --- cut-over: written by `migrator cutover` only (0008)
    Column("cutover", String(20)),
    Column("switched_at", UTCDateTime),
    Column("cutover_at", UTCDateTime),
    Column("cutover_wave", Integer),
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
        "ix_accounts_claim_batch_pass", "plan_id", "scope", "status", "batch", "last_pass_at", "id"
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

folders = Table(
    "folders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("native", Text, nullable=False),
    Column("display", Text, nullable=False),
    Column("role", String(20), nullable=False, default="none"),
    Column("target_folder_id", Text),
    Column("target_path", Text),
    Column("source_count", Integer),
    Column("source_bytes", BigInteger),
    Column("done_count", Integer, nullable=False, default=0),
    Column("skipped_count", Integer, nullable=False, default=0),
    Column("failed_count", Integer, nullable=False, default=0),
    Column("uidvalidity", BigInteger),
    Column("last_synced_at", UTCDateTime),
    Column("verify_source", Integer),
    Column("verify_ledger", Integer),
    Column("verify_target", Integer),
    Column("verified_at", UTCDateTime),
    Column("verify_ok", Boolean),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # the source's change mark at the last pass (IMAP UIDVALIDITY and HIGHESTMODSEQ) (0010)
    Column("mark", Text),
    UniqueConstraint("account_id", "native", name="uq_folders_account_native"),
)

# The ledger: one row per source message the engine has claimed. Kept narrow on purpose.
messages = Table(
    "messages",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("folder_id", Integer, ForeignKey("folders.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("source_key", unbounded(500), nullable=False),
    Column("state", String(10), nullable=False),
    Column("chunk_id", String(64)),
    Column("lease_epoch", Integer, nullable=False, default=0),
    Column("size", BigInteger),
    Column("target_id", Text),
    Column("reason", String(80)),
    Column("detail", Text),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    # Message-ID + size + date where the source gives it (IMAP): re-keys a renumbered folder
    Column("fingerprint", unbounded(600)),
    # the key the target's copy is tagged with, when a re-keying changed source_key since
    Column("tag_key", unbounded(500)),
    # the source's flags as the target was last given them (Flags.token) (0010)
    Column("flags", Text),
    # a move or deletion announced and not yet recorded as done (JSON) (0010)
    Column("pending", Text),
    # the source no longer holds it; its target copy is kept (deletions = "keep") (0010)
    Column("removed_at", UTCDateTime),
    UniqueConstraint("folder_id", "source_key", name="uq_messages_folder_key"),
    Index("ix_messages_account_state", "account_id", "state"),
    CheckConstraint(_one_of("state", MESSAGE_STATES), name="state"),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("at", UTCDateTime, nullable=False, default=utcnow),
    Column("plan_id", Integer, ForeignKey("plans.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE")),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("worker", unbounded(255)),
    Column("kind", String(40), nullable=False),
    Column("from_state", String(20)),
    Column("to_state", String(20)),
    Column("detail", JSONType),
    Index("ix_events_plan_at", "plan_id", "at"),
    Index("ix_events_account_at", "account_id", "at"),
    # an account's newest events (`events --account`, `show`), and the events of a run
    # that `prune` deletes (0011)
    Index("ix_events_account_id", "account_id", "id"),
    Index("ix_events_run_id", "run_id"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", unbounded(255), nullable=False, unique=True),
    Column("plan_id", Integer, ForeignKey("plans.id", ondelete="CASCADE")),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("host", unbounded(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False, default=utcnow),
    Column("heartbeat_at", UTCDateTime),
    Column("stopped_at", UTCDateTime),
    Column("current_account_id", Integer, ForeignKey("accounts.id", ondelete="SET NULL")),
    Column("stats", JSONType),
    # the target server it sends to: workers of every plan and host that share it count
    # each other to split that target's ceiling (migration 0004)
    Column("target", unbounded(500)),
    # `name` is a unique id per process (migration 0009); `label` is what it is shown as
    # (--worker-name, else host:pid), `process` how the kernel knows it (store/owners.py),
    # `share` the part of the target's ceiling it may use now
    Column("label", unbounded(255)),
    Column("process", unbounded(255)),
    Column("share", Integer),
    # the live workers of a target, and the recent ones of a plan, among thousands of rows
    # (every process start adds one; migration 0009)
    Index("ix_workers_target", "target", "heartbeat_at"),
    Index("ix_workers_plan_id", "plan_id", "heartbeat_at"),
)

# Per target server, the requests in flight all workers together keep to (0004).
target_limits = Table(
    "target_limits",
    metadata,
    Column("target", unbounded(500), primary_key=True),
    Column("ceiling", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    CheckConstraint("ceiling >= 1", name="ceiling"),
)

# Per account, what the last `migrator filters` made of the user's Sieve script (0007).
sieve_filters = Table(
    "sieve_filters",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("outcome", String(20), nullable=False),  # applied|reported|none|checked|broken|failed
    Column("script", Text),
    Column("script_sha256", String(64)),
    Column("statements", Integer, nullable=False, default=0),
    Column("translated", Integer, nullable=False, default=0),
    Column("approximate", Integer, nullable=False, default=0),
    Column("refused", Integer, nullable=False, default=0),
    Column("rules", Integer, nullable=False, default=0),
    Column("rule_ids", JSONType),
    Column("auto_reply", String(20)),  # on | scheduled | expired | off
    Column("auto_reply_sha256", String(64)),
    Column("error", Text),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

# A Sieve statement the last `migrator filters` could not carry, with its text (0007).
sieve_refusals = Table(
    "sieve_refusals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("statement", Integer),
    Column("line", Integer),
    Column("reason", Text, nullable=False),
    Column("text", Text, nullable=False),
    Index("ix_sieve_refusals_account", "account_id"),
)

# One `migrator cutover` (kind "switch") or `cutover --rollback` ("rollback") of a selection
# of batches and accounts, resumed by running the same command again (0008).
cutover_waves = Table(
    "cutover_waves",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("plan_id", Integer, ForeignKey("plans.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("selection", JSONType),
    Column("selection_key", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("step", String(40)),
    Column("accounts", Integer, nullable=False, default=0),
    Column("nexthop", Text),
    Column("transport_map", Text),
    Column("host", unbounded(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("error", Text),
    Column("started_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
    Column("switched_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Index("ix_cutover_waves_plan_started", "plan_id", "started_at"),
)

# One step of a wave (preconditions, last-delta, route, verify, final-delta, ...) with its
# times and what it found (0008).
cutover_steps = Table(
    "cutover_steps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("wave_id", Integer, ForeignKey("cutover_waves.id", ondelete="CASCADE"), nullable=False),
    Column("step", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", UTCDateTime, nullable=False, default=utcnow),
    Column("finished_at", UTCDateTime),
    Column("detail", JSONType),
    Index("ix_cutover_steps_wave", "wave_id", "id"),
)
