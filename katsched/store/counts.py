"""Counts read from the counters the database keeps (migration 0007), never by counting the queue.

`task_counts` holds the number of tasks per (scheduler, organisation, status) and `task_hour_counts` the same
per hour of `modified_at`; triggers keep both exact on every insert, update and delete of a task, in the
transaction that makes the change. Keys whose count fell to zero stay behind as zero rows, skipped here.
"""

from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Connection, FromClause, and_, func, literal_column, select, true

from katsched.core.models import TaskStatus
from katsched.store.tables import task_counts, task_hour_counts, tasks
from katsched.store.types import hour_bucket

HOUR_FORMAT = "%Y-%m-%d %H"
Count = tuple[str, str, TaskStatus, int]


def hour_key(moment: datetime) -> str:
    """The hour a UTC moment falls in, as the counters (and `hour_bucket`) write it."""
    return moment.astimezone(UTC).strftime(HOUR_FORMAT)


def parse_hour(text: str) -> datetime:
    return datetime.strptime(text, HOUR_FORMAT).replace(tzinfo=UTC)


def counted(
    connection: Connection,
    scheduler_id: str | None = None,
    organisation: str | None = None,
    status: TaskStatus | None = None,
) -> list[Count]:
    """(scheduler_id, organisation, status, number) for every key with tasks, narrowed by the arguments."""
    statement = select(
        task_counts.c.scheduler_id, task_counts.c.organisation, task_counts.c.status, task_counts.c.n
    ).where(task_counts.c.n != 0, *_narrowed(task_counts, scheduler_id, organisation, status))
    return [(s, o, TaskStatus(st), int(n)) for s, o, st, n in connection.execute(statement)]


def total(
    connection: Connection,
    scheduler_id: str | None = None,
    organisation: str | None = None,
    status: TaskStatus | None = None,
) -> int:
    statement = select(func.coalesce(func.sum(task_counts.c.n), 0)).where(
        *_narrowed(task_counts, scheduler_id, organisation, status)
    )
    return int(connection.execute(statement).scalar_one())


def hourly(
    connection: Connection, since: datetime, scheduler_id: str | None, organisation: str | None
) -> dict[str, dict[str, int]]:
    """Per hour of `modified_at` from `since` on, the number of tasks in each status: whole hours from the
    counters, the part of the first hour after `since` from the tasks (one hour of changes at most)."""
    first_whole = since.replace(minute=0, second=0, microsecond=0)
    if first_whole < since:
        first_whole += timedelta(hours=1)
    counters = select(task_hour_counts.c.hour, task_hour_counts.c.status, task_hour_counts.c.n).where(
        task_hour_counts.c.hour >= hour_key(first_whole),
        task_hour_counts.c.n != 0,
        *_narrowed(task_hour_counts, scheduler_id, organisation, None),
    )
    rows: list[tuple[str, str, int]] = [(hour, status, n) for hour, status, n in connection.execute(counters)]
    if first_whole > since:
        rows += _partial_hour(connection, since, first_whole, scheduler_id, organisation)
    stats: dict[str, dict[str, int]] = {}
    for hour, status, number in rows:
        counts = stats.setdefault(hour, {s.value: 0 for s in TaskStatus} | {"total": 0})
        counts[status] += int(number)
        counts["total"] += int(number)
    return stats


def _partial_hour(
    connection: Connection,
    since: datetime,
    until: datetime,
    scheduler_id: str | None,
    organisation: str | None,
) -> list[tuple[str, str, int]]:
    bucket = hour_bucket(tasks.c.modified_at, connection.dialect.name).label("hour")
    # Every status listed: each is then a range of ix_tasks_status_modified.
    statement = (
        select(bucket, tasks.c.status, func.count())
        .where(
            tasks.c.status.in_([s.value for s in TaskStatus]),
            tasks.c.modified_at >= since,
            tasks.c.modified_at < until,
            *_narrowed(tasks, scheduler_id, organisation, None),
        )
        .group_by(bucket, tasks.c.status)
    )
    return [(hour, status, int(n)) for hour, status, n in connection.execute(statement)]


def oldest_queued(connection: Connection, scheduler_id: str) -> datetime | None:
    """The creation time of the scheduler's oldest queued task: the first entry of ix_tasks_queued_age."""
    statement = select(func.min(tasks.c.created_at)).where(
        tasks.c.scheduler_id == scheduler_id, tasks.c.status == literal_column("'queued'")
    )
    value = connection.execute(statement).scalar_one()
    if isinstance(value, str):  # an aggregate skips the column type on SQLite
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _narrowed(
    table: FromClause, scheduler_id: str | None, organisation: str | None, status: TaskStatus | None
) -> list[ColumnElement[bool]]:
    columns = table.c
    conditions: list[ColumnElement[bool]] = [true()]
    if scheduler_id:
        conditions.append(columns.scheduler_id == scheduler_id)
    if organisation:
        conditions.append(columns.organisation == organisation)
    if status is not None:
        conditions.append(columns.status == status.value)
    return [and_(*conditions)]
