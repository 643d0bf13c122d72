"""The tables, defined once: SQLModel classes whose ``__table__`` the hot paths use through Core.

Index order is pop order: ``(scheduler_id, priority, created_at)`` over QUEUED rows only, so a pop reads the
best task straight off the index however many tasks have finished.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Uuid, text
from sqlmodel import Field, SQLModel

from katsched.store.types import JsonDocument, UTCDateTime

QUEUED_ONLY = text("status = 'queued'")


class TaskRow(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        Index(
            "ix_tasks_pop_order",
            "scheduler_id",
            "priority",
            "created_at",
            sqlite_where=QUEUED_ONLY,
            postgresql_where=QUEUED_ONLY,
        ),
        # Equality on all three columns of a push's duplicate check: SQLite then prefers this index over
        # ix_tasks_status_modified even before ANALYZE has run.
        Index("ix_tasks_identity", "hash", "scheduler_id", "status"),
        # The database's guarantee of one QUEUED task per identity (migration 0012), whatever the number of
        # pushers; the push's `ON CONFLICT` names it as its conflict target.
        Index(
            "ix_tasks_queued_identity",
            "scheduler_id",
            "hash",
            unique=True,
            sqlite_where=QUEUED_ONLY,
            postgresql_where=QUEUED_ONLY,
        ),
        Index("ix_tasks_organisation", "organisation"),
        Index("ix_tasks_status_modified", "status", "modified_at"),
        Index("ix_tasks_schedule_id", "schedule_id"),
        Index("ix_tasks_created_at", "created_at"),
        # Re-ranking reads only the queued tasks whose rank is due to change, oldest due first.
        Index(
            "ix_tasks_rerank",
            "scheduler_id",
            "organisation",
            "rerank_at",
            sqlite_where=QUEUED_ONLY,
            postgresql_where=QUEUED_ONLY,
        ),
        # The age of each scheduler's oldest queued task, for the dashboard, without reading the queue.
        Index(
            "ix_tasks_queued_age",
            "scheduler_id",
            "created_at",
            sqlite_where=QUEUED_ONLY,
            postgresql_where=QUEUED_ONLY,
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    scheduler_id: str = Field(sa_column=Column(String, nullable=False))
    schedule_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(Uuid, ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True)
    )
    organisation: str = Field(sa_column=Column(String, nullable=False))
    priority: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    type: str = Field(sa_column=Column(String, nullable=False))
    hash: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    data: dict[str, Any] = Field(sa_column=Column(JsonDocument, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    modified_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    # An automatic rank's fact (when the same work last ran) and when that rank changes next. Both stay NULL
    # for a priority given by hand (API, CLI), which re-ranking therefore never touches.
    last_run_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    rerank_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # Times the task was handed out and its runner never started it (the pop answer was lost): the sweep
    # queues it again until `max_attempts` are lost. Not part of the wire's Task.
    dispatch_expiries: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    # Who holds the task since its last pop (migration 0009); not part of the wire's Task document.
    popped_by_address: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    popped_by_agent: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    popped_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class ScheduleRow(SQLModel, table=True):
    __tablename__ = "schedules"
    __table_args__ = (
        Index("ix_schedules_due", "enabled", "deadline_at"),
        Index("ix_schedules_organisation", "organisation"),
        Index("ix_schedules_scheduler_id", "scheduler_id"),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    scheduler_id: str = Field(sa_column=Column(String, nullable=False))
    organisation: str = Field(sa_column=Column(String, nullable=False))
    hash: str | None = Field(default=None, sa_column=Column(String(32), nullable=True, unique=True))
    data: dict[str, Any] = Field(sa_column=Column(JsonDocument, nullable=False))
    enabled: bool = Field(default=True, nullable=False)
    schedule: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    deadline_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    modified_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    # Which rescheduling run holds the due schedule, and until when (migration 0011): other daemons skip it.
    claimed_by: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class TaskEventRow(SQLModel, table=True):
    """One row per status change: the history the original scheduler loses."""

    __tablename__ = "task_events"
    __table_args__ = (
        Index("ix_task_events_task_id", "task_id", "changed_at"),
        Index("ix_task_events_changed_at", "changed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False)
    )
    status: str = Field(sa_column=Column(String(16), nullable=False))
    changed_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(String, nullable=True))


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


tasks = _table(TaskRow)
schedules = _table(ScheduleRow)
task_events = _table(TaskEventRow)
metadata = SQLModel.metadata


class PluginSeenRow(SQLModel, table=True):
    """Boefjes whose objects the new-plugins planner has enumerated, per organisation.

    Kept in the database, not in memory as the original did, so a restart does not count every enabled boefje
    as new again and enumerate every object of every organisation.
    """

    __tablename__ = "plugins_seen"

    organisation: str = Field(sa_column=Column(String, primary_key=True))
    plugin_id: str = Field(sa_column=Column(String, primary_key=True))
    first_seen_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


plugins_seen = _table(PluginSeenRow)


class DaemonStateRow(SQLModel, table=True):
    """One row per running daemon (host and pid): when it started, its last heartbeat, and what its components
    are doing, so that `katsched status` can show a daemon it cannot talk to."""

    __tablename__ = "daemon_state"

    id: str = Field(sa_column=Column(String, primary_key=True))
    hostname: str = Field(sa_column=Column(String, nullable=False))
    pid: int = Field(nullable=False)
    version: str = Field(sa_column=Column(String, nullable=False))
    started_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    heartbeat_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    stopped_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    components: dict[str, Any] = Field(sa_column=Column(JsonDocument, nullable=False))


daemon_state = _table(DaemonStateRow)


class DecisionRow(SQLModel, table=True):
    """The last decision a planner took per (organisation, subject, plugin), kept for the history retention
    window, so that `katsched explain` can say what happened last time. One row per key, replaced on each
    decision: the table stays as large as the set of things planned, not the number of planner runs."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_decided_at", "decided_at"),)

    organisation: str = Field(sa_column=Column(String, primary_key=True))
    subject: str = Field(sa_column=Column(String, primary_key=True))
    plugin_id: str = Field(sa_column=Column(String, primary_key=True))
    scheduler_id: str = Field(sa_column=Column(String, nullable=False))
    action: str = Field(sa_column=Column(String(16), nullable=False))
    reason: str = Field(sa_column=Column(String, nullable=False))
    decided_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    task_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    subject_data: dict[str, Any] | None = Field(default=None, sa_column=Column(JsonDocument, nullable=True))


