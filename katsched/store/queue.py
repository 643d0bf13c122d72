"""The durable priority queue: push, pop, peek and status changes, each one transaction of Core statements.

A scheduler's queue is the set of its QUEUED rows; there is no other state. A pop is one
``UPDATE … WHERE id IN (best matching QUEUED ids) RETURNING …`` statement, so two processes can never
claim the same task: on SQLite the write lock is taken at BEGIN IMMEDIATE, on PostgreSQL the inner select
skips rows another transaction has locked.
"""

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Row,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.sql import ColumnElement, FromClause, Update
from sqlalchemy.sql.util import ClauseAdapter

from katsched.clock import Clock
from katsched.core.filters import FilterExpr
from katsched.core.models import DEFAULT_PUSH_POLICY, PushPolicy, SchedulerKind, Task, TaskStatus
from katsched.core.ports import (
    DecisionsOf,
    PoppedBy,
    PushOutcome,
    TaskDraft,
    TaskPage,
    TaskQuery,
    render_task,
)
from katsched.core.push import pushed_task, scheduler_kind, twin_queued
from katsched.core.transitions import check_transition
from katsched.errors import NotFound, StorageError
from katsched.store import counts
from katsched.store.decisions import upsert_decisions
from katsched.store.engine import read, write
from katsched.store.filters import compile_filter
from katsched.store.history import add_reason
from katsched.store.prepared import fetch
from katsched.store.push import QUEUED_TWIN, push_drafts
from katsched.store.tables import task_events, tasks
from katsched.store.task_upsert import IS_QUEUED

logger = logging.getLogger("katsched.store")

DEDUPLICATION_KEY = tasks.c.data["deduplication_key"].as_string()
# A priority given by hand is kept: re-ranking visits only tasks with a `rerank_at`.
MANUAL_RANK = {"last_run_at": None, "rerank_at": None}


def to_task(row: Row[Any]) -> Task:
    return Task.model_validate(row._mapping)


def _rendered(
    claimed: Iterable[dict[str, Any]], render: Callable[[Task], bytes]
) -> tuple[list[tuple[Task, bytes]], dict[uuid.UUID, str]]:
    """Each claimed row as (task, its rendering); the ids of those that cannot be rendered, with why."""
    rendered: list[tuple[Task, bytes]] = []
    unrenderable: dict[uuid.UUID, str] = {}
    for row in claimed:
        try:
            task = Task.model_validate(row)
            rendered.append((task, render(task)))
        except (ValueError, RecursionError) as exc:
            unrenderable[row["id"]] = f"cannot be rendered as JSON: {str(exc).splitlines()[0]}"
    return rendered, unrenderable


def _on(alias: FromClause, clause: ColumnElement[bool]) -> ColumnElement[bool]:
    """`clause`, written against `tasks`, rewritten against an alias of it (so subqueries never correlate)."""
    adapted: ColumnElement[bool] = ClauseAdapter(alias).traverse(clause)
    return adapted


def _pop_order(table: FromClause) -> tuple[ColumnElement[Any], ...]:
    return (table.c.priority.asc(), table.c.created_at.asc())


def _head_group(matching: ColumnElement[bool]) -> ColumnElement[bool]:
    """A deduplication group is handed out whole, but only once its best task is the best task overall."""
    head = tasks.alias("head")
    head_key = (
        select(head.c.data["deduplication_key"].as_string())
        .where(_on(head, matching))
        .order_by(*_pop_order(head))
        .limit(1)
        .scalar_subquery()
    )
    return or_(head_key.is_(None), head_key == DEDUPLICATION_KEY)


def _claim(scheduler_id: str, filters: FilterExpr | None, dialect: str) -> Update:
    """The pop statement, built once per scheduler, filter and dialect: building it (SQLAlchemy adapting the
    clauses to the aliases) costs several times more than SQLite takes to run it."""
    try:
        hash(filters)
    except TypeError:  # a filter holding an unhashable value: build it afresh
        return _build_claim(scheduler_id, filters, dialect)
    return _cached_claim(scheduler_id, filters, dialect)


def _queued_matching(scheduler_id: str, filters: FilterExpr | None) -> ColumnElement[bool]:
    conditions = [tasks.c.scheduler_id == scheduler_id, IS_QUEUED]
    if filters is not None:
        conditions.append(compile_filter(filters, "task"))
    return and_(*conditions)


