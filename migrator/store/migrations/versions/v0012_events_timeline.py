"""The report's timeline reads the events it counts, not the whole event log.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

- `ix_events_plan_kind_state` (plan_id, kind, to_state, account_id, at): the report's timeline
  (when each account was first released as synced: `min(at)` per account of the plan's
  `released` → `synced` events) reads those events alone, already grouped by account, from
  the index (it holds every column the query needs). Before, SQLite read the plan's whole
  log through `ix_events_account_at`, PostgreSQL all of the plan's events through
  `ix_events_plan_at`: a log that grows by several events per account and pass over a
  weeks-long campaign.

Index only: no row is rewritten.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_plan_kind_state", "events", ["plan_id", "kind", "to_state", "account_id", "at"]
    )


def downgrade() -> None:
    op.drop_index("ix_events_plan_kind_state", table_name="events")
