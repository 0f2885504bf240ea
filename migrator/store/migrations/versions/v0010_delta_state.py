"""The ledger records what a delta pass needs to carry users' changes: flags, moves, deletions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

- `messages.flags`: the source's flags as the target was last given them (a token such as
  "RS $Forwarded"); a delta pass compares the source's flags with it and carries only what
  changed since, so a change made in the target is never overwritten by a source that did
  not change. Empty on rows written before: the next pass records the source's flags then,
  without carrying anything.
- `messages.pending`: a move or a deletion announced (committed) before it is sent to the
  target, and cleared in the transaction that records its outcome; a run that finds one
  left by a crash settles it first (JSON).
- `messages.removed_at`: when the source no longer held a migrated message whose copy the
  target keeps (`[run] deletions = "keep"`).
- `folders.mark`: the source's change mark of the folder at the last pass (an IMAP server's
  UIDVALIDITY and HIGHESTMODSEQ): a folder whose mark has not moved is not listed again.

Nullable columns only: on SQLite they are added without rewriting the ledger.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("flags", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pending", sa.Text(), nullable=True))
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("folders") as batch:
        batch.add_column(sa.Column("mark", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.drop_column("mark")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("removed_at")
        batch.drop_column("pending")
        batch.drop_column("flags")
