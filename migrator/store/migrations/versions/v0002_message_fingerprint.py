"""Ledger: a content fingerprint per message, to re-key a renumbered IMAP folder.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

When an IMAP server renumbers a folder (UIDVALIDITY changes), every source key of the folder
changes; the fingerprint (Message-ID, size, INTERNALDATE) recognises what was migrated already.
`tag_key` keeps the key the target's copy is tagged with when it is no longer the source key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(length=600), nullable=True))
        batch.add_column(sa.Column("tag_key", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("tag_key")
        batch.drop_column("fingerprint")
