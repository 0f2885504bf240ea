"""Workers are told apart by a unique id, and runs by a heartbeat.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

A worker was named `host:pid`. In containers every main process is PID 1 and, with host
networking, every container has the host's name: two containers shared one `workers` row and
one lease owner, each took the whole ceiling, and a process judged another container's pid
by its own pid namespace and freed live leases. Now `workers.name` (and `accounts.lease_owner`,
`events.worker`, `runs.worker`) is a unique id per process; host and pid stay as labels, with
`label` for what the worker is shown as (`--worker-name`, else host:pid) and `process` for how
the kernel knows it (boot id, PID namespace, pid, start time), so that only a process of the
same PID namespace may judge it dead without waiting for its heartbeat to lapse.

`runs.worker` and `runs.process` name the process of a run the same way.
`workers.share` is the part of the target's ceiling the worker may use now; a newcomer takes
only what the others do not hold. `runs.alive_until` is pushed forward by the run's heartbeat:
a run still "running" after it is interrupted (killed) by whoever notices first, on any host.

Runs left "running" by an older migrator get `alive_until` now: no older process can be at
work while the schema is upgraded (the upgrade refuses while workers send heartbeats).
The indexes keep the fleet's queries short when a campaign has started thousands of processes
and runs (a row each): every `run` looks at the live workers of its target and at the plan's
runs still "running" every few seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _text(sqlite_declared: int) -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(sa.String(sqlite_declared), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("label", _text(255), nullable=True))
        batch.add_column(sa.Column("process", _text(255), nullable=True))
        batch.add_column(sa.Column("share", sa.Integer(), nullable=True))
    op.create_index("ix_workers_target", "workers", ["target", "heartbeat_at"])
    op.create_index("ix_workers_plan_id", "workers", ["plan_id", "heartbeat_at"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("worker", _text(255), nullable=True))
        batch.add_column(sa.Column("process", _text(255), nullable=True))
        batch.add_column(sa.Column("alive_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_runs_plan_status", "runs", ["plan_id", "status"])
    runs = sa.table(
        "runs", sa.column("status", sa.String), sa.column("alive_until", sa.DateTime(timezone=True))
    )
    op.execute(
        runs.update().where(runs.c.status == "running").values(alive_until=datetime.now(UTC))
    )


def downgrade() -> None:
    op.drop_index("ix_runs_plan_status", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("alive_until")
        batch.drop_column("process")
        batch.drop_column("worker")
    op.drop_index("ix_workers_plan_id", table_name="workers")
    op.drop_index("ix_workers_target", table_name="workers")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("share")
        batch.drop_column("process")
        batch.drop_column("label")
