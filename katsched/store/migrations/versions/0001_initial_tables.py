"""initial tables

Revision ID: 0001
Revises:
Create Date: 2026-11-28 02:56:30.264032
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import katsched.store.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scheduler_id", sa.String(), nullable=False),
        sa.Column("organisation", sa.String(), nullable=False),
        sa.Column("hash", sa.String(length=32), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("schedule", sa.String(), nullable=True),
        sa.Column("deadline_at", katsched.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", katsched.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_at", katsched.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("hash"),
    )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.create_index("ix_schedules_due", ["enabled", "deadline_at"], unique=False)
        batch_op.create_index("ix_schedules_organisation", ["organisation"], unique=False)
        batch_op.create_index("ix_schedules_scheduler_id", ["scheduler_id"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scheduler_id", sa.String(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=True),
        sa.Column("organisation", sa.String(), nullable=False),
        sa.Column("priority", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("hash", sa.String(length=32), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", katsched.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_at", katsched.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_tasks_hash", ["hash"], unique=False)
        batch_op.create_index("ix_tasks_organisation", ["organisation"], unique=False)
        batch_op.create_index(
            "ix_tasks_pop_order",
            ["scheduler_id", "priority", "created_at"],
            unique=False,
            sqlite_where=sa.text("status = 'queued'"),
            postgresql_where=sa.text("status = 'queued'"),
        )
        batch_op.create_index(
            "ix_tasks_queued_hash",
            ["scheduler_id", "hash"],
            unique=False,
            sqlite_where=sa.text("status = 'queued'"),
            postgresql_where=sa.text("status = 'queued'"),
        )
        batch_op.create_index("ix_tasks_schedule_id", ["schedule_id"], unique=False)
        batch_op.create_index("ix_tasks_status_modified", ["status", "modified_at"], unique=False)

    op.create_table(
        "task_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("changed_at", katsched.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.create_index("ix_task_events_changed_at", ["changed_at"], unique=False)
        batch_op.create_index("ix_task_events_task_id", ["task_id", "changed_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.drop_index("ix_task_events_task_id")
        batch_op.drop_index("ix_task_events_changed_at")

    op.drop_table("task_events")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_status_modified")
        batch_op.drop_index("ix_tasks_schedule_id")
        batch_op.drop_index(
            "ix_tasks_queued_hash",
            sqlite_where=sa.text("status = 'queued'"),
            postgresql_where=sa.text("status = 'queued'"),
        )
        batch_op.drop_index(
            "ix_tasks_pop_order",
            sqlite_where=sa.text("status = 'queued'"),
            postgresql_where=sa.text("status = 'queued'"),
        )
        batch_op.drop_index("ix_tasks_organisation")
        batch_op.drop_index("ix_tasks_hash")
        batch_op.drop_index("ix_tasks_created_at")

    op.drop_table("tasks")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index("ix_schedules_scheduler_id")
        batch_op.drop_index("ix_schedules_organisation")
        batch_op.drop_index("ix_schedules_due")

    op.drop_table("schedules")
