"""Cut-over: which accounts' mail Postfix sends to the target, since when, and the waves' steps.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

`migrator cutover` switches batches of accounts from Postfix's local delivery to the target,
one wave at a time (docs/guide.md, section 6). Where an account stands is a column of its
own beside `status`: a switched account still gets delta passes (the final one after the
switch), and its status stays what the engine says, so "N of M accounts migrated" stays true.

- accounts.cutover: NULL (not switched), 'switching' (in the transport map, not yet verified),
  'switched' (Postfix sends its mail to the target), 'cut-over' (and the final delta pass after
  the switch is done), 'reverting' (a rollback is taking it out of the map).
- accounts.switched_at / cutover_at: when the route went live, when the final delta ended.
- accounts.cutover_wave: the wave (cutover_waves.id) that switched it.
- cutover_waves: one row per `cutover` (or `cutover --rollback`) of a selection, resumed by
  running the same command again; cutover_steps: each step of a wave with its times.

Only columns are added to `accounts` (no table rewrite: SQLite adds them in place), and
`ix_accounts_plan_cutover` answers the per-batch cut-over counts of `status` without reading
the accounts that were never switched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(length: int) -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.Text().with_variant(sa.String(length), "sqlite")


def upgrade() -> None:
    op.add_column("accounts", sa.Column("cutover", sa.String(length=20), nullable=True))
    op.add_column("accounts", _time("switched_at"))
    op.add_column("accounts", _time("cutover_at"))
    op.add_column("accounts", sa.Column("cutover_wave", sa.Integer(), nullable=True))
    op.create_index("ix_accounts_plan_cutover", "accounts", ["plan_id", "cutover", "batch"])
    op.create_table(
        "cutover_waves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("selection", JSON, nullable=True),
        sa.Column("selection_key", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("step", sa.String(length=40), nullable=True),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("nexthop", sa.Text(), nullable=True),
        sa.Column("transport_map", sa.Text(), nullable=True),
        sa.Column("host", _text(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _time("started_at", nullable=False),
        _time("updated_at", nullable=False),
        _time("switched_at"),
        _time("finished_at"),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name="fk_cutover_waves_plan_id_plans", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_cutover_waves"),
    )
    op.create_index("ix_cutover_waves_plan_started", "cutover_waves", ["plan_id", "started_at"])
    op.create_table(
        "cutover_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("wave_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _time("started_at", nullable=False),
        _time("finished_at"),
        sa.Column("detail", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["wave_id"],
            ["cutover_waves.id"],
            name="fk_cutover_steps_wave_id_cutover_waves",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_cutover_steps"),
    )
    op.create_index("ix_cutover_steps_wave", "cutover_steps", ["wave_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_cutover_steps_wave", table_name="cutover_steps")
    op.drop_table("cutover_steps")
    op.drop_index("ix_cutover_waves_plan_started", table_name="cutover_waves")
    op.drop_table("cutover_waves")
    op.drop_index("ix_accounts_plan_cutover", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        for column in ("cutover_wave", "cutover_at", "switched_at", "cutover"):
            batch.drop_column(column)
