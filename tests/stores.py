"""One implementation of the planners' store ports as a bundle, for the store contract suite and the planner
tests: in memory (`katsched.testing`), or SQL on an engine (SQLite file or PostgreSQL).

Beside the ports, a bundle carries the few reads and moves a test needs to arrange a case and look at the
result (peek, pop, status changes, schedule rows); the SQL queue and schedule rows and the in-memory stores
name them alike, so a test reads the same on every implementation.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine

from katsched.clock import Clock
from katsched.core.models import PushPolicy, Schedule, Task, TaskStatus
from katsched.core.ports import (
    DecisionLog,
    Housekeeping,
    JobLeases,
    PoppedBy,
    ScheduleQuery,
    ScheduleRegistry,
    ScheduleStore,
    SeenPlugins,
    TaskQuery,
    TaskQueue,
    TaskStore,
)
from katsched.store.decisions import SqlDecisionLog
from katsched.store.leases import SqlJobLeases
from katsched.store.lookups import SqlTaskStore
from katsched.store.maintenance import SqlHousekeeping
from katsched.store.plugins_seen import SqlSeenPlugins
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.testing import (
    MemoryDecisionLog,
    MemoryHousekeeping,
    MemoryJobLeases,
    MemoryScheduleStore,
    MemorySeenPlugins,
    MemoryTables,
    MemoryTaskQueue,
)

IMPLEMENTATIONS = ("memory", "sqlite", "postgres")


class QueueMoves(Protocol):
    """What a test does to the queue beside the ports: the SQL queue's and `MemoryTaskStore`'s own methods."""

    policies: dict[str, PushPolicy]

    def peek(self, scheduler_id: str, limit: int = 1, offset: int = 0) -> list[Task]: ...

    def pop(self, scheduler_id: str, limit: int = 1, *, popped_by: PoppedBy | None = None) -> list[Task]: ...

    def get(self, task_id: uuid.UUID) -> Task: ...

    def set_status(self, task_id: uuid.UUID, status: TaskStatus, reason: str | None = None) -> Task: ...

    def cancel(self, task_id: uuid.UUID, reason: str | None = None) -> Task: ...

    def history(self, task_id: uuid.UUID) -> list[tuple[TaskStatus, Any, str | None]]: ...


@dataclass(frozen=True)
class Stores:
    """The planners' store ports of one implementation, and a test's reads and moves beside them."""

    kind: str  # one of IMPLEMENTATIONS
    tasks: TaskStore
    schedules: ScheduleStore
    seen: SeenPlugins
    decisions: DecisionLog
    queue: QueueMoves
    all_tasks: Callable[[str | None], list[Task]]  # newest first
    all_schedules: Callable[[str | None], list[Schedule]]  # newest first
    housekeeping: Housekeeping
    task_queue: TaskQueue  # the API's and the CLI's ports, on the same tables
    registry: ScheduleRegistry
    leases: JobLeases
    engine: Engine | None = None  # the SQL implementations' database


def memory_stores(clock: Clock) -> Stores:
    tables = MemoryTables()
    tasks = MemoryTaskQueue(tables, clock)
    schedules = MemoryScheduleStore(tables, clock)
    decisions = MemoryDecisionLog()
    return Stores(
        kind="memory",
        tasks=tasks,
        schedules=schedules,
        seen=MemorySeenPlugins(),
        decisions=decisions,
        queue=tasks,
        all_tasks=tasks.all_tasks,
        all_schedules=schedules.all_schedules,
        housekeeping=MemoryHousekeeping(tables, decisions),
        task_queue=tasks,
        registry=schedules,
        leases=MemoryJobLeases(),
    )


def sql_stores(engine: Engine, clock: Clock) -> Stores:
    queue = SqlTaskQueue(engine, clock)
    rows = SqlScheduleStore(engine, clock)

    def all_tasks(scheduler_id: str | None) -> list[Task]:
        return queue.list_tasks(TaskQuery(scheduler_id=scheduler_id, limit=None)).tasks

    def all_schedules(scheduler_id: str | None) -> list[Schedule]:
        return rows.list_schedules(ScheduleQuery(scheduler_id=scheduler_id, limit=None)).schedules

    return Stores(
        kind="postgres" if engine.dialect.name == "postgresql" else "sqlite",
        tasks=SqlTaskStore(queue),
        schedules=rows,
        seen=SqlSeenPlugins(engine),
        decisions=SqlDecisionLog(engine),
        queue=queue,
        all_tasks=all_tasks,
        all_schedules=all_schedules,
        housekeeping=SqlHousekeeping(engine),
        task_queue=queue,
        registry=rows,
        leases=SqlJobLeases(engine),
        engine=engine,
    )
