"""The status history. The rows themselves are written by database triggers (migration 0004) whenever a task
is inserted or its status set; this module adds reasons to them and reads them back."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, update

from katsched.core.models import TaskStatus
from katsched.store.tables import task_events


def add_reason(
    connection: Connection,
    task_ids: Sequence[uuid.UUID],
    status: TaskStatus,
    at: datetime,
    reason: str | None,
) -> None:
    """Attach `reason` to the history rows the triggers just wrote for these moves to `status` at `at`."""
    if reason is None or not task_ids:
        return
    statement = (
        update(task_events)
        .where(
            task_events.c.task_id.in_(task_ids),
            task_events.c.status == status.value,
            task_events.c.changed_at == at,
            task_events.c.reason.is_(None),
        )
        .values(reason=reason)
    )
    connection.execute(statement)
