"""The `TaskStore` port in memory (`katsched.testing`), with the queue's reads and moves a test needs.

The rules are the core's (`core.push`, `core.transitions`), as in the SQL adapters; only the storage differs.
The contract suite (`tests/contract/test_store_contract.py`) runs the same cases here, on SQLite and on
PostgreSQL.
"""

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from katsched._memory_filters import check_supported, matches
from katsched._memory_push import Batch
from katsched._memory_tables import Contents, MemoryTables, TaskRow, copy_task
from katsched.clock import Clock
from katsched.core.filters import FilterExpr
from katsched.core.models import DEFAULT_PUSH_POLICY, PushPolicy, SchedulerKind, Task, TaskStatus
from katsched.core.ports import (
    DecisionLog,
    DecisionsOf,
    NewRank,
    PoppedBy,
    PushOutcome,
    QueuedRank,
    Render,
    TaskDraft,
    render_task,
)
from katsched.core.push import prepare_draft, scheduler_kind, with_schedule_decided
from katsched.core.transitions import check_transition
from katsched.errors import NotFound


def _raw_file_id(task: Task) -> str | None:
    raw_data = task.data.get("raw_data")
    return str(raw_data.get("id")) if isinstance(raw_data, dict) else None


class MemoryTaskStore:
    """The `TaskStore` port in memory, with the queue's reads and moves that tests need beside it."""

    def __init__(
        self, tables: MemoryTables, clock: Clock, policies: Mapping[str, PushPolicy] | None = None
    ) -> None:
        self.tables = tables
        self.clock = clock
        self.policies = dict(policies or {})

    def policy(self, scheduler_id: str) -> PushPolicy:
        return self.policies.get(scheduler_id, DEFAULT_PUSH_POLICY)

    # the TaskStore port

    def latest_by_hash(self, scheduler_id: str, hashes: Collection[str]) -> dict[str, Task]:
        wanted = set(hashes)
        latest: dict[str, Task] = {}
        with self.tables.read() as contents:
            for row in contents.tasks.values():
                task = row.task
                if task.scheduler_id != scheduler_id or task.hash not in wanted:
                    continue
                known = latest.get(task.hash)
                if known is None or (task.created_at, task.id) > (known.created_at, known.id):
                    latest[task.hash] = task
            return {key: copy_task(task) for key, task in latest.items()}

    def push_many(self, drafts: Sequence[TaskDraft]) -> list[PushOutcome]:
        if not drafts:
            return []
        prepared = [prepare_draft(draft) for draft in drafts]
        with self.tables.write() as contents:
            if any(item.draft.schedule_rule is not None for item in prepared):
                by_hash = {schedule.hash: schedule for schedule in contents.schedules.values()}
                prepared = [with_schedule_decided(item, by_hash.get(item.hash)) for item in prepared]
            batch = Batch(contents, self.clock.now(), self.policy)
            return [batch.push(item) for item in prepared]

    def push_with_decisions(
        self, drafts: Sequence[TaskDraft], decisions_of: DecisionsOf, log: DecisionLog
    ) -> list[PushOutcome]:
        outcomes = self.push_many(drafts)  # one lock holds the tables, the log keeps its own
        log.record(decisions_of(outcomes))
        return outcomes

    def cancel_queued_for_object(
        self, scheduler_id: str, organisation: str, input_ooi: str, reason: str
    ) -> list[uuid.UUID]:
        now = self.clock.now()
        with self.tables.write() as contents:
            queued = contents.queued(scheduler_id, organisation)
            matching = [row for row in queued if row.task.data.get("input_ooi") == input_ooi]
            return [contents.set_status(row, TaskStatus.CANCELLED, now, reason).id for row in matching]

    def raw_file_planned(self, hashes: Collection[str], raw_data_id: uuid.UUID) -> set[str]:
        wanted = set(hashes)
        with self.tables.read() as contents:
            return {
                row.task.hash
                for row in contents.tasks.values()
                if row.task.scheduler_id == SchedulerKind.NORMALIZER
                and row.task.hash in wanted
                and _raw_file_id(row.task) == str(raw_data_id)
            }

    def tasks_for_raw_file(self, organisation: str, raw_data_id: uuid.UUID) -> list[Task]:
        with self.tables.read() as contents:
            found = [
                copy_task(row.task)
                for row in contents.tasks.values()
                if row.task.scheduler_id == SchedulerKind.NORMALIZER
                and row.task.organisation == organisation
                and _raw_file_id(row.task) == str(raw_data_id)
            ]
        return sorted(found, key=lambda task: task.created_at, reverse=True)

    def ranks_due(self, scheduler_id: str, organisation: str, now: datetime, limit: int) -> list[QueuedRank]:
        with self.tables.read() as contents:
            queued = contents.queued(scheduler_id, organisation)
            due = [row for row in queued if row.rerank_at is not None and row.rerank_at <= now]
        due.sort(key=lambda row: row.rerank_at or now)
        return [
            QueuedRank(row.task.id, row.task.priority or 0, row.task.created_at, row.last_run_at)
            for row in due[:limit]
        ]

    def set_ranks(self, ranks: Mapping[uuid.UUID, NewRank]) -> int:
        if not ranks:
            return 0
        now = self.clock.now()
        changed = 0
        with self.tables.write() as contents:
            for task_id, new in ranks.items():
                row = contents.tasks.get(task_id)
                if row is None or row.task.status is not TaskStatus.QUEUED:
                    continue
                # A task is modified when its priority is, not each time its next re-rank is put off.
                modified_at = row.task.modified_at if row.task.priority == new.priority else now
                task = row.task.model_copy(update={"priority": new.priority, "modified_at": modified_at})
                contents.tasks[task_id] = replace(row, task=task, rerank_at=new.rerank_at)
                changed += 1
        return changed

    # the queue's reads and moves (named as `katsched.store.queue.SqlTaskQueue` names them)

    def get(self, task_id: uuid.UUID) -> Task:
        with self.tables.read() as contents:
            row = contents.tasks.get(task_id)
            if row is None:
                raise NotFound(f"task not found, by task_id: {task_id}")
            return copy_task(row.task)

    def peek(self, scheduler_id: str, limit: int = 1, offset: int = 0) -> list[Task]:
        scheduler_kind(scheduler_id)
        with self.tables.read() as contents:
            queued = _queued_in_pop_order(contents, scheduler_id)
            return [copy_task(row.task) for row in queued[offset : offset + limit]]

    def pop(
        self,
        scheduler_id: str,
        limit: int = 1,
        filters: FilterExpr | None = None,
        *,
        popped_by: PoppedBy | None = None,
    ) -> list[Task]:
        """Move up to `limit` of the best matching QUEUED tasks to DISPATCHED, recording who took them."""
        return [task for task, _ in self.pop_rendered(scheduler_id, limit, filters, popped_by=popped_by)]

    def pop_rendered(
        self,
        scheduler_id: str,
        limit: int = 1,
        filters: FilterExpr | None = None,
        render: Render = render_task,
        *,
        popped_by: PoppedBy | None = None,
        wait: bool = True,
    ) -> list[tuple[Task, bytes]]:
        """`pop`, each task with its rendering; a task that cannot be rendered is failed (with the reason) in
        the same transaction, not handed out. A boefje deduplication group is handed out only once its best
        task is the best matching task overall, as in SQL. The tables' lock is held only briefly: `wait`
        changes nothing."""
        kind = scheduler_kind(scheduler_id)
        if filters is not None:
            check_supported(filters)
        if limit < 1:
            return []
        now = self.clock.now()
        who = (popped_by or PoppedBy(None, None)).bounded()
        with self.tables.write() as contents:
            queued = _queued_in_pop_order(contents, scheduler_id, filters)
            if kind is SchedulerKind.BOEFJE and queued:
                head_key = queued[0].task.data.get("deduplication_key")
                if head_key is not None:
                    queued = [row for row in queued if row.task.data.get("deduplication_key") == head_key]
            claimed = [replace(row, popped_by=replace(who, at=now)) for row in queued[:limit]]
            popped: list[tuple[Task, bytes]] = []
            for row in claimed:
                task = contents.set_status(row, TaskStatus.DISPATCHED, now, None)
                try:
                    popped.append((copy_task(task), render(task)))
                except (ValueError, RecursionError) as exc:
                    reason = f"cannot be rendered as JSON: {str(exc).splitlines()[0]}"
                    contents.set_status(contents.tasks[task.id], TaskStatus.FAILED, now, reason)
            return popped

    def popped_by(self, task_id: uuid.UUID) -> PoppedBy | None:
        with self.tables.read() as contents:
            row = contents.tasks.get(task_id)
            return row.popped_by if row is not None else None

    def set_status(self, task_id: uuid.UUID, status: TaskStatus, reason: str | None = None) -> Task:
        """Move a task through the transition table; re-setting the current status is a heartbeat."""
        with self.tables.write() as contents:
            row = contents.tasks.get(task_id)
            if row is None:
                raise NotFound(f"task not found, by task_id: {task_id}")
            check_transition(row.task.status, status)
            contents.refuse_queued_twin(row.task, status)
            return copy_task(contents.set_status(row, status, self.clock.now(), reason))

    def cancel(self, task_id: uuid.UUID, reason: str | None = None) -> Task:
        return self.set_status(task_id, TaskStatus.CANCELLED, reason)

    def history(self, task_id: uuid.UUID) -> list[tuple[TaskStatus, datetime, str | None]]:
        with self.tables.read() as contents:
            return list(contents.history.get(task_id, []))

    def all_tasks(self, scheduler_id: str | None = None) -> list[Task]:
        """Every task (of one scheduler), newest first."""
        with self.tables.read() as contents:
            found = [
                copy_task(row.task)
                for row in reversed(contents.tasks.values())
                if scheduler_id is None or row.task.scheduler_id == scheduler_id
            ]
        return sorted(found, key=lambda task: task.created_at, reverse=True)


def _queued_in_pop_order(
    contents: Contents, scheduler_id: str, filters: FilterExpr | None = None
) -> list[TaskRow]:
    """The scheduler's QUEUED tasks matching `filters`, best first: priority, then age, then id."""
    queued = contents.queued(scheduler_id)
    if filters is not None:
        queued = [row for row in queued if matches(filters, row.task, contents.related)]
    return sorted(queued, key=lambda row: (row.task.priority or 0, row.task.created_at, row.task.id))


if TYPE_CHECKING:  # mypy proves that the in-memory store implements the port
    from katsched.core import ports

    def _implements_port(task_store: MemoryTaskStore) -> ports.TaskStore:
        return task_store
