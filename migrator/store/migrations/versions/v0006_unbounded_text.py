"""Values from outside migrator are text of any length on PostgreSQL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

The first revisions declared lengths (VARCHAR(500) for a display name, 320 for an address,
255 for a uid or a batch, 600 for a message fingerprint). SQLite never enforces them, so no
test saw that PostgreSQL does: a directory entry with a 2,000-character name stopped a whole
discovery with StringDataRightTruncation. Directory values, message keys and fingerprints,
host and worker names and target URLs have no length the schema may assume: on PostgreSQL
they become `text`. VARCHAR to text needs no rewrite of the table or its indexes there.

Only the index keeps a bound: a B-tree entry holds at most ~2.7 KB, so discovery refuses the
few values that are indexed and could be longer (a batch name, a DN used as key; see
docs/discovery.md). On SQLite the declarations stay as they are: it ignores them, and
rewriting the ledger's tables to change a declaration would copy tens of millions of rows.

The two views that read these columns are dropped and recreated (PostgreSQL will not change
a column's type under a view).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = {
    "accounts": {
        "key": 500, "address": 320, "target_address": 320, "uid": 255, "name": 500,
        "batch": 255, "lease_owner": 255,
    },
    "messages": {"source_key": 500, "fingerprint": 600, "tag_key": 500},
    "events": {"worker": 255},
    "workers": {"name": 255, "host": 255, "target": 500},
    "runs": {"host": 255},
    "target_limits": {"target": 500},
}  # fmt: skip

V_ACCOUNT_STATE = """
CREATE VIEW v_account_state AS
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
"""
V_PROGRESS_BY_BATCH = """
CREATE VIEW v_progress_by_batch AS
SELECT plan_id, batch,
       COUNT(*) AS total,
       SUM(CASE WHEN status IN ('synced', 'verified') OR (passes > 0 AND status IN ('running', 'failed'))
                THEN 1 ELSE 0 END) AS migrated,
       SUM(CASE WHEN status = 'verified' THEN 1 ELSE 0 END) AS verified,
       SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
       SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running,
       SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending
FROM accounts
WHERE scope = 'in_scope'
GROUP BY plan_id, batch
"""


def _retype(to_text: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP VIEW v_account_state")
    op.execute("DROP VIEW v_progress_by_batch")
    for table, columns in COLUMNS.items():
        for column, length in columns.items():
            new: sa.types.TypeEngine[str] = sa.Text() if to_text else sa.String(length)
            old: sa.types.TypeEngine[str] = sa.String(length) if to_text else sa.Text()
            op.alter_column(table, column, type_=new, existing_type=old)
    op.execute(V_ACCOUNT_STATE)
    op.execute(V_PROGRESS_BY_BATCH)


def upgrade() -> None:
    _retype(to_text=True)


def downgrade() -> None:
    # fails, as it should, when a longer value was stored since
    _retype(to_text=False)
