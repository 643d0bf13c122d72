"""The tables, defined once as SQLAlchemy Core tables: the store reads and writes them through Core.

Plain Core rather than SQLModel classes: nothing maps rows to objects, and the ORM and the model classes
cost a command-line start-up a third of its time (see "Lazy imports" in docs/architecture.md).

Index order is pop order: ``(scheduler_id, priority, created_at)`` over QUEUED rows only, so a pop reads the
best task straight off the index however many tasks have finished.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    text,
)

from katsched.store.types import JsonDocument, UTCDateTime

QUEUED_ONLY = text("status = 'queued'")

metadata = MetaData()


def _queued_index(name: str, *columns: str) -> Index:
    return Index(name, *columns, sqlite_where=QUEUED_ONLY, postgresql_where=QUEUED_ONLY)


tasks = Table(
    "tasks",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("scheduler_id", String, nullable=False),
    Column("schedule_id", Uuid, ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True),
    Column("organisation", String, nullable=False),
    Column("priority", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("type", String, nullable=False),
    Column("hash", String(32), nullable=True),
    Column("data", JsonDocument, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("modified_at", UTCDateTime, nullable=False),
    # An automatic rank's fact (when the same work last ran) and when that rank changes next. Both stay NULL
    # for a priority given by hand (API, CLI), which re-ranking therefore never touches.
    Column("last_run_at", UTCDateTime, nullable=True),
    Column("rerank_at", UTCDateTime, nullable=True),
    # Times the task was handed out and its runner never started it (the pop answer was lost): the sweep
    # queues it again until `max_attempts` are lost. Not part of the wire's Task.
    Column("dispatch_expiries", Integer, nullable=False, server_default=text("0")),
    # Who holds the task since its last pop (migration 0009); not part of the wire's Task document.
    Column("popped_by_address", String, nullable=True),
    Column("popped_by_agent", String, nullable=True),
    Column("popped_at", UTCDateTime, nullable=True),
    _queued_index("ix_tasks_pop_order", "scheduler_id", "priority", "created_at"),
    # Equality on all three columns of a push's duplicate check: SQLite then prefers this index over
    # ix_tasks_status_modified even before ANALYZE has run.
    Index("ix_tasks_identity", "hash", "scheduler_id", "status"),
    Index("ix_tasks_organisation", "organisation"),
    Index("ix_tasks_status_modified", "status", "modified_at"),
    Index("ix_tasks_schedule_id", "schedule_id"),
    Index("ix_tasks_created_at", "created_at"),
    # Re-ranking reads only the queued tasks whose rank is due to change, oldest due first.
    _queued_index("ix_tasks_rerank", "scheduler_id", "organisation", "rerank_at"),
    # The age of each scheduler's oldest queued task, for the dashboard, without reading the queue.
    _queued_index("ix_tasks_queued_age", "scheduler_id", "created_at"),
)

schedules = Table(
    "schedules",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("scheduler_id", String, nullable=False),
    Column("organisation", String, nullable=False),
    Column("hash", String(32), nullable=True, unique=True),
    Column("data", JsonDocument, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("schedule", String, nullable=True),
    Column("deadline_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("modified_at", UTCDateTime, nullable=False),
    Index("ix_schedules_due", "enabled", "deadline_at"),
    Index("ix_schedules_organisation", "organisation"),
    Index("ix_schedules_scheduler_id", "scheduler_id"),
)

# One row per status change: the history the original scheduler loses.
task_events = Table(
    "task_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("task_id", Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("reason", String, nullable=True),
    Index("ix_task_events_task_id", "task_id", "changed_at"),
    Index("ix_task_events_changed_at", "changed_at"),
)

# Boefjes whose objects the new-plugins planner has enumerated, per organisation. Kept in the database, not
# in memory as the original did, so a restart does not count every enabled boefje as new again and
# enumerate every object of every organisation.
plugins_seen = Table(
    "plugins_seen",
    metadata,
    Column("organisation", String, primary_key=True),
    Column("plugin_id", String, primary_key=True),
    Column("first_seen_at", UTCDateTime, nullable=False),
)

# One row per running daemon (host and pid): when it started, its last heartbeat, and what its components
# are doing, so that `katsched status` can show a daemon it cannot talk to.
daemon_state = Table(
    "daemon_state",
    metadata,
    Column("id", String, primary_key=True),
    Column("hostname", String, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime, nullable=True),
    Column("components", JsonDocument, nullable=False),
)

# The last decision a planner took per (organisation, subject, plugin), kept for the history retention
# window, so that `katsched explain` can say what happened last time. One row per key, replaced on each
# decision: the table stays as large as the set of things planned, not the number of planner runs.
decisions = Table(
    "decisions",
    metadata,
    Column("organisation", String, primary_key=True),
    Column("subject", String, primary_key=True),
    Column("plugin_id", String, primary_key=True),
    Column("scheduler_id", String, nullable=False),
    Column("action", String(16), nullable=False),
    Column("reason", String, nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
    Column("task_id", Uuid, nullable=True),
    Column("subject_data", JsonDocument, nullable=True),
    Index("ix_decisions_decided_at", "decided_at"),
)

# How many tasks each (scheduler, organisation, status) has, kept exact by database triggers (migration
# 0007) on every insert, status change and delete, so counts never read the queue.
task_counts = Table(
    "task_counts",
    metadata,
    Column("scheduler_id", String, primary_key=True),
    Column("organisation", String, primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# The same counts per hour of the tasks' `modified_at` ("YYYY-MM-DD HH", UTC): `/tasks/stats`.
task_hour_counts = Table(
    "task_hour_counts",
    metadata,
    Column("hour", String(13), primary_key=True),
    Column("scheduler_id", String, primary_key=True),
    Column("organisation", String, primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)
