"""Housekeeping statements: sweeping tasks whose lease ran out, and pruning old history in bounded batches."""

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Engine, and_, delete, func, literal_column, or_, select, update
from sqlalchemy.sql import FromClause, Select

from katsched.core.models import TaskStatus
from katsched.core.transitions import LEASE_EXPIRED, TERMINAL
from katsched.store.counts import hour_key
from katsched.store.daemon_state import DaemonStateStore
from katsched.store.decisions import prune_decisions
from katsched.store.engine import read, write
from katsched.store.history import add_reason
from katsched.store.tables import daemon_state, task_events, task_hour_counts, tasks

DISPATCHED: ColumnElement[str] = literal_column("'dispatched'")
RUNNING: ColumnElement[str] = literal_column("'running'")
QUEUED: ColumnElement[str] = literal_column("'queued'")


def sweep_expired_leases(
    engine: Engine,
    scheduler_id: str,
    now: datetime,
    dispatch_timeout: timedelta,
    run_timeout: timedelta,
    dispatch_reason: str = LEASE_EXPIRED,
) -> list[uuid.UUID]:
    """Fail DISPATCHED tasks not started in `dispatch_timeout` and RUNNING ones silent for `run_timeout`."""
    expiries = (
        (DISPATCHED, dispatch_timeout, TaskStatus.FAILED, dispatch_reason),
        (RUNNING, run_timeout, TaskStatus.FAILED, LEASE_EXPIRED),
    )
    swept: list[uuid.UUID] = []
    with write(engine) as connection:
        for status, timeout, new_status, reason in expiries:
            statement = (
                update(tasks)
                .where(tasks.c.scheduler_id == scheduler_id, tasks.c.status == status)
                .where(tasks.c.modified_at < now - timeout)
                .values(status=new_status.value, modified_at=now)
                .returning(tasks.c.id)
            )
            ids = list(connection.execute(statement).scalars())
            add_reason(connection, ids, new_status, now, reason)
            swept += ids
    return swept


def requeue_lost_dispatches(
    engine: Engine, scheduler_id: str, now: datetime, dispatch_timeout: timedelta, max_attempts: int
) -> list[uuid.UUID]:
    """Queue again each DISPATCHED task whose runner never said RUNNING within `dispatch_timeout` (its pop
    answer was lost with a connection or a daemon), counting the lost attempt, while fewer than
    `max_attempts` were lost and no task of the same identity is queued meanwhile. Each move is recorded
    with its attempt number; `sweep_expired_leases` fails those left behind."""
    twin = tasks.alias("twin")
    same_identity = (twin.c.scheduler_id == tasks.c.scheduler_id, twin.c.hash == tasks.c.hash)
    queued_twin = select(twin.c.id).where(*same_identity, twin.c.status == QUEUED).exists()

    def lost(table: FromClause) -> tuple[ColumnElement[bool], ...]:
        return (
            table.c.scheduler_id == scheduler_id,
            table.c.status == DISPATCHED,
            table.c.modified_at < now - dispatch_timeout,
            table.c.dispatch_expiries + 1 < max_attempts,
        )

    # One QUEUED task per identity (migration 0012): of lost twins only the newest is queued again.
    newer = or_(
        twin.c.created_at > tasks.c.created_at,
        and_(twin.c.created_at == tasks.c.created_at, twin.c.id > tasks.c.id),
    )
    newer_lost_twin = select(twin.c.id).where(*same_identity, *lost(twin), newer).exists()
    statement = (
        update(tasks)
        .where(*lost(tasks), ~queued_twin, ~newer_lost_twin)
        .values(
            status=TaskStatus.QUEUED.value, modified_at=now, dispatch_expiries=tasks.c.dispatch_expiries + 1
        )
        .returning(tasks.c.id, tasks.c.dispatch_expiries)
    )
    with write(engine) as connection:
        by_attempt: dict[int, list[uuid.UUID]] = {}
        for task_id, attempts in connection.execute(statement):
            by_attempt.setdefault(int(attempts), []).append(task_id)
        for attempts, ids in by_attempt.items():
            reason = f"dispatch_lease_expired requeued attempt={attempts} max_attempts={max_attempts}"
            add_reason(connection, ids, TaskStatus.QUEUED, now, reason)
    return [task_id for ids in by_attempt.values() for task_id in ids]


def _finished_before(older_than: datetime) -> Select[tuple[uuid.UUID]]:
    return select(tasks.c.id).where(
        tasks.c.status.in_([s.value for s in TERMINAL]), tasks.c.modified_at < older_than
    )


def prune_finished_tasks(engine: Engine, older_than: datetime, batch_size: int) -> int:
    """Delete one batch of finished tasks last changed before `older_than` (their history goes with them)."""
    batch = _finished_before(older_than).limit(batch_size)
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


def count_prunable(
    engine: Engine, tasks_before: datetime, history_before: datetime, daemons_before: datetime
) -> tuple[int, int, int]:
    """What a full pruning run would delete now: (finished tasks, history rows not deleted with those
    tasks, daemon rows), counted as `prune_finished_tasks`, `prune_history` and the daemon rows count them."""
    doomed = _finished_before(tasks_before)
    statement = select(
        select(func.count()).select_from(doomed.subquery()).scalar_subquery(),
        select(func.count())
        .where(task_events.c.changed_at < history_before, task_events.c.task_id.not_in(doomed))
        .scalar_subquery(),
        select(func.count()).where(daemon_state.c.heartbeat_at < daemons_before).scalar_subquery(),
    )
    with read(engine) as connection:
        finished, history, daemons = connection.execute(statement).one()
    return int(finished), int(history), int(daemons)


class SqlHousekeeping:
    """The `Housekeeping` port: the statements above, on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def requeue_lost_dispatches(
        self, scheduler_id: str, now: datetime, dispatch_timeout: timedelta, max_attempts: int
    ) -> list[uuid.UUID]:
        return requeue_lost_dispatches(self.engine, scheduler_id, now, dispatch_timeout, max_attempts)

    def sweep_expired_leases(
        self,
        scheduler_id: str,
        now: datetime,
        dispatch_timeout: timedelta,
        run_timeout: timedelta,
        dispatch_reason: str,
    ) -> list[uuid.UUID]:
        return sweep_expired_leases(
            self.engine, scheduler_id, now, dispatch_timeout, run_timeout, dispatch_reason
        )

    def prune_finished_tasks(self, older_than: datetime, batch_size: int) -> int:
        return prune_finished_tasks(self.engine, older_than, batch_size)

    def prune_history(self, older_than: datetime, batch_size: int) -> int:
        return prune_history(self.engine, older_than, batch_size)

    def prune_decisions(self, older_than: datetime, batch_size: int) -> int:
        return prune_decisions(self.engine, older_than, batch_size)

    def prune_daemons(self, older_than: datetime) -> int:
        return DaemonStateStore(self.engine).prune(older_than)

    def prune_hour_counts(self, older_than: datetime) -> int:
        return prune_hour_counts(self.engine, older_than)

    def count_prunable(
        self, tasks_before: datetime, history_before: datetime, daemons_before: datetime
    ) -> tuple[int, int, int]:
        return count_prunable(self.engine, tasks_before, history_before, daemons_before)


if TYPE_CHECKING:  # mypy proves that the adapter implements the port
    from katsched.core.ports import Housekeeping

    def _implements_port(store: SqlHousekeeping) -> Housekeeping:
        return store
