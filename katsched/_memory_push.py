"""A batch of drafts pushed into the in-memory tables: the push rules of `katsched.core.push`, applied as the
SQL batch (`katsched.store.push`) applies them, on the working copy of one `MemoryTables.write`."""

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from katsched._memory_tables import Contents, TaskRow, copy_task
from katsched.core.models import PushPolicy, Schedule, Task, TaskStatus
from katsched.core.ports import PushOutcome, PushResult, ScheduleLink
from katsched.core.push import PreparedDraft, PushAction, Refusal, decide_draft, queued_task
from katsched.errors import InvalidValue, NotAllowed

PolicyFor = Callable[[str], PushPolicy]


class Batch:
    """One `push_many` on the working copy of the tables."""

    def __init__(self, contents: Contents, now: datetime, policy_for: PolicyFor) -> None:
        self._contents = contents
        self._now = now
        self._policy_for = policy_for

    def push(self, item: PreparedDraft) -> PushOutcome:
        existing = self._queued_twin(item)
        previous = (existing.task.priority, existing.task.data) if existing is not None else None
        policy = self._policy_for(item.draft.scheduler_id)
        action = decide_draft(policy, previous, item, self._queued_count(item.draft.scheduler_id))
        if isinstance(action, Refusal):
            twin = existing.task.id if existing is not None else None
            return PushOutcome(item.draft, action.result, twin_id=twin, refusal=action.reason)
        schedule_id = self._link(item) or item.draft.schedule_id
        if action is PushAction.UPDATE and existing is not None:
            task = self._update(existing, item, schedule_id)
        else:
            task = self._insert(item, schedule_id)
        return PushOutcome(item.draft, PushResult.PUSHED, copy_task(task))

    def _queued_twin(self, item: PreparedDraft) -> TaskRow | None:
        twins = [row for row in self._contents.queued(item.draft.scheduler_id) if row.task.hash == item.hash]
        return max(twins, key=lambda row: row.task.created_at, default=None)

    def _queued_count(self, scheduler_id: str) -> int:
        return len(self._contents.queued(scheduler_id)) if self._policy_for(scheduler_id).maxsize else 0

    def _link(self, item: PreparedDraft) -> uuid.UUID | None:
        link = item.draft.schedule
        if link is None:
            return None
        joined = link.schedule_id or self._schedule_of(item.hash)  # created since the draft was planned
        if joined is not None:
            self._move_on(joined, link)
            return joined
        schedule = Schedule(
            scheduler_id=item.draft.scheduler_id,
            organisation=item.draft.organisation,
            hash=item.hash,
            data=item.data,
            enabled=True,
            schedule=link.cron,
            deadline_at=link.deadline_at,
            created_at=self._now,
            modified_at=self._now,
        )
        self._contents.schedules[schedule.id] = schedule
        return schedule.id

    def _schedule_of(self, identity: str) -> uuid.UUID | None:
        return next((s.id for s in self._contents.schedules.values() if s.hash == identity), None)

    def _move_on(self, schedule_id: uuid.UUID, link: ScheduleLink) -> None:
        schedule = self._contents.schedules.get(schedule_id)
        if schedule is None:  # the database's foreign key refuses this, failing the whole batch
            raise InvalidValue(f"a task cannot join schedule {schedule_id}: it does not exist")
        changes: dict[str, Any] = {"deadline_at": link.deadline_at, "modified_at": self._now}
        if link.cron is not None:
            changes["schedule"] = link.cron
        self._contents.schedules[schedule_id] = schedule.model_copy(update=changes)

    def _insert(self, item: PreparedDraft, schedule_id: uuid.UUID | None) -> Task:
        if item.task_id in self._contents.tasks:
            raise NotAllowed(f"a task with id {item.task_id} already exists")
        task = queued_task(item, schedule_id, self._now)
        self._contents.tasks[task.id] = TaskRow(task, item.draft.last_run_at, item.draft.rerank_at)
        self._contents.history[task.id] = [(TaskStatus.QUEUED, self._now, None)]
        return task

    def _update(self, existing: TaskRow, item: PreparedDraft, schedule_id: uuid.UUID | None) -> Task:
        """The push policy lets this draft replace a queued duplicate: it keeps the queued task's id."""
        task_id = existing.task.id
        data = {**item.data, "id": str(task_id)} if "id" in item.data else item.data
        changes: dict[str, Any] = {"priority": item.priority, "data": data, "modified_at": self._now}
        if schedule_id is not None:
            changes["schedule_id"] = schedule_id
        task = existing.task.model_copy(update=changes)
        self._contents.tasks[task_id] = replace(
            existing, task=task, last_run_at=item.draft.last_run_at, rerank_at=item.draft.rerank_at
        )
        return task
