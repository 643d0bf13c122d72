"""The planners' task lookups: the `TaskStore` port of `katsched.core.ports` in SQL, beside the queue.

Every lookup takes a whole batch of hashes or ids: a planner run costs a few statements, not a few per task.
"""

import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, Integer, Select, bindparam, case, func, select, update

from katsched.clock import Clock
from katsched.core.models import Task
from katsched.core.ports import (
    DecisionLog,
    DecisionsOf,
    NewRank,
    PoppedBy,
    PushOutcome,
    QueuedRank,
    TaskDraft,
)
from katsched.store.decisions import SqlDecisionLog
from katsched.store.engine import read, write
from katsched.store.queue import SqlTaskQueue, to_task
from katsched.store.tables import tasks
from katsched.store.task_upsert import IS_QUEUED

T = TypeVar("T")

# Bound parameters per IN list: far below SQLite's limit of 32,766, and plans stay cacheable.
CHUNK = 1000


def _latest_by_hash() -> Select[Any]:
    """The newest task of each hash among `:hashes`, in one scheduler (built once: it is on the hot path)."""
    newest_first = (tasks.c.created_at.desc(), tasks.c.id.desc())
    ranked = (
        select(tasks, func.row_number().over(partition_by=tasks.c.hash, order_by=newest_first).label("n"))
        .where(
            tasks.c.scheduler_id == bindparam("scheduler_id"),
            tasks.c.hash.in_(bindparam("hashes", expanding=True)),
        )
        .subquery()
    )
    return select(*(ranked.c[column.name] for column in tasks.c)).where(ranked.c.n == 1)


_LATEST_BY_HASH = _latest_by_hash()
# Read off ix_tasks_rerank: only the tasks whose rank has moved, never the whole queue.
_RANKS_DUE = (
    select(tasks.c.id, tasks.c.priority, tasks.c.created_at, tasks.c.last_run_at)
    .where(
        tasks.c.scheduler_id == bindparam("scheduler_id"),
        tasks.c.organisation == bindparam("organisation"),
        IS_QUEUED,
        tasks.c.rerank_at <= bindparam("now", type_=tasks.c.rerank_at.type),
    )
    .order_by(tasks.c.rerank_at)
    .limit(bindparam("limit", type_=Integer))
)
_NEW_PRIORITY = bindparam("_priority", type_=tasks.c.priority.type)
_SET_RANK = (
    update(tasks)
    .where(tasks.c.id == bindparam("_id"), IS_QUEUED)
    .values(
        priority=_NEW_PRIORITY,
        rerank_at=bindparam("_rerank_at", type_=tasks.c.rerank_at.type),
        # A task is modified when its priority is, not each time its next re-rank is put off.
        modified_at=case(
            (tasks.c.priority == _NEW_PRIORITY, tasks.c.modified_at),
            else_=bindparam("_now", type_=tasks.c.modified_at.type),
        ),
    )
)


def chunks(items: Collection[T], size: int = CHUNK) -> Iterator[list[T]]:
    ordered = list(items)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


class SqlTaskStore:
    """The planners' task lookups, beside the `SqlTaskQueue` that does their pushes."""

    def __init__(self, queue: SqlTaskQueue) -> None:
        self.queue = queue
        self.engine: Engine = queue.engine
        self.clock: Clock = queue.clock

    def latest_by_hash(self, scheduler_id: str, hashes: Collection[str]) -> dict[str, Task]:
        latest: dict[str, Task] = {}
        with read(self.engine) as connection:
            for chunk in chunks(set(hashes)):
                found = connection.execute(_LATEST_BY_HASH, {"scheduler_id": scheduler_id, "hashes": chunk})
                latest.update((str(row.hash), to_task(row)) for row in found)
        return latest

    def push_many(self, drafts: Sequence[TaskDraft]) -> list[PushOutcome]:
        return self.queue.push_many(drafts)

    def push_with_decisions(
        self, drafts: Sequence[TaskDraft], decisions_of: DecisionsOf, log: DecisionLog
    ) -> list[PushOutcome]:
        if isinstance(log, SqlDecisionLog) and log.engine is self.engine:
            return self.queue.push_many(drafts, decisions_of)
        outcomes = self.push_many(drafts)
        log.record(decisions_of(outcomes))
        return outcomes

    def cancel_queued_for_object(
        self, scheduler_id: str, organisation: str, input_ooi: str, reason: str
    ) -> list[uuid.UUID]:
        same_object = tasks.c.data["input_ooi"].as_string() == input_ooi
        return self.queue.cancel_queued(scheduler_id, organisation, [same_object], reason)

    def raw_file_planned(self, hashes: Collection[str], raw_data_id: uuid.UUID) -> set[str]:
        planned: set[str] = set()
        same_raw_file = tasks.c.data[("raw_data", "id")].as_string() == str(raw_data_id)
        for chunk in chunks(set(hashes)):
            statement = select(tasks.c.hash).where(
                tasks.c.scheduler_id == "normalizer", tasks.c.hash.in_(chunk), same_raw_file
            )
            with read(self.engine) as connection:
                planned.update(str(found) for found in connection.execute(statement).scalars())
        return planned

    def tasks_for_raw_file(self, organisation: str, raw_data_id: uuid.UUID) -> list[Task]:
        same_raw_file = tasks.c.data[("raw_data", "id")].as_string() == str(raw_data_id)
        statement = (
            select(tasks)
            .where(tasks.c.scheduler_id == "normalizer", tasks.c.organisation == organisation, same_raw_file)
            .order_by(tasks.c.created_at.desc())
        )
        with read(self.engine) as connection:
            return [to_task(row) for row in connection.execute(statement)]

    def popped_by(self, task_id: uuid.UUID) -> PoppedBy | None:
        return self.queue.popped_by(task_id)

    def ranks_due(self, scheduler_id: str, organisation: str, now: datetime, limit: int) -> list[QueuedRank]:
        parameters = {"scheduler_id": scheduler_id, "organisation": organisation, "now": now, "limit": limit}
        with read(self.engine) as connection:
            return [QueuedRank(*row) for row in connection.execute(_RANKS_DUE, parameters)]

    def set_ranks(self, ranks: Mapping[uuid.UUID, NewRank]) -> int:
        if not ranks:
            return 0
        now = self.clock.now()
        rows = [
            {"_id": task_id, "_priority": new.priority, "_rerank_at": new.rerank_at, "_now": now}
            for task_id, new in ranks.items()
        ]
        with write(self.engine) as connection:
            return int(connection.execute(_SET_RANK, rows).rowcount)


if TYPE_CHECKING:  # mypy proves that the adapters implement the ports
    from katsched.core import ports

    def _implements_port(task_store: SqlTaskStore) -> ports.TaskStore:
        return task_store
