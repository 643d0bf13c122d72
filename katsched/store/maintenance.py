"""Housekeeping statements: sweeping tasks whose lease ran out, and pruning old history in bounded batches."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, literal_column, or_, select, update

from katsched.core.models import TaskStatus
from katsched.core.transitions import TERMINAL
from katsched.store.counts import hour_key
from katsched.store.engine import write
from katsched.store.history import add_reason
from katsched.store.tables import task_events, task_hour_counts, tasks

LEASE_EXPIRED = "lease_expired"


def sweep_expired_leases(
    engine: Engine, scheduler_id: str, now: datetime, dispatch_timeout: timedelta, run_timeout: timedelta
) -> list[uuid.UUID]:
    """Fail DISPATCHED tasks not started in `dispatch_timeout` and RUNNING ones silent for `run_timeout`."""
    expired = or_(
        and_(tasks.c.status == literal_column("'dispatched'"), tasks.c.modified_at < now - dispatch_timeout),
        and_(tasks.c.status == literal_column("'running'"), tasks.c.modified_at < now - run_timeout),
    )
    statement = (
        update(tasks)
        .where(tasks.c.scheduler_id == scheduler_id, expired)
        .values(status=TaskStatus.FAILED.value, modified_at=now)
        .returning(tasks.c.id)
    )
    with write(engine) as connection:
        swept = list(connection.execute(statement).scalars())
        add_reason(connection, swept, TaskStatus.FAILED, now, LEASE_EXPIRED)
    return swept


def prune_finished_tasks(engine: Engine, older_than: datetime, batch_size: int) -> int:
    """Delete one batch of finished tasks last changed before `older_than` (their history goes with them)."""
    batch = (
        select(tasks.c.id)
        .where(tasks.c.status.in_([s.value for s in TERMINAL]), tasks.c.modified_at < older_than)
        .limit(batch_size)
    )
    with write(engine) as connection:
        ids = list(connection.execute(batch).scalars())
        if not ids:
            return 0
        # The foreign key cascades to task_events (SQLite enforces it: PRAGMA foreign_keys=ON at connect).
        return int(connection.execute(delete(tasks).where(tasks.c.id.in_(ids))).rowcount)


def prune_history(engine: Engine, older_than: datetime, batch_size: int) -> int:
    """Delete one batch of status-history rows recorded before `older_than`."""
    batch = select(task_events.c.id).where(task_events.c.changed_at < older_than).limit(batch_size)
    with write(engine) as connection:
        return int(
            connection.execute(
                delete(task_events).where(task_events.c.id.in_(batch.scalar_subquery()))
            ).rowcount
        )


def prune_hour_counts(engine: Engine, older_than: datetime) -> int:
    """Delete the hourly counters of hours before `older_than`: `/tasks/stats` reads the last 24 hours only.
    A later change to a task counted in such an hour leaves a negative row there, which no read sees and the
    next prune removes."""
    statement = delete(task_hour_counts).where(task_hour_counts.c.hour < hour_key(older_than))
    with write(engine) as connection:
        return int(connection.execute(statement).rowcount)
