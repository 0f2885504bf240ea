"""Users' Sieve filters: what `migrator filters` made of each account's script.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

`sieve_filters` keeps, per account, the outcome of the last pass (applied to Exchange, written
as a report for an IMAP target, no script, failed), the script's name and digest, how many of
its statements were carried, carried with a note or refused, and the ids of the inbox rules
migrator created (so a later pass replaces exactly those). `sieve_refusals` lists the refused
statements with their original text and the reason, for `show`, the reports and `status`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sieve_filters",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("script", sa.Text(), nullable=True),
        sa.Column("script_sha256", sa.String(length=64), nullable=True),
        sa.Column("statements", sa.Integer(), nullable=False),
        sa.Column("translated", sa.Integer(), nullable=False),
        sa.Column("approximate", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("rules", sa.Integer(), nullable=False),
        sa.Column(
            "rule_ids", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("auto_reply", sa.String(length=20), nullable=True),
        sa.Column("auto_reply_sha256", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            ondelete="CASCADE",
            name="fk_sieve_filters_account_id_accounts",
        ),
        sa.PrimaryKeyConstraint("account_id", name="pk_sieve_filters"),
    )
    op.create_table(
        "sieve_refusals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("statement", sa.Integer(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            ondelete="CASCADE",
            name="fk_sieve_refusals_account_id_accounts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sieve_refusals"),
    )
    op.create_index("ix_sieve_refusals_account", "sieve_refusals", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_sieve_refusals_account", table_name="sieve_refusals")
    op.drop_table("sieve_refusals")
    op.drop_table("sieve_filters")
