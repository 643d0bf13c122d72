"""The `TaskQueue` port in memory (`katsched.testing`): the `MemoryTaskStore` (its push, pop, peek and status
moves) with the queue's single push, updates, listing and counts, as `katsched.store.queue.SqlTaskQueue`
has them. Filters are evaluated by `katsched._memory_filters` (which names the operators it supports).
"""

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from katsched._memory_filters import check_supported, matches
from katsched._memory_store import MemoryTaskStore
from katsched._memory_tables import Contents, copy_task
from katsched.core.models import Task, TaskStatus
from katsched.core.ports import TaskDraft, TaskPage, TaskQuery
from katsched.core.push import pushed_task
from katsched.core.transitions import check_transition
from katsched.errors import InvalidValue, NotFound, StorageError

UPDATABLE = frozenset({"status", "priority", "data", "organisation", "schedule_id"})


class MemoryTaskQueue(MemoryTaskStore):
    """The `TaskQueue` port in memory. Share its `MemoryTables` with a `MemoryScheduleStore`."""

    @property
    def single_writer(self) -> bool:
        return True  # one lock holds all the tables

    def ping(self) -> None:
        """The tables are always there to answer."""

    def push(self, draft: TaskDraft, *, wait: bool = True) -> Task:
        (outcome,) = self.push_many([draft])  # the tables' lock is held only briefly: `wait` changes nothing
        return pushed_task(outcome)

    def update(self, task_id: uuid.UUID, changes: Mapping[str, Any], reason: str | None = None) -> Task:
        """Apply `changes` (any of status, priority, data, organisation, schedule_id), bumping modified_at. A
        priority given by hand is kept: the task is no longer re-ranked."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise StorageError(f"cannot update task fields {sorted(unknown)}")
        now = self.clock.now()
        with self.tables.write() as contents:
            row = contents.tasks.get(task_id)
            if row is None:
                raise NotFound(f"task not found, by task_id: {task_id}")
            values = dict(changes)
            if "status" in values:
                values["status"] = TaskStatus(values["status"])
                check_transition(row.task.status, values["status"])
                contents.refuse_queued_twin(row.task, values["status"])
            if "schedule_id" in values and values["schedule_id"] is not None:
                _refuse_unknown_schedule(contents, values["schedule_id"])
            try:
                task = Task.model_validate({**row.task.model_dump(), **values, "modified_at": now})
            except ValidationError as exc:
                raise InvalidValue(f"cannot update task {task_id}: {str(exc).splitlines()[0]}") from None
            row = replace(row, task=task)
            if "priority" in values:  # a priority given by hand is never re-ranked
                row = replace(row, last_run_at=None, rerank_at=None)
            contents.tasks[task_id] = row
            events = contents.history.setdefault(task_id, [])
            events.append((task.status, now, reason if "status" in values else None))
            return copy_task(task)

    def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Tasks matching `query`, newest first (ties broken by id), with the count before pagination."""
        if query.filters is not None:
            check_supported(query.filters)
        with self.tables.read() as contents:
            found = [row.task for row in contents.tasks.values() if _matches_query(contents, row.task, query)]
            found.sort(key=lambda task: (task.created_at, task.id), reverse=True)
            end = None if query.limit is None else query.offset + query.limit
            return TaskPage(count=len(found), tasks=[copy_task(task) for task in found[query.offset : end]])

    def qsize(self, scheduler_id: str) -> int:
        with self.tables.read() as contents:
            return len(contents.queued(scheduler_id))

    def counts(self) -> list[tuple[str, str, TaskStatus, int]]:
        """(scheduler_id, organisation, status, number of tasks) for every combination that has tasks."""
        with self.tables.read() as contents:
            counted = Counter(
                (row.task.scheduler_id, row.task.organisation, row.task.status)
                for row in contents.tasks.values()
            )
        return [(scheduler, org, status, n) for (scheduler, org, status), n in counted.items()]

    def hourly_stats(
        self, since: datetime, scheduler_id: str | None = None, organisation: str | None = None
    ) -> dict[datetime, dict[str, int]]:
        """Per hour of `modified_at` since `since`, the number of tasks in each status, newest hour first."""
        stats: dict[datetime, dict[str, int]] = {}
        with self.tables.read() as contents:
            for row in contents.tasks.values():
                task = row.task
                if task.modified_at < since or scheduler_id not in (None, task.scheduler_id):
                    continue
                if organisation not in (None, task.organisation):
                    continue
                hour = task.modified_at.replace(minute=0, second=0, microsecond=0)
                counts = stats.setdefault(hour, {s.value: 0 for s in TaskStatus} | {"total": 0})
                counts[task.status.value] += 1
                counts["total"] += 1
        return {hour: stats[hour] for hour in sorted(stats, reverse=True)}


def _refuse_unknown_schedule(contents: Contents, schedule_id: object) -> None:
    """The database's foreign key refuses a task joining a schedule that does not exist."""
    if uuid.UUID(str(schedule_id)) not in contents.schedules:
        raise InvalidValue(f"a task cannot join schedule {schedule_id}: it does not exist")


def _matches_query(contents: Contents, task: Task, query: TaskQuery) -> bool:
    equalities: list[tuple[object, object]] = [
        (task.scheduler_id, query.scheduler_id),
        (task.organisation, query.organisation),
        (task.type, query.type),
        (task.status, query.status),
        (task.data.get("input_ooi"), query.input_ooi),
    ]
    if any(wanted and found != wanted for found, wanted in equalities):
        return False
    if query.min_created_at is not None and task.created_at < query.min_created_at:
        return False
    if query.max_created_at is not None and task.created_at > query.max_created_at:
        return False
    return query.filters is None or matches(query.filters, task, contents.related)


if TYPE_CHECKING:  # mypy proves that the in-memory queue implements the port
    from katsched.core import ports

    def _implements_port(queue: MemoryTaskQueue) -> ports.TaskQueue:
        return queue
