"""At most one QUEUED task per (scheduler, hash), enforced by a unique partial index

Before this revision the push checked for a queued twin inside its transaction, which PostgreSQL's READ
COMMITTED lets two pushers pass at once: both inserted. Existing twins are resolved first: of each identity's
queued tasks the one that pops first (pop order: priority, then age; the id breaks ties) stays queued and the
others are cancelled, with a reason in their history, as a push that replaces a task would leave them.
ix_tasks_identity stays: it serves the look-ups by hash in every status (the last run, a requeue's twin).

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import katsched.store.types

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("status = 'queued'")
REASON = "superseded: another task of the same identity was queued first (migration 0012)"
# The rank of each queued task within its identity, in the dialect's own pop order (NULL priorities sort as
# a pop sorts them there).
TWINS = """
    SELECT id FROM (
        SELECT id, row_number() OVER (
            PARTITION BY scheduler_id, hash ORDER BY priority, created_at, id
        ) AS place
        FROM tasks WHERE status = 'queued' AND hash IS NOT NULL
    ) ranked WHERE place > 1
"""


def upgrade() -> None:
    _cancel_twins(datetime.now(UTC))
    op.create_index(
        "ix_tasks_queued_identity",
        "tasks",
        ["scheduler_id", "hash"],
        unique=True,
        sqlite_where=QUEUED,
        postgresql_where=QUEUED,
    )


def _cancel_twins(now: datetime) -> None:
    at = sa.bindparam("now", now, type_=katsched.store.types.UTCDateTime(timezone=True))
    bind = op.get_bind()
    twins = list(bind.execute(sa.text(TWINS)).scalars())
    if not twins:
        return
    ids: sa.BindParameter[list[object]] = sa.bindparam("ids", twins, expanding=True)
    # The history trigger (migration 0004) records each move at the new modified_at; the reason follows.
    bind.execute(
        sa.text("UPDATE tasks SET status = 'cancelled', modified_at = :now WHERE id IN :ids").bindparams(
            at, ids
        )
    )
    bind.execute(
        sa.text(
            "UPDATE task_events SET reason = :reason"
            " WHERE task_id IN :ids AND status = 'cancelled' AND changed_at = :now AND reason IS NULL"
        ).bindparams(at, ids, sa.bindparam("reason", REASON))
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_queued_identity", table_name="tasks")
