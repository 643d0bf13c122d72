"""The state the in-memory stores share (`katsched.testing`): tasks, schedules and the status history.

A write works on a copy of the tables and replaces them only when it succeeds, so a batch is committed whole
or not at all, as a database transaction is.
"""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

from katsched.core.models import Schedule, Task, TaskStatus
from katsched.core.ports import PoppedBy
from katsched.core.push import twin_queued

StatusEvent = tuple[TaskStatus, datetime, str | None]


@dataclass(frozen=True)
class TaskRow:
    """A stored task with the rank facts kept beside it, as the SQL table keeps them in its own columns."""

    task: Task
    last_run_at: datetime | None = None
    rerank_at: datetime | None = None
    popped_by: PoppedBy | None = None  # who popped it last, and when
    dispatch_expiries: int = 0  # dispatches lost with their runner, requeued by the sweep


@dataclass
class Contents:
    tasks: dict[uuid.UUID, TaskRow] = field(default_factory=dict)  # in the order they were pushed
    schedules: dict[uuid.UUID, Schedule] = field(default_factory=dict)
    history: dict[uuid.UUID, list[StatusEvent]] = field(default_factory=dict)
    # The claims on due schedules: schedule id → (claim token, until), as the schedules' claim columns.
    claims: dict[uuid.UUID, tuple[uuid.UUID, datetime]] = field(default_factory=dict)

    def copy(self) -> "Contents":
        history = {task_id: list(events) for task_id, events in self.history.items()}
        return Contents(dict(self.tasks), dict(self.schedules), history, dict(self.claims))

    def queued(self, scheduler_id: str, organisation: str | None = None) -> list[TaskRow]:
        """The scheduler's QUEUED tasks (of one organisation), in the order they were pushed."""
        return [
            row
            for row in self.tasks.values()
            if row.task.scheduler_id == scheduler_id
            and row.task.status is TaskStatus.QUEUED
            and (organisation is None or row.task.organisation == organisation)
        ]

    def refuse_queued_twin(self, task: Task, status: TaskStatus) -> None:
        """One QUEUED task per (scheduler, hash), as the database's unique index keeps it (migration 0012)."""
        if status is not TaskStatus.QUEUED or task.status is TaskStatus.QUEUED:
            return
        for row in self.queued(task.scheduler_id):
            if row.task.hash == task.hash and row.task.id != task.id:
                raise twin_queued(row.task.id)

    def set_status(self, row: TaskRow, status: TaskStatus, now: datetime, reason: str | None) -> Task:
        """Move a stored task to `status`, recording the move as the database's trigger does."""
        task = row.task.model_copy(update={"status": status, "modified_at": now})
        self.tasks[task.id] = replace(row, task=task)
        self.history.setdefault(task.id, []).append((status, now, reason))
        return task

    def related(self, relation: str, row: Task | Schedule) -> list[Task | Schedule]:
        """The rows a filter's relationship reaches: a task's schedule, or a schedule's tasks."""
        if isinstance(row, Task):
            schedule = self.schedules.get(row.schedule_id) if row.schedule_id is not None else None
            return [schedule] if relation == "schedule" and schedule is not None else []
        tasks = self.tasks.values()
        return [t.task for t in tasks if relation == "tasks" and t.task.schedule_id == row.id]


class MemoryTables:
    """The tables of the in-memory stores, behind one lock; share one between `MemoryTaskStore` and
    `MemoryScheduleStore` as the SQL adapters share a database."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._contents = Contents()

    @contextmanager
    def read(self) -> Iterator[Contents]:
        with self._lock:
            yield self._contents

    @contextmanager
    def write(self) -> Iterator[Contents]:
        """A transaction: the changes made to the yielded copy replace the tables only if no error escapes."""
        with self._lock:
            working = self._contents.copy()
            yield working
            self._contents = working


def copy_task(task: Task) -> Task:
    """A copy for the caller: what it changes does not change the store."""
    return task.model_copy(deep=True)
