"""Status history written by the database itself

Every INSERT into tasks, and every UPDATE that sets tasks.status (even to the value it had: a runner's
heartbeat), adds a task_events row stamped with the task's new modified_at. The history cannot be forgotten
by a code path, and the hot paths (push, pop) send one statement fewer. A reason, when there is one, is added
to the row afterwards (katsched.store.history).

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER task_events_on_insert AFTER INSERT ON tasks
    BEGIN
        INSERT INTO task_events (task_id, status, changed_at) VALUES (NEW.id, NEW.status, NEW.modified_at);
    END
    """,
    """
    CREATE TRIGGER task_events_on_status AFTER UPDATE OF status ON tasks
    BEGIN
        INSERT INTO task_events (task_id, status, changed_at) VALUES (NEW.id, NEW.status, NEW.modified_at);
    END
    """,
)

POSTGRES_TRIGGERS = (
    """
    CREATE FUNCTION katsched_record_status() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO task_events (task_id, status, changed_at) VALUES (NEW.id, NEW.status, NEW.modified_at);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER task_events_on_insert AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION katsched_record_status()
    """,
    """
    CREATE TRIGGER task_events_on_status AFTER UPDATE OF status ON tasks
    FOR EACH ROW EXECUTE FUNCTION katsched_record_status()
    """,
)


def upgrade() -> None:
    statements = POSTGRES_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS task_events_on_status ON tasks"
        if _postgres()
        else "DROP TRIGGER IF EXISTS task_events_on_status"
    )
    op.execute(
        "DROP TRIGGER IF EXISTS task_events_on_insert ON tasks"
        if _postgres()
        else "DROP TRIGGER IF EXISTS task_events_on_insert"
    )
    if _postgres():
        op.execute("DROP FUNCTION IF EXISTS katsched_record_status()")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
