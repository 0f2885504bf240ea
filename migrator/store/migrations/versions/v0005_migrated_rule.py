"""v_progress_by_batch counts an account as migrated once a pass completed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

`status` counts an account whose pass completed as migrated while a later delta pass works on it
("running", also what a SIGKILL leaves) or failed, as `routing` always did: a run killed in the
middle must not make "N of M accounts migrated" go down. The view the SQL recipes use follows.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_VIEW = """
CREATE VIEW v_progress_by_batch AS
SELECT plan_id, batch,
       COUNT(*) AS total,
       SUM(CASE WHEN {migrated} THEN 1 ELSE 0 END) AS migrated,
       SUM(CASE WHEN status = 'verified' THEN 1 ELSE 0 END) AS verified,
       SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
       SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running,
       SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending
FROM accounts
WHERE scope = 'in_scope'
GROUP BY plan_id, batch
"""
_NOW = "status IN ('synced', 'verified') OR (passes > 0 AND status IN ('running', 'failed'))"
_BEFORE = "status IN ('synced', 'verified')"


def upgrade() -> None:
    op.execute("DROP VIEW v_progress_by_batch")
    op.execute(_VIEW.format(migrated=_NOW))


def downgrade() -> None:
    op.execute("DROP VIEW v_progress_by_batch")
    op.execute(_VIEW.format(migrated=_BEFORE))
