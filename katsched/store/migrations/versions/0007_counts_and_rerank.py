"""Task counts kept by triggers, and re-ranking that reads only the ranks that moved

- task_counts and task_hour_counts: the number of tasks per (scheduler, organisation, status), and per hour of
  modified_at as well, kept exact by the database on every insert, update and delete of a task, so that
  /tasks/stats, /metrics, `queue stats` and the dashboard never count the queue. Both are filled from the
  existing rows here. SQLite has row triggers only; PostgreSQL uses statement triggers over the transition
  tables, adding each statement's net change per key in key order, so two transactions updating the same
  counters lock them in the same order and cannot deadlock on them.
- tasks.last_run_at and tasks.rerank_at: an automatic rank's fact, and when that rank changes next. The
  queued boefje tasks ranked from our own history (priority above 1, an earlier run of the same hash) get
  their last run and are due for re-ranking at once; a manual push has neither and keeps its priority.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import katsched.store.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("status = 'queued'")
KEY = "scheduler_id, organisation, status"
SQLITE_HOUR = "substr({0}.modified_at, 1, 13)"
POSTGRES_HOUR = "to_char(date_trunc('hour', {0}.modified_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD HH24')"


def _sqlite_add(row: str, sign: int) -> str:
    values = f"{row}.scheduler_id, {row}.organisation, {row}.status, {sign}"
    hour = SQLITE_HOUR.format(row)
    return f"""
        INSERT INTO task_counts ({KEY}, n) VALUES ({values})
            ON CONFLICT ({KEY}) DO UPDATE SET n = n + excluded.n;
        INSERT INTO task_hour_counts (hour, {KEY}, n) VALUES ({hour}, {values})
            ON CONFLICT (hour, {KEY}) DO UPDATE SET n = n + excluded.n;"""


SQLITE_TRIGGERS = (
    f"CREATE TRIGGER task_counts_on_insert AFTER INSERT ON tasks BEGIN {_sqlite_add('NEW', 1)} END",
    f"CREATE TRIGGER task_counts_on_delete AFTER DELETE ON tasks BEGIN {_sqlite_add('OLD', -1)} END",
    f"""
    CREATE TRIGGER task_counts_on_update
    AFTER UPDATE OF scheduler_id, organisation, status, modified_at ON tasks
    WHEN OLD.scheduler_id IS NOT NEW.scheduler_id OR OLD.organisation IS NOT NEW.organisation
        OR OLD.status IS NOT NEW.status OR {SQLITE_HOUR.format("OLD")} IS NOT {SQLITE_HOUR.format("NEW")}
    BEGIN {_sqlite_add("OLD", -1)} {_sqlite_add("NEW", 1)} END
    """,
)


def _postgres_function(name: str, rows: str) -> str:
    """A statement trigger's function: the net change per counter key of the statement's transition tables
    (`rows`), added in key order."""
    hourly = f"SELECT {POSTGRES_HOUR.format('r')} AS hour, r.* FROM ({rows}) r"
    return f"""
    CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO task_counts AS c ({KEY}, n)
            SELECT {KEY}, sum(n) FROM ({rows}) r GROUP BY {KEY} HAVING sum(n) <> 0 ORDER BY {KEY}
            ON CONFLICT ({KEY}) DO UPDATE SET n = c.n + excluded.n;
        INSERT INTO task_hour_counts AS c (hour, {KEY}, n)
            SELECT hour, {KEY}, sum(n) FROM ({hourly}) h GROUP BY hour, {KEY} HAVING sum(n) <> 0
            ORDER BY hour, {KEY}
            ON CONFLICT (hour, {KEY}) DO UPDATE SET n = c.n + excluded.n;
        RETURN NULL;
    END
    $$"""


ROWS = "SELECT scheduler_id, organisation, status, modified_at, {sign}::bigint AS n FROM {table}"
POSTGRES_TRIGGERS = (
    _postgres_function("katsched_count_insert", ROWS.format(sign=1, table="changed_rows")),
    _postgres_function("katsched_count_delete", ROWS.format(sign=-1, table="old_rows")),
    _postgres_function(
        "katsched_count_update",
        ROWS.format(sign=-1, table="old_rows") + " UNION ALL " + ROWS.format(sign=1, table="changed_rows"),
    ),
    """CREATE TRIGGER task_counts_on_insert AFTER INSERT ON tasks REFERENCING NEW TABLE AS changed_rows
       FOR EACH STATEMENT EXECUTE FUNCTION katsched_count_insert()""",
    """CREATE TRIGGER task_counts_on_delete AFTER DELETE ON tasks REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION katsched_count_delete()""",
    """CREATE TRIGGER task_counts_on_update AFTER UPDATE ON tasks
       REFERENCING OLD TABLE AS old_rows NEW TABLE AS changed_rows
       FOR EACH STATEMENT EXECUTE FUNCTION katsched_count_update()""",
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    _rank_columns()
    _count_tables()
    hour = (POSTGRES_HOUR if postgres else SQLITE_HOUR).format("tasks")
    op.execute(f"INSERT INTO task_counts ({KEY}, n) SELECT {KEY}, count(*) FROM tasks GROUP BY {KEY}")
    op.execute(
        f"INSERT INTO task_hour_counts (hour, {KEY}, n) SELECT {hour}, {KEY}, count(*) FROM tasks"
        f" GROUP BY {hour}, {KEY}"
    )
    for statement in POSTGRES_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(statement)


def _rank_columns() -> None:
    op.add_column("tasks", sa.Column("last_run_at", katsched.store.types.UTCDateTime(timezone=True)))
    op.add_column("tasks", sa.Column("rerank_at", katsched.store.types.UTCDateTime(timezone=True)))
    op.create_index(
        "ix_tasks_rerank",
        "tasks",
        ["scheduler_id", "organisation", "rerank_at"],
        sqlite_where=QUEUED,
        postgresql_where=QUEUED,
    )
    op.create_index(
        "ix_tasks_queued_age",
        "tasks",
        ["scheduler_id", "created_at"],
        sqlite_where=QUEUED,
        postgresql_where=QUEUED,
    )
    # Before this revision every queued boefje task above priority 1 was re-ranked from its last run in our
    # history; those with one are due for re-ranking now, the others keep their priority.
    op.execute(
        """
        UPDATE tasks SET last_run_at = (
            SELECT max(earlier.created_at) FROM tasks AS earlier
            WHERE earlier.scheduler_id = tasks.scheduler_id AND earlier.hash = tasks.hash
              AND earlier.id <> tasks.id AND earlier.status <> 'cancelled'
              AND earlier.created_at <= tasks.created_at
        )
        WHERE scheduler_id = 'boefje' AND status = 'queued' AND priority > 1
        """
    )
    op.execute("UPDATE tasks SET rerank_at = created_at WHERE status = 'queued' AND last_run_at IS NOT NULL")


def _count_columns() -> list[sa.Column[str] | sa.Column[int]]:
    return [
        sa.Column("scheduler_id", sa.String(), nullable=False),
        sa.Column("organisation", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    ]


def _count_tables() -> None:
    op.create_table(
        "task_counts", *_count_columns(), sa.PrimaryKeyConstraint("scheduler_id", "organisation", "status")
    )
    op.create_table(
        "task_hour_counts",
        sa.Column("hour", sa.String(length=13), nullable=False),
        *_count_columns(),
        sa.PrimaryKeyConstraint("hour", "scheduler_id", "organisation", "status"),
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger in ("task_counts_on_insert", "task_counts_on_delete", "task_counts_on_update"):
        op.execute(
            f"DROP TRIGGER IF EXISTS {trigger} ON tasks" if postgres else f"DROP TRIGGER IF EXISTS {trigger}"
        )
    if postgres:
        for function in ("katsched_count_insert", "katsched_count_delete", "katsched_count_update"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("task_hour_counts")
    op.drop_table("task_counts")
    op.drop_index("ix_tasks_queued_age", table_name="tasks")
    op.drop_index("ix_tasks_rerank", table_name="tasks")
    op.drop_column("tasks", "rerank_at")
    op.drop_column("tasks", "last_run_at")
