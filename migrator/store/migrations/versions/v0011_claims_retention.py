"""Claims stay flat at 100,000 accounts; retention and lookups stay instant at millions of events.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

- `ix_accounts_claim_status` (plan_id, scope, status, batch, id): a claim reads the pending
  accounts in (batch, id) order from the first one, instead of walking, in that order, every
  account of the plan, done ones included (42 ms a claim with 19,000 done). It replaces
  0004's `ix_accounts_claim_order` (plan_id, scope, batch, id), which is dropped: it gives the
  same order, and PostgreSQL, its statistics saying that most accounts are pending (as they
  were when the run began), took it and filtered on status, walking the done accounts again.
- `ix_accounts_claim_pass` (plan_id, scope, status, last_pass_at, id): a delta pass reads the
  synced (or verified) accounts whose last pass ended before the run started, the
  longest-waiting first; those this run has passed sort after them and are never read.
- `ix_accounts_claim_batch_pass` (plan_id, scope, status, batch, last_pass_at, id): the same for
  a run of some batches (`--batch`, a cut-over wave's final delta), one batch after the other,
  instead of reading every other batch's synced accounts first.
- `ix_accounts_plan_address` (plan_id, address) replaces `ix_accounts_address` (address), and
  `ix_accounts_plan_target_address` (plan_id, target_address) is new: `show ADDR` finds an
  account by its address or its target address without reading the plan's accounts. The plan
  leads because every lookup names it, and because SQLite, without statistics (nothing runs
  ANALYZE), otherwise took `ix_accounts_plan_skipped` (plan_id alone) and read every account.
- `ix_events_account_id` (account_id, id): `events --account` and `show` read an account's
  newest events from the index, not the plan's whole log backwards.
- `ix_events_run_id`: `migrator prune` deletes old runs; each deletion sets `events.run_id` of
  the run's events to NULL, which without it reads every event per run.

Indexes only: no row is rewritten.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_accounts_claim_status", "accounts", ["plan_id", "scope", "status", "batch", "id"]
    )
    op.drop_index("ix_accounts_claim_order", table_name="accounts")
    op.create_index(
        "ix_accounts_claim_pass", "accounts", ["plan_id", "scope", "status", "last_pass_at", "id"]
    )
    op.create_index(
        "ix_accounts_claim_batch_pass",
        "accounts",
        ["plan_id", "scope", "status", "batch", "last_pass_at", "id"],
    )
    op.create_index("ix_accounts_plan_address", "accounts", ["plan_id", "address"])
    op.drop_index("ix_accounts_address", table_name="accounts")
    op.create_index("ix_accounts_plan_target_address", "accounts", ["plan_id", "target_address"])
    op.create_index("ix_events_account_id", "events", ["account_id", "id"])
    op.create_index("ix_events_run_id", "events", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_events_run_id", table_name="events")
    op.drop_index("ix_events_account_id", table_name="events")
    op.drop_index("ix_accounts_plan_target_address", table_name="accounts")
    op.create_index("ix_accounts_address", "accounts", ["address"])
    op.drop_index("ix_accounts_plan_address", table_name="accounts")
    op.drop_index("ix_accounts_claim_batch_pass", table_name="accounts")
    op.drop_index("ix_accounts_claim_pass", table_name="accounts")
    op.create_index("ix_accounts_claim_order", "accounts", ["plan_id", "scope", "batch", "id"])
    op.drop_index("ix_accounts_claim_status", table_name="accounts")
