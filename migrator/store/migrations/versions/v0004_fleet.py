"""Many hosts: the target each worker sends to, and a concurrency ceiling shared per target.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

`workers.target` names the target server a `migrator run` process sends to (the same string
for every plan that migrates into that server), so the processes of all hosts that share a
target can count each other. `target_limits` holds, per target, the ceiling on requests in
flight that all of them together keep to; each live worker takes its share of it.

Claims take the next account in (batch, id) order. No index gave that order, so every claim
sorted all of the plan's candidate accounts (20,000 accounts in one batch: ~40 ms a claim);
`ix_accounts_claim_order` gives it, and a claim stops at the first free account.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_accounts_claim_order", "accounts", ["plan_id", "scope", "batch", "id"])
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("target", sa.String(length=500), nullable=True))
    op.create_table(
        "target_limits",
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("ceiling", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", name="pk_target_limits"),
        sa.CheckConstraint("ceiling >= 1", name="ck_target_limits_ceiling"),
    )


def downgrade() -> None:
    op.drop_table("target_limits")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("target")
    op.drop_index("ix_accounts_claim_order", table_name="accounts")
