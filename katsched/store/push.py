"""The one push path: a batch of drafts in one transaction, under the push rules of `katsched.core.push`.

A single push (the API's, the CLI's) is a batch of one. The statements are batched: one query for the queued
duplicates of the whole batch, then one INSERT each for the new schedules and the tasks (their status events
come from the database's trigger), and one UPDATE for the schedules that were found. Rescheduling 500 due
schedules is then a handful of statements in one transaction instead of 1,500 transactions, and a batch is
committed whole or not at all, so a task is never left queued without the schedule deadline that goes with it.

The database keeps one QUEUED task per (scheduler, hash) (the unique index ix_tasks_queued_identity). On
PostgreSQL another pusher can queue a twin after the duplicate query has looked, so the INSERT names that
index as its conflict target and applies the push policy to the twin it meets, in the statement
(`katsched.store.task_upsert`). The rows it returns say which drafts were inserted, which updated the twin,
and which were refused. On SQLite the write lock held from BEGIN IMMEDIATE makes the duplicate query final.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, literal_column, select, update
from sqlalchemy.exc import IntegrityError

from katsched.core.models import PushPolicy, Task, TaskStatus
from katsched.core.ports import PushOutcome, PushResult, TaskDraft
from katsched.core.push import (
    PreparedDraft,
    PushAction,
    Refusal,
    already_queued,
    decide_draft,
    prepare_draft,
    queued_task,
    with_schedule_decided,
)
from katsched.errors import NotAllowed
from katsched.store import counts
from katsched.store.prepared import fetch, fetch_batch
from katsched.store.schedule_links import (
    LINK_SCHEDULE,
    linked_schedule,
    new_schedule,
    schedule_upsert,
    schedules_by_hashes,
)
from katsched.store.tables import tasks
from katsched.store.task_upsert import IS_QUEUED, task_upsert

PolicyFor = Callable[[str], PushPolicy]

# SQLite without statistics answers `status = 'queued' AND hash IN (…)` from ix_tasks_status_modified, reading
# every queued task; comparing the status as an expression keeps it on ix_tasks_hash (a few rows per hash).
_STILL_QUEUED = tasks.c.status.concat(literal_column("''")) == literal_column(f"'{TaskStatus.QUEUED.value}'")
_QUEUED_BY_HASH = (
    select(tasks.c.id, tasks.c.hash, tasks.c.priority, tasks.c.data)
    .where(
        tasks.c.scheduler_id == bindparam("scheduler_id"),
        tasks.c.hash.in_(bindparam("hashes", expanding=True)),
        _STILL_QUEUED,
    )
    .order_by(tasks.c.created_at)
)
# One hash (a single push): no ORDER BY, so SQLite always takes ix_tasks_identity with the status in it, even
# before ANALYZE; a push keeps at most one QUEUED task per hash, so there is no newest to choose.
QUEUED_TWIN = (
    select(tasks.c.id, tasks.c.hash, tasks.c.priority, tasks.c.data)
    .where(tasks.c.scheduler_id == bindparam("scheduler_id"), tasks.c.hash == bindparam("hash"), IS_QUEUED)
    .limit(1)
)


@dataclass(frozen=True)
class _Queued:
    id: uuid.UUID
    priority: int | None
    data: Any


@dataclass(frozen=True)
class _Pending:
    """A draft to insert in the next flush: its row, and the place of its outcome in the batch."""

    item: PreparedDraft
    row: dict[str, Any]
    place: int


def push_drafts(
    connection: Connection, now: datetime, policy_for: PolicyFor, drafts: Sequence[TaskDraft]
) -> list[PushOutcome]:
    """Push `drafts` in the open write transaction `connection`; one outcome each, in order."""
    prepared = [prepare_draft(draft) for draft in drafts]
    ruled = {item.hash for item in prepared if item.draft.schedule_rule is not None}
    if ruled:
        found = schedules_by_hashes(connection, ruled)
        prepared = [with_schedule_decided(item, found.get(item.hash)) for item in prepared]
    return _PushBatch(connection, now, policy_for).run(prepared)


class _PushBatch:
    """One batch inside one open write transaction; `run` once."""

    def __init__(self, connection: Connection, now: datetime, policy_for: PolicyFor) -> None:
        self._connection = connection
        self._now = now
        self._policy_for = policy_for
        self._queued: dict[tuple[str, str], _Queued] = {}
        self._queued_counts: dict[str, int] = {}
        self._new_schedules: dict[str, dict[str, Any]] = {}  # by identity
        self._schedule_moved: dict[uuid.UUID, uuid.UUID] = {}  # a new schedule's id → the one it joined
        self._linked_schedules: list[dict[str, Any]] = []
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._outcomes: list[PushOutcome] = []

    def run(self, prepared: Sequence[PreparedDraft]) -> list[PushOutcome]:
        self._load_queued(prepared)
        self._count_queued(prepared)
        for item in prepared:
            self._outcomes.append(self._push(item))
        self._flush()
        return self._outcomes

    def _load_queued(self, prepared: Sequence[PreparedDraft]) -> None:
        by_scheduler: dict[str, set[str]] = {}
        for item in prepared:
            by_scheduler.setdefault(item.draft.scheduler_id, set()).add(item.hash)
        for scheduler_id, hashes in by_scheduler.items():
            if len(hashes) == 1:
                (one,) = hashes
                found = fetch(self._connection, QUEUED_TWIN, {"scheduler_id": scheduler_id, "hash": one})
            else:
                parameters = {"scheduler_id": scheduler_id, "hashes": list(hashes)}
                found = fetch(self._connection, _QUEUED_BY_HASH, parameters)
            for row in found:  # oldest first: the newest queued duplicate wins
                self._queued[(scheduler_id, row["hash"])] = _Queued(row["id"], row["priority"], row["data"])

    def _count_queued(self, prepared: Sequence[PreparedDraft]) -> None:
        """Before the batch inserts anything: the queued tasks of each scheduler whose queue has a maxsize
        (from the counters the database keeps, not by counting the queue)."""
        for scheduler_id in {item.draft.scheduler_id for item in prepared}:
            if self._policy_for(scheduler_id).maxsize:
                queued = counts.total(self._connection, scheduler_id, status=TaskStatus.QUEUED)
                self._queued_counts[scheduler_id] = queued

    def _push(self, item: PreparedDraft) -> PushOutcome:
        scheduler_id = item.draft.scheduler_id
        key = (scheduler_id, item.hash)
        if key in self._pending:
            self._flush()  # the twin is a row of this batch: decide against it as the database holds it
        existing = self._queued.get(key)
        previous = (existing.priority, existing.data) if existing is not None else None
        queued = self._queued_counts.get(scheduler_id, 0)
        action = decide_draft(self._policy_for(scheduler_id), previous, item, queued)
        if isinstance(action, Refusal):
            twin = existing.id if existing is not None else None
            return PushOutcome(item.draft, action.result, twin_id=twin, refusal=action.reason)
        schedule_id = self._link(item) or item.draft.schedule_id
        task = None
        if action is PushAction.UPDATE and existing is not None:
            task = self._update(existing.id, item, schedule_id)
        if task is None:  # no twin, or it left the queue since the batch looked
            task = self._insert(item, schedule_id)
            self._queued_counts[scheduler_id] = queued + 1  # manual tasks bypass maxsize, yet take room
        self._queued[key] = _Queued(task.id, task.priority, task.data)
        return PushOutcome(item.draft, PushResult.PUSHED, task)

    def _link(self, item: PreparedDraft) -> uuid.UUID | None:
        link = item.draft.schedule
        if link is None:
            return None
        if link.schedule_id is not None:
            self._linked_schedules.append(linked_schedule(link, self._now))
            return link.schedule_id
        schedule_id: uuid.UUID
        if item.hash in self._new_schedules:  # a draft of this batch creates it: join that one
            schedule_id = self._new_schedules[item.hash]["id"]
            self._linked_schedules.append(linked_schedule(replace(link, schedule_id=schedule_id), self._now))
            return schedule_id
        draft = item.draft
        row = new_schedule(link, draft.scheduler_id, draft.organisation, item.hash, item.data, self._now)
        self._new_schedules[item.hash] = row
        schedule_id = row["id"]
        return schedule_id

    def _insert(self, item: PreparedDraft, schedule_id: uuid.UUID | None) -> Task:
        row = {
            "id": item.task_id,
            "scheduler_id": item.draft.scheduler_id,
            "schedule_id": schedule_id,
            "organisation": item.draft.organisation,
            "priority": item.priority,
            "status": TaskStatus.QUEUED.value,
            "type": item.kind.value,
            "hash": item.hash,
            "data": item.data,
            "created_at": self._now,
            "modified_at": self._now,
            "last_run_at": item.draft.last_run_at,
            "rerank_at": item.draft.rerank_at,
        }
        self._pending[(item.draft.scheduler_id, item.hash)] = _Pending(item, row, len(self._outcomes))
        return queued_task(item, schedule_id, self._now)

    def _update(self, task_id: uuid.UUID, item: PreparedDraft, schedule_id: uuid.UUID | None) -> Task | None:
        """The push policy lets this draft replace a queued duplicate: it keeps the queued task's id. None
        when the duplicate is no longer queued (popped by another process since the batch looked)."""
        self._flush()  # the schedule may be a row of this very batch
        if schedule_id is not None:
            schedule_id = self._schedule_moved.get(schedule_id, schedule_id)
        data = {**item.data, "id": str(task_id)} if "id" in item.data else item.data
        values: dict[str, Any] = {
            "priority": item.priority,
            "data": data,
            "modified_at": self._now,
            "last_run_at": item.draft.last_run_at,
            "rerank_at": item.draft.rerank_at,
        }
        if schedule_id is not None:
            values["schedule_id"] = schedule_id
        statement = update(tasks).where(tasks.c.id == task_id, IS_QUEUED).values(**values).returning(*tasks.c)
        row = self._connection.execute(statement).first()
        return None if row is None else Task.model_validate(row._mapping)

    def _flush(self) -> None:
        # Schedules first: the tasks refer to them.
        if self._new_schedules:
            self._insert_schedules(list(self._new_schedules.values()))
        if self._linked_schedules:
            linked = [
                {**row, "_id": self._schedule_moved.get(row["_id"], row["_id"])}
                for row in self._linked_schedules
            ]
            self._connection.execute(LINK_SCHEDULE, linked)
        pending, self._pending = self._pending, {}
        by_scheduler: dict[str, list[_Pending]] = {}
        for one in pending.values():
            by_scheduler.setdefault(one.item.draft.scheduler_id, []).append(one)
        for scheduler_id, rows in by_scheduler.items():
            self._insert_tasks(scheduler_id, rows)
        self._new_schedules, self._linked_schedules = {}, []

    def _insert_schedules(self, rows: list[dict[str, Any]]) -> None:
        """Insert new schedules; one whose identity has a schedule already (created by another process since
        the draft was planned) joins that one, and so do the drafts of this batch that were to create it."""
        statement = schedule_upsert(self._connection.dialect.name)
        joined = {row["hash"]: row["id"] for row in fetch_batch(self._connection, statement, rows)}
        for row in rows:
            if joined[row["hash"]] != row["id"]:
                self._schedule_moved[row["id"]] = joined[row["hash"]]
        for one in self._pending.values():
            moved = self._schedule_moved.get(one.row["schedule_id"])
            if moved is not None:
                one.row["schedule_id"] = moved
                task = Task.model_validate(one.row)
                self._outcomes[one.place] = PushOutcome(one.item.draft, PushResult.PUSHED, task)

    def _insert_tasks(self, scheduler_id: str, pending: list[_Pending]) -> None:
        """Insert one scheduler's new rows; a draft that met a twin queued meanwhile takes the outcome the
        statement gave it (the twin updated, or a refusal)."""
        statement = task_upsert(self._connection.dialect.name, self._policy_for(scheduler_id))
        rows = [one.row for one in pending]
        try:
            written = {row["hash"]: row for row in fetch_batch(self._connection, statement, rows)}
        except IntegrityError as exc:
            if not _duplicate_key(exc):
                raise  # a schedule that does not exist, say: the foreign key refuses
            ids = ", ".join(str(row["id"]) for row in rows)
            taken = f"a task with id {ids}" if len(rows) == 1 else f"a task with one of the ids {ids}"
            raise NotAllowed(f"{taken} already exists") from exc
        for one in pending:
            row = written.get(one.item.hash)
            if row is None or (row["id"], row["created_at"]) != (one.row["id"], self._now):
                self._met_twin(one, None if row is None else row["id"])

    def _met_twin(self, pending: _Pending, updated: uuid.UUID | None) -> None:
        """The draft met a twin another transaction queued after this batch looked: `updated` is the twin's
        id when the statement updated it under the push policy, None when the policy refused the draft."""
        item = pending.item
        key = (item.draft.scheduler_id, item.hash)
        if key[0] in self._queued_counts:
            self._queued_counts[key[0]] -= 1  # the draft did not add a queued task after all
        if updated is not None:
            found = self._connection.execute(select(tasks).where(tasks.c.id == updated)).one()
            task = Task.model_validate(found._mapping)
            self._queued[key] = _Queued(task.id, task.priority, task.data)
            self._outcomes[pending.place] = PushOutcome(item.draft, PushResult.PUSHED, task)
            return
        twins = fetch(self._connection, QUEUED_TWIN, {"scheduler_id": key[0], "hash": item.hash})
        twin = twins[0] if twins else None
        if twin is not None:
            self._queued[key] = _Queued(twin["id"], twin["priority"], twin["data"])
        else:
            self._queued.pop(key, None)
        refusal = already_queued()
        twin_id = None if twin is None else twin["id"]
        outcome = PushOutcome(item.draft, refusal.result, twin_id=twin_id, refusal=refusal.reason)
        self._outcomes[pending.place] = outcome


def _duplicate_key(exc: IntegrityError) -> bool:
    """A unique key refused the row (SQLSTATE 23505 on PostgreSQL), rather than a foreign key."""
    original = exc.orig
    return getattr(original, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in str(original)
