"""Indexes that keep `migrator status` fast on a big campaign.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

On 100,000 accounts and 10 million ledger rows, `status` scanned the whole accounts table
twice for numbers an index can give:
- accounts by scope, status and discovery reason: the (plan_id, scope, status) index gains
  `reason`, so the count is read from the index alone (the old index is a prefix of the new
  one, so every query it served is still served; `reason` is written by discovery only, so
  runs pay nothing more to keep it up to date);
- skipped messages by reason start from the few accounts with skipped messages: an index on
  (plan_id, messages_skipped, id) finds them from the index alone (it changes only when a message is
  skipped).
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_accounts_plan_scope_status", table_name="accounts")
    op.create_index(
        "ix_accounts_plan_scope_status_reason", "accounts", ["plan_id", "scope", "status", "reason"]
    )
    op.create_index("ix_accounts_plan_skipped", "accounts", ["plan_id", "messages_skipped", "id"])


def downgrade() -> None:
    op.drop_index("ix_accounts_plan_skipped", table_name="accounts")
    op.drop_index("ix_accounts_plan_scope_status_reason", table_name="accounts")
    op.create_index("ix_accounts_plan_scope_status", "accounts", ["plan_id", "scope", "status"])