def _build_claim(scheduler_id: str, filters: FilterExpr | None, dialect: str) -> Update:
    matching = _queued_matching(scheduler_id, filters)
    if scheduler_kind(scheduler_id) is SchedulerKind.BOEFJE:
        matching = and_(matching, _head_group(matching))
    candidate = tasks.alias("candidate")
    claim = (
        select(candidate.c.id)
        .where(_on(candidate, matching))
        .order_by(*_pop_order(candidate))
        .limit(bindparam("claim_limit", type_=Integer))
    )
    if dialect == "postgresql":
        claim = claim.with_for_update(skip_locked=True)
    return (
        update(tasks)
        .where(tasks.c.id.in_(claim.scalar_subquery()))
        .values(
            status=TaskStatus.DISPATCHED.value,
            modified_at=bindparam("claimed_at", type_=tasks.c.modified_at.type),
            popped_at=bindparam("claimed_at", type_=tasks.c.popped_at.type),
            popped_by_address=bindparam("popped_by_address", type_=tasks.c.popped_by_address.type),
            popped_by_agent=bindparam("popped_by_agent", type_=tasks.c.popped_by_agent.type),
        )
        .returning(*tasks.c)
    )


_cached_claim = lru_cache(maxsize=256)(_build_claim)


_STATUS_AND_IDENTITY = select(tasks.c.status, tasks.c.scheduler_id, tasks.c.hash).where(
    tasks.c.id == bindparam("task_id")
)


def _refuse_queued_twin(connection: Connection, scheduler_id: str, identity: str | None) -> None:
    """A task moved back to QUEUED may not join a queued twin (the unique index would refuse it less
    precisely)."""
    parameters = {"scheduler_id": scheduler_id, "hash": identity}
    twins = fetch(connection, QUEUED_TWIN, parameters)
    if twins:
        raise twin_queued(twins[0]["id"])


