"""Initial state schema: plans, runs, accounts, folders, messages (ledger), events, workers, views.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Written by hand, frozen: later changes go into new revisions (render_as_batch handles SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SCOPES = "scope IN ('in_scope', 'excluded', 'invalid', 'vanished')"
STATUSES = "status IN ('pending', 'running', 'synced', 'failed', 'verified')"
MESSAGE_STATES = "state IN ('inflight', 'done', 'skipped', 'failed')"

VIEWS = {
    "v_account_state": """
        SELECT a.id AS account_id, a.plan_id, p.name AS plan_name, a.key, a.address,
               a.target_address, a.uid, a.name, a.batch, a.dn, a.scope, a.status,
               CASE WHEN a.scope = 'in_scope' THEN a.status ELSE a.scope END AS state,
               a.reason, a.detail, a.passes, a.attempts, a.last_error_reason, a.last_error,
               a.messages_done, a.messages_skipped, a.messages_failed, a.bytes_done,
               a.first_pass_at, a.last_pass_at, a.discovered_at,
               CASE WHEN a.scope = 'vanished' OR p.last_discovery_at IS NULL
                    THEN a.last_seen_at ELSE p.last_discovery_at END AS last_seen_at,
               a.vanished_at, a.lease_owner, a.lease_epoch, a.lease_expires_at, a.heartbeat_at
        FROM accounts a JOIN plans p ON p.id = a.plan_id
    """,
    "v_progress_by_batch": """
        SELECT plan_id, batch,
               COUNT(*) AS total,
               SUM(CASE WHEN status IN ('synced', 'verified') THEN 1 ELSE 0 END) AS migrated,
               SUM(CASE WHEN status = 'verified' THEN 1 ELSE 0 END) AS verified,
               SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
               SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running,
               SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending
        FROM accounts
        WHERE scope = 'in_scope'
        GROUP BY plan_id, batch
    """,
    "v_failures_by_reason": """
        SELECT plan_id, 'account' AS level, COALESCE(last_error_reason, 'error') AS reason,
               COUNT(*) AS accounts, COUNT(*) AS items
        FROM accounts
        WHERE scope = 'in_scope' AND status = 'failed'
        GROUP BY plan_id, COALESCE(last_error_reason, 'error')
        UNION ALL
        SELECT a.plan_id, 'message' AS level, COALESCE(m.reason, 'error') AS reason,
               COUNT(DISTINCT m.account_id) AS accounts, COUNT(*) AS items
        FROM messages m JOIN accounts a ON a.id = m.account_id
        WHERE m.state = 'failed'
        GROUP BY a.plan_id, COALESCE(m.reason, 'error')
    """,
    "v_skipped_by_reason": """
        SELECT a.plan_id, COALESCE(m.reason, 'unknown') AS reason,
               COUNT(DISTINCT m.account_id) AS accounts, COUNT(*) AS messages
        FROM messages m JOIN accounts a ON a.id = m.account_id
        WHERE m.state = 'skipped'
        GROUP BY a.plan_id, COALESCE(m.reason, 'unknown')
    """,
}


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source_kind", sa.String(40), nullable=False),
        sa.Column("target_kind", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("last_discovery_at", TS, nullable=True),
        sa.Column("last_discovery_run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_plans"),
        sa.UniqueConstraint("name", name="uq_plans_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("command", sa.String(40), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("summary", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name="fk_runs_plan_id_plans", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_runs_plan_started", "runs", ["plan_id", "started_at"])

    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("dn", sa.Text(), nullable=False),
        sa.Column("address", sa.String(320), nullable=True),
        sa.Column("target_address", sa.String(320), nullable=True),
        sa.Column("uid", sa.String(255), nullable=True),
        sa.Column("name", sa.String(500), nullable=True),
        sa.Column("batch", sa.String(255), nullable=True),
        sa.Column("aliases", JSON, nullable=False),
        sa.Column("source_path", sa.Text(), nullable=True),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(80), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("discovered_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("vanished_at", TS, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("passes", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_reason", sa.String(80), nullable=True),
        sa.Column("first_pass_at", TS, nullable=True),
        sa.Column("last_pass_at", TS, nullable=True),
        sa.Column("messages_done", sa.BigInteger(), nullable=False),
        sa.Column("messages_skipped", sa.BigInteger(), nullable=False),
        sa.Column("messages_failed", sa.BigInteger(), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_epoch", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name="fk_accounts_plan_id_plans", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("plan_id", "key", name="uq_accounts_plan_key"),
        sa.CheckConstraint(SCOPES, name="ck_accounts_scope"),
        sa.CheckConstraint(STATUSES, name="ck_accounts_status"),
    )
    op.create_index("ix_accounts_plan_scope_status", "accounts", ["plan_id", "scope", "status"])
    op.create_index("ix_accounts_plan_batch", "accounts", ["plan_id", "batch", "scope", "status"])
    op.create_index("ix_accounts_address", "accounts", ["address"])

    op.create_table(
        "folders",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("native", sa.Text(), nullable=False),
        sa.Column("display", sa.Text(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("target_folder_id", sa.Text(), nullable=True),
        sa.Column("target_path", sa.Text(), nullable=True),
        sa.Column("source_count", sa.Integer(), nullable=True),
        sa.Column("source_bytes", sa.BigInteger(), nullable=True),
        sa.Column("done_count", sa.Integer(), nullable=False),
        sa.Column("skipped_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_synced_at", TS, nullable=True),
        sa.Column("verify_source", sa.Integer(), nullable=True),
        sa.Column("verify_ledger", sa.Integer(), nullable=True),
        sa.Column("verify_target", sa.Integer(), nullable=True),
        sa.Column("verified_at", TS, nullable=True),
        sa.Column("verify_ok", sa.Boolean(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_folders"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_folders_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("account_id", "native", name="uq_folders_account_native"),
    )

    op.create_table(
        "messages",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("source_key", sa.String(500), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("chunk_id", sa.String(64), nullable=True),
        sa.Column("lease_epoch", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("target_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(80), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["folder_id"], ["folders.id"], name="fk_messages_folder_id_folders", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_messages_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("folder_id", "source_key", name="uq_messages_folder_key"),
        sa.CheckConstraint(MESSAGE_STATES, name="ck_messages_state"),
    )
    op.create_index("ix_messages_account_state", "messages", ["account_id", "state"])

    op.create_table(
        "events",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("from_state", sa.String(20), nullable=True),
        sa.Column("to_state", sa.String(20), nullable=True),
        sa.Column("detail", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name="fk_events_plan_id_plans", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_events_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_events_run_id_runs", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_events_plan_at", "events", ["plan_id", "at"])
    op.create_index("ix_events_account_at", "events", ["account_id", "at"])

    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("current_account_id", sa.Integer(), nullable=True),
        sa.Column("stats", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name="fk_workers_plan_id_plans", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_workers_run_id_runs", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["current_account_id"],
            ["accounts.id"],
            name="fk_workers_current_account_id_accounts",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("name", name="uq_workers_name"),
    )

    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for table in ("workers", "events", "messages", "folders", "accounts", "runs", "plans"):
        op.drop_table(table)
