"""plugins seen by the new-plugins planner

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import katsched.store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plugins_seen",
        sa.Column("organisation", sa.String(), nullable=False),
        sa.Column("plugin_id", sa.String(), nullable=False),
        sa.Column("first_seen_at", katsched.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organisation", "plugin_id"),
    )


def downgrade() -> None:
    op.drop_table("plugins_seen")
