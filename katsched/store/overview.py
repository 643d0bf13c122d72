"""One read-only snapshot of the whole store for `katsched status`: the task counters (store.counts) and a
handful of grouped counts, each answered from an index, in one deferred read transaction (so it never
waits for, nor blocks, the daemon's writes)."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, func, select

from katsched.core.models import SchedulerKind, TaskStatus
from katsched.core.transitions import LEASE_EXPIRED, TERMINAL
from katsched.store import counts
from katsched.store.daemon_state import DaemonState, DaemonStateStore
from katsched.store.engine import read
from katsched.store.schedules import has_active_task
from katsched.store.tables import schedules, task_events, tasks

IN_FLIGHT = (TaskStatus.QUEUED.value, TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value)
MINUTES = 60


@dataclass(frozen=True)
class SchedulerLoad:
    scheduler_id: str
    queued: int = 0
    dispatched: int = 0
    running: int = 0
    oldest_queued_at: datetime | None = None


@dataclass(frozen=True)
class ScheduleDue:
    enabled: int = 0
    due: int = 0
    overdue: int = 0
    oldest_due_at: datetime | None = None
    next_deadline_at: datetime | None = None


@dataclass(frozen=True)
class RunnerHold:
    """The dispatched and running tasks one runner popped, and since when it holds the oldest of them."""

    address: str | None  # None: popped before katsched recorded runners
    agent: str | None
    dispatched: int = 0
    running: int = 0
    oldest_popped_at: datetime | None = None


@dataclass(frozen=True)
class Overview:
    taken_at: datetime
    schedulers: list[SchedulerLoad]
    pushed_per_minute: list[int]  # the last MINUTES minutes, oldest first; the last entry is this minute
    popped_per_minute: list[int]
    outcomes_24h: dict[str, int]
    swept_24h: int
    top_organisations: list[tuple[str, int]]
    schedules: ScheduleDue
    holds: list[RunnerHold] = field(default_factory=list)
    failures_1h: list[tuple[str, int]] = field(default_factory=list)  # (reason, count), most frequent first
    daemons: list[DaemonState] = field(default_factory=list)


def take_overview(engine: Engine, now: datetime, *, overdue_after: timedelta, top: int = 10) -> Overview:
    with read(engine) as connection:
        pushed, popped = _throughput(connection, now)
        outcomes, swept = _outcomes(connection, now)
        overview = Overview(
            taken_at=now,
            schedulers=_loads(connection),
            pushed_per_minute=pushed,
            popped_per_minute=popped,
            outcomes_24h=outcomes,
            swept_24h=swept,
            top_organisations=_top_organisations(connection, top),
            schedules=_schedules(connection, now, overdue_after),
            holds=_holds(connection),
            failures_1h=_failure_reasons(connection, now - timedelta(hours=1), top),
        )
    return Overview(**{**overview.__dict__, "daemons": DaemonStateStore(engine).instances()})


def _loads(connection: Connection) -> list[SchedulerLoad]:
    found: dict[str, dict[str, Any]] = {kind.value: {} for kind in SchedulerKind}
    for scheduler_id, _organisation, status, number in counts.counted(connection):
        if status.value in IN_FLIGHT:
            loads = found.setdefault(scheduler_id, {})
            loads[status.value] = loads.get(status.value, 0) + number
    for scheduler_id, loads in found.items():
        if loads.get(TaskStatus.QUEUED.value):
            loads["oldest_queued_at"] = counts.oldest_queued(connection, scheduler_id)
    return [SchedulerLoad(scheduler_id=name, **values) for name, values in found.items()]


def _throughput(connection: Connection, now: datetime) -> tuple[list[int], list[int]]:
    """Pushes (events → queued) and pops (→ dispatched) per minute over the last hour."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    bucket = _minute_bucket(task_events.c.changed_at, connection.dialect.name).label("minute")
    statement = (
        select(bucket, task_events.c.status, func.count())
        .where(task_events.c.changed_at >= start, task_events.c.status.in_(IN_FLIGHT[:2]))
        .group_by(bucket, task_events.c.status)
    )
    pushed, popped = [0] * MINUTES, [0] * MINUTES
    for minute, status, count in connection.execute(statement):
        at = datetime.strptime(minute, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        index = int((at - start).total_seconds() // 60)
        if 0 <= index < MINUTES:
            series = pushed if status == TaskStatus.QUEUED.value else popped
            series[index] += int(count)
    return pushed, popped


def _minute_bucket(column: ColumnElement[datetime], dialect_name: str) -> ColumnElement[str]:
    if dialect_name == "sqlite":
        return func.substr(column, 1, 16)  # "YYYY-MM-DD HH:MM" of the stored UTC text
    return func.to_char(func.date_trunc("minute", column), "YYYY-MM-DD HH24:MI")


def _outcomes(connection: Connection, now: datetime) -> tuple[dict[str, int], int]:
    # Grouped by the reason column itself: PostgreSQL refuses to group by `reason = :param`, as the bound
    # parameter in the select list and the one in GROUP BY are two different expressions to it.
    since = now - timedelta(hours=24)
    terminal = [status.value for status in sorted(TERMINAL)]
    statement = (
        select(task_events.c.status, task_events.c.reason, func.count())
        .where(task_events.c.changed_at >= since, task_events.c.status.in_(terminal))
        .group_by(task_events.c.status, task_events.c.reason)
    )
    outcomes = dict.fromkeys(terminal, 0)
    swept = 0
    for status, reason, count in connection.execute(statement):
        outcomes[status] += int(count)
        swept += int(count) if reason == LEASE_EXPIRED else 0
    return outcomes, swept


def _failure_reasons(connection: Connection, since: datetime, top: int) -> list[tuple[str, int]]:
    count = func.count().label("failures")
    reason = func.coalesce(task_events.c.reason, "no reason given").label("reason")
    statement = (
        select(reason, count)
        .where(task_events.c.changed_at >= since, task_events.c.status == TaskStatus.FAILED.value)
        .group_by(reason)
        .order_by(count.desc(), reason)
        .limit(top)
    )
    return [(text, int(n)) for text, n in connection.execute(statement)]


def _holds(connection: Connection) -> list[RunnerHold]:
    """Held tasks per runner, the runner holding the oldest first."""
    held = (TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value)
    runner = (tasks.c.popped_by_address, tasks.c.popped_by_agent)
    statement = (
        select(*runner, tasks.c.status, func.count(), func.min(tasks.c.popped_at))
        .where(tasks.c.status.in_(held))
        .group_by(*runner, tasks.c.status)
    )
    found: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for address, agent, status, count, oldest in connection.execute(statement):
        entry = found.setdefault((address, agent), {})
        entry[status] = int(count)
        popped_at = _aware(oldest)
        if popped_at is not None and (
            entry.get("oldest_popped_at") is None or popped_at < entry["oldest_popped_at"]
        ):
            entry["oldest_popped_at"] = popped_at
    holds = [RunnerHold(address, agent, **values) for (address, agent), values in found.items()]
    return sorted(
        holds,
        key=lambda hold: (
            hold.oldest_popped_at is None,
            hold.oldest_popped_at or datetime.max.replace(tzinfo=UTC),
        ),
    )


def _top_organisations(connection: Connection, top: int) -> list[tuple[str, int]]:
    queued: dict[str, int] = {}
    for _scheduler_id, organisation, _status, number in counts.counted(connection, status=TaskStatus.QUEUED):
        queued[organisation] = queued.get(organisation, 0) + number
    return sorted(queued.items(), key=lambda item: (-item[1], item[0]))[:top]


def _schedules(connection: Connection, now: datetime, overdue_after: timedelta) -> ScheduleDue:
    enabled = schedules.c.enabled.is_(True)
    due = (enabled, schedules.c.deadline_at <= now, ~has_active_task())
    overdue = schedules.c.deadline_at <= now - overdue_after
    statement = select(
        select(func.count()).where(enabled).scalar_subquery(),
        select(func.count()).where(*due).scalar_subquery(),
        select(func.count()).where(*due, overdue).scalar_subquery(),
        select(func.min(schedules.c.deadline_at)).where(*due).scalar_subquery(),
        select(func.min(schedules.c.deadline_at))
        .where(enabled, schedules.c.deadline_at > now)
        .scalar_subquery(),
    )
    total, due_count, overdue_count, oldest, upcoming = connection.execute(statement).one()
    return ScheduleDue(
        enabled=int(total),
        due=int(due_count),
        overdue=int(overdue_count),
        oldest_due_at=_aware(oldest),
        next_deadline_at=_aware(upcoming),
    )


def _aware(value: Any) -> datetime | None:
    """Aggregates (min) skip the column type, so SQLite hands back text and PostgreSQL an aware datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
