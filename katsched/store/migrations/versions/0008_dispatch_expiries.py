"""Count the dispatches a task lost: tasks.dispatch_expiries

A task whose runner never started it (its pop answer died with a connection or a daemon) is queued again when
its dispatch lease runs out, up to the scheduler's max_attempts; this column counts those lost dispatches.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, not Alembic's batch mode: on SQLite that copies the table and loses its history triggers.


def upgrade() -> None:
    op.add_column("tasks", sa.Column("dispatch_expiries", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("tasks", "dispatch_expiries")