class SqlTaskQueue:
    """The `TaskQueue` port on SQLite or PostgreSQL."""

    def __init__(
        self, engine: Engine, clock: Clock, policies: Mapping[str, PushPolicy] | None = None
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.policies = dict(policies or {})

    def policy(self, scheduler_id: str) -> PushPolicy:
        return self.policies.get(scheduler_id, DEFAULT_PUSH_POLICY)

    @property
    def single_writer(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def ping(self) -> None:
        with read(self.engine) as connection:
            connection.execute(text("SELECT 1"))

    # push

    def push(self, draft: TaskDraft, *, wait: bool = True) -> Task:
        """`wait=False`: WouldWait at once when another writer holds SQLite's write lock, or no connection is
        free."""
        (outcome,) = self.push_many([draft], wait=wait)
        return pushed_task(outcome)

    def push_many(
        self, drafts: Sequence[TaskDraft], decisions_of: DecisionsOf | None = None, *, wait: bool = True
    ) -> list[PushOutcome]:
        """`decisions_of`: the decisions the outcomes make, recorded in the push's transaction."""
        if not drafts and decisions_of is None:
            return []
        with write(self.engine, wait=wait) as connection:
            outcomes = push_drafts(connection, self.clock.now(), self.policy, drafts) if drafts else []
            if decisions_of is not None:
                upsert_decisions(connection, decisions_of(outcomes))
        return outcomes

    # pop and peek

    def pop(
        self,
        scheduler_id: str,
        limit: int = 1,
        filters: FilterExpr | None = None,
        *,
        popped_by: PoppedBy | None = None,
    ) -> list[Task]:
        """Claim up to `limit` of the best matching QUEUED tasks and return them as DISPATCHED."""
        return [task for task, _ in self.pop_rendered(scheduler_id, limit, filters, popped_by=popped_by)]

    def pop_rendered(
        self,
        scheduler_id: str,
        limit: int = 1,
        filters: FilterExpr | None = None,
        render: Callable[[Task], bytes] = render_task,
        *,
        popped_by: PoppedBy | None = None,
        wait: bool = True,
    ) -> list[tuple[Task, bytes]]:
        """`pop`, each task with its rendering, made before the claim commits: a claim is never committed for
        a task that cannot be handed out. Such a task (data stored before the API refused it) is failed, with
        the reason, in the same transaction, rather than left to break every pop that reaches it. Who claimed
        the tasks, and when, is recorded. `wait=False`: WouldWait at once when another writer holds
        SQLite's write lock, or no connection is free."""
        scheduler_kind(scheduler_id)
        if limit < 1:
            return []
        now = self.clock.now()
        who = (popped_by or PoppedBy(None, None)).bounded()
        parameters = {
            "claim_limit": limit,
            "claimed_at": now,
            "popped_by_address": who.address,
            "popped_by_agent": who.agent,
        }
        with write(self.engine, wait=wait) as connection:
            statement = _claim(scheduler_id, filters, connection.dialect.name)
            claimed = fetch(connection, statement, parameters)
            popped, unrenderable = _rendered(claimed, render)
            for task_id, reason in unrenderable.items():
                self._fail_claimed(connection, task_id, now, reason)
        return sorted(popped, key=lambda pair: (pair[0].priority or 0, pair[0].created_at))

    def _fail_claimed(self, connection: Connection, task_id: uuid.UUID, now: datetime, reason: str) -> None:
        connection.execute(
            update(tasks).where(tasks.c.id == task_id).values(status=TaskStatus.FAILED.value, modified_at=now)
        )
        add_reason(connection, [task_id], TaskStatus.FAILED, now, reason)
        logger.error("task_unrenderable task_id=%s reason=%s", task_id, reason)

    def peek(self, scheduler_id: str, limit: int = 1, offset: int = 0) -> list[Task]:
        scheduler_kind(scheduler_id)
        statement = (
            select(tasks)
            .where(_queued_matching(scheduler_id, None))
            .order_by(*_pop_order(tasks), tasks.c.id)  # the id makes offsets stable between calls
            .offset(offset)
            .limit(limit)
        )
        with read(self.engine) as connection:
            return [to_task(row) for row in connection.execute(statement)]

    # reads

    def get(self, task_id: uuid.UUID) -> Task:
        with read(self.engine) as connection:
            row = connection.execute(select(tasks).where(tasks.c.id == task_id)).first()
        if row is None:
            raise NotFound(f"task not found, by task_id: {task_id}")
        return to_task(row)

    def popped_by(self, task_id: uuid.UUID) -> PoppedBy | None:
        """Who popped the task last, and when; None for a task never popped."""
        columns = (tasks.c.popped_by_address, tasks.c.popped_by_agent, tasks.c.popped_at)
        with read(self.engine) as connection:
            row = connection.execute(select(*columns).where(tasks.c.id == task_id)).first()
        return None if row is None or row.popped_at is None else PoppedBy(*row)

    def history(self, task_id: uuid.UUID) -> list[tuple[TaskStatus, datetime, str | None]]:
        statement = (
            select(task_events.c.status, task_events.c.changed_at, task_events.c.reason)
            .where(task_events.c.task_id == task_id)
            .order_by(task_events.c.changed_at, task_events.c.id)
        )
        with read(self.engine) as connection:
            return [(TaskStatus(s), at, reason) for s, at, reason in connection.execute(statement)]

    def qsize(self, scheduler_id: str) -> int:
        with read(self.engine) as connection:
            return self._count_queued(connection, scheduler_id)

    def _count_queued(self, connection: Connection, scheduler_id: str) -> int:
        return counts.total(connection, scheduler_id, status=TaskStatus.QUEUED)

    # status changes

    def set_status(self, task_id: uuid.UUID, status: TaskStatus, reason: str | None = None) -> Task:
        """Move a task through the transition table; re-setting the current status is a heartbeat."""
        return self.update(task_id, {"status": status}, reason=reason)

    def update(self, task_id: uuid.UUID, changes: Mapping[str, Any], reason: str | None = None) -> Task:
        """Apply `changes` (any of status, priority, data, organisation, schedule_id), bumping modified_at."""
        unknown = set(changes) - {"status", "priority", "data", "organisation", "schedule_id"}
        if unknown:
            raise StorageError(f"cannot update task fields {sorted(unknown)}")
        now = self.clock.now()
        with write(self.engine) as connection:
            found = connection.execute(_STATUS_AND_IDENTITY, {"task_id": task_id}).first()
            if found is None:
                raise NotFound(f"task not found, by task_id: {task_id}")
            current = found.status
            values = dict(changes)
            if "priority" in values:
                values |= MANUAL_RANK
            if "status" in values:
                new_status = TaskStatus(values["status"])
                check_transition(TaskStatus(current), new_status)
                if new_status is TaskStatus.QUEUED and current != new_status.value:
                    _refuse_queued_twin(connection, found.scheduler_id, found.hash)
                values["status"] = new_status.value
            statement = (
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.status == current)
                .values(**values, modified_at=now)
                .returning(*tasks.c)
            )
            updated = to_task(connection.execute(statement).one())
            add_reason(connection, [task_id], updated.status, now, reason if "status" in values else None)
            return updated

    def cancel(self, task_id: uuid.UUID, reason: str | None = None) -> Task:
        return self.set_status(task_id, TaskStatus.CANCELLED, reason)

    def cancel_queued(
        self, scheduler_id: str, organisation: str, conditions: Sequence[ColumnElement[bool]], reason: str
    ) -> list[uuid.UUID]:
        """Cancel every QUEUED task of one organisation in a scheduler that also meets `conditions`."""
        now = self.clock.now()
        statement = (
            update(tasks)
            .where(
                tasks.c.scheduler_id == scheduler_id,
                tasks.c.organisation == organisation,
                IS_QUEUED,
                *conditions,
            )
            .values(status=TaskStatus.CANCELLED.value, modified_at=now)
            .returning(tasks.c.id)
        )
        with write(self.engine) as connection:
            cancelled = list(connection.execute(statement).scalars())
            add_reason(connection, cancelled, TaskStatus.CANCELLED, now, reason)
        return cancelled

    # listing and statistics

    def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Tasks matching `query`, newest first, with the total count before pagination (from the counters
        when the query narrows by scheduler, organisation and status only).

        The id breaks ties: tasks pushed in one transaction share `created_at`, and without a total order
        offset pages would repeat some of them and skip others."""
        where = and_(true(), *_query_conditions(query))
        newest_first = (tasks.c.created_at.desc(), tasks.c.id.desc())
        statement = select(tasks).where(where).order_by(*newest_first).offset(query.offset)
        if query.limit is not None:
            statement = statement.limit(query.limit)
        with read(self.engine) as connection:
            if _counted_by_key(query):
                count = counts.total(connection, query.scheduler_id, query.organisation, query.status)
            else:
                count_statement = select(func.count()).select_from(tasks).where(where)
                count = int(connection.execute(count_statement).scalar_one())
            found = [to_task(row) for row in connection.execute(statement)] if query.limit != 0 else []
        return TaskPage(count=count, tasks=found)

    def counts(self) -> list[tuple[str, str, TaskStatus, int]]:
        """(scheduler_id, organisation, status, number of tasks) for every combination that has tasks."""
        with read(self.engine) as connection:
            return counts.counted(connection)

    def hourly_stats(
        self, since: datetime, scheduler_id: str | None = None, organisation: str | None = None
    ) -> dict[datetime, dict[str, int]]:
        """Per hour of `modified_at` since `since`, the number of tasks in each status, newest hour first."""
        with read(self.engine) as connection:
            stats = counts.hourly(connection, since, scheduler_id, organisation)
        return {counts.parse_hour(hour): stats[hour] for hour in sorted(stats, reverse=True)}


def _counted_by_key(query: TaskQuery) -> bool:
    unkeyed = (query.type, query.input_ooi, query.min_created_at, query.max_created_at, query.filters)
    return all(value is None for value in unkeyed)


def _query_conditions(query: TaskQuery) -> list[ColumnElement[bool]]:
    equalities = {
        tasks.c.scheduler_id: query.scheduler_id,
        tasks.c.organisation: query.organisation,
        tasks.c.type: query.type,
        tasks.c.status: query.status.value if query.status else None,
        tasks.c.data["input_ooi"].as_string(): query.input_ooi,
    }
    conditions: list[ColumnElement[bool]] = [column == value for column, value in equalities.items() if value]
    if query.min_created_at is not None:
        conditions.append(tasks.c.created_at >= query.min_created_at)
    if query.max_created_at is not None:
        conditions.append(tasks.c.created_at <= query.max_created_at)
    if query.filters is not None:
        conditions.append(compile_filter(query.filters, "task"))
    return conditions


if TYPE_CHECKING:  # mypy proves that the adapter implements the port
    from katsched.core import ports

    def _implements_port(queue: SqlTaskQueue) -> ports.TaskQueue:
        return queue
