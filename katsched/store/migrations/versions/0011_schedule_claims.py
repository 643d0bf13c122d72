"""Claims on due schedules: schedules.claimed_by, schedules.claimed_until

Several daemons on one database split the rescheduling: each claims a batch of due schedules for a short
lease, and the others skip a schedule while its claim holds. Nullable: no schedule is claimed at first.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import katsched.store.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, not Alembic's batch mode: on SQLite that copies the table (see 0008).


def upgrade() -> None:
    op.add_column("schedules", sa.Column("claimed_by", sa.Uuid(), nullable=True))
    op.add_column(
        "schedules",
        sa.Column("claimed_until", katsched.store.types.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("schedules", "claimed_until")
    op.drop_column("schedules", "claimed_by")
