"""Who popped a task, and when: the runner's address and User-Agent

Nullable, so existing rows and tasks never popped stay as they were. The API's Task documents leave these
columns out (the wire format is the original scheduler's); `katsched tasks show` and `status` read them.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import katsched.store.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("popped_by_address", sa.String(), nullable=True))
    op.add_column("tasks", sa.Column("popped_by_agent", sa.String(), nullable=True))
    op.add_column(
        "tasks", sa.Column("popped_at", katsched.store.types.UTCDateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_column("popped_at")
        batch_op.drop_column("popped_by_agent")
        batch_op.drop_column("popped_by_address")