decisions = _table(DecisionRow)


class TaskCountRow(SQLModel, table=True):
    """How many tasks each (scheduler, organisation, status) has, kept exact by database triggers (migration
    0007) on every insert, status change and delete, so counts never read the queue."""

    __tablename__ = "task_counts"

    scheduler_id: str = Field(sa_column=Column(String, primary_key=True))
    organisation: str = Field(sa_column=Column(String, primary_key=True))
    status: str = Field(sa_column=Column(String(16), primary_key=True))
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


class TaskHourCountRow(SQLModel, table=True):
    """The same counts per hour of the tasks' `modified_at` ("YYYY-MM-DD HH", UTC): `/tasks/stats`."""

    __tablename__ = "task_hour_counts"

    hour: str = Field(sa_column=Column(String(13), primary_key=True))
    scheduler_id: str = Field(sa_column=Column(String, primary_key=True))
    organisation: str = Field(sa_column=Column(String, primary_key=True))
    status: str = Field(sa_column=Column(String(16), primary_key=True))
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


task_counts = _table(TaskCountRow)
task_hour_counts = _table(TaskHourCountRow)


class JobLeaseRow(SQLModel, table=True):
    """Who runs the jobs that must run on one daemon at a time, and until when (migration 0010). A row per
    lease name; the holder renews its expiry, and another daemon takes the row over once it has expired."""

    __tablename__ = "job_leases"

    name: str = Field(sa_column=Column(String, primary_key=True))
    holder: str = Field(sa_column=Column(String, nullable=False))
    acquired_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


job_leases = _table(JobLeaseRow)
